"""Issue 16: the batch commands against hostile folders and outputs.

Every entry of a folder (file, folder, link) gets exactly one line, every good file keeps its
result whatever its neighbours are (an undecodable name, random bytes, a truncated file, a folder
named ``x.mid``, dangling and looping links), and every output location is checked before any
work, written atomically and replaced as a whole set on a re-run. Crafted files are built here.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labkit._common import display_name, file_mode, find_midi_files
from labkit.checkpoint import save_model
from labkit.cli import main
from labkit.melody import Melody, melody_to_sequence
from labkit.midi_io import write_midi
from labkit.models import ModelConfig, make_model

BAD_NAME = os.fsdecode(b"bad\xff.mid")          # not UTF-8: 'bad\udcff.mid' in Python
TINY = ModelConfig(embed_dim=8, hidden_size=16, num_layers=1, dropout=0.0)


def scale(start=60, n=12):
    return Melody.from_notes(np.arange(start, start + n), np.arange(n) * 2, np.arange(n) * 2 + 2)


@functools.cache
def _good_bytes() -> bytes:
    """A good MIDI file: a 16-note scale (made once)."""
    with tempfile.TemporaryDirectory() as tmp:
        return write_midi(melody_to_sequence(scale(60, 16)), Path(tmp) / "g.mid").read_bytes()


@pytest.fixture
def good_bytes() -> bytes:
    return _good_bytes()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("ckpt") / "tiny.npz", make_model(TINY, 1), TINY)


@pytest.fixture
def hostile(tmp_path, good_bytes) -> Path:
    """Four good files (one with an undecodable name, one .kar) beside five bad entries."""
    d = tmp_path / "songs"
    (d / "nested").mkdir(parents=True)
    (d / "good.mid").write_bytes(good_bytes)
    (d / "nested" / "Two.MID").write_bytes(good_bytes)
    (d / BAD_NAME).write_bytes(good_bytes)
    (d / "karaoke.kar").write_bytes(good_bytes)
    (d / "random.mid").write_bytes(bytes(range(256)) * 3)
    (d / "truncated.mid").write_bytes(good_bytes[: len(good_bytes) // 2])
    (d / "x.mid").mkdir()
    (d / "dangling.mid").symlink_to(d / "gone.mid")
    (d / "loop.mid").symlink_to(d / "loop.mid")
    (d / "notes.txt").write_text("not a MIDI name: ignored")
    return d


GOOD = {"good.mid", "Two.MID", "bad\ufffd.mid", "karaoke.kar"}
BAD = {"random.mid", "truncated.mid", "x.mid", "dangling.mid", "loop.mid"}


def run(capsys, *args) -> tuple[int, str, str]:
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


# --- one line per entry, every good file kept ------------------------------------------------------

def test_find_midi_files_reports_every_entry_once_and_never_loops(hostile):
    (hostile / "nested" / "up").symlink_to(hostile)        # a folder link back up: followed once, never round
    found = find_midi_files(hostile)
    names = [display_name(Path(p).name) for p, _ in found]
    assert sorted(names) == sorted(GOOD | BAD | {"up"})
    problems = {display_name(Path(p).name): problem for p, problem in found}
    assert {n for n, p in problems.items() if p is None} == GOOD | {"random.mid", "truncated.mid"}  # read later
    assert "broken symbolic link" in problems["dangling.mid"] and "loops" in problems["loop.mid"]
    assert problems["x.mid"] == "a folder named like a MIDI file, holding none"
    assert "searched already" in problems["up"]


def test_find_midi_files_never_reads_a_fifo(tmp_path):
    os.mkfifo(tmp_path / "pipe.mid")
    assert find_midi_files(tmp_path) == [(str(tmp_path / "pipe.mid"),
                                          "not a regular file (a FIFO, socket or device): not read")]


def test_display_name_prints_any_name():
    assert display_name(BAD_NAME) == "bad\ufffd.mid" and display_name(b"bad\xff.mid") == "bad\ufffd.mid"
    assert display_name(Path("plain.mid")) == "plain.mid"
    assert display_name("lone \ud800 surrogate") == "lone \ufffd\ufffd\ufffd surrogate"


def test_style_score_keeps_every_good_file_beside_a_bad_name(capsys, hostile):
    status, out, err = run(capsys, "style", "score", "--json", hostile)
    assert status == 0
    records = [json.loads(line) for line in out.splitlines()]
    by_name = {Path(r["path"]).name: r for r in records}
    assert len(records) == 9 and set(by_name) == GOOD | BAD
    assert all("style" in by_name[n] for n in GOOD) and all("error" in by_name[n] for n in BAD)
    status, out, err = run(capsys, "style", "score", hostile)                   # the text lines too
    assert status == 0 and len(out.splitlines()) == 9 and "bad\ufffd.mid: " in out
    assert err.strip().endswith("4 of 9 files scored (style index = P(irish))")


def test_midi_inspect_keeps_every_good_file_beside_a_bad_name(capsys, hostile):
    status, out, err = run(capsys, "midi", "inspect", "--json", hostile)
    assert status == 2
    records = {Path(r["file"]).name: r for r in map(json.loads, out.splitlines())}
    assert len(out.splitlines()) == 9 and set(records) == GOOD | BAD
    assert all(records[n]["num_notes"] == 16 for n in GOOD) and all("error" in records[n] for n in BAD)
    assert len(err.splitlines()) == 5
    status, out, _ = run(capsys, "midi", "inspect", hostile / BAD_NAME)         # the text report
    assert status == 0 and out.startswith(str(hostile / "bad\ufffd.mid") + "\n")


def test_data_prepare_keeps_every_good_file_beside_a_bad_name(capsys, hostile, tmp_path):
    status, out, err = run(capsys, "data", "prepare", "--midi-dir", hostile, "--out", tmp_path / "ds")
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert len(lines) == 10 and lines[-1].startswith("4 of 9 files gave 4 melodies; 5 skipped")
    assert sum(line.startswith("ok ") for line in lines) == 4
    assert "ok       bad\ufffd.mid: 1 melody" in lines
    manifest = (tmp_path / "ds" / "manifest.csv").read_text(encoding="utf-8")
    assert len(manifest.splitlines()) == 5 and "bad\ufffd.mid" in manifest
    report = (tmp_path / "ds" / "prepare_report.csv").read_text(encoding="utf-8")
    assert len(report.splitlines()) == 10


def test_evaluate_midi_dir_keeps_every_good_file_beside_a_bad_name(hostile):
    from labkit.evaluate import load_midi_dir

    melodies, skipped = load_midi_dir(hostile)
    assert sorted(Path(m.source).name for m in melodies) == sorted(GOOD)
    assert sorted(Path(p).name for p, _ in skipped) == sorted(BAD)
    print(*(m.source for m in melodies), *(p for p, _ in skipped))     # printable: no UnicodeEncodeError


def test_generate_with_a_primer_of_undecodable_name(capsys, hostile, tmp_path, checkpoint):
    status, out, err = run(capsys, "generate", "--checkpoint", checkpoint, "--primer", hostile / BAD_NAME,
                           "--num", 1, "--length", 8, "--out", tmp_path / "gen")
    assert status == 0, err
    summary = json.loads((tmp_path / "gen" / "generation.json").read_text(encoding="utf-8"))
    assert summary["settings"]["primer"] == display_name(hostile / BAD_NAME)


# --- outputs: checked first, one line, exit 2 -------------------------------------------------------

def _one_line(err: str, *words: str) -> None:
    assert len(err.splitlines()) == 1 and err.startswith("labkit: ") and "Traceback" not in err
    assert all(w in err for w in words), err


@pytest.mark.parametrize("where, words", [
    ("file", ["exists and is not a folder"]),
    ("under_file", ["is not a folder"]),
    ("/proc/labkit_out", ["cannot write"]),
    ("mid_folder", ["melody_001.mid: is a folder"]),
    ("wav_folder", ["melody_002.wav: is a folder"]),
    ("json_folder", ["generation.json: is a folder"]),
])
def test_generate_refuses_an_unusable_out_before_any_work(capsys, tmp_path, monkeypatch, where, words):
    import labkit.checkpoint

    monkeypatch.setattr(labkit.checkpoint, "load_melody_model",
                        lambda *a, **k: pytest.fail("the model was loaded before --out was checked"))
    out = tmp_path / "gen"
    if where == "file":
        out.write_text("x")
    elif where == "under_file":
        out.write_text("x")
        out = out / "sub"
    elif where.startswith("/"):
        out = Path(where)
    else:
        out.mkdir()
        (out / {"mid_folder": "melody_001.mid", "wav_folder": "melody_002.wav",
                "json_folder": "generation.json"}[where]).mkdir()
    status, _, err = run(capsys, "generate", "--num", 2, "--audio", "--out", out)
    assert status == 2
    _one_line(err, *words)


@pytest.mark.parametrize("where", ["file", "/proc/labkit_style"])
def test_style_train_refuses_an_unusable_out_before_any_work(capsys, tmp_path, monkeypatch, where):
    import labkit.style.scoring

    monkeypatch.setattr(labkit.style.scoring, "corpus_style_data",
                        lambda *a, **k: pytest.fail("the corpus was read before --out was checked"))
    out = tmp_path / "model" if where == "file" else Path(where)
    if where == "file":
        out.write_text("x")
    status, _, err = run(capsys, "style", "train", "--out", out)
    assert status == 2
    _one_line(err, "folder")


def test_data_prepare_refuses_an_unusable_out(capsys, hostile, tmp_path):
    (tmp_path / "file").write_text("x")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("mine")
    for out, words in ((tmp_path / "file", ["exists and is not a folder"]), (Path("/proc/labkit_ds"), ["cannot write"]),
                       (foreign, ["holds other files", "thesis.tex"]), (tmp_path, ["lies inside"])):
        status, _, err = run(capsys, "data", "prepare", "--midi-dir", hostile, "--out", out)
        assert status == 2
        _one_line(err, *words)
    assert (foreign / "thesis.tex").read_text() == "mine" and sorted(os.listdir(foreign)) == ["thesis.tex"]


# --- re-runs replace the whole set; one file mode ---------------------------------------------------

def test_generate_rerun_replaces_the_whole_set(capsys, tmp_path, checkpoint):
    out = tmp_path / "gen"
    out.mkdir()
    (out / "keep.txt").write_text("not ours")
    assert run(capsys, "generate", "--checkpoint", checkpoint, "--num", 8, "--length", 8, "--piano-roll",
               "--out", out)[0] == 0
    assert len(list(out.glob("melody_*.mid"))) == 8 and len(list(out.glob("melody_*.png"))) == 8
    modes = {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir() if p.name != "keep.txt"}
    assert modes == {file_mode()}                       # MIDI, PNG and JSON alike
    assert run(capsys, "generate", "--checkpoint", checkpoint, "--num", 2, "--length", 8, "--out", out)[0] == 0
    assert sorted(os.listdir(out)) == ["generation.json", "keep.txt", "melody_001.mid", "melody_002.mid"]
    listed = json.loads((out / "generation.json").read_text())["melodies"]
    assert [m["midi"] for m in listed] == ["melody_001.mid", "melody_002.mid"]


def test_data_prepare_rerun_replaces_the_whole_set_and_never_reads_its_output(capsys, tmp_path, good_bytes):
    songs = tmp_path / "songs"
    songs.mkdir()
    for name in ("a.mid", "b.mid", "c.mid"):
        (songs / name).write_bytes(good_bytes)
    out = songs / "dataset"                                   # inside --midi-dir: left out of the search
    for _ in range(2):
        status, printed, _ = run(capsys, "data", "prepare", "--midi-dir", songs, "--out", out)
        assert status == 0 and printed.splitlines()[-1].startswith("3 of 3 files gave 3 melodies")
    assert len((out / "manifest.csv").read_text().splitlines()) == 4       # not doubled
    (songs / "b.mid").unlink()
    (songs / "c.mid").write_bytes(b"garbage")
    assert run(capsys, "data", "prepare", "--midi-dir", songs, "--out", out)[0] == 0
    manifest = (out / "manifest.csv").read_text().splitlines()
    written = sorted(p.name for p in (out / "midi").rglob("*.mid"))
    assert len(manifest) == 2 and written == [manifest[1].split(",")[0] + ".mid"]
    modes = {stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*") if p.is_file()}
    assert modes == {file_mode()}
    (songs / "a.mid").write_bytes(b"garbage")                  # nothing usable: no manifest, no melodies
    assert run(capsys, "data", "prepare", "--midi-dir", songs, "--out", out)[0] == 1
    assert not (out / "manifest.csv").exists() and not list((out / "midi").rglob("*.mid"))


# --- the property: any mix of entries ---------------------------------------------------------------

KINDS = ("good", "random", "truncated", "empty", "folder_x_mid", "dangling", "loop", "sub_good", "bad_name")


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=6),
       junk=st.binary(min_size=0, max_size=64))
def test_batches_report_one_line_per_entry_and_keep_every_good_file(capsys, kinds, junk):
    from labkit.style.model import load_style_model
    from labkit.style.scoring import score_paths

    good_bytes, shipped_style = _good_bytes(), load_style_model()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "in"
        root.mkdir()
        good = set()
        for i, kind in enumerate(kinds):
            name = f"e{i}.mid"
            path = root / name
            if kind in ("good", "sub_good", "bad_name"):
                if kind == "sub_good":
                    (root / f"sub{i}").mkdir()
                    path = root / f"sub{i}" / name
                if kind == "bad_name":
                    path = root / os.fsdecode(f"e{i}\xff.mid".encode("latin-1"))
                path.write_bytes(good_bytes)
                good.add(display_name(path.name))
            elif kind == "random":
                path.write_bytes(b"MThd" + junk)
            elif kind == "truncated":
                path.write_bytes(good_bytes[: max(1, len(junk) % len(good_bytes))])
            elif kind == "empty":
                path.write_bytes(b"")
            elif kind == "folder_x_mid":
                path.mkdir()
            elif kind == "dangling":
                path.symlink_to(root / "nowhere.mid")
            else:
                path.symlink_to(path)
        entries = len(kinds)

        records = score_paths([root], shipped_style, "irish")
        assert len(records) == entries
        assert {Path(r["path"]).name for r in records if "error" not in r} >= good

        status, out, err = run(capsys, "midi", "inspect", "--json", root)
        lines = [json.loads(line) for line in out.splitlines()]
        assert len(lines) == entries and "Traceback" not in err
        assert {Path(r["file"]).name for r in lines if "error" not in r} >= good

        status, out, err = run(capsys, "data", "prepare", "--midi-dir", root, "--out", Path(tmp) / "ds")
        per_entry = [line for line in out.splitlines() if line.startswith(("ok ", "skipped "))]
        assert status in (0, 1) and len(per_entry) == entries, (out, err)
        assert {line.split()[1].rsplit("/", 1)[-1].rstrip(":") for line in per_entry if line.startswith("ok ")} >= good
        shutil.rmtree(Path(tmp) / "ds", ignore_errors=True)


