"""Saving and loading networks: one ``.npz`` file, written atomically, read without pickle.

File format (version :data:`FORMAT_VERSION`), a NumPy ``.npz`` archive of plain arrays:

=====================  ==========================================================
key                    content
=====================  ==========================================================
``format_version``     int64 scalar, :data:`FORMAT_VERSION`
``layer_sizes``        int64 vector ``[n_0, n_1, ..., n_L]``
``activation``         str scalar: a built-in hidden activation's name
``output``             str scalar: ``"sigmoid"``, ``"softmax"`` or ``"identity"``
``dtype``              str scalar: ``"float32"`` or ``"float64"``
``weights_{l}``        W[l+1], shape (n_{l+1}, n_l), of ``dtype``, for l = 0 … L−1
``biases_{l}``         b[l+1], shape (n_{l+1},), of ``dtype``
``seed``               str scalar: the constructor's seed as JSON (``null`` for None)
``rng_state``          str scalar: the generator's ``bit_generator.state`` as JSON
=====================  ==========================================================

``save`` writes to a temporary file in the target's folder and renames it over
the target (``os.replace``), so a save interrupted at any point leaves the
previous file as it was.  ``load`` reads with ``allow_pickle=False`` and checks
every key, shape and dtype before it builds anything; anything wrong is a
``ValueError`` naming the file and the key.  Custom activations (user
functions) cannot be stored without pickling code and are refused at save time.
"""

from __future__ import annotations

import json
import os
import secrets
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _validation as v
from .activations import NAMES as ACTIVATION_NAMES
from .losses import NAMES as OUTPUT_NAMES

if TYPE_CHECKING:  # pragma: no cover
    from .network import MLP

FORMAT_VERSION = 1

#: Bit generators a saved ``rng_state`` may name (NumPy's own, looked up by name).
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


def _arrays(net: "MLP") -> dict[str, np.ndarray]:
    """The archive's arrays for ``net`` (copies, plain dtypes, no objects)."""
    if net.activation.is_custom:
        raise ValueError(
            f"activation: a custom activation ({net.activation.name!r}) cannot be saved, since that "
            "would mean pickling code; save the weights yourself (net.weights, net.biases)"
        )
    arrays: dict[str, np.ndarray] = {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "layer_sizes": np.array(net.layer_sizes, dtype=np.int64),
        "activation": np.array(net.activation.name),
        "output": np.array(net.output),
        "dtype": np.array(net.dtype.name),
        "seed": np.array(json.dumps(net.seed)),
        "rng_state": np.array(json.dumps(net.rng.bit_generator.state)),
    }
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        arrays[f"weights_{l}"] = np.array(W)
        arrays[f"biases_{l}"] = np.array(b)
    return arrays


def _write(fileobj, arrays: dict[str, np.ndarray]) -> None:
    """Write the archive into an open binary file (a separate step so tests can interrupt it)."""
    np.savez(fileobj, **arrays)


