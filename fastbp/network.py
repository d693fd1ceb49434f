"""The network: :class:`MLP` owns the parameters, validates input, picks a backend, runs epochs;
:func:`load` reads one back from the file :meth:`MLP.save` writes."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import _validation as v
from . import kernels, reference
from ._dispatch import run_epoch
from .activations import Activation, get_activation
from .errors import DivergenceError
from .losses import OUT_SOFTMAX, get_output
from .params import Layout, atomic_commit

_BACKENDS = {"numba": kernels, "numpy": reference}


@dataclass
class History:
    """What :meth:`MLP.fit` records, one entry per epoch.

    ``loss[e]`` is epoch e's mean per-example cost, each example's cost measured in
    the forward pass just before its batch's update (as scikit-learn's
    ``loss_curve_``); ``seconds[e]`` is the epoch's wall time.
    """

    loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    n_examples: int = 0

    def __len__(self) -> int:
        return len(self.loss)

    @property
    def examples_per_second(self) -> float:
        """Training throughput over all epochs recorded.

        The first ``fit`` of a kernel in a process includes compiling it (or loading it from
        Numba's on-disk cache) in its first epoch's seconds, so this figure is low for that fit.
        """
        total = sum(self.seconds)
        return self.n_examples * len(self.seconds) / total if total > 0 else float("nan")


def load(path) -> "MLP":
    """A network saved by :meth:`MLP.save`, bit for bit: its parameters, and its generator's state
    (training on continues with the same shuffles).  :attr:`MLP.preprocessing` is what the file
    holds of the feature scaling and labels (``None`` if nothing; ``fastbp train --save`` saves them).

    Never unpickles.  Raises ``ValueError`` naming the file (and key) for a file that is not a
    fastbp model (see :func:`fastbp.io.read`); ``FileNotFoundError`` if there is no such file.
    """
    from .io import read

    saved = read(path)
    try:  # a combination the file's keys each allow but a network refuses (softmax on one unit)
        net = MLP(
            saved.layer_sizes, activation=saved.activation, output=saved.output, dtype=saved.dtype, seed=saved.seed
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{os.fspath(path)}: not a network fastbp can build: {exc}") from None
    for dst, src in zip(net.weights + net.biases, saved.weights + saved.biases):
        dst[...] = src
    if saved.rng is not None:
        net.rng = saved.rng
    net.preprocessing = saved.preprocessing
    return net


class MLP:
    """A multilayer perceptron trained by backpropagation and gradient descent.

    Parameters
    ----------
    layer_sizes
        ``[n_x, n_1, ..., n_L]``: inputs, the hidden layers' widths, outputs.
        ``[n_x, n_h, n_y]`` is the derivation's 2-layer network
        (docs/derivation.md).
    activation
        Hidden activation g: ``"tanh"`` (default), ``"sigmoid"``, ``"relu"``,
        ``"leaky_relu"``, ``"identity"``, or a custom :class:`fastbp.Activation`
        (a pair of ``@numba.njit`` scalar functions g, g').
    output
        ``"sigmoid"`` (σ + binary cross-entropy, the derivation's), ``"softmax"``
        (+ categorical cross-entropy) or ``"identity"`` (+ ½ squared error).
    dtype
        ``numpy.float32`` or ``numpy.float64`` (default).  Every computation runs in
        this dtype; inputs of another dtype are converted.
    seed
        Seed of the network's ``numpy.random.Generator``, used for the initial
        weights and the shuffling order: same seed, same results, bit for bit.

    Initialisation: biases are zero; W[l] is drawn with Glorot (Xavier) uniform
    scaling, U(±√(6 / (n_{l−1} + n_l))), for tanh, sigmoid, identity and custom
    activations, and He normal scaling, N(0, 2 / n_{l−1}), for relu and leaky_relu.
    The draw is made in float64 and rounded to ``dtype``, so a float32 and a
    float64 network with the same seed start from the same weights.

    Attributes
    ----------
    weights, biases
        Lists of W[l] (n_l × n_{l−1}) and b[l] (n_l,): views into one flat buffer
        (:attr:`params`), so writing into them in place changes the network.
    preprocessing
        ``None``, or a :class:`fastbp.io.Preprocessing` (feature scaling, task, class labels or
        target scaling) that :meth:`save` writes beside the parameters, so that the saved model
        can predict from raw data (``fastbp predict``).  The network itself never applies it.
    """

    def __init__(
        self,
        layer_sizes,
        activation: str | Activation | tuple = "tanh",
        output: str = "sigmoid",
        dtype: Any = np.float64,
        seed: int | None = None,
    ):
        self._layer_sizes: tuple[int, ...] = v.check_layer_sizes(layer_sizes)
        self._activation: Activation = get_activation(activation)
        self._out = get_output(output)
        if self._out == OUT_SOFTMAX and self._layer_sizes[-1] < 2:
            raise ValueError(
                f"output='softmax' needs at least 2 output units, got layer_sizes {list(self._layer_sizes)}; "
                "for one binary output use output='sigmoid'"
            )
        self._output: str = "sigmoid" if output.lower() == "logistic" else output.lower()
        self._dtype: np.dtype = v.check_dtype(dtype)
        self.seed = v.check_seed(seed)
        self.rng = np.random.default_rng(seed)
        self._layout = Layout(self._layer_sizes)
        self._params: np.ndarray = np.zeros(self._layout.n_params, dtype=self._dtype)
        self._weights, self._biases = self._layout.views(self._params)
        self.preprocessing = None
        self._initialise()

    # ------------------------------------------------------------------ parameters
    #
    # The kernels trust the flat buffer's size and dtype and the layer sizes: the buffer is
    # private (users get views of it, which they cannot resize or re-type), the sizes, dtype,
    # activation and output are read-only, and every assignment is checked and copied into
    # the buffer, so that no attribute a user can write makes a kernel step outside its arrays.

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """``(n_x, n_1, …, n_L)`` (read-only: build a new MLP for other sizes)."""
        return self._layer_sizes

    @property
    def dtype(self) -> np.dtype:
        """The dtype of every parameter and computation (read-only)."""
        return self._dtype

    @property
    def activation(self) -> Activation:
        """The hidden activation g (read-only)."""
        return self._activation

    @property
    def output(self) -> str:
        """The output layer's name (read-only)."""
        return self._output

    @property
    def rng(self) -> np.random.Generator:
        """The generator of the shuffling order (and of the initial weights)."""
        return self._rng

    @rng.setter
    def rng(self, value) -> None:
        if not isinstance(value, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(value).__name__}")
        self._rng = value

    @property
    def params(self) -> np.ndarray:
        """Every W[l] and b[l] in one flat vector (a view: writing into it changes the network).

        Assigning ``net.params = values`` copies ``values`` (``n_params`` finite numbers) in.
        """
        return self._params.view()

    @params.setter
    def params(self, value) -> None:
        new = v.check_shaped(value, "params", self._params.shape, self._dtype)
        self._params[...] = new

    def _initialise(self) -> None:
        he = self.activation.traits.init == "he"
        for W in self._weights:
            n_out, n_in = W.shape
            if he:
                W[...] = self.rng.normal(0.0, np.sqrt(2.0 / n_in), size=W.shape)
            else:
                limit = np.sqrt(6.0 / (n_in + n_out))
                W[...] = self.rng.uniform(-limit, limit, size=W.shape)
        for b in self._biases:
            b[...] = 0

    @property
    def weights(self) -> list[np.ndarray]:
        """W[1] … W[L] as views into :attr:`params` (``weights[l]`` is W[l+1]).

        ``net.weights[l][...] = W`` and ``net.weights[l] = W`` both write W into the network
        (W must have W[l+1]'s shape and be finite); so does ``net.weights = [W1, W2, …]``.
        """
        return v.ViewList(self._layout.views(self._params)[0], "weights")

    @weights.setter
    def weights(self, value) -> None:
        self._assign("weights", value, self._weights)

    @property
    def biases(self) -> list[np.ndarray]:
        """b[1] … b[L] as views into :attr:`params` (assignable like :attr:`weights`)."""
        return v.ViewList(self._layout.views(self._params)[1], "biases")

    @biases.setter
    def biases(self, value) -> None:
        self._assign("biases", value, self._biases)

    def _assign(self, name: str, value, targets: list[np.ndarray]) -> None:
        if isinstance(value, np.ndarray) or not isinstance(value, (list, tuple)):
            raise TypeError(f"{name} must be a list of {len(targets)} arrays, got {type(value).__name__}")
        if len(value) != len(targets):
            raise ValueError(f"{name} must be a list of {len(targets)} arrays, got {len(value)}")
        new = [v.check_shaped(a, f"{name}[{l}]", t.shape, self._dtype) for l, (a, t) in enumerate(zip(value, targets))]
        with atomic_commit():
            for t, a in zip(targets, new):
                t[...] = a

    def _check_finite(self) -> None:
        """``ValueError`` naming the first W[l] or b[l] holding NaN or inf (written by the user)."""
        if np.isfinite(self._params).all():
            return
        for name, arrays in (("weights", self._weights), ("biases", self._biases)):
            for l, P in enumerate(arrays):
                if not np.isfinite(P).all():
                    raise ValueError(f"{name}[{l}] contains NaN or inf (the network's own parameters were overwritten)")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_weights"], state["_biases"]  # views: rebuilt from the buffer on unpickling
        return state

    def __setstate__(self, state: dict) -> None:
        sizes = v.check_layer_sizes(state["_layer_sizes"])
        dtype = v.check_dtype(state["_dtype"])
        layout = Layout(sizes)
        params = state["_params"]
        if isinstance(params, np.ndarray) and not (
            type(params) is np.ndarray and params.flags.c_contiguous and params.flags.writeable
        ):  # a read-only memory map (joblib's mmap_mode="r"): a buffer of its own, as fit writes it
            params = np.array(params)
        if type(params) is not np.ndarray or params.shape != (layout.n_params,) or params.dtype != dtype:
            raise ValueError(f"params: a pickled MLP of layer sizes {list(sizes)} needs {layout.n_params} {dtype}")
        self.__dict__.update(state)
        self._layout, self._params = layout, params
        self._weights, self._biases = layout.views(params)

    @property
    def n_layers(self) -> int:
        return len(self.layer_sizes) - 1

    def __repr__(self) -> str:
        return (
            f"MLP({list(self.layer_sizes)}, activation={self.activation.name!r}, "
            f"output={self.output!r}, dtype={self.dtype.name}, seed={self.seed})"
        )

    def save(self, path) -> "Path":
        """Save the network to ``path`` (a ``.npz`` file), atomically; see :mod:`fastbp.io`.

        Load it back with :func:`fastbp.load`.  A network with a custom activation
        cannot be saved (``ValueError``, before any file is touched).  :attr:`preprocessing`,
        if set, is saved too (and checked against the network's sizes first).
        """
        from .io import save_arrays

        if self.activation.is_custom:
            raise ValueError(
                f"activation: a custom activation ({self.activation.name!r}) cannot be saved, since that "
                "would mean pickling code; save the weights yourself (net.weights, net.biases)"
            )
        return save_arrays(
            path,
            self.layer_sizes,
            self.activation.name,
            self.output,
            self.dtype,
            self._weights,
            self._biases,
            self.seed,
            self.rng.bit_generator.state,
            self.preprocessing,
        )

    # ---------------------------------------------------------------- computation

    def _backend(self, backend: str):
        return _BACKENDS[v.check_backend(backend)]

    def _X(self, X) -> np.ndarray:
        return v.check_X(X, self.layer_sizes[0], self.dtype)

    def _XY(self, X, Y) -> tuple[np.ndarray, np.ndarray]:
        X = self._X(X)
        return X, v.check_Y(Y, X.shape[0], self.layer_sizes[-1], self._out, self.dtype)

    def forward(self, X, backend: str = "numba") -> np.ndarray:
        """A[L], the network's output (m × n_y) for X (m × n_x, one example per row)."""
        impl = self._backend(backend)
        # X is checked by the backend's predict (the numba one inside its kernel where that is cheaper:
        # fastbp._dispatch.forward_refuses_non_finite), not a second time here
        return np.ascontiguousarray(impl.predict(self._weights, self._biases, X, self.activation, self.output))

    def predict(self, X, backend: str = "numba") -> np.ndarray:
        """Class labels: argmax of A[L] for several outputs, A[L] ≥ ½ for one sigmoid output.

        For an identity output this is A[L] itself.
        """
        A = self.forward(X, backend)
        if self.output in ("identity", "exp"):  # (regression outputs)
            return A
        if A.shape[1] == 1:
            return (A[:, 0] >= 0.5).astype(np.int64)
        return A.argmax(axis=1)

    def loss(self, X, Y, backend: str = "numba") -> float:
        """J: the mean over the rows of X of the per-example cost of the output layer."""
        impl = self._backend(backend)
        return impl.loss(self._weights, self._biases, X, Y, self.activation, self.output)  # (checks X and Y)

    def gradients(self, X, Y, backend: str = "numba") -> tuple[list[np.ndarray], list[np.ndarray]]:
        """``(dW, db)``: ∂J/∂W[l] and ∂J/∂b[l], means over the examples, shaped like the parameters."""
        impl = self._backend(backend)
        X, Y = self._XY(X, Y)
        dW, db = impl.gradients(self._weights, self._biases, X, Y, self.activation, self.output)
        return [np.array(d) for d in dW], [np.array(d) for d in db]

    def fit(
        self,
        X,
        Y,
        epochs: int = 10,
        learning_rate: float | None = None,
        batch_size: int | None = 1,
        shuffle: bool = True,
        backend: str = "numba",
        callback: Callable[["History"], Any] | None = None,
        optimizer: Any = "sgd",
        sample_weight: Any = None,
    ) -> History:
        """Train by gradient descent; returns the :class:`History` of losses per epoch.

        Raises :class:`fastbp.DivergenceError` (a ``FloatingPointError``) as soon as
        a step would make the loss or a parameter non-finite, naming the epoch and
        batch; the network keeps the parameters from just before that step.

        Parameters
        ----------
        X, Y
            Inputs (m × n_x) and targets (m × n_y; a 1-D Y is fine when n_y = 1).
        epochs
            Passes over the data (0 is allowed and changes nothing).
        learning_rate
            α in W −= α dW (default 0.1) for ``optimizer="sgd"``.  An optimizer
            object carries its own ``learning_rate_init``; giving both is an error.
        batch_size
            Examples per update: 1 is per-example SGD, the derivation's update (stochastic
            gradient descent), ``None`` the full batch; the last short batch of an
            epoch is used, not dropped.  Each update uses the mean gradient over its batch.
        shuffle
            Visit the examples in a new order each epoch, drawn from the network's
            seeded generator (the same order on both backends).
        backend
            ``"numba"`` (the kernels) or ``"numpy"`` (the reference).
        callback
            Called as ``callback(history)`` after each epoch, with the :class:`History`
            so far (a progress bar, say); ``history.loss[-1]`` is the epoch's loss.
        optimizer
            ``"sgd"`` (default): plain gradient descent W −= α dW.  Or an optimizer
            from :mod:`fastbp.optimizers`: ``SGD(momentum=0.9, nesterov=True)``,
            ``Adam(learning_rate_init=1e-3)``, either with L2 ``alpha`` and (SGD) a
            learning-rate schedule; its loss then includes the L2 term.  The object
            keeps its state (velocities, Adam's moments and step count, schedule), so
            passing the same object to the next ``fit`` continues that run; pass a
            new one (or call its ``reset()``) to start afresh.
        sample_weight
            ``None``, or one weight per example (a number: the same for all), as
            scikit-learn's: each batch's mean gradient and cost become means weighted by
            w_i / Σ_batch w (the L2 term of an optimizer divided by Σ_batch w instead of n).
            Refused (``ValueError`` naming it) if not finite, of the wrong length, all zero,
            or summing to zero over a batch (with ``batch_size=1``: any weight 0); negative
            weights are allowed, as scikit-learn allows them.  With ``batch_size=1`` and no
            L2 a weight cancels out of its own mean: weights matter with larger batches.
        """
        impl = self._backend(backend)
        X, Y = self._XY(X, Y)
        X, Y = v.unshared(X, [self._params]), v.unshared(Y, [self._params])  # read while the buffer is written
        epochs = v.check_int(epochs, "epochs", 0)
        opt = _resolve_optimizer(optimizer, learning_rate)
        lr = 0.1 if learning_rate is None else v.check_positive_float(learning_rate, "learning_rate", self._dtype)
        m = X.shape[0]
        bs = v.check_batch_size(batch_size, m)
        sw = v.unit_weights_as_none(v.check_sample_weight(sample_weight, m, self._dtype))
        shuffle = v.check_bool(shuffle, "shuffle")
        v.check_callback(callback)
        self._check_finite()
        if opt is not None:  # same loop, epochs run by the optimizer's kernel instead
            impl = opt._runner(self._params, self.layer_sizes, backend)
        elif impl is kernels:  # X, Y, lr, batch size are checked above: go straight to the kernel
            impl = _CheckedKernelEpochs(self, X)
        history = History(n_examples=m)
        for epoch in range(epochs):
            order = self.rng.permutation(m) if shuffle else np.arange(m)
            t0 = time.perf_counter()
            args = (self._weights, self._biases, X, Y, lr, bs, order, self.activation, self.output)
            try:
                J = impl.train_epoch(*args) if sw is None else impl.train_epoch(*args, sample_weight=sw)
            except DivergenceError as exc:
                raise DivergenceError(exc.batch, epoch) from None
            history.seconds.append(time.perf_counter() - t0)
            history.loss.append(J)
            if callback is not None:
                callback(history)
        return history


class _CheckedKernelEpochs:
    """``MLP.fit``'s numba path: epochs on the network's own buffer, no per-epoch re-checks.

    ``fit`` has already validated and converted X, Y, the learning rate and the batch
    size once; re-running those checks every epoch (as the public
    :func:`fastbp.kernels.train_epoch` must) costs 10-17 % on small networks.
    """

    def __init__(self, net: "MLP", X: np.ndarray):
        self.net = net
        self.x_abs_max = max(float(X.max()), -float(X.min()))  # once per fit (the tiny kernels' input bound)

    def train_epoch(
        self, weights, biases, X, Y, lr, batch_size, order, activation, output, sample_weight=None
    ) -> float:
        net = self.net
        J, failed = run_epoch(
            net._params,
            net._layout.sizes,
            X,
            Y,
            np.ascontiguousarray(order, dtype=np.int64),
            batch_size,
            net.dtype.type(lr),
            activation,
            net._out,
            x_abs_max=self.x_abs_max,
            sw=sample_weight,
        )
        if failed >= 0:
            raise DivergenceError(failed)
        return float(J)


def _resolve_optimizer(optimizer: Any, learning_rate: float | None):  # for MLP.fit
    """``None`` for plain gradient descent (``"sgd"``), else the optimizer object, validated."""
    if isinstance(optimizer, str):
        if optimizer.lower() != "sgd":
            raise ValueError(
                f"optimizer must be 'sgd' or an optimizer such as fastbp.optimizers.Adam(), got {optimizer!r}"
            )
        return None
    from .optimizers import Optimizer

    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"optimizer must be 'sgd' or a fastbp.optimizers.SGD/Adam object, got {type(optimizer).__name__}"
        )
    if learning_rate is not None:
        raise ValueError(
            "learning_rate: give the learning rate to the optimizer (learning_rate_init=...), "
            "not to fit, when optimizer is an object"
        )
    return optimizer
