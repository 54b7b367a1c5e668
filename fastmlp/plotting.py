"""Loss curves as PNG images. matplotlib is an optional extra (``pip install fastmlp[plot]``),
imported only when a plot is drawn."""

import os


def plot_history(history, path=None, title="Training history"):
    """Draw the training (and validation) loss per epoch; returns the matplotlib Figure.

    history: the dict returned by ``MLP.fit`` (or saved by ``fastmlp train`` in
    ``net.metadata["history"]``), with a "loss" list and optionally "val_loss".
    path: where to write the image (PNG unless its extension names another format).
    Uses matplotlib's Agg canvas directly, so it never changes pyplot's backend.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plot_history needs matplotlib, an optional extra: "
                          "pip install fastmlp[plot]") from None
    if not isinstance(history, dict) or not history.get("loss"):
        raise ValueError("history must be a dict with a non-empty 'loss' list, "
                         "as returned by MLP.fit")
    loss = [float(v) for v in history["loss"]]
    val_loss = [float(v) for v in history.get("val_loss") or []]
    epochs = range(1, len(loss) + 1)

    figure = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(epochs, loss, marker="o", markersize=3, label="training loss")
    if val_loss:
        axes.plot(range(1, len(val_loss) + 1), val_loss, marker="o", markersize=3,
                  label="validation loss")
    values = loss + val_loss
    # Losses that fall by orders of magnitude are only readable on a log scale.
    if min(values) > 0 and max(values) / min(values) > 100:
        axes.set_yscale("log")
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend()
    if len(loss) <= 20:
        axes.set_xticks(list(epochs))
    figure.tight_layout()
    if path is not None:
        figure.savefig(os.fspath(path))
    return figure