def save(net: "MLP", path: str | os.PathLike) -> Path:
    """Save ``net`` to ``path`` (used as given; ``.npz`` is the natural suffix), atomically.

    Returns the path written.  Raises ``ValueError`` (before touching any file)
    for a network with a custom activation.
    """
    arrays = _arrays(net)
    target = Path(os.fspath(path))
    folder = target.parent if str(target.parent) else Path(".")
    fd, tmp = _create_temporary(folder, target)
    try:
        with os.fdopen(fd, "wb") as f:
            _write(f, arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


def _create_temporary(folder: Path, target: Path) -> tuple[int, str]:
    """A new, exclusive temporary file beside ``target``, with the permissions a plain open() gives.

    Created with mode 0666 so the OS applies the process umask itself (never changed
    here: changing it is not thread-safe); an existing model's mode is kept.
    """
    for _ in range(100):
        tmp = str(folder / f".{target.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        try:
            os.chmod(tmp, target.stat().st_mode & 0o777)
        except FileNotFoundError:
            pass
        return fd, tmp
    raise FileExistsError(f"could not create a temporary file beside {target}")  # pragma: no cover


def _read(path: str, archive, key: str) -> np.ndarray:
    if key not in archive.files:
        raise ValueError(f"{path}: missing key {key!r}; not a fastbp model file, or a damaged one")
    try:
        arr = archive[key]
    except ValueError as exc:  # object arrays need pickle, which is refused
        raise ValueError(f"{path}: key {key!r} cannot be read without unpickling ({exc}); refused") from None
    except (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise ValueError(f"{path}: key {key!r} is damaged ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # zlib.error and other decoding failures of a corrupt member
        raise ValueError(f"{path}: key {key!r} is damaged ({type(exc).__name__}: {exc})") from None
    return arr


def _text(path: str, archive, key: str) -> str:
    arr = _read(path, archive, key)
    if arr.dtype.kind != "U" or arr.shape != ():
        raise ValueError(f"{path}: key {key!r} must be a text scalar, got {arr.dtype} of shape {arr.shape}")
    return str(arr[()])


def _json(path: str, archive, key: str) -> Any:
    try:
        return json.loads(_text(path, archive, key))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: key {key!r} is not valid JSON ({exc})") from None


def load(path: str | os.PathLike) -> "MLP":
    """A network saved by :func:`save` (or :meth:`fastbp.MLP.save`), bit for bit.

    Never unpickles.  Raises ``ValueError`` naming the file (and key) for a file
    that is not a fastbp model: corrupt or truncated, with object arrays, a
    missing key, inconsistent shapes or dtypes, non-finite parameters, or an
    unknown format version; ``FileNotFoundError`` if there is no such file.
    """
    from .network import MLP

    name = os.fspath(path)
    try:
        archive = np.load(name, allow_pickle=False)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{name}: not a readable .npz model file ({type(exc).__name__}: {exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{name}: not a .npz archive (a single array); not a fastbp model file")
    with archive:
        version = _read(name, archive, "format_version")
        if version.shape != () or version.dtype.kind not in "iu":
            raise ValueError(f"{name}: key 'format_version' must be an integer scalar, got {version.dtype} {version.shape}")
        if int(version) != FORMAT_VERSION:
            raise ValueError(
                f"{name}: unknown format_version {int(version)} (this fastbp reads version {FORMAT_VERSION})"
            )
        sizes_arr = _read(name, archive, "layer_sizes")
        if sizes_arr.ndim != 1 or sizes_arr.dtype.kind not in "iu":
            raise ValueError(f"{name}: key 'layer_sizes' must be a vector of integers")
        try:
            sizes = v.check_layer_sizes([int(s) for s in sizes_arr])
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{name}: key 'layer_sizes': {exc}") from None
        activation = _text(name, archive, "activation")
        if activation not in ACTIVATION_NAMES:
            raise ValueError(f"{name}: key 'activation' is {activation!r}, not a built-in activation")
        output = _text(name, archive, "output")
        if output not in OUTPUT_NAMES:
            raise ValueError(f"{name}: key 'output' is {output!r}, not one of {sorted(OUTPUT_NAMES)}")
        dtype_name = _text(name, archive, "dtype")
        if dtype_name not in ("float32", "float64"):
            raise ValueError(f"{name}: key 'dtype' is {dtype_name!r}, not float32 or float64")
        dtype = np.dtype(dtype_name)
        params = []
        for l in range(len(sizes) - 1):
            for key, shape in ((f"weights_{l}", (sizes[l + 1], sizes[l])), (f"biases_{l}", (sizes[l + 1],))):
                arr = _read(name, archive, key)
                if arr.shape != shape:
                    raise ValueError(f"{name}: key {key!r} has shape {arr.shape}, expected {shape} from layer_sizes")
                if arr.dtype != dtype:
                    raise ValueError(f"{name}: key {key!r} has dtype {arr.dtype}, expected {dtype} (key 'dtype')")
                if not np.isfinite(arr).all():
                    raise ValueError(f"{name}: key {key!r} contains NaN or inf")
                params.append(arr)
        extra = sorted(k for k in archive.files if k.startswith(("weights_", "biases_")))
        if len(extra) != len(params):
            raise ValueError(f"{name}: holds {len(extra) // 2} layers' parameters but layer_sizes has {len(sizes) - 1}")
        seed = _json(name, archive, "seed") if "seed" in archive.files else None
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"{name}: key 'seed' must be a non-negative integer or null, got {seed!r}")
        state = _json(name, archive, "rng_state") if "rng_state" in archive.files else None
    net = MLP(sizes, activation=activation, output=output, dtype=dtype, seed=seed)
    for dst, src in zip([p for pair in zip(net.weights, net.biases) for p in pair], params):
        dst[...] = src
    if state is not None:
        net.rng = _generator(name, state)
    return net


def _generator(name: str, state: Any) -> np.random.Generator:
    """A ``numpy.random.Generator`` in the saved state (a whitelisted NumPy bit generator)."""
    kind = state.get("bit_generator") if isinstance(state, dict) else None
    if kind not in _BIT_GENERATORS:
        raise ValueError(f"{name}: key 'rng_state' names an unknown bit generator {kind!r}")
    bitgen = getattr(np.random, kind)()
    try:
        bitgen.state = state
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{name}: key 'rng_state' is not a valid {kind} state ({exc})") from None
    return np.random.Generator(bitgen)
