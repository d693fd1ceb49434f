"""fastbp: Numba-compiled backpropagation kernels with a NumPy reference beside them.

* :class:`fastbp.MLP`: a multilayer perceptron you ``fit`` in one line.
* :mod:`fastbp.kernels`: the ``@njit`` scalar-loop kernels (forward, backward,
  update, training epoch) on your own arrays.
* :mod:`fastbp.reference`: the same functions in NumPy, vectorised over a batch:
  the oracle the kernels are tested against.
* :func:`fastbp.load` and :meth:`fastbp.MLP.save`: models in a ``.npz`` file.
"""

from . import kernels, reference
from .activations import Activation, make_custom
from .errors import DivergenceError
from .io import load
from .network import MLP, History

__version__ = "0.1.0"

__all__ = ["MLP", "History", "DivergenceError", "load", "Activation", "make_custom", "kernels", "reference", "__version__"]
