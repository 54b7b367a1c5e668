"""Dense-layer matrix products, forward and backward.

The products run on register tiles (`vector.accumulate_tile`): TILE_ROWS rows of
output, two vectors wide, summed in registers over the whole shared dimension; a
forward pass at most NARROW_MAX columns wide runs its rows along the vectors' lanes
instead (`vector.narrow_bias_tile`). Every output element sums its terms in the same
order, one fused multiply-add each, whatever the tiling, batch position or thread, so
results are reproducible bit for bit.
"""

from numba import prange

from .._jit import helper, kernel, parallel_kernel
from .activations import IDENTITY, activate_rows, backprop_rows
from .vector import (COLUMN_SUMS_VECTORS, COLUMN_TILE_MAX, COLUMN_TILE_ROWS, NARROW_MAX,
                     PACK_GROUP, ROW_TILE_VECTORS, TILE_ROWS, TILE_VECTORS, VECTOR_BYTES,
                     accumulate_edge_tile, accumulate_narrow_tile, accumulate_packed_tile,
                     accumulate_row_edge_tile, accumulate_row_half_tile,
                     accumulate_row_narrow_tile, accumulate_row_tile, accumulate_tile,
                     bias_edge_tile, bias_narrow_tile, bias_packed_tile, bias_tile,
                     column_sums_tile, gradient_columns_tile, narrow_bias_tile, narrow_rows,
                     product_edge_tile, product_narrow_tile,
                     product_packed_tile, product_row_edge_tile,
                     product_row_half_tile, product_row_narrow_tile, product_row_tile,
                     product_tile, transpose_tile)


