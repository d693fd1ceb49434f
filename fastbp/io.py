"""The model file format: one ``.npz`` file, written atomically, read without pickle.

This module knows the file, not the network: :func:`save_arrays` writes a network's
description and parameters, :func:`read` checks a file and returns them as a
:class:`SavedModel` record.  The network's ``save`` method and :func:`fastbp.load` (both in
:mod:`fastbp.network`) build on these two.

File format (version :data:`FORMAT_VERSION`), a NumPy ``.npz`` archive of plain arrays:

=====================  ==========================================================
key                    content
=====================  ==========================================================
``format_version``     int64 scalar, :data:`FORMAT_VERSION`
``layer_sizes``        int64 vector ``[n_0, n_1, ..., n_L]``
``activation``         str scalar: a built-in hidden activation's name
``output``             str scalar: ``"sigmoid"``, ``"softmax"``, ``"identity"`` or ``"exp"``
``dtype``              str scalar: ``"float32"`` or ``"float64"``
``weights_{l}``        W[l+1], shape (n_{l+1}, n_l), of ``dtype``, for l = 0 … L−1
``biases_{l}``         b[l+1], shape (n_{l+1},), of ``dtype``
``seed``               str scalar: the constructor's seed as JSON (``null`` for None)
``rng_state``          str scalar: the generator's ``bit_generator.state`` as JSON
``task``               optional str scalar, ``"classification"`` or ``"regression"``: present when the
                       file also holds what prediction from raw data needs (:class:`Preprocessing`)
``x_offset``           float64 vector (n_0,): raw feature j is fed as (x_j − x_offset_j) / x_scale_j
``x_scale``            float64 vector (n_0,), every entry finite and > 0
``classes``            classification: the class labels (numbers or text), vector; output unit i (or, with
                       one sigmoid unit, output 0/1) is class ``classes[i]``
``y_offset``,          regression: float64 scalars; a prediction is ``output · y_scale + y_offset``
``y_scale``
=====================  ==========================================================

The last six keys come together or not at all (``fastbp train --save`` writes them, so
``fastbp predict`` can take raw rows); a file without them is still a valid model.

``save_arrays`` writes to a temporary file in the target's folder and renames it over
the target (``os.replace``), so a save interrupted at any point leaves the
previous file as it was.  ``read`` reads with ``allow_pickle=False`` and checks
every key, shape and dtype before it returns anything; anything wrong is a
``ValueError`` naming the file and the key.  Only built-in activations have a
name in the file: custom ones (user functions) cannot be stored without pickling code.
"""

from __future__ import annotations

import json
import os
import secrets
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import _validation as v
from .activations import NAMES as ACTIVATION_NAMES
from .losses import NAMES as OUTPUT_NAMES

FORMAT_VERSION = 1

#: Bit generators a saved ``rng_state`` may name (NumPy's own, looked up by name).
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")

#: The most bytes a text or integer member (``activation``, ``rng_state``, ``layer_sizes`` …) may
#: inflate to; a parameter member may inflate to its declared array plus :data:`_HEADER_BYTES`.
#: ``read`` checks each member's declared size and ``.npy`` header against these and
#: ``layer_sizes`` before reading its data, so a crafted file costs bounded time and memory.
_SMALL_BYTES = 1 << 20
_HEADER_BYTES = 1 << 16

#: A compressed member may inflate to at most this many times its stored size (``save`` stores
#: members uncompressed; a compressed model of real weights shrinks by far less).
_MAX_RATIO = 64

#: How much of the target's name a temporary file's name keeps (names are at most 255 bytes).
_TMP_NAME_CHARS = 40


TASKS = ("classification", "regression")


