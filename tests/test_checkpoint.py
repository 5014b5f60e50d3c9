"""Tests of labkit.checkpoint with broken and hostile files: every one gives a CheckpointError naming the file
(one line from the command line, exit status 2), never a traceback, a NaN melody or numpy's pickle advice."""
from __future__ import annotations

import io
import json
import os
import time
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from labkit import cli
from labkit._common import STALE_TEMPORARY_SECONDS, atomic_write, read_npz, remove_stale_temporaries
from labkit.checkpoint import load_checkpoint, load_melody_model, load_model, read_meta, save_checkpoint, save_model
from labkit.encoding import MelodyEncoding
from labkit.errors import CheckpointError
from labkit.models import ModelConfig, make_model

SMALL = ModelConfig(vocab_size=MelodyEncoding().vocab_size, embed_dim=4, hidden_size=8, num_layers=1)
#: A process id no system hands out (Linux's pid_max is at most 2**22).
DEAD_PID = 999_999_999


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A small melody model's checkpoint and its arrays (name -> array), to break in many ways."""
    path = save_model(tmp_path_factory.mktemp("ckpt") / "good.npz", make_model(SMALL, 0), SMALL)
    return path, read_npz(path)


def write_npz(path, arrays, *, allow_pickle=False):
    with open(path, "wb") as handle:
        np.savez(handle, allow_pickle=allow_pickle, **arrays)
    return path


def with_meta(arrays, meta) -> dict:
    return {**arrays, "__meta__": np.frombuffer(json.dumps(meta).encode(), np.uint8)}


def generate(tmp_path, capsys, checkpoint):
    """``python -m labkit generate --checkpoint ...``: (exit status, stderr lines)."""
    try:
        status = cli.main(["generate", "--checkpoint", str(checkpoint), "--num", "1", "--length", "8",
                           "--out", str(tmp_path / "out")])
    except SystemExit as exc:
        status = exc.code
    return status, capsys.readouterr().err.strip().splitlines()


def assert_one_clean_line(lines, name):
    assert len(lines) == 1 and lines[0].startswith("labkit: ") and name in lines[0], lines
    assert "allow_pickle" not in lines[0] and "Traceback" not in lines[0]


# --- broken files -------------------------------------------------------------------------------

def test_the_good_checkpoint_loads(good):
    path, _ = good
    model, config = load_melody_model(path, encoding=MelodyEncoding())
    assert config == SMALL and model.vocab_size == SMALL.vocab_size


