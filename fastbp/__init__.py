"""fastbp: Numba-compiled backpropagation kernels with a NumPy reference beside them.

* :class:`fastbp.MLP`: a multilayer perceptron you ``fit`` in one line.
* :mod:`fastbp.kernels`: the ``@njit`` scalar-loop kernels (forward, backward,
  update, training epoch) on your own arrays.
* :mod:`fastbp.reference`: the same functions in NumPy, vectorised over a batch:
  the oracle the kernels are tested against.
* :mod:`fastbp.optimizers`: momentum/Nesterov SGD and Adam for ``MLP.fit(optimizer=...)``.
* :class:`fastbp.MLPClassifier`, :class:`fastbp.MLPRegressor`: scikit-learn estimators
  (imported on first use, so ``import fastbp`` does not import scikit-learn).
* :func:`fastbp.load` and :meth:`fastbp.MLP.save`: models in a ``.npz`` file.
"""

from . import kernels, reference
from .activations import Activation, make_custom
from .errors import DivergenceError
from .network import MLP, History, load

__version__ = "0.1.0"

_LAZY = {"MLPClassifier": "estimators", "MLPRegressor": "estimators", "optimizers": None}


def __getattr__(name: str):
    """Import the scikit-learn estimators (and the optimizers module) on first use."""
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name] or name}", __name__)
        value = module if _LAZY[name] is None else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "MLP",
    "MLPClassifier",
    "MLPRegressor",
    "optimizers",
    "History",
    "DivergenceError",
    "load",
    "Activation",
    "make_custom",
    "kernels",
    "reference",
    "__version__",
]
