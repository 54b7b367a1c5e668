"""Hand-written Numba kernels: the numbers of fastmlp are computed here.

One module per family: ``matmul`` (dense layer forward and backward),
``activations``, ``losses``, ``optim`` (parameter updates) and ``data``
(batch gathering and finiteness checks). Kernels take C-contiguous arrays of
one dtype, inputs first and preallocated outputs last, and allocate nothing.
"""
