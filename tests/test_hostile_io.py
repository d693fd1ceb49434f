"""Saved models under attack (issue 14): ``load`` refuses crafted files in bounded time and memory
with a ``ValueError`` naming the file and the key; ``save`` works for every legal path and every
generator ``load`` accepts, and cleans up after itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

import fastbp
from fastbp import MLP


@pytest.fixture
def saved(tmp_path):
    net = MLP([3, 4, 1], seed=0)
    return net, net.save(tmp_path / "m.npz")


def _craft(saved_path, tmp_path, name, compress=False, **replace):
    with np.load(saved_path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(replace)
    path = tmp_path / name
    (np.savez_compressed if compress else np.savez)(path, **arrays)
    return path


def _refused_quickly(path, key, match=""):
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(ValueError, match=f"{key}.*{match}") as info:
            fastbp.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value)
    assert time.perf_counter() - t0 < 2.0 and peak < 16 * 2**20, (time.perf_counter() - t0, peak)


@pytest.mark.parametrize(
    "key, value",
    [
        ("weights_0", np.zeros((8000, 8000))),  # 512 MB inflated, 0.5 MB stored (3.2 GB took 18 s to write)
        ("biases_0", np.zeros(400_000_000, np.uint8)),
        ("activation", np.array("x" * 3_000_000)),
        ("layer_sizes", np.zeros(50_000_000, np.int64)),
        ("rng_state", np.array(" " * 5_000_000)),
    ],
)
def test_a_member_that_would_inflate_far_beyond_its_place_is_refused_before_it_is_read(saved, tmp_path, key, value):
    path = _craft(saved[1], tmp_path, "bomb.npz", compress=True, **{key: value})
    assert os.path.getsize(path) < 8 * 2**20
    _refused_quickly(path, repr(key))


def test_a_parameter_of_the_wrong_shape_or_dtype_is_refused_from_its_header(saved, tmp_path):
    _refused_quickly(_craft(saved[1], tmp_path, "a.npz", weights_0=np.zeros((3, 4))), "'weights_0'", "shape")
    _refused_quickly(
        _craft(saved[1], tmp_path, "b.npz", weights_0=np.zeros((4, 3), np.float32)), "'weights_0'", "dtype"
    )


@pytest.mark.parametrize(
    "key, text",
    [
        ("rng_state", "[" * 200_000 + "]" * 200_000),  # RecursionError in json
        ("seed", "[" * 200_000),
        ("seed", "9" * 5000),  # more digits than Python converts
        ("rng_state", json.dumps({"bit_generator": "PCG64", "state": {"state": 2**300, "inc": 1}})),  # OverflowError
        ("rng_state", json.dumps({"bit_generator": "MT19937", "state": {"key": [1, 2], "pos": 5}})),  # IndexError
        ("rng_state", json.dumps({"bit_generator": ["PCG64"], "state": {}})),
        ("rng_state", json.dumps({"bit_generator": "MT19937", "state": {"key": list(range(624)), "pos": 10**30}})),
        ("seed", "1e999"),
        ("seed", "-3"),
    ],
)
def test_a_crafted_seed_or_generator_state_is_a_value_error_naming_file_and_key(saved, tmp_path, key, text):
    path = _craft(saved[1], tmp_path, "c.npz", **{key: np.array(text)})
    _refused_quickly(path, repr(key))


@pytest.mark.parametrize("kind", ["PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937"])
def test_every_generator_load_accepts_can_be_saved_and_continues_the_same_draws(tmp_path, kind):
    net = MLP([3, 4, 1], seed=0)
    net.rng = np.random.Generator(getattr(np.random, kind)(7))
    net.rng.random(5)
    back = fastbp.load(net.save(tmp_path / "g.npz"))
    assert type(back.rng.bit_generator).__name__ == kind
    np.testing.assert_array_equal(back.rng.random(10), net.rng.random(10))


def test_a_generator_load_would_refuse_is_refused_by_save_before_any_file(tmp_path):
    from fastbp.io import save_arrays

    net = MLP([3, 4, 1], seed=0)
    with pytest.raises(ValueError, match="^rng_state"):
        save_arrays(
            tmp_path / "x.npz", net.layer_sizes, "tanh", "sigmoid", net.dtype, net.weights, net.biases, 0, {"a": 1}
        )
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("length", [200, 232, 240, 251])
def test_save_to_a_long_name_works(tmp_path, length):
    net = MLP([3, 4, 1], seed=0)
    path = tmp_path / ("m" * (length - 4) + ".npz")
    assert len(path.name) == length
    back = fastbp.load(net.save(path))
    assert back.params.tobytes() == net.params.tobytes()
    assert sorted(os.listdir(tmp_path)) == [path.name]


@pytest.mark.parametrize("bad, error, match", [("", ValueError, "^path must name a file"), (3, TypeError, "^path")])
def test_save_to_no_name_is_refused_naming_path(tmp_path, bad, error, match):
    with pytest.raises(error, match=match):
        MLP([3, 4, 1], seed=0).save(bad)


def test_save_over_a_folder_or_into_a_missing_one_is_refused_before_any_file(tmp_path):
    net = MLP([3, 4, 1], seed=0)
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(ValueError, match="^path: .* is a folder"):
        net.save(tmp_path / "d.npz")
    with pytest.raises(FileNotFoundError, match="^path: no such folder"):
        net.save(tmp_path / "missing" / "m.npz")
    assert os.listdir(tmp_path) == ["d.npz"] and os.listdir(tmp_path / "d.npz") == []


def test_save_removes_temporaries_a_killed_save_left_behind_and_only_those(tmp_path):
    net = MLP([3, 4, 1], seed=0)
    target = tmp_path / "m.npz"
    code = (
        "import os, sys, fastbp, fastbp.io as io\n"
        "def killed(f, arrays):\n"
        "    f.write(b'partial'); f.flush(); os._exit(9)\n"
        "io._write = killed\n"
        f"fastbp.MLP([3, 4, 1], seed=0).save({str(target)!r})\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
    assert out.returncode == 9, out.stderr
    left = [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    assert len(left) == 1 and not target.exists()  # the kill left its temporary behind …
    alive = tmp_path / f".m.npz.{os.getppid()}.abcdefabcdef.tmp"  # … a live process's is not stale
    alive.write_bytes(b"in progress")
    net.save(target)  # … and the next save of that model removes it
    assert sorted(os.listdir(tmp_path)) == sorted(["m.npz", alive.name])
    assert fastbp.load(target).params.tobytes() == net.params.tobytes()


def test_a_folder_that_refuses_the_file_is_an_os_error_naming_the_target_not_the_temporary(tmp_path, monkeypatch):
    real_open = os.open

    def refuse_temporaries(path, *args, **kwargs):
        if str(path).endswith(".tmp"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse_temporaries)
    with pytest.raises(PermissionError, match=r"^\[Errno 13\] path: cannot write .*m\.npz") as info:
        MLP([3, 4, 1], seed=0).save(tmp_path / "m.npz")
    assert ".tmp" not in str(info.value) and os.listdir(tmp_path) == []
