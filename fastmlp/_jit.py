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
from numba.core import cgutils, types as numba_types  # noqa: E402
from numba.np.arrayobj import make_array, populate_array  # noqa: E402

# Flags rather than fastmath=True: 'contract' gives FMA, while leaving out
# 'nnan'/'ninf' keeps finiteness checks alive and leaving out 'reassoc' keeps
# every sum in its written order, so results never depend on vector width or
# thread count.
# _nrt=False: no reference counting in kernels. Kernels allocate nothing and return no
# arrays, and every array they touch is owned by the Python caller for the whole call, so
# the counts only cost: an atomic increment and decrement per array argument of every call
# and per view, about half of a small layer's time (a 1 x 2 x 2 dense forward call: 114 ns
# with them, 47 without; 400-14-8-2 at B = 1: 4.6 µs a step became 1.8). A kernel that tried
# to allocate would not compile.
OPTIONS = {
    "fastmath": frozenset({"contract", "nsz", "arcp"}),
    "error_model": "numpy",
    "boundscheck": False,
    "nogil": True,
    "_nrt": False,
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


def _compile(fn, parallel, tag, inline="never", bind=None):
    fn_globals = fn.__globals__ if not bind else dict(fn.__globals__, **bind)
    clone = types.FunctionType(fn.__code__, fn_globals, fn.__name__,
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


def kernel(fn, variant="", **bind):
    """Compile `fn` as one serial kernel; with `variant` (a name), the version of it that sees
    the globals named in `bind` with the values given there (see `helper`)."""
    return _compile(fn, False, "_".join(filter(None, ("serial", variant))), bind=bind)


def helper(fn, variant="", **bind):
    """Compile `fn` as a helper that kernels call per row or block, or that returns array
    views (which a kernel without reference counting cannot return): inlined into its
    callers.

    With `variant` (a name) and `bind`, the version of `fn` in which the globals named in
    `bind` have the values given there. Numba takes globals as constants and drops the
    branches they rule out before it compiles what those branches call, so a choice made
    through `bind` costs no compile time for the code not chosen, as a run-time argument
    would; callees bound the same way make a chain of kernels that choose together.
    """
    return _compile(fn, False, "_".join(filter(None, ("helper", variant))), inline="always",
                    bind=bind)


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


def _contiguous_view(context, builder, source_type, source_value, result_type, offset, shape):
    """Codegen of a C-contiguous view of `shape` (LLVM intp values) on the array source_value,
    starting `offset` elements into its data; a new reference, as slicing returns."""
    source = make_array(source_type)(context, builder, source_value)
    view = make_array(result_type)(context, builder)
    itemsize = context.get_constant(
        numba_types.intp, context.get_abi_sizeof(context.get_data_type(source_type.dtype)))
    strides = [itemsize]
    for extent in reversed(shape[1:]):
        strides.insert(0, builder.mul(extent, strides[0]))
    populate_array(view, data=builder.gep(source.data, [offset]),
                   shape=cgutils.pack_array(builder, shape),
                   strides=cgutils.pack_array(builder, strides),
                   itemsize=itemsize, meminfo=source.meminfo, parent=source.parent)
    value = view._getvalue()
    if context.enable_nrt:
        context.nrt.incref(builder, result_type, value)
    return value


@numba.extending.intrinsic
def matrix_view(typingctx, flat, start, rows, cols):
    """flat[start:start + rows * cols] as a C-contiguous (rows, cols) array, unchecked.

    `.reshape` on a slice calls into Numba's C helper library (about 20 ns), and the
    compiled epoch loop carves a few dozen layer views from its flat buffers per step.
    """
    if not (isinstance(flat, numba_types.Array) and flat.ndim == 1 and flat.layout == "C"):
        return None
    result = flat.copy(ndim=2, layout="C")

    def codegen(context, builder, signature, args):
        start_value, rows_value, cols_value = (
            context.cast(builder, value, argument, numba_types.intp)
            for value, argument in zip(args[1:], signature.args[1:]))
        return _contiguous_view(context, builder, flat, args[0], result, start_value,
                                [rows_value, cols_value])

    return result(flat, start, rows, cols), codegen


@numba.extending.intrinsic
def rows_flat(typingctx, matrix, start, stop):
    """matrix[start:stop, :] of a C-contiguous matrix as one 1-D array, unchecked: loops over
    a block of rows then run as one loop, not one short loop (and scalar remainder) per row."""
    if not (isinstance(matrix, numba_types.Array) and matrix.ndim == 2 and matrix.layout == "C"):
        return None
    result = matrix.copy(ndim=1, layout="C")

    def codegen(context, builder, signature, args):
        start_value, stop_value = (context.cast(builder, value, argument, numba_types.intp)
                                   for value, argument in zip(args[1:], signature.args[1:]))
        cols = cgutils.unpack_tuple(builder, make_array(matrix)(context, builder, args[0]).shape, 2)[1]
        return _contiguous_view(context, builder, matrix, args[0], result,
                                builder.mul(start_value, cols),
                                [builder.mul(builder.sub(stop_value, start_value), cols)])

    return result(matrix, start, stop), codegen
