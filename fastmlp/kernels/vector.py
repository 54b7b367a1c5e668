"""The register tile at the heart of the matrix kernels, written as explicit LLVM vector code.

LLVM does not keep a loop's running sums in registers when they live in arrays it cannot
prove unaliased, and Numba's scalar code does not vectorise a tile of accumulators. So the
tile is emitted directly (adding to the output, or assigning the product to it): `ROWS` rows times `VECTORS` vectors of output held in registers
while the loop runs over the whole shared dimension, one broadcast of X and `VECTORS` loads
of W per step, one fused multiply-add per element and step. Each output element therefore
gets exactly the sequence out = fma(x[p], w[p], out) for p = 0, 1, ..., the same rounding as
the scalar loops that handle the edges, so tiles, edges, rows and threads give the same bits.

An edge at most PACK_GROUP columns wide is summed beside the last full tile, several rows to
a vector, in the same pass (see PACK_GROUP), and the forward pass's tiles start their sums
from the bias row. A forward pass at most NARROW_MAX columns wide runs on narrow tiles that
hold rows along the lanes, X's blocks transposed in registers, each element's sum the same
chain of fused multiply-adds.

The update tiles run one sample's SGD step on a block of W's columns and the next sample's
product over the stepped W in the same pass, each element's step with optim.plain_step's
rounding. The step tiles are weight-gradient tiles that end by applying that step to the
weights from their sums instead of storing the gradient.
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
# A single row reuses each loaded vector of W once, and its running sums are its only
# independent chains of fused multiply-adds: eight vectors keep both AVX-512 FMA units busy
# through the four-cycle latency (400x100 at one row: 2.0 µs with four vectors, 1.3 with
# eight). Sixteen registers (AVX2) hold four.
ROW_TILE_VECTORS = 8 if VECTOR_BYTES == 64 else 4


def _masked_memory(module, vector):
    """LLVM's masked load and store of the float vector type `vector`, declared in `module`."""
    element = "f32" if isinstance(vector.element, ir.FloatType) else "f64"
    suffix = f"v{vector.count}{element}"
    int32, mask_type = ir.IntType(32), ir.VectorType(ir.IntType(1), vector.count)
    load = cgutils.get_or_insert_function(
        module, ir.FunctionType(vector, [vector.as_pointer(), int32, mask_type, vector]),
        f"llvm.masked.load.{suffix}.p0")
    store = cgutils.get_or_insert_function(
        module, ir.FunctionType(ir.VoidType(), [vector, vector.as_pointer(), int32, mask_type]),
        f"llvm.masked.store.{suffix}.p0")
    return load, store


