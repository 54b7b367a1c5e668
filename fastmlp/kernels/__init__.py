"""Hand-written Numba kernels: the numbers of fastmlp are computed here.

One module per family: ``matmul`` (dense layer forward and backward),
``activations``, ``functions`` (exp, sigmoid, tanh that vectorise in float32),
``losses``, ``optim`` (parameter updates, alone or fused into the gradient
passes), ``data`` (batch gathering, finiteness probe) and ``epoch`` (the
compiled loop over an epoch's mini-batches, which calls the others). Kernels
take C-contiguous arrays of one dtype, inputs first and preallocated outputs
last, and allocate nothing.
"""
