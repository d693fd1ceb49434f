"""Saved models: ``net.save(path)`` / ``fastbp.load(path)`` round-trip bit for bit, atomically, without pickle."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import fastbp
import fastbp.io

from .conftest import SOFTSIGN

X = np.random.default_rng(0).normal(size=(12, 3))
Y_SOFTMAX = np.eye(2)[np.arange(12) % 2]


def trained(dtype=np.float64, activation="relu", output="softmax", seed=3) -> fastbp.MLP:
    """A small network trained a little (one-hot targets suit all three outputs)."""
    net = fastbp.MLP([3, 5, 4, 2], activation=activation, output=output, dtype=dtype, seed=seed)
    net.fit(X, Y_SOFTMAX, epochs=2, batch_size=4)
    return net


def archive(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("seed", [3, None])
@pytest.mark.parametrize("output", ["softmax", "sigmoid", "identity"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_round_trip_is_bit_for_bit(tmp_path, dtype, output, seed):
    net = trained(dtype, "leaky_relu", output, seed)
    path = net.save(tmp_path / "model.npz")
    back = fastbp.load(path)
    assert back.params.tobytes() == net.params.tobytes()
    assert back.params.dtype == net.params.dtype
    assert (back.layer_sizes, back.activation.name, back.output, back.seed) == (
        net.layer_sizes,
        net.activation.name,
        net.output,
        net.seed,
    )
    assert back.rng.bit_generator.state == net.rng.bit_generator.state
    # The generator's state travels too: training on continues with the same shuffles, or stops at
    # the same step (seed=None draws any initial weights; one CI run drew weights that diverged in
    # per-example steps of 0.1 on the identity output, an outcome both copies must share)
    outcomes = []
    for model in (net, back):
        try:
            model.fit(X, Y_SOFTMAX, epochs=1, learning_rate=0.02)
            outcomes.append("trained")
        except fastbp.DivergenceError as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]
    assert back.params.tobytes() == net.params.tobytes()


def test_the_file_holds_the_documented_keys_and_no_objects(tmp_path):
    net = trained()
    data = archive(net.save(tmp_path / "m.npz"))
    assert set(data) == {
        "format_version",
        "layer_sizes",
        "activation",
        "output",
        "dtype",
        "seed",
        "rng_state",
        "weights_0",
        "biases_0",
        "weights_1",
        "biases_1",
        "weights_2",
        "biases_2",
    }
    assert all(a.dtype.kind != "O" for a in data.values())
    assert int(data["format_version"]) == fastbp.io.FORMAT_VERSION
    assert data["layer_sizes"].tolist() == [3, 5, 4, 2]
    assert str(data["activation"]) == "relu" and str(data["output"]) == "softmax" and str(data["dtype"]) == "float64"
    assert np.array_equal(data["weights_1"], net.weights[1]) and np.array_equal(data["biases_2"], net.biases[2])
    assert json.loads(str(data["rng_state"])) == net.rng.bit_generator.state


def test_save_replaces_an_existing_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "m.npz"
    trained(seed=1).save(path)
    second = trained(seed=2)
    second.save(path)
    assert fastbp.load(path).params.tobytes() == second.params.tobytes()
    assert os.listdir(tmp_path) == ["m.npz"]


def test_an_interrupted_save_keeps_the_previous_model(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    first = trained(seed=1)
    first.save(path)
    before = path.read_bytes()

    def write_half_then_fail(fileobj, arrays):
        fileobj.write(b"PK\x03\x04 half an archive")
        raise KeyboardInterrupt  # the process is interrupted mid-write

    monkeypatch.setattr(fastbp.io, "_write", write_half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        trained(seed=2).save(path)
    assert path.read_bytes() == before
    assert fastbp.load(path).params.tobytes() == first.params.tobytes()
    assert os.listdir(tmp_path) == ["m.npz"]  # the temporary file is cleaned up


def test_a_failed_rename_keeps_the_previous_model(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    trained(seed=1).save(path)
    before = path.read_bytes()

    def no_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(fastbp.io.os, "replace", no_replace)
    with pytest.raises(OSError, match="disk full"):
        trained(seed=2).save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]


def test_custom_activations_are_refused_at_save_time(tmp_path):
    path = tmp_path / "m.npz"
    trained().save(path)
    before = path.read_bytes()
    net = fastbp.MLP([3, 4, 1], activation=SOFTSIGN, seed=0)
    with pytest.raises(ValueError, match="activation: a custom activation"):
        net.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]


# ------------------------------------------------------------------ refused files


def write(path, data):
    with open(path, "wb") as f:
        np.savez(f, **data)
    return path


def good(tmp_path):
    return archive(trained().save(tmp_path / "good.npz"))


def _drop(key):
    return lambda d: {k: v for k, v in d.items() if k != key}


def _set(key, value):
    return lambda d: {**d, key: value}


BAD_FILES = {
    **{
        f"missing {k}": (_drop(k), f"missing key '{k}'")
        for k in ["format_version", "layer_sizes", "activation", "output", "dtype", "weights_0", "biases_2"]
    },
    "object array": (
        _set("activation", np.array(["relu"], dtype=object)),
        "key 'activation' cannot be read without unpickling",
    ),
    "object weights": (
        _set("weights_0", np.empty((5, 3), dtype=object)),
        "key 'weights_0' cannot be read without unpickling",
    ),
    "format_version 2": (_set("format_version", np.array(2)), "unknown format_version 2"),
    "format_version 0": (_set("format_version", np.array(0)), "unknown format_version 0"),
    "format_version text": (_set("format_version", np.array("1")), "key 'format_version' must be an integer scalar"),
    "weights shape": (_set("weights_1", np.zeros((4, 4))), r"key 'weights_1' has shape \(4, 4\), expected \(4, 5\)"),
    "biases shape": (_set("biases_0", np.zeros(4)), r"key 'biases_0' has shape \(4,\), expected \(5,\)"),
    "layer_sizes short": (_set("layer_sizes", np.array([3, 5, 4])), "holds 3 layers' parameters but layer_sizes has 2"),
    "layer_sizes mismatch": (_set("layer_sizes", np.array([3, 6, 4, 2])), "key 'weights_0' has shape"),
    "layer_sizes zero": (
        _set("layer_sizes", np.array([3, 0, 4, 2])),
        "key 'layer_sizes': layer_sizes must be positive",
    ),
    "layer_sizes float": (
        _set("layer_sizes", np.array([3.0, 5, 4, 2])),
        "key 'layer_sizes' must be a vector of integers",
    ),
    "dtype mismatch": (_set("dtype", np.array("float32")), "key 'weights_0' has dtype float64, expected float32"),
    "dtype float16": (_set("dtype", np.array("float16")), "key 'dtype' is 'float16'"),
    "activation unknown": (_set("activation", np.array("swish")), "key 'activation' is 'swish'"),
    "activation custom": (_set("activation", np.array("custom")), "key 'activation' is 'custom'"),
    "output unknown": (_set("output", np.array("hinge")), "key 'output' is 'hinge'"),
    "output not text": (_set("output", np.array(1)), "key 'output' must be a text scalar"),
    "NaN weight": (lambda d: {**d, "weights_2": np.full_like(d["weights_2"], np.nan)}, "key 'weights_2' contains NaN"),
    "rng_state not JSON": (_set("rng_state", np.array("{oops")), "key 'rng_state' is not valid JSON"),
    "rng_state unknown generator": (
        _set("rng_state", np.array('{"bit_generator": "os.system"}')),
        "unknown bit generator",
    ),
    "rng_state broken": (
        _set("rng_state", np.array('{"bit_generator": "PCG64", "state": 3}')),
        "key 'rng_state' is not a valid PCG64 state",
    ),
    "seed negative": (_set("seed", np.array("-4")), "key 'seed' must be a non-negative integer"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_files_are_refused_naming_file_and_key(tmp_path, case):
    change, match = BAD_FILES[case]
    path = write(tmp_path / "bad.npz", change(good(tmp_path)))
    with pytest.raises(ValueError, match=match) as info:
        fastbp.load(path)
    assert str(path) in str(info.value)


def test_a_file_whose_keys_pass_but_whose_network_cannot_be_built_is_refused_naming_it(tmp_path):
    """Each key valid on its own, the combination not (softmax on one output unit): the MLP's own
    error, prefixed with the file, as ``load`` promises for a file that is not a fastbp model."""
    net = fastbp.MLP([3, 2, 1], output="sigmoid", seed=0)
    data = archive(net.save(tmp_path / "one.npz"))
    path = write(tmp_path / "softmax1.npz", {**data, "output": np.array("softmax")})
    with pytest.raises(ValueError, match="softmax") as info:
        fastbp.load(path)
    assert str(info.value).startswith(f"{path}: ")


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_truncated_files_are_refused(tmp_path, keep):
    path = trained().save(tmp_path / "m.npz")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match=str(path)):
        fastbp.load(path)


@pytest.mark.parametrize(
    "content",
    [b"", b"not a model at all", b"\x80\x04\x95 pickle-looking bytes", b"PK\x03\x04" + bytes(range(256)) * 4],
    ids=["empty", "text", "pickle", "broken zip"],
)
def test_corrupt_files_are_refused(tmp_path, content):
    path = tmp_path / "m.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=str(path)) as info:
        fastbp.load(path)
    if not content.startswith(b"PK"):  # neither a zip nor a .npy: said so, with no word of pickles
        assert "not a .npz file" in str(info.value) and "pickle" not in str(info.value)


def test_a_flipped_byte_in_a_member_is_refused(tmp_path):
    path = trained().save(tmp_path / "m.npz")
    data = bytearray(path.read_bytes())
    start = data.find(b"weights_0.npy") + len(b"weights_0.npy") + 80  # inside that member's data
    data[start] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="weights_0"):
        fastbp.load(path)


def test_a_plain_npy_file_is_refused(tmp_path):
    path = tmp_path / "m.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(ValueError, match="not a .npz archive"):
        fastbp.load(path)


def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastbp.load(tmp_path / "nothing.npz")


def test_saved_file_gets_the_permissions_of_a_plain_open_and_keeps_an_existing_ones(tmp_path):
    import os
    import stat

    net = fastbp.MLP([2, 3, 1], seed=0)
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"")  # what open() gives under this process's umask
    path = tmp_path / "m.npz"
    net.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    os.chmod(path, 0o640)
    net.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz", "plain.bin"]  # no temporary left


# ------------------------------------------- the file format alone: fastbp.io knows no network


def _description(net):
    return dict(
        layer_sizes=net.layer_sizes,
        activation=net.activation.name,
        output=net.output,
        dtype=net.dtype,
        weights=net.weights,
        biases=net.biases,
    )


def test_read_returns_what_save_arrays_wrote(tmp_path):
    net = trained(np.float32, "tanh", "sigmoid", seed=5)
    path = fastbp.io.save_arrays(tmp_path / "m.npz", **_description(net), seed=5, rng_state=net.rng.bit_generator.state)
    saved = fastbp.io.read(path)
    assert isinstance(saved, fastbp.io.SavedModel)
    assert (saved.layer_sizes, saved.activation, saved.output, saved.dtype, saved.seed) == (
        (3, 5, 4, 2),
        "tanh",
        "sigmoid",
        np.dtype(np.float32),
        5,
    )
    for got, want in zip(saved.weights + saved.biases, net.weights + net.biases):
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    assert saved.rng.bit_generator.state == net.rng.bit_generator.state


def test_a_file_without_rng_state_loads_with_the_seeds_generator(tmp_path):
    net = trained(seed=7)
    path = fastbp.io.save_arrays(tmp_path / "m.npz", **_description(net), seed=7)  # no rng_state
    assert "rng_state" not in archive(path) and fastbp.io.read(path).rng is None
    back = fastbp.load(path)
    assert back.params.tobytes() == net.params.tobytes()
    fresh = fastbp.MLP([3, 5, 4, 2], activation="relu", output="softmax", seed=7)  # the same draws after init
    assert back.rng.bit_generator.state == fresh.rng.bit_generator.state


BAD_ARGUMENTS = {
    "custom activation name": (dict(activation="softsign"), ValueError, "only a built-in activation"),
    "activation not text": (dict(activation=3), ValueError, "only a built-in activation"),
    "unknown output": (dict(output="hinge"), ValueError, "output must be one of"),
    "float16": (dict(dtype=np.float16), ValueError, "dtype must be float32 or float64"),
    "layer_sizes": (dict(layer_sizes=[3, 0, 4, 2]), ValueError, "layer_sizes must be positive"),
    "layer count": (dict(layer_sizes=[3, 5, 2]), ValueError, "expected 2 weight matrices"),
    "weights shape": (dict(layer_sizes=[3, 6, 4, 2]), ValueError, r"weights_0: expected shape \(6, 3\)"),
    "weights dtype": (dict(dtype=np.float32), ValueError, "weights_0: expected shape .* of float32"),
    "seed": (dict(seed=-1), ValueError, "seed must be a non-negative integer"),
    "seed type": (dict(seed="3"), TypeError, "seed must be a non-negative integer"),
    "rng_state type": (dict(rng_state="PCG64"), TypeError, "rng_state must be a bit generator's state"),
}


@pytest.mark.parametrize("case", BAD_ARGUMENTS)
def test_save_arrays_refuses_what_read_would_refuse_before_touching_the_file(tmp_path, case):
    change, error, match = BAD_ARGUMENTS[case]
    path = tmp_path / "m.npz"
    trained().save(path)
    before = path.read_bytes()
    with pytest.raises(error, match=match):
        fastbp.io.save_arrays(path, **{**_description(trained()), **change})
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.npz"]


def test_load_is_networks_and_io_knows_no_network():
    import ast

    import fastbp.network

    assert fastbp.load is fastbp.network.load
    source = open(fastbp.io.__file__).read()
    imported = {a.name for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom) for a in n.names}
    imported |= {n.module for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom) and n.module}
    assert "network" not in imported and "MLP" not in source


def _pre(task="classification", n_x=3, classes=("cat", "dog"), **change):
    base = dict(task=task, x_offset=np.arange(n_x) * 1.5, x_scale=np.full(n_x, 2.0))
    if task == "classification":
        base.update(classes=None if classes is None else np.array(classes))
    else:
        base.update(y_offset=10.0, y_scale=3.0)
    return fastbp.io.Preprocessing(**{**base, **change})


@pytest.mark.parametrize(
    "sizes, pre",
    [
        ([3, 4, 1], _pre(classes=("cat", "dog"))),  # one sigmoid unit: two labels
        ([3, 4, 3], _pre(classes=(2.0, 5.0, 7.5))),  # numeric labels, one per output unit
        ([3, 4, 1], _pre("regression")),
        ([3, 4, 1], _pre(feature_names=np.array(["height", "wéight", "a b"]))),
    ],
    ids=["binary-text", "three-numeric", "regression", "feature-names"],
)
def test_scaling_and_labels_round_trip(tmp_path, sizes, pre):
    net = fastbp.MLP(sizes, output="identity" if pre.task == "regression" else "sigmoid", seed=0)
    net.preprocessing = pre
    path = net.save(tmp_path / "m.npz")
    data = archive(path)
    assert str(data["task"]) == pre.task and all(a.dtype.kind != "O" for a in data.values())
    back = fastbp.load(path).preprocessing
    assert back.task == pre.task
    assert np.array_equal(back.x_offset, pre.x_offset) and np.array_equal(back.x_scale, pre.x_scale)
    if pre.task == "classification":
        assert back.classes.tolist() == list(pre.classes) and back.classes.dtype == np.asarray(pre.classes).dtype
        assert "y_offset" not in data
    else:
        assert (back.y_offset, back.y_scale) == (10.0, 3.0) and "classes" not in data
    if pre.feature_names is None:
        assert back.feature_names is None and "feature_names" not in data
    else:
        assert back.feature_names.tolist() == pre.feature_names.tolist()
    assert fastbp.load(trained().save(tmp_path / "bare.npz")).preprocessing is None  # optional keys


BAD_PREPROCESSING = {
    "task": (_pre(task="ranking"), "'task' must be one of"),
    "x_scale zero": (_pre(x_scale=np.array([1.0, 0.0, 1.0])), "'x_scale' must be > 0"),
    "x_offset length": (_pre(x_offset=np.zeros(2)), "'x_offset' must be a numeric vector of 3 values"),
    "x_offset nan": (_pre(x_offset=np.array([0.0, np.nan, 0.0])), "'x_offset' contains NaN"),
    "classes count": (_pre(classes=("a", "b", "c")), "'classes' must be a vector of 1 or 2"),
    "classes repeated": (_pre(classes=("a", "a")), "'classes' repeats a label"),
    "classes missing": (_pre(classes=None), "'classes' is needed"),
    "y_scale": (_pre("regression", y_scale=0.0), "'y_scale' finite and > 0"),
    "feature_names count": (_pre(feature_names=np.array(["a", "b"])), "'feature_names' must be a vector of 3"),
    "feature_names numbers": (_pre(feature_names=np.arange(3.0)), "'feature_names' must be a vector of 3 strings"),
    "feature_names repeated": (_pre(feature_names=np.array(["a", "b", "a"])), "'feature_names' repeats a name"),
    "feature_names empty": (_pre(feature_names=np.array(["a", "", "c"])), "non-empty names of at most"),
    "feature_names long": (_pre(feature_names=np.array(["a", "b", "c" * 257])), "non-empty names of at most 256"),
}


@pytest.mark.parametrize("case", BAD_PREPROCESSING)
def test_bad_scaling_or_labels_are_refused_at_save_and_at_read(tmp_path, case):
    pre, match = BAD_PREPROCESSING[case]
    net = fastbp.MLP([3, 4, 1], seed=0)
    net.preprocessing = pre
    with pytest.raises(ValueError, match=match):
        net.save(tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []
    # the same content written around save_arrays' checks is refused by read, naming the file and key
    good = fastbp.MLP([3, 4, 1], seed=0)
    arrays = dict(archive(good.save(tmp_path / "good.npz")))
    arrays.update(task=np.array(pre.task), x_offset=np.asarray(pre.x_offset), x_scale=np.asarray(pre.x_scale))
    if pre.classes is not None:
        arrays["classes"] = np.asarray(pre.classes)
    if pre.task == "regression":
        arrays.update(y_offset=np.array(float(pre.y_offset)), y_scale=np.array(float(pre.y_scale)))
    if pre.feature_names is not None:
        arrays["feature_names"] = np.asarray(pre.feature_names)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="bad.npz: "):
        fastbp.io.read(tmp_path / "bad.npz")


def test_scaling_keys_without_task_are_refused(tmp_path):
    arrays = dict(archive(trained().save(tmp_path / "m.npz")))
    np.savez(tmp_path / "half.npz", **arrays, x_offset=np.zeros(3))
    with pytest.raises(ValueError, match="holds scaling or labels but no key 'task'"):
        fastbp.io.read(tmp_path / "half.npz")