@dataclass(frozen=True, eq=False)
class Preprocessing:
    """What prediction from raw data needs besides the network: the feature scaling, the task,
    and the class labels (classification) or the target scaling (regression).

    Raw features ``x`` are fed to the network as ``(x - x_offset) / x_scale``; a classifier's
    output index ``i`` means ``classes[i]``; a regressor's output ``a`` means ``a * y_scale + y_offset``.
    ``feature_names``: the training data's feature columns by name, in the network's input order (a
    CSV with a header), or ``None``; ``fastbp predict`` then takes a CSV's columns by name.
    """

    task: str
    x_offset: np.ndarray
    x_scale: np.ndarray
    classes: np.ndarray | None = None
    y_offset: float = 0.0
    y_scale: float = 1.0
    feature_names: np.ndarray | None = None


#: The longest feature name a model file keeps (characters), so that its names stay a small member.
MAX_FEATURE_NAME = 256


def _check_preprocessing(pre: Any, n_x: int, n_y: int, where: str) -> Preprocessing:
    """``pre`` checked against a network with n_x inputs and n_y outputs; ``ValueError`` starting with ``where``."""
    if not isinstance(pre, Preprocessing):
        raise TypeError(f"preprocessing must be a fastbp.io.Preprocessing or None, got {type(pre).__name__}")
    if pre.task not in TASKS:
        raise ValueError(f"{where}'task' must be one of {TASKS}, got {pre.task!r}")
    vectors = {}
    for key in ("x_offset", "x_scale"):
        arr = np.asarray(getattr(pre, key))
        if arr.dtype.kind not in "iuf" or arr.shape != (n_x,):
            raise ValueError(f"{where}{key!r} must be a numeric vector of {n_x} values, got {arr.dtype} {arr.shape}")
        arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            raise ValueError(f"{where}{key!r} contains NaN or inf")
        vectors[key] = arr
    if (vectors["x_scale"] <= 0).any():
        raise ValueError(f"{where}'x_scale' must be > 0 everywhere")
    classes = None
    y_offset, y_scale = 0.0, 1.0
    if pre.task == "classification":
        if pre.classes is None:
            raise ValueError(f"{where}'classes' is needed for a classification task")
        classes = np.asarray(pre.classes)
        wanted = (1, 2) if n_y == 1 else (n_y,)
        if classes.ndim != 1 or classes.dtype.kind not in "biufU" or len(classes) not in wanted:
            raise ValueError(
                f"{where}'classes' must be a vector of {' or '.join(map(str, wanted))} numbers or strings "
                f"for {n_y} output unit(s), got {classes.dtype} {classes.shape}"
            )
        if len(np.unique(classes)) != len(classes):
            raise ValueError(f"{where}'classes' repeats a label")
        if classes.dtype.kind == "f" and not np.isfinite(classes).all():
            raise ValueError(f"{where}'classes' contains NaN or inf")
    else:
        if n_y != 1:
            raise ValueError(
                f"{where.removesuffix('key ')}a regression task needs 1 output unit, the network has {n_y}"
            )
        try:
            y_offset, y_scale = float(pre.y_offset), float(pre.y_scale)
        except (TypeError, ValueError):
            raise ValueError(f"{where}'y_offset' and 'y_scale' must be numbers") from None
        if not (np.isfinite(y_offset) and np.isfinite(y_scale) and y_scale > 0):
            raise ValueError(f"{where}'y_offset' must be finite and 'y_scale' finite and > 0")
    names = None
    if pre.feature_names is not None:
        names = np.asarray(pre.feature_names)
        if names.dtype.kind != "U" or names.shape != (n_x,):
            raise ValueError(
                f"{where}'feature_names' must be a vector of {n_x} strings, got {names.dtype} {names.shape}"
            )
        if any(not name or len(name) > MAX_FEATURE_NAME for name in names.tolist()):
            raise ValueError(f"{where}'feature_names' must be non-empty names of at most {MAX_FEATURE_NAME} characters")
        if len(set(names.tolist())) != n_x:
            raise ValueError(f"{where}'feature_names' repeats a name")
    return Preprocessing(pre.task, vectors["x_offset"], vectors["x_scale"], classes, y_offset, y_scale, names)


_PREPROCESSING_KEYS = ("task", "x_offset", "x_scale", "classes", "y_offset", "y_scale", "feature_names")