class _Emitter:
    """LLVM vector code for a tile `vectors` vectors wide of the array element type `dtype`,
    masked to its first `width` lanes (width: an LLVM int32) when `masked` is True, or with
    only its last vector masked when `masked` is "last" (the others then lie within width)."""

    def __init__(self, context, builder, dtype, vectors, masked, width=None):
        self.context, self.builder = context, builder
        self.element = context.get_data_type(dtype)
        self.size = dtype.bitwidth // 8
        self.lanes = lanes = VECTOR_BYTES // self.size
        self.vector = vector = ir.VectorType(self.element, lanes)
        self.int64, int32 = ir.IntType(64), ir.IntType(32)
        self.int32 = int32
        suffix = f"v{lanes}{'f32' if self.size == 4 else 'f64'}"
        self._fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vector, [vector] * 3), f"llvm.fma.{suffix}")
        self.masked = masked
        if masked:
            # Lane l of vector v is in the tile when v * lanes + l < width.
            valid = self.broadcast(width)
            self.masks = [None if masked == "last" and v < vectors - 1 else
                          builder.icmp_signed("<", ir.Constant(ir.VectorType(int32, lanes),
                                                               [v * lanes + l for l in range(lanes)]), valid)
                          for v in range(vectors)]
            self._masked_load, self._masked_store = _masked_memory(builder.module, vector)
        self.zeros = ir.Constant(vector, [0.0] * lanes)

    def integer(self, value, numba_type):
        return self.context.cast(self.builder, value, numba_type, types.int64)

    def plus(self, value, constant):
        return self.builder.add(value, ir.Constant(self.int64, constant))

    def array(self, array_type, value):
        array = self.context.make_array(array_type)(self.context, self.builder, value)
        # A C-contiguous array's column stride is its item size, known when compiling.
        array._column_stride = (ir.Constant(self.int64, array_type.dtype.bitwidth // 8)
                                if array_type.layout == "C" else None)
        return array

    def address(self, array, row, column, kind):
        # Both strides, so X may be a transposed view; W and out are read and written as whole
        # vectors along their (contiguous) rows. A constant column stride makes the vectors of
        # a row constant offsets from one address; from the stride read at run time LLVM
        # sometimes built them as a chain of additions, one after another at every step.
        builder = self.builder
        row_stride, column_stride = cgutils.unpack_tuple(builder, array.strides, 2)
        if getattr(array, "_column_stride", None) is not None:
            column_stride = array._column_stride
        offset = builder.add(builder.mul(row, row_stride), builder.mul(column, column_stride))
        byte = builder.gep(builder.bitcast(array.data, ir.IntType(8).as_pointer()), [offset])
        return builder.bitcast(byte, kind.as_pointer())

    def broadcast(self, value, lanes=None):
        """value in each of `lanes` lanes (default: a whole vector's)."""
        builder = self.builder
        lanes = lanes or self.lanes
        vector_type = ir.VectorType(value.type, lanes)
        splat = ir.Constant(ir.VectorType(self.int32, lanes), [0] * lanes)
        single = builder.insert_element(ir.Constant(vector_type, ir.Undefined), value,
                                        ir.Constant(self.int32, 0))
        return builder.shuffle_vector(single, ir.Constant(vector_type, ir.Undefined), splat)

    def scalar(self, array, row, column):
        """array[row, column] broadcast to every lane."""
        return self.broadcast(self.builder.load(self.address(array, row, column, self.element)))

    def row_bases(self, array, first_row, rows):
        """The addresses of array[first_row + r, 0] for r < rows, hidden from LLVM's loop
        optimiser. Seen as one base plus multiples of the row stride, the rows of a tile were
        sometimes addressed as a chain of additions carried from one step to the next, the
        rows times the adder's latency a step: in the copy of the parallel forward kernel that
        Numba's cache held (its loop body linked in and optimised again), 400x16 at 1024 rows
        took 100 µs, against 60 compiled in the running process. Hidden, each row keeps its
        own base, indexed by the step's column offset."""
        builder = self.builder
        byte_pointer = ir.IntType(8).as_pointer()
        opaque = ir.FunctionType(byte_pointer, [byte_pointer])
        row_stride = cgutils.unpack_tuple(builder, array.strides, 2)[0]
        data = builder.bitcast(array.data, byte_pointer)
        return [builder.asm(opaque, "", "=r,0", [builder.gep(data, [builder.mul(self.plus(first_row, r), row_stride)])],
                            False) for r in range(rows)]

    def scalar_from(self, base, column):
        """The element `column` of a C-contiguous array's row whose row_bases entry is `base`,
        broadcast to every lane: the base plus the scaled column, one addressing mode."""
        builder = self.builder
        byte = builder.gep(base, [builder.mul(column, ir.Constant(self.int64, self.size))])
        return self.broadcast(builder.load(builder.bitcast(byte, self.element.as_pointer())))

    def vector_at(self, array, row, column, v):
        """The address of vector v of the tile in array's row `row` from column `column`."""
        return self.address(array, row, self.plus(column, v * self.lanes), self.vector)

    def vector_from(self, array, column, v):
        """The address of vector v from element `column` of the 1-D C-contiguous `array`."""
        data = self.builder.bitcast(array.data, self.element.as_pointer())
        return self.builder.bitcast(self.builder.gep(data, [self.plus(column, v * self.lanes)]),
                                    self.vector.as_pointer())

    def load(self, where, v):
        if self.masked and self.masks[v] is not None:
            return self.builder.call(self._masked_load,
                                     [where, ir.Constant(self.int32, self.size), self.masks[v], self.zeros])
        return self.builder.load(where, align=self.size)

    def store(self, value, where, v):
        if self.masked and self.masks[v] is not None:
            self.builder.call(self._masked_store, [value, where, ir.Constant(self.int32, self.size), self.masks[v]])
        else:
            self.builder.store(value, where, align=self.size)

    def fma(self, a, b, c):
        return self.builder.call(self._fma, [a, b, c])

    def plain_step_settings(self, lr, lr_type, weight_decay, decay_type, dtype):
        """(-lr, weight_decay) in every lane, for plain_step, with weight_decay as a scalar
        for decayed_or_not."""
        builder = self.builder
        rate = self.broadcast(builder.fneg(self.context.cast(builder, lr, lr_type, dtype)))
        decay = self.context.cast(builder, weight_decay, decay_type, dtype)
        return rate, self.broadcast(decay), decay

    def plain_step(self, grad, param, rate, decay, decayed):
        """optim.plain_step on vectors: fma(-lr, fma(decay, param, grad) or grad, param)."""
        if decayed:
            grad = self.fma(decay, param, grad)
        return self.fma(rate, grad, param)

    def decayed_or_not(self, decay, body):
        """body(decayed) emitted for both values of decayed; which runs is decided at run time
        by decay != 0, plain_step's branch."""
        no_decay = self.builder.fcmp_ordered("==", decay, ir.Constant(decay.type, 0.0))
        with self.builder.if_else(no_decay) as (then, otherwise):
            with then:
                body(False)
            with otherwise:
                body(True)

    def registers(self, values):
        """Stack slots holding `values`, promoted to registers by LLVM."""
        slots = []
        for value in values:
            slot = cgutils.alloca_once(self.builder, self.vector)
            self.builder.store(value, slot)
            slots.append(slot)
        return slots


def _vectors_for(context, builder, width, width_type, dtype):
    """The number of vectors of dtype that `width` elements fill, the last perhaps in part."""
    lanes = VECTOR_BYTES // (dtype.bitwidth // 8)
    int64 = ir.IntType(64)
    width = context.cast(builder, width, width_type, types.int64)
    return builder.sdiv(builder.add(width, ir.Constant(int64, lanes - 1)), ir.Constant(int64, lanes))


def _emit_by_count(builder, count, largest, name, body):
    """body(c) emitted for each c in 1..largest, the one that runs chosen by the LLVM integer
    `count` (none when it is outside that range)."""
    end = builder.append_basic_block(f"{name}.end")
    switch = builder.switch(count, end)
    for c in range(1, largest + 1):
        block = builder.append_basic_block(f"{name}.{c}")
        switch.add_case(ir.Constant(count.type, c), block)
        builder.position_at_end(block)
        body(c)
        builder.branch(end)
    builder.position_at_end(end)


def _codegen_by_columns(index, largest, name, emit):
    """The codegen of an intrinsic whose code is emit(context, builder, signature, args, m) for
    each column count m in 1..largest of its 2-D argument `index`, the one that runs chosen by
    that argument's columns at run time."""
    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[index])(context, builder, args[index])
        columns = cgutils.unpack_tuple(builder, array.shape, 2)[1]
        _emit_by_count(builder, columns, largest, name, lambda count:
                       emit(context, builder, signature, args, count))
        return context.get_dummy_value()

    return codegen


def _tile_intrinsic(codegen, accepts, step, bias):
    """The intrinsic of a product tile: (X, W, i, j, width, start, stop, out), with (lr,
    weight_decay) before out for a step tile, or the bias row b before out for a tile whose
    sums start from b."""
    if step:
        @intrinsic
        def tile(typingctx, X, W, i, j, width, start, stop, lr, weight_decay, out):
            if not accepts(X, W, out):
                return None
            return types.void(X, W, i, j, width, start, stop, lr, weight_decay, out), codegen
    elif bias:
        @intrinsic
        def tile(typingctx, X, W, i, j, width, start, stop, b, out):
            if not accepts(X, W, out) or not (isinstance(b, types.Array) and b.ndim == 1
                                              and b.layout == "C"):
                return None
            return types.void(X, W, i, j, width, start, stop, b, out), codegen
    else:
        @intrinsic
        def tile(typingctx, X, W, i, j, width, start, stop, out):
            if not accepts(X, W, out):
                return None
            return types.void(X, W, i, j, width, start, stop, out), codegen
    return tile


