"""fastmlp: fast multilayer perceptrons on the CPU, with hand-written Numba kernels."""

from .errors import DivergenceError, ModelFileError
from .model import MLP
from .plotting import plot_history
from .serialization import load

__version__ = "0.1.0"
__all__ = ["MLP", "load", "plot_history", "DivergenceError", "ModelFileError", "__version__"]