@helper
def packed_edge(m, width, out):
    """Whether the edge of an output m columns wide, after its tiles `width` columns wide,
    runs packed beside the last of them (vector.PACK_GROUP): a full tile to pack it beside,
    at most PACK_GROUP columns, and vectors that hold at least two rows of them."""
    edge = m % width
    return (m > width and 0 < edge <= PACK_GROUP
            and VECTOR_BYTES // out.itemsize >= 2 * PACK_GROUP)


@helper
def accumulate_row_edge(X, W, r, j, width, first, last, out):
    """out[r, j:j+width] += X[r, first:last] @ W[first:last, j:j+width] for width < a row
    tile, on the narrowest masked row tile that covers it."""
    lanes = VECTOR_BYTES // out.itemsize
    if width <= lanes:
        accumulate_row_narrow_tile(X, W, r, j, width, first, last, out)
    elif width <= ROW_TILE_VECTORS // 2 * lanes:
        accumulate_row_half_tile(X, W, r, j, width, first, last, out)
    else:
        accumulate_row_edge_tile(X, W, r, j, width, first, last, out)


@helper
def product_row_edge(X, W, r, j, width, first, last, out):
    """accumulate_row_edge from zero, assigning."""
    lanes = VECTOR_BYTES // out.itemsize
    if width <= lanes:
        product_row_narrow_tile(X, W, r, j, width, first, last, out)
    elif width <= ROW_TILE_VECTORS // 2 * lanes:
        product_row_half_tile(X, W, r, j, width, first, last, out)
    else:
        product_row_edge_tile(X, W, r, j, width, first, last, out)


@helper
def accumulate_rows(X, W, i, rows, first, last, out):
    """out[i:i+rows, m] += X[i:i+rows, first:last] @ W[first:last, m] row by row, on row tiles
    (accumulate_block's rows short of a tile)."""
    m = W.shape[1]
    row_width = ROW_TILE_VECTORS * (VECTOR_BYTES // out.itemsize)
    row_full = m - m % row_width
    for r in range(i, i + rows):
        for j in range(0, row_full, row_width):
            accumulate_row_tile(X, W, r, j, row_width, first, last, out)
        if row_full < m:
            accumulate_row_edge(X, W, r, row_full, m - row_full, first, last, out)


@helper
def accumulate_block(X, W, i, rows, first, last, out):
    """out[i:i+rows, m] += X[i:i+rows, first:last] @ W[first:last, m] for rows <= TILE_ROWS,
    each element summed in order with one fused multiply-add per term."""
    m = W.shape[1]
    width = TILE_VECTORS * (VECTOR_BYTES // out.itemsize)
    full = m - m % width
    if rows == TILE_ROWS:
        packed = packed_edge(m, width, out)
        tiled = full - width if packed else full
        for j in range(0, tiled, width):
            accumulate_tile(X, W, i, j, width, first, last, out)
        if packed:
            accumulate_packed_tile(X, W, i, tiled, m - full, first, last, out)
        elif m - full > width // TILE_VECTORS:
            accumulate_edge_tile(X, W, i, full, m - full, first, last, out)
        elif full < m:
            accumulate_narrow_tile(X, W, i, full, m - full, first, last, out)
    else:
        accumulate_rows(X, W, i, rows, first, last, out)


@helper
def product_block(X, W, i, rows, first, last, out):
    """out[i:i+rows, m] = X[i:i+rows, first:last] @ W[first:last, m] for rows <= TILE_ROWS:
    accumulate_block from zero, the same bits, without first writing the zeros."""
    # A twin of accumulate_block rather than a flag on it: a runtime flag in the tile
    # measured about 5% slower on the forward pass.
    m = W.shape[1]
    width = TILE_VECTORS * (VECTOR_BYTES // out.itemsize)
    full = m - m % width
    row_width = ROW_TILE_VECTORS * (VECTOR_BYTES // out.itemsize)
    row_full = m - m % row_width
    if rows == TILE_ROWS:
        packed = packed_edge(m, width, out)
        tiled = full - width if packed else full
        for j in range(0, tiled, width):
            product_tile(X, W, i, j, width, first, last, out)
        if packed:
            product_packed_tile(X, W, i, tiled, m - full, first, last, out)
        elif m - full > width // TILE_VECTORS:
            product_edge_tile(X, W, i, full, m - full, first, last, out)
        elif full < m:
            product_narrow_tile(X, W, i, full, m - full, first, last, out)
    else:
        for r in range(i, i + rows):
            for j in range(0, row_full, row_width):
                product_row_tile(X, W, r, j, row_width, first, last, out)
            if row_full < m:
                product_row_edge(X, W, r, row_full, m - row_full, first, last, out)


# Rows of the weight gradient per parallel chunk: two tile blocks, so each strip of dZ the
# column tiles read is used twice while in cache (about 20% faster than one block, measured
# on 784x256 at B = 1024; bits do not depend on it).
GRAD_CHUNK_ROWS = 2 * TILE_ROWS
# Row blocks of a forward pass on the narrow tiles, float32 and float64.
NARROW_ROWS_32, NARROW_ROWS_64 = narrow_rows(4), narrow_rows(8)

# Samples per pass of the weight gradient's tiles, times the element size. Each sample's
# elements lie a row of A (and of dZ) apart, so a pass over many samples touches few cache
# sets and evicts its own strips: over all 1024 samples, 784x256 and 256x256 float32 ran at
# 205-230 GFLOP/s, in passes of 512 at 250-255 (float64: passes of 256). Later passes add to
# the stored sums, which continues each element's chain of fused multiply-adds: same bits.
GRAD_PASS_BYTES = 2048


@helper
def product_rows(X, W, start, stop, first, last, add, out):
    """out[start:stop, m] = X[start:stop, first:last] @ W[first:last, m] as product_block
    computes it (the same bits), or with `add` added to out as accumulate_block adds it, with
    the column tiles outermost, so each strip of W serves every row block of the range before
    the next strip is loaded."""
    m = W.shape[1]
    width = TILE_VECTORS * (VECTOR_BYTES // out.itemsize)
    full = m - m % width
    full_rows = start + (stop - start) // TILE_ROWS * TILE_ROWS
    packed = packed_edge(m, width, out)
    tiled = full - width if packed else full
    for j in range(0, tiled, width):
        for p in range(start, full_rows, TILE_ROWS):
            if add:
                accumulate_tile(X, W, p, j, width, first, last, out)
            else:
                product_tile(X, W, p, j, width, first, last, out)
    if packed:
        for p in range(start, full_rows, TILE_ROWS):
            if add:
                accumulate_packed_tile(X, W, p, tiled, m - full, first, last, out)
            else:
                product_packed_tile(X, W, p, tiled, m - full, first, last, out)
    elif full < m:
        edge = m - full > width // TILE_VECTORS
        for p in range(start, full_rows, TILE_ROWS):
            if add and edge:
                accumulate_edge_tile(X, W, p, full, m - full, first, last, out)
            elif add:
                accumulate_narrow_tile(X, W, p, full, m - full, first, last, out)
            elif edge:
                product_edge_tile(X, W, p, full, m - full, first, last, out)
            else:
                product_narrow_tile(X, W, p, full, m - full, first, last, out)
    if full_rows < stop and add:
        accumulate_block(X, W, full_rows, stop - full_rows, first, last, out)
    elif full_rows < stop:
        product_block(X, W, full_rows, stop - full_rows, first, last, out)


@helper
def column_tiles_for(m, n):
    """Whether a weight gradient m columns wide over n samples runs on column tiles: always
    for one or two columns, else from 128 samples, below which storing each tile's sums
    element by element costs more than the idle lanes of the row tiles (128x10 at 32 samples:
    1.0 µs on column tiles, 0.65 on row tiles; at 128 samples 2.2 and 2.7)."""
    return m <= 2 or (m <= COLUMN_TILE_MAX and n >= 128)


@kernel
def gradient_rows(AT, dZ, start, stop, out):
    """out[start:stop, m] = AT[start:stop, n] @ dZ[n, m], rows of the weight gradient, each
    element summed over the n samples in order, in passes of GRAD_PASS_BYTES // itemsize
    samples; narrow outputs (column_tiles_for) on column tiles, in one pass (the same bits).
    A kernel, not inlined: its tiles are compiled once, not once per kernel that calls it
    (inlined into the six, the first fit's compile took 17 s longer)."""
    n = AT.shape[1]
    if column_tiles_for(dZ.shape[1], n) and AT.strides[0] == AT.itemsize:
        for p in range(start, stop, COLUMN_TILE_ROWS):
            gradient_columns_tile(AT, dZ, p, min(COLUMN_TILE_ROWS, stop - p), 0, n, out)
        return
    samples = GRAD_PASS_BYTES // out.itemsize
    for first in range(0, max(n, 1), samples):  # one pass, of zeros, when there are no samples
        product_rows(AT, dZ, start, stop, first, min(first + samples, n), first > 0, out)


@helper
def forward_block(X, W, b, i, rows, out):
    """out[i:i+rows, m] = b[m] + X[i:i+rows, k] @ W[k, m] for rows <= TILE_ROWS, each element
    summed from its bias with one fused multiply-add per term, in order."""
    k, m = W.shape
    if rows < TILE_ROWS:
        for r in range(i, i + rows):
            for j in range(m):
                out[r, j] = b[j]
        accumulate_rows(X, W, i, rows, 0, k, out)
        return
    width = TILE_VECTORS * (VECTOR_BYTES // out.itemsize)
    full = m - m % width
    packed = packed_edge(m, width, out)
    tiled = full - width if packed else full
    for j in range(0, tiled, width):
        bias_tile(X, W, i, j, width, 0, k, b, out)
    if packed:
        bias_packed_tile(X, W, i, tiled, m - full, 0, k, b, out)
    elif m - full > width // TILE_VECTORS:
        bias_edge_tile(X, W, i, full, m - full, 0, k, b, out)
    elif full < m:
        bias_narrow_tile(X, W, i, full, m - full, 0, k, b, out)


@parallel_kernel
def dense_forward(X, W, b, activation, out):
    """out[n, m] = act(X[n, k] @ W[k, m] + b[m])"""
    n = X.shape[0]
    # Outputs at most NARROW_MAX wide run on the narrow tiles, in blocks of the rows one call
    # of the tile takes (vector.narrow_rows).
    narrow = W.shape[1] <= NARROW_MAX
    block_rows = TILE_ROWS if not narrow else NARROW_ROWS_32 if out.itemsize == 4 else NARROW_ROWS_64
    for block in prange((n + block_rows - 1) // block_rows):
        i = block_rows * block
        rows = min(block_rows, n - i)
        done = narrow_bias_tile(X, W, i, rows, b, out) if narrow else 0
        for start in range(i + done, i + rows, TILE_ROWS):
            forward_block(X, W, b, start, min(TILE_ROWS, i + rows - start), out)
        if activation != IDENTITY:
            activate_rows(out, i, i + rows, activation, out)


@parallel_kernel
def input_grad(dZ, WT, A, activation, out):
    """out[n, k] = (dZ[n, m] @ WT[m, k]) * act'(A[n, k]), A the layer's input as activation output."""
    n = dZ.shape[0]
    for block in prange((n + TILE_ROWS - 1) // TILE_ROWS):
        i = TILE_ROWS * block
        rows = min(TILE_ROWS, n - i)
        product_block(dZ, WT, i, rows, 0, dZ.shape[1], out)
        backprop_rows(A, out, i, i + rows, activation, out)


@kernel
def input_grad_row(dZ, W, A, activation, out):
    """out[0, k] = (dZ[0, m] @ W[k, m].T) * act'(A[0, k]) for one sample, read from W itself:
    input_grad's bits (each element a chain of fused multiply-adds over m in order, from
    zero) without the transpose of W, which costs more than this product at n = 1."""
    k, m = W.shape
    zero = out.dtype.type(0)
    full = k - k % 8
    # Eight rows of W at a time: eight independent chains keep the adders busy.
    for p in range(0, full, 8):
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = zero
        for j in range(m):
            d = dZ[0, j]
            s0 += d * W[p, j]
            s1 += d * W[p + 1, j]
            s2 += d * W[p + 2, j]
            s3 += d * W[p + 3, j]
            s4 += d * W[p + 4, j]
            s5 += d * W[p + 5, j]
            s6 += d * W[p + 6, j]
            s7 += d * W[p + 7, j]
        out[0, p], out[0, p + 1], out[0, p + 2], out[0, p + 3] = s0, s1, s2, s3
        out[0, p + 4], out[0, p + 5], out[0, p + 6], out[0, p + 7] = s4, s5, s6, s7
    for p in range(full, k):
        total = zero
        for j in range(m):
            total += dZ[0, j] * W[p, j]
        out[0, p] = total
    backprop_rows(A, out, 0, 1, activation, out)


@parallel_kernel
def weight_grad(A, dZ, out):
    """out[k, m] = A[n, k].T @ dZ[n, m], summed over n in order; parallel over rows of out, so
    no two threads ever add into one element."""
    AT = A.T  # a view: the tiles broadcast its elements, which lie along rows of A
    k = A.shape[1]
    for chunk in prange((k + GRAD_CHUNK_ROWS - 1) // GRAD_CHUNK_ROWS):
        p = GRAD_CHUNK_ROWS * chunk
        gradient_rows(AT, dZ, p, min(p + GRAD_CHUNK_ROWS, k), out)


@kernel
def bias_grad(dZ, out):
    """out[m] = sum over n of dZ[n, m], in order."""
    n, m = dZ.shape
    if n < 8:
        # A few rows: setting up the tile costs more than the sums (400-14-8-2 at one sample
        # took 0.84 µs a step with it, 0.78 without).
        zero = out.dtype.type(0)
        for j in range(m):
            out[j] = zero
        for i in range(n):
            for j in range(m):
                out[j] = out[j] + dZ[i, j]
        return
    # The sums in registers: summed through out, each row's additions waited on the last
    # row's stores (200x100 float32: 0.95 µs, in registers 0.4).
    width = COLUMN_SUMS_VECTORS * (VECTOR_BYTES // out.itemsize)
    for j in range(0, m, width):
        column_sums_tile(dZ, j, min(width, m - j), out)


@parallel_kernel
def transpose(W, out):
    """out[m, k] = W[k, m]"""
    k, m = W.shape
    lanes = VECTOR_BYTES // out.itemsize
    full_rows = k - k % lanes
    # Square blocks of `lanes` columns and rows through registers (256x128 float32: 7.5 µs
    # element by element, 2.2 µs so); the edges element by element, along rows of out.
    for block in prange((m + lanes - 1) // lanes):
        j = lanes * block
        if j + lanes <= m:
            for p in range(0, full_rows, lanes):
                transpose_tile(W, p, j, out)
            for c in range(j, j + lanes):
                for p in range(full_rows, k):
                    out[c, p] = W[p, c]
        else:
            for c in range(j, m):
                for p in range(k):
                    out[c, p] = W[p, c]