@dataclass(frozen=True)
class SavedModel:
    """What a model file holds, checked: what :func:`read` returns.

    ``weights[l]`` is W[l+1] (n_{l+1} × n_l) and ``biases[l]`` is b[l+1], both of ``dtype``;
    ``rng`` is the saved generator in its saved state (``None`` for a file without one).
    """

    layer_sizes: tuple[int, ...]
    activation: str
    output: str
    dtype: np.dtype
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    seed: int | None
    rng: np.random.Generator | None
    preprocessing: Preprocessing | None = None


def _arrays(
    layer_sizes: Sequence[int],
    activation: str,
    output: str,
    dtype: Any,
    weights: Sequence[np.ndarray],
    biases: Sequence[np.ndarray],
    seed: int | None,
    rng_state: dict | None,
    preprocessing: Preprocessing | None = None,
) -> dict[str, np.ndarray]:
    """The archive's arrays (copies, plain dtypes, no objects), each argument checked as :func:`read` would."""
    sizes = v.check_layer_sizes(layer_sizes)
    if not isinstance(activation, str) or activation not in ACTIVATION_NAMES:
        raise ValueError(
            f"activation: only a built-in activation's name can be saved (one of {sorted(ACTIVATION_NAMES)}), "
            f"got {activation!r}; a custom activation would mean pickling code"
        )
    if not isinstance(output, str) or output not in OUTPUT_NAMES:
        raise ValueError(f"output must be one of {sorted(OUTPUT_NAMES)}, got {output!r}")
    dtype = v.check_dtype(dtype)
    seed = v.check_seed(seed)
    if rng_state is not None and not isinstance(rng_state, dict):
        raise TypeError(f"rng_state must be a bit generator's state (a dict) or None, got {type(rng_state).__name__}")
    state_text = None
    if rng_state is not None:
        try:
            state_text = json.dumps(_jsonable(rng_state))
            _generator("rng_state", json.loads(state_text))  # what read would do with it
        except (ValueError, TypeError, RecursionError) as exc:
            raise ValueError(f"rng_state cannot be saved so that load restores it: {exc}") from None
    weights, biases = list(weights), list(biases)
    if len(weights) != len(sizes) - 1 or len(biases) != len(sizes) - 1:
        raise ValueError(
            f"expected {len(sizes) - 1} weight matrices and bias vectors for layer_sizes {list(sizes)}, "
            f"got {len(weights)} and {len(biases)}"
        )
    arrays: dict[str, np.ndarray] = {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "layer_sizes": np.array(sizes, dtype=np.int64),
        "activation": np.array(activation),
        "output": np.array(output),
        "dtype": np.array(dtype.name),
        "seed": np.array(json.dumps(seed)),
    }
    if state_text is not None:
        arrays["rng_state"] = np.array(state_text)
    for l, (W, b) in enumerate(zip(weights, biases)):
        for key, arr, shape in ((f"weights_{l}", W, (sizes[l + 1], sizes[l])), (f"biases_{l}", b, (sizes[l + 1],))):
            arr = np.array(arr)
            if arr.shape != shape or arr.dtype != dtype:
                raise ValueError(f"{key}: expected shape {shape} of {dtype}, got {arr.shape} of {arr.dtype}")
            arrays[key] = arr
    if preprocessing is not None:
        pre = _check_preprocessing(preprocessing, sizes[0], sizes[-1], "preprocessing: ")
        arrays.update(task=np.array(pre.task), x_offset=pre.x_offset, x_scale=pre.x_scale)
        if pre.task == "classification":
            arrays["classes"] = pre.classes
        else:
            arrays.update(y_offset=np.array(pre.y_offset), y_scale=np.array(pre.y_scale))
        if pre.feature_names is not None:
            arrays["feature_names"] = pre.feature_names
    return arrays


