"""The register tile at the heart of the matrix kernels, written as explicit LLVM vector code.

LLVM does not keep a loop's running sums in registers when they live in arrays it cannot
prove unaliased, and Numba's scalar code does not vectorise a tile of accumulators. So the
tile is emitted directly (adding to the output, or assigning the product to it): `ROWS` rows times `VECTORS` vectors of output held in registers
while the loop runs over the whole shared dimension, one broadcast of X and `VECTORS` loads
of W per step, one fused multiply-add per element and step. Each output element therefore
gets exactly the sequence out = fma(x[p], w[p], out) for p = 0, 1, ..., the same rounding as
the scalar loops that handle the edges, so tiles, edges, rows and threads give the same bits.
"""

import llvmlite.binding
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_FEATURES = llvmlite.binding.get_host_cpu_features()
# The widest vector register of this CPU; LLVM splits wider vectors, so this sets the tile.
VECTOR_BYTES = 64 if _FEATURES.get("avx512f") else 32 if _FEATURES.get("avx") else 16
# Rows x vectors of accumulators, plus one broadcast per row and one load per vector, must fit
# in the register file: 32 registers with AVX-512, 16 otherwise.
TILE_ROWS = 8 if VECTOR_BYTES == 64 else 4
TILE_VECTORS = 2


def _make_tile(rows, vectors, masked, assign):
    @intrinsic
    def tile(typingctx, X, W, i, j, width, start, stop, out):
        if not all(isinstance(a, types.Array) and a.ndim == 2 for a in (X, W, out)):
            return None
        if W.layout != "C" or out.layout != "C":
            return None  # vector loads and stores run along contiguous rows

        def codegen(context, builder, signature, args):
            X_type, W_type, i_type, j_type, width_type, start_type, stop_type, out_type = signature.args
            element = context.get_data_type(out_type.dtype)
            size = out_type.dtype.bitwidth // 8
            lanes = VECTOR_BYTES // size
            vector = ir.VectorType(element, lanes)
            int64 = ir.IntType(64)
            X_array = context.make_array(X_type)(context, builder, args[0])
            W_array = context.make_array(W_type)(context, builder, args[1])
            out_array = context.make_array(out_type)(context, builder, args[7])
            first_row = context.cast(builder, args[2], i_type, types.int64)
            first_column = context.cast(builder, args[3], j_type, types.int64)
            start = context.cast(builder, args[5], start_type, types.int64)
            stop = context.cast(builder, args[6], stop_type, types.int64)

            def address(array, row, column, kind):
                # Both strides, so X may be a transposed view; W and out are read and written
                # as whole vectors along their (contiguous) rows.
                row_stride, column_stride = cgutils.unpack_tuple(builder, array.strides, 2)
                offset = builder.add(builder.mul(row, row_stride), builder.mul(column, column_stride))
                byte = builder.gep(builder.bitcast(array.data, ir.IntType(8).as_pointer()), [offset])
                return builder.bitcast(byte, kind.as_pointer())

            def plus(value, constant):
                return builder.add(value, ir.Constant(int64, constant))

            suffix = f"v{lanes}{'f32' if size == 4 else 'f64'}"
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vector, [vector] * 3), f"llvm.fma.{suffix}")
            undefined = ir.Constant(vector, ir.Undefined)
            int32 = ir.IntType(32)
            splat = ir.Constant(ir.VectorType(int32, lanes), [0] * lanes)

            def broadcast(value):
                return builder.shuffle_vector(
                    builder.insert_element(ir.Constant(value.type if isinstance(value.type, ir.VectorType)
                                                       else ir.VectorType(value.type, lanes), ir.Undefined),
                                           value, ir.Constant(int32, 0)),
                    ir.Constant(ir.VectorType(value.type, lanes), ir.Undefined), splat)

            if masked:
                # Lane l of vector v is in the tile when v * lanes + l < width.
                valid = broadcast(context.cast(builder, args[4], width_type, types.int32))
                masks = [builder.icmp_signed("<", ir.Constant(ir.VectorType(int32, lanes),
                                                              [v * lanes + l for l in range(lanes)]), valid)
                         for v in range(vectors)]
                mask_type = ir.VectorType(ir.IntType(1), lanes)
                masked_load = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(vector, [vector.as_pointer(), int32, mask_type, vector]),
                    f"llvm.masked.load.{suffix}.p0")
                masked_store = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(ir.VoidType(), [vector, vector.as_pointer(), int32, mask_type]),
                    f"llvm.masked.store.{suffix}.p0")
                zeros = ir.Constant(vector, [0.0] * lanes)

            def load(where, v):
                if masked:
                    return builder.call(masked_load, [where, ir.Constant(int32, size), masks[v], zeros])
                return builder.load(where, align=size)

            def store(value, where, v):
                if masked:
                    builder.call(masked_store, [value, where, ir.Constant(int32, size), masks[v]])
                else:
                    builder.store(value, where, align=size)
            # Stack slots, promoted to registers by LLVM: the running sums of the tile.
            sums = []
            for r in range(rows):
                for v in range(vectors):
                    slot = cgutils.alloca_once(builder, vector)
                    if assign:
                        builder.store(ir.Constant(vector, [0.0] * lanes), slot)
                    else:
                        where = address(out_array, plus(first_row, r), plus(first_column, v * lanes), vector)
                        builder.store(load(where, v), slot)
                    sums.append(slot)
            with cgutils.for_range_slice(builder, start, stop, ir.Constant(int64, 1), inc=True) as (p, _):
                w = [load(address(W_array, p, plus(first_column, v * lanes), vector), v)
                     for v in range(vectors)]
                for r in range(rows):
                    x = builder.shuffle_vector(
                        builder.insert_element(undefined, builder.load(address(X_array, plus(first_row, r), p, element)),
                                               ir.Constant(int32, 0)), undefined, splat)
                    for v in range(vectors):
                        slot = sums[r * vectors + v]
                        builder.store(builder.call(fma, [x, w[v], builder.load(slot)]), slot)
            for r in range(rows):
                for v in range(vectors):
                    where = address(out_array, plus(first_row, r), plus(first_column, v * lanes), vector)
                    store(builder.load(sums[r * vectors + v]), where, v)
            return context.get_dummy_value()

        return types.void(X, W, i, j, width, start, stop, out), codegen

    tile.__doc__ = (f"out[i:i+{rows}, j:j+w] {'=' if assign else '+='} X[i:i+{rows}, start:stop] @ W[start:stop, j:j+w] "
                    f"with w = {vectors} * lanes"
                    + (" or, masked, the given width <= that" if masked else " (width ignored)")
                    + "; lanes = VECTOR_BYTES // itemsize")
    return tile


