"""The ``fastmlp`` command line (also ``python -m fastmlp``)."""

import argparse
import sys
import time

import numpy as np


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def demo(args):
    """Train the 400-100-40-2 network on generated 20x20 shape images and report accuracy."""
    import numba

    import fastmlp
    from fastmlp.datasets import SHAPE_CLASSES, make_shapes

    if args.threads is not None and args.threads > numba.config.NUMBA_NUM_THREADS:
        raise SystemExit(f"fastmlp demo: --threads {args.threads} exceeds the "
                         f"{numba.config.NUMBA_NUM_THREADS} available")
    n_test = args.samples // 5
    X, y = make_shapes(args.samples + n_test, seed=args.seed, dtype=args.dtype)
    X_train, y_train, X_test, y_test = X[:args.samples], y[:args.samples], X[args.samples:], y[args.samples:]
    net = fastmlp.MLP([400, 100, 40, 2], activation="relu", loss="cross_entropy",
                      dtype=args.dtype, seed=args.seed, n_threads=args.threads)
    threads = args.threads or numba.get_num_threads()
    print(f"data: {args.samples} training + {n_test} test images, 20x20 pixels, "
          f"2 classes ({' / '.join(SHAPE_CLASSES)}), generated with seed {args.seed}")
    print(f"network: 400-100-40-2, relu hidden, softmax + cross-entropy, {net.n_params} parameters, "
          f"{args.dtype}, {threads} thread(s)")
    print(f"training: {args.epochs} epochs of SGD, batch size {args.batch_size}, lr {args.lr} "
          f"(the first epoch includes JIT compilation, or loading it from the cache)")
    began = time.perf_counter()
    history = net.fit(X_train, y_train, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      validation_data=(X_test, y_test), verbose=True)
    total = time.perf_counter() - began
    accuracy = float(np.mean(net.predict(X_test).argmax(axis=1) == y_test))
    steady = history["time"][1:] or history["time"]
    rate = args.samples / float(np.median(steady))
    print(f"test accuracy: {accuracy:.2%}")
    print(f"time: {total:.2f} s in all; {rate:,.0f} samples/s per epoch after the first (median)")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="fastmlp", description=__doc__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    p = commands.add_parser("demo", help="train 400-100-40-2 on generated shape images",
                            description=demo.__doc__)
    p.add_argument("--samples", type=_positive_int, default=20000, help="training images (default 20000)")
    p.add_argument("--epochs", type=_positive_int, default=10, help="default 10")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="default 32")
    p.add_argument("--lr", type=_positive_float, default=0.05, help="learning rate (default 0.05)")
    p.add_argument("--threads", type=_positive_int, default=None, help="default: all Numba threads")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--seed", type=int, default=0, help="data and initialisation seed (default 0)")
    p.set_defaults(handler=demo)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