def _jsonable(obj: Any) -> Any:
    """A bit generator's state with its NumPy arrays and integers as JSON lists and ints
    (MT19937, Philox and SFC64 keep arrays; every generator's state setter takes the lists back)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(x) for k, x in obj.items()}
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (list, tuple)):
        return [_jsonable(x) for x in obj]
    return obj


def _write(fileobj, arrays: dict[str, np.ndarray]) -> None:
    """Write the archive into an open binary file (a separate step so tests can interrupt it)."""
    np.savez(fileobj, **arrays)


def save_arrays(
    path: str | os.PathLike,
    layer_sizes: Sequence[int],
    activation: str,
    output: str,
    dtype: Any,
    weights: Sequence[np.ndarray],
    biases: Sequence[np.ndarray],
    seed: int | None = None,
    rng_state: dict | None = None,
    preprocessing: Preprocessing | None = None,
) -> Path:
    """Write a network's description and parameters to ``path`` (used as given; ``.npz`` is the
    natural suffix), atomically; returns the path written.

    ``activation`` and ``output`` are built-in names; ``weights[l]``, ``biases[l]`` are W[l+1], b[l+1]
    of ``dtype`` with the shapes ``layer_sizes`` gives; ``seed`` the constructor's seed;
    ``rng_state`` a NumPy bit generator's ``state`` (``None``: the file has no ``rng_state``);
    ``preprocessing`` the scaling and labels prediction from raw data needs (``None``: not saved).
    Raises ``ValueError``/``TypeError`` for anything :func:`read` would refuse, before touching any file.
    """
    target = _target(path)
    arrays = _arrays(layer_sizes, activation, output, dtype, weights, biases, seed, rng_state, preprocessing)
    folder = target.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"path: no such folder {str(folder)!r} to save {str(target)!r} in")
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
    _remove_stale_temporaries(folder, target)
    return target


def _target(path: Any) -> Path:
    """``path`` as a ``Path`` to a file that may be written: refused early if empty or a folder."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    name = os.fspath(path)
    if not isinstance(name, str):
        raise TypeError(f"path must be a text path, got {type(name).__name__}")
    if name == "" or name.endswith(("/", os.sep)):
        raise ValueError(f"path must name a file, got {name!r}")
    if "\0" in name:
        raise ValueError("path contains a NUL character")
    target = Path(name)
    if target.is_dir():
        raise ValueError(f"path: {name!r} is a folder, not a file")
    return target


def _temporary_prefix(target: Path) -> str:
    return f".{target.name[:_TMP_NAME_CHARS]}."


def _remove_stale_temporaries(folder: Path, target: Path) -> None:
    """Delete temporary files a killed ``save`` of ``target`` left behind (their process is gone).

    A temporary file's name holds the saving process's id; one whose process still runs
    (another save, perhaps in progress) is left alone.
    """
    prefix = _temporary_prefix(target)
    try:
        entries = [e.name for e in os.scandir(folder) if e.name.startswith(prefix) and e.name.endswith(".tmp")]
    except OSError:  # pragma: no cover - an unreadable folder: nothing to clean
        return
    for entry in entries:
        parts = entry[len(prefix) : -len(".tmp")].split(".")
        if len(parts) != 2 or not parts[0].isdigit() or len(parts[1]) != 12:
            continue
        pid = int(parts[0])
        if pid == os.getpid() or _process_alive(pid):
            continue
        try:
            os.unlink(folder / entry)
        except OSError:  # pragma: no cover - gone already, or not ours to delete
            pass


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):  # someone else's process: alive
        return True
    return True