accumulate_tile = _make_tile(TILE_ROWS, TILE_VECTORS, masked=False, assign=False)
accumulate_edge_tile = _make_tile(TILE_ROWS, TILE_VECTORS, masked=True, assign=False)
product_tile = _make_tile(TILE_ROWS, TILE_VECTORS, masked=False, assign=True)
product_edge_tile = _make_tile(TILE_ROWS, TILE_VECTORS, masked=True, assign=True)
# Edges at most one vector wide: a second, fully masked vector would double the work.
accumulate_narrow_tile = _make_tile(TILE_ROWS, 1, masked=True, assign=False)
product_narrow_tile = _make_tile(TILE_ROWS, 1, masked=True, assign=True)
# A single row reuses each loaded vector of W once, and its running sums are its only
# independent chains of fused multiply-adds: eight vectors keep both AVX-512 FMA units busy
# through the four-cycle latency (400x100 at one row: 2.0 µs with four vectors, 1.3 with
# eight). Sixteen registers (AVX2) hold four.
ROW_TILE_VECTORS = 8 if VECTOR_BYTES == 64 else 4
accumulate_row_tile = _make_tile(1, ROW_TILE_VECTORS, masked=False, assign=False)
accumulate_row_edge_tile = _make_tile(1, ROW_TILE_VECTORS, masked=True, assign=False)
product_row_tile = _make_tile(1, ROW_TILE_VECTORS, masked=False, assign=True)
product_row_edge_tile = _make_tile(1, ROW_TILE_VECTORS, masked=True, assign=True)
# Narrower row edges, so masked-off vectors do not cost loads and multiply-adds.
accumulate_row_half_tile = _make_tile(1, ROW_TILE_VECTORS // 2, masked=True, assign=False)
accumulate_row_narrow_tile = _make_tile(1, 1, masked=True, assign=False)
product_row_half_tile = _make_tile(1, ROW_TILE_VECTORS // 2, masked=True, assign=True)
product_row_narrow_tile = _make_tile(1, 1, masked=True, assign=True)
