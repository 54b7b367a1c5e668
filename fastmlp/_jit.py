"""The one place where JIT options are set.

Every kernel is compiled through :func:`kernel` or :func:`parallel_kernel`, so the
options below apply to all of them, and a kernel's serial and parallel variants
come from the same Python source.
"""

import hashlib
import os
import pathlib
import types

# Numba's OpenMP workers spin this many times after a parallel region before they sleep.
# libgomp's default (300,000 when NUMBA_NUM_THREADS or OMP_NUM_THREADS is set) keeps an idle
# worker spinning through the serial kernels between regions, where on CPUs whose logical
# cores share a physical core it slows the thread doing the work: 400-100-40-2 at batch 32
# on 2 threads trained at 480k samples/s with it, 840k with 30,000 (1 thread: 640k). libgomp
# reads it when it loads, so it is set before Numba starts its threads; a value the user set wins.
os.environ.setdefault("GOMP_SPINCOUNT", "30000")

import numba  # noqa: E402
import numba.extending  # noqa: E402

# Flags rather than fastmath=True: 'contract' gives FMA, while leaving out
# 'nnan'/'ninf' keeps finiteness checks alive and leaving out 'reassoc' keeps
# every sum in its written order, so results never depend on vector width or
# thread count.
OPTIONS = {
    "fastmath": frozenset({"contract", "nsz", "arcp"}),
    "error_model": "numpy",
    "boundscheck": False,
    "nogil": True,
}

CACHE = os.environ.get("FASTMLP_NO_CACHE", "") in ("", "0")


def _fingerprint():
    # Numba's cache key ignores JIT options and changes in callees defined in
    # other modules; fold both into the cached functions' names instead.
    canonical = {key: sorted(value) if isinstance(value, frozenset) else value
                 for key, value in OPTIONS.items()}
    digest = hashlib.sha256(repr(sorted(canonical.items())).encode())
    digest.update(numba.__version__.encode())
    kernel_dir = pathlib.Path(__file__).parent / "kernels"
    try:
        for path in sorted(kernel_dir.glob("*.py")) + [pathlib.Path(__file__)]:
            digest.update(path.read_bytes())
    except OSError:
        pass
    return digest.hexdigest()[:12]


FINGERPRINT = _fingerprint()


def _compile(fn, parallel, tag, inline="never"):
    clone = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__,
                               fn.__defaults__, fn.__closure__)
    clone.__qualname__ = f"{fn.__qualname__}__{tag}_{FINGERPRINT}"
    clone.__module__ = fn.__module__
    clone.__doc__ = fn.__doc__
    options = dict(OPTIONS, fastmath=set(OPTIONS["fastmath"]), parallel=parallel, inline=inline)
    if CACHE:
        try:
            return numba.njit(cache=True, **options)(clone)
        except RuntimeError:
            pass  # no writable cache directory anywhere: compile per process
    return numba.njit(cache=False, **options)(clone)


def kernel(fn):
    """Compile `fn` as one serial kernel."""
    return _compile(fn, False, "serial")


def helper(fn):
    """Compile `fn` as a helper that kernels call per row or block: inlined into its
    callers, because a call that passes array views costs a reference-count round trip
    (atomic increments, about 20 ns) that would dominate short rows."""
    return _compile(fn, False, "helper", inline="always")


class ParallelKernel:
    """A kernel compiled twice from one source: `.serial` and `.parallel`.

    Callers choose by problem size, never by thread count, so the same inputs
    always run the same machine code and give the same bits.
    """

    def __init__(self, fn):
        self.serial = _compile(fn, False, "serial")
        self.parallel = _compile(fn, True, "parallel")
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__

    def __repr__(self):
        return f"<kernel {self.__name__}>"

    def choose(self, parallel):
        return self.parallel if parallel else self.serial


def parallel_kernel(fn):
    """Compile `fn`, whose outer loop is a prange, as a serial and a parallel kernel."""
    return ParallelKernel(fn)


# When a kernel runs its parallel variant: a rule on problem size alone, shared by
# the Python model and the compiled epoch loop, so both run the same machine code.
# Below these sizes (multiply-adds for matrix products, elements for elementwise
# kernels) entering a parallel region costs more than the ~3-5 µs of work it splits.
PARALLEL_MIN_WORK = 1 << 19
PARALLEL_MIN_ELEMENTS = 1 << 14


def start_threads():
    """Start Numba's thread pool. A serial kernel that calls parallel ones, loaded from the
    cache, does not start it: calling in before it starts jumps to a null pointer."""
    numba.get_num_threads()


def specialise(reference):
    """Decorate a chooser of per-type implementations of `reference` (numba.extending.overload),
    compiled with the same options as the kernels that call it."""
    options = dict(OPTIONS, fastmath=set(OPTIONS["fastmath"]))
    return numba.extending.overload(reference, jit_options=options)