def _create_temporary(folder: Path, target: Path) -> tuple[int, str]:
    """A new, exclusive temporary file beside ``target``, with the permissions a plain open() gives.

    Created with mode 0666 so the OS applies the process umask itself (never changed
    here: changing it is not thread-safe); an existing model's mode is kept.
    """
    for _ in range(100):
        tmp = str(folder / f"{_temporary_prefix(target)}{os.getpid()}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:  # name the file being saved, not the temporary one
            raise type(exc)(exc.errno, f"path: cannot write {str(target)!r} ({exc.strerror})") from None
        try:
            os.chmod(tmp, target.stat().st_mode & 0o777)
        except FileNotFoundError:
            pass
        return fd, tmp
    raise FileExistsError(f"could not create a temporary file beside {target}")  # pragma: no cover


def _read(
    path: str, archive, key: str, shape: tuple[int, ...] | None = None, dtype: Any = None, limit: int = _SMALL_BYTES
) -> np.ndarray:
    """Member ``key`` of the archive, its declared size and ``.npy`` header checked before its data is read.

    With ``shape``/``dtype`` the header must declare exactly those (parameters); without, the
    member may hold at most ``limit`` bytes (:data:`_SMALL_BYTES`: text and integer scalars,
    ``layer_sizes``).
    """
    if key not in archive.files:
        raise ValueError(f"{path}: missing key {key!r}; not a fastbp model file, or a damaged one")
    member = key + ".npy" if key + ".npy" in archive.zip.namelist() else key
    try:
        info = archive.zip.getinfo(member)
        if shape is not None:
            limit = _HEADER_BYTES + int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize
        if info.file_size > limit:
            raise ValueError(f"{path}: key {key!r} declares {info.file_size} bytes, more than the {limit} it may hold")
        if (
            info.compress_type != zipfile.ZIP_STORED
            and info.file_size > _MAX_RATIO * info.compress_size + _HEADER_BYTES
        ):
            raise ValueError(
                f"{path}: key {key!r} would inflate {info.compress_size} bytes to {info.file_size} "
                f"(more than {_MAX_RATIO} times); refused as a compression bomb"
            )
        with archive.zip.open(member) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                got_shape, _, got_dtype = np.lib.format.read_array_header_1_0(f, max_header_size=_HEADER_BYTES)
            elif version == (2, 0):
                got_shape, _, got_dtype = np.lib.format.read_array_header_2_0(f, max_header_size=_HEADER_BYTES)
            else:
                raise ValueError(f"{path}: key {key!r} has an unsupported .npy version {version}")
        if got_dtype.hasobject:
            raise ValueError(f"{path}: key {key!r} cannot be read without unpickling (object array); refused")
        if shape is not None and tuple(got_shape) != tuple(shape):
            raise ValueError(f"{path}: key {key!r} has shape {tuple(got_shape)}, expected {shape} from layer_sizes")
        if dtype is not None and got_dtype != np.dtype(dtype):
            raise ValueError(f"{path}: key {key!r} has dtype {got_dtype}, expected {np.dtype(dtype)} (key 'dtype')")
        n_bytes = int(np.prod(got_shape, dtype=object)) * got_dtype.itemsize
        if n_bytes > limit:
            raise ValueError(f"{path}: key {key!r} declares {n_bytes} bytes of data, more than the {limit} it may hold")
        with archive.zip.open(member) as f:
            arr = np.lib.format.read_array(f, allow_pickle=False, max_header_size=_HEADER_BYTES)
    except ValueError as exc:
        msg = str(exc)
        raise ValueError(msg if msg.startswith(f"{path}: ") else f"{path}: key {key!r} is damaged ({msg})") from None
    except Exception as exc:  # zlib.error, BadZipFile, EOFError … of a corrupt member
        raise ValueError(f"{path}: key {key!r} is damaged ({type(exc).__name__}: {exc})") from None
    return arr


def _text(path: str, archive, key: str) -> str:
    arr = _read(path, archive, key)
    if arr.dtype.kind != "U" or arr.shape != ():
        raise ValueError(f"{path}: key {key!r} must be a text scalar, got {arr.dtype} of shape {arr.shape}")
    return str(arr[()])


def _json(path: str, archive, key: str) -> Any:
    text = _text(path, archive, key)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, too many digits, nesting too deep
        raise ValueError(f"{path}: key {key!r} is not valid JSON ({type(exc).__name__}: {str(exc)[:200]})") from None


def read(path: str | os.PathLike) -> SavedModel:
    """What a file written by :func:`save_arrays` holds, checked, bit for bit.

    Never unpickles.  Raises ``ValueError`` naming the file (and key) for a file
    that is not a fastbp model: corrupt or truncated, with object arrays, a
    missing key, inconsistent shapes or dtypes, non-finite parameters, an
    unknown format version, or an invalid seed or generator state;
    ``FileNotFoundError`` if there is no such file.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:  # np.load takes anything that is not a zip or .npy for a pickle
            magic = fh.read(6)
        numpy_file = magic.startswith((b"PK", b"\x93NUMPY"))
        archive = np.load(name, allow_pickle=False) if numpy_file else None
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{name}: not a readable .npz model file ({type(exc).__name__}: {exc})") from None
    if archive is None:
        raise ValueError(f"{name}: not a .npz file (a fastbp model is a NumPy .npz archive)")
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{name}: not a .npz archive (a single array); not a fastbp model file")
    with archive:
        version = _read(name, archive, "format_version")
        if version.shape != () or version.dtype.kind not in "iu":
            raise ValueError(
                f"{name}: key 'format_version' must be an integer scalar, got {version.dtype} {version.shape}"
            )
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
                arr = _read(name, archive, key, shape, dtype)
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
            raise ValueError(f"{name}: key 'seed' must be a non-negative integer or null, got {str(seed)[:80]!r}")
        if seed is not None:
            try:
                np.random.default_rng(seed)
            except Exception as exc:  # noqa: BLE001 - whatever NumPy's seeding refuses
                raise ValueError(f"{name}: key 'seed' is not a usable seed ({type(exc).__name__})") from None
        state = _json(name, archive, "rng_state") if "rng_state" in archive.files else None
        pre = _read_preprocessing(name, archive, sizes) if "task" in archive.files else None
        if pre is None and any(k in archive.files for k in _PREPROCESSING_KEYS):
            raise ValueError(f"{name}: holds scaling or labels but no key 'task'")
    rng = None if state is None else _generator(name, state)
    return SavedModel(sizes, activation, output, dtype, tuple(params[0::2]), tuple(params[1::2]), seed, rng, pre)


def _read_preprocessing(name: str, archive, sizes) -> Preprocessing:
    task = _text(name, archive, "task")
    if task not in TASKS:
        raise ValueError(f"{name}: key 'task' is {task!r}, not one of {TASKS}")
    keys = ("classes",) if task == "classification" else ("y_offset", "y_scale")
    stray = ("y_offset", "y_scale") if task == "classification" else ("classes",)
    for key in stray:
        if key in archive.files:
            raise ValueError(f"{name}: key {key!r} does not belong to a {task} model")
    values = {key: _read(name, archive, key) for key in ("x_offset", "x_scale", *keys)}
    if "feature_names" in archive.files:  # at most n_0 names of MAX_FEATURE_NAME characters (4 bytes each)
        limit = _HEADER_BYTES + sizes[0] * 4 * MAX_FEATURE_NAME
        values["feature_names"] = _read(name, archive, "feature_names", limit=limit)
    for key in ("y_offset", "y_scale"):
        if key in values and (values[key].shape != () or values[key].dtype.kind != "f"):
            raise ValueError(f"{name}: key {key!r} must be a float scalar, got {values[key].dtype} {values[key].shape}")
    return _check_preprocessing(Preprocessing(task, **values), sizes[0], sizes[-1], f"{name}: key ")


def _generator(name: str, state: Any) -> np.random.Generator:
    """A ``numpy.random.Generator`` in the saved state (a whitelisted NumPy bit generator)."""
    kind = state.get("bit_generator") if isinstance(state, dict) else None
    if not isinstance(kind, str) or kind not in _BIT_GENERATORS:
        raise ValueError(f"{name}: key 'rng_state' names an unknown bit generator {str(kind)[:80]!r}")
    bitgen = getattr(np.random, kind)()
    try:
        bitgen.state = state
        gen = np.random.Generator(bitgen)
        gen.random()  # a state the setter took but cannot draw from is refused here, not in fit
        bitgen.state = state
    except Exception as exc:  # noqa: BLE001 - ValueError, TypeError, KeyError, OverflowError, IndexError …
        raise ValueError(f"{name}: key 'rng_state' is not a valid {kind} state ({type(exc).__name__})") from None
    return np.random.Generator(bitgen)