# An edge at most PACK_GROUP columns wide beside a full tile (100 = 96 + 4 in float32) is
# summed in the same pass, packed: lane r * PACK_GROUP + c of packed vector q holds row
# q * rows_per + r, column c, with rows_per = lanes // PACK_GROUP. The tile's broadcasts of X
# serve it, blended per row, and its few chains of multiply-adds run between the tile's
# many: alone, a narrow tile is bound by its loads and a packed one by the latency of its
# two chains. Float32, one thread: forward 400x100 at 1024 rows 406 -> 329 µs (with the sums
# starting from the bias row), 64x100 at 200 rows 13.3 -> 10.9; the weight gradient and
# update 400x100 at 1024 rows 405 -> 347 µs.
PACK_GROUP = 4


class _Packed:
    """The packed edge (PACK_GROUP) of a tile: its groups, masked to `width` columns."""

    def __init__(self, emit, width):
        self.emit = emit
        builder = emit.builder
        self.group = group = PACK_GROUP
        self.rows_per = emit.lanes // group
        self.type = group_type = ir.VectorType(emit.element, group)
        int32 = emit.int32
        self._load, self._store = _masked_memory(builder.module, group_type)
        self.mask = builder.icmp_signed("<", ir.Constant(ir.VectorType(int32, group), list(range(group))),
                                        emit.broadcast(width, group))
        self.zeros = ir.Constant(group_type, [0.0] * group)
        self.align = ir.Constant(int32, emit.size)
        # lane t of a packed vector belongs to row t // group of its rows.
        self.in_row = [ir.Constant(ir.VectorType(ir.IntType(1), emit.lanes),
                                   [t // group == r for t in range(emit.lanes)]) for r in range(self.rows_per)]

    def shuffle(self, value, indices):
        builder = self.emit.builder
        index_type = ir.VectorType(self.emit.int32, len(indices))
        return builder.shuffle_vector(value, ir.Constant(value.type, ir.Undefined), ir.Constant(index_type, indices))

    def load(self, where):
        return self.emit.builder.call(self._load, [where, self.align, self.mask, self.zeros])

    def store(self, value, where):
        self.emit.builder.call(self._store, [value, where, self.align, self.mask])

    def at(self, array, row, column):
        return self.emit.address(array, row, column, self.type)

    def spread(self, group):
        """A group in every row's lanes."""
        return self.shuffle(group, [t % self.group for t in range(self.emit.lanes)])

    def join(self, groups):
        """rows_per groups as one packed vector, the first row in the lowest lanes."""
        builder = self.emit.builder
        while len(groups) > 1:
            size = 2 * groups[0].type.count
            indices = ir.Constant(ir.VectorType(self.emit.int32, size), list(range(size)))
            groups = [builder.shuffle_vector(groups[q], groups[q + 1], indices) for q in range(0, len(groups), 2)]
        return groups[0]

    def split(self, value):
        return [self.shuffle(value, [r * self.group + c for c in range(self.group)]) for r in range(self.rows_per)]

    def blend(self, broadcasts):
        """The packed vector of rows_per rows' broadcasts, each in its row's lanes."""
        value = broadcasts[0]
        for r in range(1, self.rows_per):
            value = self.emit.builder.select(self.in_row[r], broadcasts[r], value)
        return value


def _make_tile(rows, vectors, masked, assign, step=False, packed=False):
    """The product tile; with `step`, its sums are the gradient of `out` (the parameters, taking
    lr and weight_decay before it) and the tile applies optim.plain_step with them instead of
    storing the sums. With `packed` (full vectors only), `width` is that of a packed edge
    (PACK_GROUP) after the tile's vectors, summed in the same pass."""
    def codegen(context, builder, signature, args):
        X_type, W_type, i_type, j_type, width_type, start_type, stop_type = signature.args[:7]
        out_type = signature.args[-1]
        width = context.cast(builder, args[4], width_type, types.int32)
        emit = _Emitter(context, builder, out_type.dtype, vectors, masked, width)
        X_array, W_array = emit.array(X_type, args[0]), emit.array(W_type, args[1])
        out_array = emit.array(out_type, args[-1])
        first_row, first_column = emit.integer(args[2], i_type), emit.integer(args[3], j_type)
        start, stop = emit.integer(args[5], start_type), emit.integer(args[6], stop_type)
        edge = _Packed(emit, width) if packed else None
        edge_column = emit.plus(first_column, vectors * emit.lanes)
        edge_vectors = rows // edge.rows_per if packed else 0

        def edge_rows(q):
            return [emit.plus(first_row, q * edge.rows_per + r) for r in range(edge.rows_per)]

        def edge_of_out(q):
            return edge.join([edge.load(edge.at(out_array, row, edge_column)) for row in edge_rows(q)])

        # The running sums of the tile, then of its packed edge.
        if assign == "bias":
            # From the bias row in registers: from out, written just before, each vector's
            # load would wait for the scalar stores under it to retire.
            b_array = emit.array(signature.args[7], args[7])
            start_sums = [emit.load(emit.vector_from(b_array, first_column, v), v) for v in range(vectors)]
            initial = [start_sums[v] for r in range(rows) for v in range(vectors)]
            if packed:
                where = builder.bitcast(emit.vector_from(b_array, edge_column, 0), edge.type.as_pointer())
                initial += [edge.spread(edge.load(where))] * edge_vectors
        else:
            initial = [emit.zeros if assign else
                       emit.load(emit.vector_at(out_array, emit.plus(first_row, r), first_column, v), v)
                       for r in range(rows) for v in range(vectors)]
            initial += [emit.zeros if assign else edge_of_out(q) for q in range(edge_vectors)]
        sums = emit.registers(initial)
        edge_sums = sums[rows * vectors:]
        # X's rows apart only when X is C-contiguous; the weight gradient's transposed A, whose
        # tile rows lie one element apart, runs faster addressed from one base.
        x_rows = emit.row_bases(X_array, first_row, rows) if X_type.layout == "C" else None
        with cgutils.for_range_slice(builder, start, stop, ir.Constant(emit.int64, 1), inc=True) as (p, _):
            w = [emit.load(emit.vector_at(W_array, p, first_column, v), v) for v in range(vectors)]
            broadcasts = []
            for r in range(rows):
                if x_rows is None:
                    x = emit.scalar(X_array, emit.plus(first_row, r), p)
                else:
                    x = emit.scalar_from(x_rows[r], p)
                broadcasts.append(x)
                for v in range(vectors):
                    slot = sums[r * vectors + v]
                    builder.store(emit.fma(x, w[v], builder.load(slot)), slot)
            if packed:
                w_edge = edge.spread(edge.load(edge.at(W_array, p, edge_column)))
                for q, slot in enumerate(edge_sums):
                    x = edge.blend(broadcasts[q * edge.rows_per:(q + 1) * edge.rows_per])
                    builder.store(emit.fma(x, w_edge, builder.load(slot)), slot)
        if not step:
            for r in range(rows):
                for v in range(vectors):
                    emit.store(builder.load(sums[r * vectors + v]),
                               emit.vector_at(out_array, emit.plus(first_row, r), first_column, v), v)
            for q, slot in enumerate(edge_sums):
                for row, group in zip(edge_rows(q), edge.split(builder.load(slot))):
                    edge.store(group, edge.at(out_array, row, edge_column))
            return context.get_dummy_value()
        rate, decay, decay_scalar = emit.plain_step_settings(args[7], signature.args[7], args[8],
                                                             signature.args[8], out_type.dtype)

        def apply(decayed):
            for r in range(rows):
                for v in range(vectors):
                    where = emit.vector_at(out_array, emit.plus(first_row, r), first_column, v)
                    param = emit.load(where, v)
                    grad = builder.load(sums[r * vectors + v])
                    emit.store(emit.plain_step(grad, param, rate, decay, decayed), where, v)
            for q, slot in enumerate(edge_sums):
                stepped = emit.plain_step(builder.load(slot), edge_of_out(q), rate, decay, decayed)
                for row, group in zip(edge_rows(q), edge.split(stepped)):
                    edge.store(group, edge.at(out_array, row, edge_column))

        emit.decayed_or_not(decay_scalar, apply)
        return context.get_dummy_value()

    def accepts(X, W, out):
        if not all(isinstance(a, types.Array) and a.ndim == 2 for a in (X, W, out)):
            return False
        return W.layout == "C" and out.layout == "C"  # vector loads and stores along rows

    tile = _tile_intrinsic(codegen, accepts, step, assign == "bias")
    operator = "= b[j:j+w] +" if assign == "bias" else "=" if assign else "+="
    tile.__doc__ = (f"out[i:i+{rows}, j:j+w] {operator} X[i:i+{rows}, start:stop] @ W[start:stop, j:j+w] "
                    f"with w = {vectors} * lanes"
                    + (" or, masked, the given width <= that" if masked else
                       " plus a packed edge `width` <= PACK_GROUP wide" if packed else " (width ignored)")
                    + "; lanes = VECTOR_BYTES // itemsize")
    if step:
        tile.__doc__ = (f"The SGD step without momentum (optim.plain_step) on out[i:i+{rows}, j:j+w] from its "
                        f"gradient X[i:i+{rows}, start:stop] @ W[start:stop, j:j+w], summed as the product "
                        f"tiles sum it; w = {vectors} * lanes"
                        + (" or, masked, the given width <= that" if masked else " (width ignored)"))
    return tile


def _emit_update_row(context, builder, signature, args, vectors, masked):
    A_type, dZ_type, lr_type, decay_type, X_type, W_type, j_type, width_type, out_type = signature.args
    emit = _Emitter(context, builder, out_type.dtype, vectors, masked,
                    context.cast(builder, args[7], width_type, types.int32))
    A_array, dZ_array = emit.array(A_type, args[0]), emit.array(dZ_type, args[1])
    X_array = emit.array(X_type, args[4])
    W_array, out_array = emit.array(W_type, args[5]), emit.array(out_type, args[8])
    first_column = emit.integer(args[6], j_type)
    zero = ir.Constant(emit.int64, 0)
    k = cgutils.unpack_tuple(builder, W_array.shape, 2)[0]
    rate, decay, decay_scalar = emit.plain_step_settings(args[2], lr_type, args[3], decay_type,
                                                         out_type.dtype)
    delta = [emit.load(emit.vector_at(dZ_array, zero, first_column, v), v) for v in range(vectors)]
    sums = emit.registers(emit.load(emit.vector_at(out_array, zero, first_column, v), v)
                          for v in range(vectors))

    def row(p, w, decayed):
        a = emit.scalar(A_array, zero, p)
        x = emit.scalar(X_array, zero, p)
        for v in range(vectors):
            # optim.plain_step on the gradient element a * dZ, as weight_grad forms it.
            grad = emit.fma(a, delta[v], emit.zeros)
            updated = emit.plain_step(grad, w[v], rate, decay, decayed)
            emit.store(updated, emit.vector_at(W_array, p, first_column, v), v)
            builder.store(emit.fma(x, updated, builder.load(sums[v])), sums[v])

    # Only a masked tile reads its next row's first vector before storing the current row:
    # a load issued after a store whose vector span overlaps it waits for that store, and
    # only a masked last vector reaches into the next row (400x14: 2.7 µs loading in order,
    # 0.4 ahead). Holding whole rows ahead instead spilled registers.
    ahead = 1 if masked else 0

    def load_row(p, vectors):
        return [emit.load(emit.vector_at(W_array, p, first_column, v), v) for v in vectors]

    def run(decayed):
        if not ahead:
            with cgutils.for_range_slice(builder, zero, k, ir.Constant(emit.int64, 1), inc=True) as (p, _):
                row(p, load_row(p, range(vectors)), decayed)
            return
        current = emit.registers(load_row(zero, range(ahead)))
        last = builder.sub(k, ir.Constant(emit.int64, 1))
        with cgutils.for_range_slice(builder, zero, last, ir.Constant(emit.int64, 1), inc=True) as (p, _):
            following = load_row(emit.plus(p, 1), range(ahead))
            row(p, [builder.load(slot) for slot in current] + load_row(p, range(ahead, vectors)), decayed)
            for slot, value in zip(current, following):
                builder.store(value, slot)
        row(last, [builder.load(slot) for slot in current] + load_row(last, range(ahead, vectors)), decayed)

    emit.decayed_or_not(decay_scalar, run)
    for v in range(vectors):
        emit.store(builder.load(sums[v]), emit.vector_at(out_array, zero, first_column, v), v)


def _make_update_row_tile(masked):
    @intrinsic
    def tile(typingctx, A, dZ, lr, weight_decay, X, W, j, width, out):
        if not all(isinstance(a, types.Array) and a.ndim == 2 for a in (A, dZ, X, W, out)):
            return None
        if dZ.layout != "C" or W.layout != "C" or out.layout != "C":
            return None

        def codegen(context, builder, signature, args):
            if not masked:
                _emit_update_row(context, builder, signature, args, ROW_TILE_VECTORS, False)
                return context.get_dummy_value()
            # As many vectors as the width needs, only the last one masked: masked loads and
            # stores cost more than plain ones (400x100 as eight masked vectors: 2.9 µs, this way 1.7).
            count = _vectors_for(context, builder, args[7], signature.args[7], signature.args[-1].dtype)
            _emit_by_count(builder, count, ROW_TILE_VECTORS, "update_row", lambda vectors:
                           _emit_update_row(context, builder, signature, args, vectors, "last"))
            return context.get_dummy_value()

        return types.void(A, dZ, lr, weight_decay, X, W, j, width, out), codegen

    tile.__doc__ = ("The SGD step W[:, j:j+w] -= lr * (A[0].T outer dZ[0, j:j+w] + weight_decay * W[:, j:j+w]) "
                    "(as optim.plain_step), then out[0, j:j+w] += X[0] @ the updated W[:, j:j+w], in one pass "
                    "over W; w = ROW_TILE_VECTORS * lanes"
                    + (" or, masked, the given width <= that" if masked else " (width ignored)"))
    return tile


# Outputs at most this many columns wide may run on gradient_columns_tile (as
# matmul.column_tiles_for decides), COLUMN_TILE_ROWS rows of output a tile: the row tiles'
# masked vectors leave lanes idle (10 of 16 or fewer in float32; 100x10 at 200 samples: 4.9 µs
# on row tiles, 2.7 on column tiles, 100x1: 4.9 and 1.1).
COLUMN_TILE_MAX = 12
COLUMN_TILE_ROWS = TILE_ROWS * TILE_VECTORS


def _emit_gradient_columns(context, builder, signature, args, columns):
    AT_type, dZ_type, p_type, width_type, start_type, stop_type, out_type = signature.args
    dtype = out_type.dtype
    lanes = VECTOR_BYTES // (dtype.bitwidth // 8)
    vectors = max(1, COLUMN_TILE_ROWS // lanes)
    width = context.cast(builder, args[3], width_type, types.int32)
    emit = _Emitter(context, builder, dtype, vectors, True, width)
    AT_array, dZ_array = emit.array(AT_type, args[0]), emit.array(dZ_type, args[1])
    out_array = emit.array(out_type, args[6])
    first = emit.integer(args[2], p_type)
    start, stop = emit.integer(args[4], start_type), emit.integer(args[5], stop_type)
    sums = emit.registers([emit.zeros] * (vectors * columns))
    with cgutils.for_range_slice(builder, start, stop, ir.Constant(emit.int64, 1), inc=True) as (n, _):
        # Features p.. of sample n lie along a row of A: AT is A's transpose.
        a = [emit.load(emit.address(AT_array, emit.plus(first, v * lanes), n, emit.vector), v)
             for v in range(vectors)]
        for c in range(columns):
            d = emit.scalar(dZ_array, n, ir.Constant(emit.int64, c))
            for v in range(vectors):
                slot = sums[c * vectors + v]
                builder.store(emit.fma(a[v], d, builder.load(slot)), slot)
    # Lane l of vector v is out[p + v * lanes + l, c]: stored element by element.
    count = context.cast(builder, args[3], width_type, types.int64)
    with cgutils.for_range(builder, count) as loop:
        feature = loop.index
        vector = builder.trunc(builder.udiv(feature, ir.Constant(emit.int64, lanes)), emit.int32)
        lane = builder.trunc(builder.urem(feature, ir.Constant(emit.int64, lanes)), emit.int32)
        row = builder.add(first, feature)
        for c in range(columns):
            value = ir.Constant(emit.element, 0.0)
            for v in range(vectors):
                chosen = builder.icmp_signed("==", vector, ir.Constant(emit.int32, v))
                element = builder.extract_element(builder.load(sums[c * vectors + v]), lane)
                value = builder.select(chosen, element, value)
            builder.store(value, emit.address(out_array, row, ir.Constant(emit.int64, c), emit.element))


@intrinsic
def gradient_columns_tile(typingctx, AT, dZ, p, width, start, stop, out):
    """out[p:p+width, :m] = AT[p:p+width, start:stop] @ dZ[start:stop, :m] for an output at
    most COLUMN_TILE_MAX columns wide, AT's rows one element apart (the transpose of a
    C-contiguous A), width <= COLUMN_TILE_ROWS: the product tiles turned round,
    lanes along the features (a row of A) and a running sum per feature vector and column,
    each element summed as the product tiles sum it."""
    if not all(isinstance(a, types.Array) and a.ndim == 2 for a in (AT, dZ, out)):
        return None
    if dZ.layout != "C" or out.layout != "C":
        return None
    return (types.void(AT, dZ, p, width, start, stop, out),
            _codegen_by_columns(1, COLUMN_TILE_MAX, "gradient_columns", _emit_gradient_columns))


# Running sums of column_sums_tile: half the register file, so that rows up to that wide are
# read once, in order (200x100 float64: 0.67 µs in one pass, 1.5 in a pass of 8 vectors and
# one of 5).
COLUMN_SUMS_VECTORS = 16 if VECTOR_BYTES == 64 else 8


def _emit_column_sums(context, builder, signature, args, vectors):
    dZ_type, j_type, width_type, out_type = signature.args
    emit = _Emitter(context, builder, out_type.dtype, vectors, "last",
                    context.cast(builder, args[2], width_type, types.int32))
    dZ_array, out_array = emit.array(dZ_type, args[0]), emit.array(out_type, args[3])
    first = emit.integer(args[1], j_type)
    rows = cgutils.unpack_tuple(builder, dZ_array.shape, 2)[0]
    sums = emit.registers([emit.zeros] * vectors)
    with cgutils.for_range(builder, rows) as loop:
        for v in range(vectors):
            row = emit.load(emit.vector_at(dZ_array, loop.index, first, v), v)
            builder.store(builder.fadd(builder.load(sums[v]), row), sums[v])
    for v in range(vectors):
        emit.store(builder.load(sums[v]), emit.vector_from(out_array, first, v), v)


@intrinsic
def column_sums_tile(typingctx, dZ, j, width, out):
    """out[j:j+width] = the sums over n of dZ[n, j:j+width], each in order from the first row,
    one addition per term (bias_grad's bits), for width <= COLUMN_SUMS_VECTORS * lanes: the
    sums in registers, as many vectors as the width needs, only the last one masked."""
    if not (isinstance(dZ, types.Array) and dZ.ndim == 2 and dZ.layout == "C"):
        return None
    if not (isinstance(out, types.Array) and out.ndim == 1 and out.layout == "C"):
        return None

    def codegen(context, builder, signature, args):
        count = _vectors_for(context, builder, args[2], signature.args[2], signature.args[-1].dtype)
        _emit_by_count(builder, count, COLUMN_SUMS_VECTORS, "column_sums", lambda vectors:
                       _emit_column_sums(context, builder, signature, args, vectors))
        return context.get_dummy_value()

    return types.void(dZ, j, width, out), codegen


def _transposed(builder, rows):
    """The columns of the square block whose rows are the LLVM vectors `rows` (as many as
    their lanes), shuffled in registers."""
    rows = list(rows)
    lanes = len(rows)
    mask_type = ir.VectorType(ir.IntType(32), lanes)
    # At distance d, rows i and i + d (bit d of i clear) swap the lanes with bit d set in row i
    # for those with it clear in row i + d: the off-diagonal d x d blocks of every 2d x 2d
    # block trade places. Over d = 1, 2, 4, ... each element (r, c) becomes (c, r).
    d = 1
    while d < lanes:
        first = ir.Constant(mask_type, [lane + lanes - d if lane & d else lane for lane in range(lanes)])
        second = ir.Constant(mask_type, [lane + lanes if lane & d else lane + d for lane in range(lanes)])
        for i in range(lanes):
            if not i & d:
                a, b = rows[i], rows[i + d]
                rows[i] = builder.shuffle_vector(a, b, first)
                rows[i + d] = builder.shuffle_vector(a, b, second)
        d *= 2
    return rows


@intrinsic
def transpose_tile(typingctx, W, p, j, out):
    """out[j:j+L, p:p+L] = W[p:p+L, j:j+L].T for L = lanes = VECTOR_BYTES // itemsize: the
    block's L rows loaded as vectors and transposed in registers."""
    if not all(isinstance(a, types.Array) and a.ndim == 2 for a in (W, out)) or W.dtype != out.dtype:
        return None
    if W.layout != "C" or out.layout != "C":
        return None

    def codegen(context, builder, signature, args):
        W_type, p_type, j_type, out_type = signature.args
        emit = _Emitter(context, builder, out_type.dtype, 1, False)
        W_array, out_array = emit.array(W_type, args[0]), emit.array(out_type, args[3])
        p, j = emit.integer(args[1], p_type), emit.integer(args[2], j_type)
        lanes = emit.lanes
        rows = [emit.load(emit.vector_at(W_array, emit.plus(p, r), j, 0), 0) for r in range(lanes)]
        for c, column in enumerate(_transposed(builder, rows)):
            emit.store(column, emit.vector_at(out_array, emit.plus(j, c), p, 0), 0)
        return context.get_dummy_value()

    return types.void(W, p, j, out), codegen


# Outputs at most this many columns wide run the forward pass on the narrow tiles: the masked
# tiles leave all but m lanes of each vector idle, a broadcast and a multiply-add per row and
# step; rows along the lanes use them all (float32, one thread, 200 rows: 100x1 3.6 -> 2.1 µs,
# 400x1 13.2 -> 6.0).
NARROW_MAX = 2


def narrow_groups(lanes):
    """Groups of rows a narrow tile runs side by side: two where a vector has fewer than 16
    lanes, whose one chain of multiply-adds a column would wait on the adder's latency
    (float64, 400x1 at 200 rows: one group 9.8 µs, two 5.9), else one, where the shuffles of
    the transposes bound the tile (float32: one group 5.4 µs, two 5.7)."""
    return 2 if lanes < 16 else 1


def narrow_rows(itemsize):
    """Rows of one narrow tile call at its most: narrow_groups groups of a vector's lanes."""
    lanes = VECTOR_BYTES // itemsize
    return narrow_groups(lanes) * lanes


def _emit_narrow_forward(context, builder, signature, args, groups, columns):
    X_type, W_type, i_type, _, b_type, out_type = signature.args
    emit = _Emitter(context, builder, out_type.dtype, 1, False)
    lanes, int64 = emit.lanes, emit.int64
    X_array, W_array = emit.array(X_type, args[0]), emit.array(W_type, args[1])
    b_array, out_array = emit.array(b_type, args[4]), emit.array(out_type, args[5])
    first_row = emit.integer(args[2], i_type)
    k = cgutils.unpack_tuple(builder, X_array.shape, 2)[1]
    full = builder.sub(k, builder.srem(k, ir.Constant(int64, lanes)))
    bias = builder.bitcast(b_array.data, emit.element.as_pointer())
    starts = [emit.broadcast(builder.load(builder.gep(bias, [ir.Constant(int64, c)])))
              for c in range(columns)]
    # Group g's rows along the lanes of its running sums sums[g * columns + c], one a column.
    sums = emit.registers([starts[c] for g in range(groups) for c in range(columns)])
    rows = [emit.plus(first_row, r) for r in range(groups * lanes)]

    def step(g, column_vector, p):
        for c in range(columns):
            w = emit.scalar(W_array, p, ir.Constant(int64, c))
            slot = sums[g * columns + c]
            builder.store(emit.fma(column_vector, w, builder.load(slot)), slot)

    if X_type.layout == "C":
        x_rows = emit.row_bases(X_array, first_row, groups * lanes)
        with cgutils.for_range_slice(builder, ir.Constant(int64, 0), full, ir.Constant(int64, lanes),
                                     inc=True) as (p, _):
            offset = builder.mul(p, ir.Constant(int64, emit.size))
            for g in range(groups):
                # X[row, p:p+lanes] for the group's rows, transposed into one vector per column.
                block = [builder.load(builder.bitcast(builder.gep(x_rows[g * lanes + r], [offset]),
                                                      emit.vector.as_pointer()), align=emit.size)
                         for r in range(lanes)]
                for c, column in enumerate(_transposed(builder, block)):
                    step(g, column, emit.plus(p, c))
        tail_start = full
    else:
        tail_start = ir.Constant(int64, 0)
    # The columns after the last whole block (all of them when X's rows are not contiguous),
    # gathered element by element.
    with cgutils.for_range_slice(builder, tail_start, k, ir.Constant(int64, 1), inc=True) as (p, _):
        for g in range(groups):
            column_vector = ir.Constant(emit.vector, ir.Undefined)
            for r in range(lanes):
                value = builder.load(emit.address(X_array, rows[g * lanes + r], p, emit.element))
                column_vector = builder.insert_element(column_vector, value, ir.Constant(emit.int32, r))
            step(g, column_vector, p)
    for g in range(groups):
        for c in range(columns):
            total = builder.load(sums[g * columns + c])
            for r in range(lanes):
                builder.store(builder.extract_element(total, ir.Constant(emit.int32, r)),
                              emit.address(out_array, rows[g * lanes + r], ir.Constant(int64, c), emit.element))


@intrinsic
def narrow_bias_tile(typingctx, X, W, i, rows, b, out):
    """out[i:i+R, :m] = b[:m] + X[i:i+R, :] @ W[:, :m] for m = W.shape[1] <= NARROW_MAX, R the
    largest of (groups of lanes rows, narrow_groups(lanes) of them at most) that `rows` holds;
    returns R (0 when rows < lanes). The rows lie along the lanes of one running sum a column
    and group, X's blocks of lanes x lanes transposed in registers; each element summed from
    its bias with one fused multiply-add per term, in order (the other forward tiles' bits).
    The group counts are chosen while compiling, so a dtype compiles only its own."""
    if not all(isinstance(a, types.Array) and a.ndim == 2 for a in (X, W, out)):
        return None
    if not (isinstance(b, types.Array) and b.ndim == 1 and b.layout == "C"):
        return None
    if W.layout != "C" or out.layout != "C" or not isinstance(rows, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        lanes = VECTOR_BYTES // (signature.args[5].dtype.bitwidth // 8)
        int64 = ir.IntType(64)
        count = context.cast(builder, args[3], signature.args[3], types.int64)
        array = context.make_array(signature.args[1])(context, builder, args[1])
        columns = cgutils.unpack_tuple(builder, array.shape, 2)[1]
        done = cgutils.alloca_once_value(builder, ir.Constant(int64, 0))
        for groups in range(narrow_groups(lanes), 0, -1):
            fits = builder.icmp_signed(">=", count, ir.Constant(int64, groups * lanes))
            unset = builder.icmp_signed("==", builder.load(done), ir.Constant(int64, 0))
            with builder.if_then(builder.and_(fits, unset)):
                _emit_by_count(builder, columns, NARROW_MAX, f"narrow_forward{groups}",
                               lambda m, groups=groups: _emit_narrow_forward(
                                   context, builder, signature, args, groups, m))
                builder.store(ir.Constant(int64, groups * lanes), done)
        return builder.load(done)

    return types.int64(X, W, i, rows, b, out), codegen


@intrinsic
def prefetch_row(typingctx, X, row):
    """Ask the cache for row `row` of the 2-D array X (each of its cache lines), without
    waiting for it."""
    if not (isinstance(X, types.Array) and X.ndim == 2):
        return None

    def codegen(context, builder, signature, args):
        X_type, row_type = signature.args
        int32, int64 = ir.IntType(32), ir.IntType(64)
        byte_pointer = ir.IntType(8).as_pointer()
        array = context.make_array(X_type)(context, builder, args[0])
        row_stride = cgutils.unpack_tuple(builder, array.strides, 2)[0]
        columns = cgutils.unpack_tuple(builder, array.shape, 2)[1]
        row_value = context.cast(builder, args[1], row_type, types.int64)
        base = builder.gep(builder.bitcast(array.data, byte_pointer), [builder.mul(row_value, row_stride)])
        size = builder.mul(columns, ir.Constant(int64, X_type.dtype.bitwidth // 8))
        prefetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, int32, int32, int32]),
            "llvm.prefetch.p0i8")
        # Read access, keep in all cache levels, data cache.
        with cgutils.for_range_slice(builder, ir.Constant(int64, 0), size, ir.Constant(int64, 64),
                                     inc=True) as (offset, _):
            builder.call(prefetch, [builder.gep(base, [offset]), ir.Constant(int32, 0),
                                    ir.Constant(int32, 3), ir.Constant(int32, 1)])
        return context.get_dummy_value()

    return types.void(X, row), codegen


# Float64 vectors of running sums in squares_sum: four, so that four multiply-adds are in
# flight through the adder's latency (40,100 float32 weights: one vector 5.4 µs).
SQUARES_VECTORS = 4
SQUARES_BLOCK = SQUARES_VECTORS * (VECTOR_BYTES // 8)


@intrinsic
def squares_sum(typingctx, x, stop):
    """sum of x[i]^2 for i < stop (a multiple of SQUARES_BLOCK) over the 1-D array x, in
    float64: element i in lane i % L of running sum (i // L) % SQUARES_VECTORS (L float64
    lanes to a vector), one fused multiply-add each, the sums then added pairwise and their
    lanes in order, the same order for every call."""
    if not (isinstance(x, types.Array) and x.ndim == 1 and x.layout == "C"
            and isinstance(x.dtype, types.Float)):
        return None

    def codegen(context, builder, signature, args):
        x_type, stop_type = signature.args
        emit = _Emitter(context, builder, types.float64, SQUARES_VECTORS, False)
        element = context.get_data_type(x_type.dtype)
        loaded = ir.VectorType(element, emit.lanes)
        data = builder.bitcast(emit.array(x_type, args[0]).data, element.as_pointer())
        stop = emit.integer(args[1], stop_type)
        sums = emit.registers([emit.zeros] * SQUARES_VECTORS)
        with cgutils.for_range_slice(builder, ir.Constant(emit.int64, 0), stop,
                                     ir.Constant(emit.int64, SQUARES_BLOCK), inc=True) as (i, _):
            for v, slot in enumerate(sums):
                where = builder.gep(data, [emit.plus(i, v * emit.lanes)])
                value = builder.load(builder.bitcast(where, loaded.as_pointer()), align=x_type.dtype.bitwidth // 8)
                if element != emit.element:
                    value = builder.fpext(value, emit.vector)
                builder.store(emit.fma(value, value, builder.load(slot)), slot)
        values = [builder.load(slot) for slot in sums]
        while len(values) > 1:
            values = [builder.fadd(values[k], values[k + 1]) for k in range(0, len(values), 2)]
        total = builder.extract_element(values[0], ir.Constant(emit.int32, 0))
        for lane in range(1, emit.lanes):
            total = builder.fadd(total, builder.extract_element(values[0], ir.Constant(emit.int32, lane)))
        return total

    return types.float64(x, stop), codegen


# The forward pass's tiles, their sums starting from the bias row.
bias_tile = _make_tile(TILE_ROWS, TILE_VECTORS, masked=False, assign="bias")
bias_edge_tile = _make_tile(TILE_ROWS, TILE_VECTORS, masked=True, assign="bias")
bias_narrow_tile = _make_tile(TILE_ROWS, 1, masked=True, assign="bias")
# Full tiles with a packed edge (PACK_GROUP) beside them.
bias_packed_tile = _make_tile(TILE_ROWS, TILE_VECTORS, masked=False, assign="bias", packed=True)
product_packed_tile = _make_tile(TILE_ROWS, TILE_VECTORS, masked=False, assign=True, packed=True)
accumulate_packed_tile = _make_tile(TILE_ROWS, TILE_VECTORS, masked=False, assign=False, packed=True)
step_packed_tile = _make_tile(TILE_ROWS, TILE_VECTORS, masked=False, assign=True, step=True, packed=True)
accumulate_tile = _make_tile(TILE_ROWS, TILE_VECTORS, masked=False, assign=False)
accumulate_edge_tile = _make_tile(TILE_ROWS, TILE_VECTORS, masked=True, assign=False)
product_tile = _make_tile(TILE_ROWS, TILE_VECTORS, masked=False, assign=True)
product_edge_tile = _make_tile(TILE_ROWS, TILE_VECTORS, masked=True, assign=True)
# Edges at most one vector wide: a second, fully masked vector would double the work.
accumulate_narrow_tile = _make_tile(TILE_ROWS, 1, masked=True, assign=False)
product_narrow_tile = _make_tile(TILE_ROWS, 1, masked=True, assign=True)
accumulate_row_tile = _make_tile(1, ROW_TILE_VECTORS, masked=False, assign=False)
accumulate_row_edge_tile = _make_tile(1, ROW_TILE_VECTORS, masked=True, assign=False)
product_row_tile = _make_tile(1, ROW_TILE_VECTORS, masked=False, assign=True)
product_row_edge_tile = _make_tile(1, ROW_TILE_VECTORS, masked=True, assign=True)
# Narrower row edges, so masked-off vectors do not cost loads and multiply-adds.
accumulate_row_half_tile = _make_tile(1, ROW_TILE_VECTORS // 2, masked=True, assign=False)
accumulate_row_narrow_tile = _make_tile(1, 1, masked=True, assign=False)
product_row_half_tile = _make_tile(1, ROW_TILE_VECTORS // 2, masked=True, assign=True)
product_row_narrow_tile = _make_tile(1, 1, masked=True, assign=True)
# The weight gradient's tiles applying the SGD step (no momentum) to the weights in place of
# storing the gradient (optim.sgd_step_rows).
step_tile = _make_tile(TILE_ROWS, TILE_VECTORS, masked=False, assign=True, step=True)
step_edge_tile = _make_tile(TILE_ROWS, TILE_VECTORS, masked=True, assign=True, step=True)
step_narrow_tile = _make_tile(TILE_ROWS, 1, masked=True, assign=True, step=True)
step_row_tile = _make_tile(1, ROW_TILE_VECTORS, masked=False, assign=True, step=True)
step_row_edge_tile = _make_tile(1, ROW_TILE_VECTORS, masked=True, assign=True, step=True)
step_row_half_tile = _make_tile(1, ROW_TILE_VECTORS // 2, masked=True, assign=True, step=True)
step_row_narrow_tile = _make_tile(1, 1, masked=True, assign=True, step=True)
# One sample's deferred SGD step fused into the next sample's forward pass (see
# optim.sgd_update_forward_row): the delta vectors stay in registers beside the sums.
update_row_tile = _make_update_row_tile(masked=False)
update_row_edge_tile = _make_update_row_tile(masked=True)