@pytest.mark.parametrize("damage, words", [
    (lambda raw: b"", "not a complete .npz archive"),
    (lambda raw: raw[: len(raw) // 2], "not a complete .npz archive"),
    (lambda raw: b"\x93NUMPY" + raw[6:200], "not a complete .npz archive"),
    (lambda raw: os.urandom(64), "not a complete .npz archive"),
    (lambda raw: b"\x80\x04K\x01.", "not a complete .npz archive"),         # a pickle: numpy would advise allow_pickle
])
def test_unreadable_files_name_the_file(good, tmp_path, capsys, damage, words):
    path, _ = good
    bad = tmp_path / "bad.npz"
    bad.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match=words) as info:
        load_model(bad)
    assert info.value.path == str(bad) and "allow_pickle" not in str(info.value)
    status, lines = generate(tmp_path, capsys, bad)
    assert status == 2
    assert_one_clean_line(lines, "bad.npz")
    assert not (tmp_path / "out").exists()


def test_a_npy_file_is_no_checkpoint(tmp_path):
    with open(tmp_path / "a.npz", "wb") as handle:    # np.load would return an array, not an archive
        np.save(handle, np.zeros(3))
    with pytest.raises(CheckpointError, match="not a complete .npz archive") as info:
        read_meta(tmp_path / "a.npz")
    assert info.value.path == str(tmp_path / "a.npz")


def test_an_object_array_is_not_a_labkit_file(good, tmp_path, capsys):
    _, arrays = good
    bad = write_npz(tmp_path / "objects.npz", {**arrays, "params/extra": np.array([{"x": 1}], dtype=object)},
                    allow_pickle=True)
    with pytest.raises(CheckpointError, match="Python objects, which labkit never loads") as info:
        read_meta(bad)
    assert "allow_pickle" not in str(info.value) and "unsafe" not in str(info.value)
    status, lines = generate(tmp_path, capsys, bad)
    assert status == 2
    assert_one_clean_line(lines, "objects.npz")


@pytest.mark.parametrize("meta, words", [
    ([1, 2, 3], "JSON list, not an object"),
    ("text", "JSON str, not an object"),
    ({"format_version": 1, "model_config": [1]}, "model_config is invalid"),
    ({"format_version": 1, "model_config": {**SMALL.to_dict(), "hidden_size": 10 ** 6}}, "more than the file"),
    ({"format_version": 99}, "format version 99"),
])
def test_bad_metadata_names_the_file(good, tmp_path, capsys, meta, words):
    _, arrays = good
    bad = write_npz(tmp_path / "meta.npz", with_meta({k: v for k, v in arrays.items() if k != "__meta__"}, meta))
    with pytest.raises(CheckpointError, match=words) as info:
        load_model(bad)
    assert info.value.path == str(bad)
    status, lines = generate(tmp_path, capsys, bad)
    assert status == 2
    assert_one_clean_line(lines, "meta.npz")


def test_metadata_that_is_not_text(good, tmp_path):
    _, arrays = good
    bad = write_npz(tmp_path / "m.npz", {**arrays, "__meta__": np.array([1.5, 2.5])})
    with pytest.raises(CheckpointError, match="metadata is corrupt"):
        read_meta(bad)
    bad = write_npz(tmp_path / "m.npz", {**arrays, "__meta__": np.frombuffer(b"\xff\xfe{", np.uint8)})
    with pytest.raises(CheckpointError, match="metadata is corrupt"):
        read_meta(bad)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_and_infinity_are_refused_when_a_checkpoint_loads(good, tmp_path, capsys, value):
    _, arrays = good
    name = next(k for k in arrays if k.startswith("params/") and arrays[k].size > 1)
    broken = arrays[name].copy()
    broken.flat[1] = value
    bad = write_npz(tmp_path / "nan.npz", {**arrays, name: broken})
    with pytest.raises(CheckpointError, match=f"{name!r} holds NaN or infinite values"):
        load_model(bad)
    status, lines = generate(tmp_path, capsys, bad)     # before: one-note melodies and exit status 0
    assert status == 2
    assert_one_clean_line(lines, "nan.npz")
    assert not (tmp_path / "out").exists()


def test_a_resized_array_names_it(good, tmp_path):
    _, arrays = good
    name = next(k for k in arrays if k.startswith("params/") and arrays[k].ndim == 2)
    bad = write_npz(tmp_path / "resized.npz", {**arrays, name: arrays[name][:-1]})
    with pytest.raises(CheckpointError, match="has shape"):
        load_model(bad)


def test_a_header_promising_more_than_the_file_holds(tmp_path):
    """A crafted .npy header (a terabyte of float64) is refused before anything is allocated."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (2 ** 37,)})
    bad = tmp_path / "huge.npz"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("params/x.npy", b"\x93NUMPY\x01\x00" + header.getvalue()[8:] + b"\0" * 64)
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match="truncated"):
        read_meta(bad)
    assert time.perf_counter() - started < 1


def test_vocabulary_mismatch_names_the_checkpoint(tmp_path, capsys):
    other = ModelConfig(vocab_size=10, embed_dim=4, hidden_size=8, num_layers=1)
    path = save_model(tmp_path / "ten_tokens.npz", make_model(other, 0), other)
    with pytest.raises(CheckpointError, match="vocabulary of 10 tokens") as info:
        load_melody_model(path, encoding=MelodyEncoding())
    assert info.value.path == str(path)
    assert load_melody_model(path)[1] == other       # without an encoding, any model loads
    status, lines = generate(tmp_path, capsys, path)
    assert status == 2
    assert_one_clean_line(lines, "ten_tokens.npz")


def test_a_folder_is_no_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="folder"):
        read_meta(tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        load_checkpoint(tmp_path / "none.npz", {})


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_checkpoints_raise_only_checkpoint_errors(good, data):
    """Random byte changes, cuts and insertions: the model loads or CheckpointError says why."""
    path, _ = good
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        kind = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if kind == "flip":
            raw[at] ^= data.draw(st.integers(1, 255))
        elif kind == "cut":
            del raw[at:at + data.draw(st.integers(1, 64))]
        else:
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=16))
    target = path.with_name("mutated.npz")
    target.write_bytes(bytes(raw))
    try:
        load_model(target)
    except CheckpointError as error:
        assert "allow_pickle" not in str(error) and "\n" not in str(error)


# --- temporary files of killed saves ------------------------------------------------------------

def test_a_save_removes_a_killed_saves_temporary_file_and_nothing_else(tmp_path):
    target = tmp_path / "c.npz"
    dead = tmp_path / f".c.npz.{DEAD_PID}.k1ll3d.tmp"
    live = tmp_path / f".c.npz.{os.getppid()}.w0rk1ng.tmp"          # a running writer's file stays
    old = tmp_path / ".c.npz.abc_123.tmp"                             # no process id: removed when old
    young = tmp_path / ".c.npz.xyz_789.tmp"
    others = [tmp_path / f".d.npz.{DEAD_PID}.x.tmp", tmp_path / "c.npz.tmp", tmp_path / f".c.npz.{DEAD_PID}.x.bak"]
    for p in [dead, live, old, young, *others]:
        p.write_bytes(b"half a checkpoint")
    os.utime(old, (time.time() - 2 * STALE_TEMPORARY_SECONDS,) * 2)
    save_checkpoint(target, {"w": {"a": np.ones(3)}}, {"step": 1})
    assert not dead.exists() and not old.exists()
    assert live.exists() and young.exists() and all(p.exists() for p in others)
    assert read_meta(target)["step"] == 1


def test_atomic_write_names_its_temporary_file_with_its_process_id(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(os.path.basename(src))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    atomic_write(tmp_path / "x.bin", b"1")
    assert seen[0].startswith(f".x.bin.{os.getpid()}.") and seen[0].endswith(".tmp")
    assert remove_stale_temporaries(tmp_path / "x.bin") == []
