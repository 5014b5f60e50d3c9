"""Tests of your own music: labkit.personal, `python -m labkit train` and `style train --class`."""
import json
import math
import shutil

import numpy as np
import pytest

from labkit.checkpoint import load_melody_model, read_meta
from labkit.cli import main
from labkit.corpus import load_manifest, tune_path
from labkit.melody import Melody, melody_to_sequence
from labkit.midi_io import write_midi
from labkit.personal import (MEMORIZATION_WARNING, WARNING_BARS, memorization_rate, memorization_warning, parse_class,
                             run_folder, split_files)


def line(pitches, step=4):
    """A melody of quarter notes (``step`` steps each) with the given pitches, in 4/4 at 4 steps per quarter."""
    n = len(pitches)
    return Melody.from_notes(list(pitches), [i * step for i in range(n)], [(i + 1) * step for i in range(n)])


# --- memorization_rate, by hand ----------------------------------------------------------------------

TUNE = line(range(60, 76))                 # 16 rising semitones, 64 steps + the final note-off: 65 events


def test_memorization_all_copied_and_none():
    assert memorization_rate([TUNE], [TUNE], bars=2) == 1.0
    assert memorization_rate([line(range(75, 59, -1))], [TUNE], bars=2) == 0.0   # the tune upside down


def test_memorization_partial_by_hand():
    # 2 bars = 32 steps = 8 quarter notes. The generated line copies the tune's first 8 notes, then falls:
    # spans start at the notes at steps 0, 4, ..., 32 (9 spans; a span must end by step 65); only the first
    # (60..67, all rising) occurs in the tune, every later one holds a fall.
    generated = line(list(range(60, 68)) + list(range(66, 58, -1)))
    assert memorization_rate([generated], [TUNE], bars=2) == pytest.approx(1 / 9)
    # the same with the tune as one of two generated melodies: 9 + 9 spans, 9 + 1 copied
    assert memorization_rate([generated, TUNE], [TUNE], bars=2) == pytest.approx(10 / 18)


def test_memorization_transposed_copies_and_short_melodies():
    octave_up = line(range(72, 88))
    assert memorization_rate([octave_up], [TUNE], bars=2) == 1.0                  # a copy in another key
    assert memorization_rate([octave_up], [TUNE], bars=2, transpose=False) == 0.0
    # a rhythm change is no copy: the same pitches in half notes
    assert memorization_rate([line(range(60, 76), step=8)], [TUNE], bars=2) == 0.0
    assert math.isnan(memorization_rate([line([60, 62])], [TUNE], bars=2))      # shorter than 2 bars
    with pytest.raises(Exception, match="bars"):
        memorization_rate([TUNE], [TUNE], bars=0)


def test_memorization_warning_threshold():
    assert memorization_warning(MEMORIZATION_WARNING) is None
    assert memorization_warning(0.0) is None and memorization_warning(float("nan")) is None
    text = memorization_warning(0.63)
    assert "too small to learn from without copying" in text and "63%" in text and f"{WARNING_BARS}-bar" in text


def test_split_files_is_seeded_and_by_file():
    names = [f"f{i}.mid" for i in range(10)]
    held = split_files(names, seed=4)
    assert len(held) == 2 and held <= set(names)
    assert split_files(names[::-1], seed=4) == held
    assert len({frozenset(split_files(names, seed=s)) for s in range(6)}) > 1
    assert split_files(["a.mid"], seed=0) == set()


def test_parse_class_and_run_folder():
    assert parse_class("a=b=c") == ("a", "b=c")
    for bad in ("reels", "=dir", "reels="):
        with pytest.raises(Exception, match="NAME=DIR"):
            parse_class(bad)
    assert run_folder("x/m.npz").name == "m.run"


# --- python -m labkit train ------------------------------------------------------------------------

IRISH = [row.id for row in load_manifest().itertuples() if row.style == "irish"][:4]
GERMAN = [row.id for row in load_manifest().itertuples() if row.style == "german"][:4]


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "my tunes"
    d.mkdir()
    for tune in IRISH:
        shutil.copy(tune_path(tune), d)
    drums = melody_to_sequence(line(range(36, 52)))
    for note in drums.notes:
        note.is_drum = True
    write_midi(drums, d / "drums.mid")
    write_midi(melody_to_sequence(line([60, 62, 64])), d / "short.mid")
    (d / "broken.mid").write_bytes(b"MThd")
    return d


def _train(folder, out, *extra):
    return main(["train", "--midi-dir", str(folder), "--out", str(out), "--from", "scratch", *extra])


def _params(path):
    model, _ = load_melody_model(path)
    from flax import nnx
    import jax
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param))]


def test_train_reports_files_generates_and_resumes(folder, tmp_path, capsys):
    out = tmp_path / "mine.npz"
    assert _train(folder, out, "--steps", "4", "--seed", "1") == 0
    printed = capsys.readouterr().out
    for tune in IRISH:
        assert f"ok       {tune}.mid: 1 melody" in printed
    assert "skipped  drums.mid: only drum notes" in printed
    assert "skipped  short.mid: no melody of at least 8 notes" in printed
    assert "skipped  broken.mid:" in printed
    assert "4 melodies from 4 file(s): 3 for training, 1 for validation" in printed
    assert "memorization:" in printed and "of the 8-bar ones" in printed and "of the 2-bar ones" in printed
    report = json.loads((run_folder(out) / "report.json").read_text())
    assert report["steps"] == 4 and 0.0 <= report["memorization"]["rate"] <= 1.0
    assert set(report["memorization"]["rates"]) == {"8", "2"}
    assert report["memorization"]["temperature"] == 0.8 and report["melodies"] == 4
    assert read_meta(out)["personal"]["steps"] == 4
    # the model file is what generate reads
    assert main(["generate", "--checkpoint", str(out), "--num", "1", "--length", "16",
                 "--out", str(tmp_path / "gen")]) == 0
    assert (tmp_path / "gen" / "melody_001.mid").is_file()
    # the same command with more steps resumes from the checkpoint
    capsys.readouterr()
    assert _train(folder, out, "--steps", "8", "--seed", "1", "--no-measure") == 0
    printed = capsys.readouterr().out
    assert f"resuming the run in {run_folder(out)} from step 4" in printed
    assert json.loads((run_folder(out) / "report.json").read_text())["steps"] == 8
    # another seed is another run: refused, not mixed into this one
    assert _train(folder, out, "--steps", "8", "--seed", "2") == 2
    assert "holds a run on other files or settings" in capsys.readouterr().err


def test_train_same_seed_same_model_and_time_limit(folder, tmp_path, capsys):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert _train(folder, a, "--steps", "3", "--no-measure") == 0
    assert _train(folder, b, "--steps", "3", "--no-measure") == 0
    assert all(np.array_equal(x, y) for x, y in zip(_params(a), _params(b)))
    c = tmp_path / "c.npz"
    assert _train(folder, c, "--minutes", "0.0001", "--no-measure") == 0
    assert "time up" in capsys.readouterr().out
    assert json.loads((run_folder(c) / "report.json").read_text())["timed_out"] is True
    load_melody_model(c)


def test_train_fine_tunes_the_shipped_model(folder, tmp_path, capsys):
    out = tmp_path / "tuned.npz"
    assert main(["train", "--midi-dir", str(folder), "--out", str(out), "--steps", "2", "--no-measure"]) == 0
    _, shipped_config = load_melody_model()
    assert load_melody_model(out)[1] == shipped_config
    report = json.loads((run_folder(out) / "report.json").read_text())
    assert report["from"] == "shipped" and report["start_valid_bits"] is not None
    if report["kept_shipped"]:      # no improvement on the held-out file: the shipped parameters, unchanged
        assert "the shipped model stays better" in capsys.readouterr().out
        assert all(np.array_equal(x, y) for x, y in zip(_params(out), _params(None)))


def test_train_bad_inputs_are_one_line(folder, tmp_path, capsys):
    def fails(args, text):
        assert main(["train", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("labkit: ") and text in err[0], err

    out = str(tmp_path / "m.npz")
    fails(["--midi-dir", str(tmp_path / "missing"), "--out", out], "missing: no such folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    fails(["--midi-dir", str(empty), "--out", out], "empty: no MIDI files")
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(folder / "broken.mid", bad)
    shutil.copy(folder / "drums.mid", bad)
    fails(["--midi-dir", str(bad), "--out", out], "bad: none of its 2 MIDI file(s) gave a melody")
    fails(["--midi-dir", str(folder), "--out", str(tmp_path / "m.pt")], "must end in .npz")
    for args in (["--steps", "0"], ["--minutes", "0"], ["--seed", "-1"], ["--steps", "5", "--minutes", "1"]):
        with pytest.raises(SystemExit) as exit_:
            main(["train", "--midi-dir", str(folder), "--out", out, *args])
        assert exit_.value.code == 2
    capsys.readouterr()


# --- python -m labkit style train --class ---------------------------------------------------------

def test_style_train_on_own_classes_then_score(tmp_path, capsys):
    for name, tunes in (("reels", IRISH), ("lieder", GERMAN)):
        (tmp_path / name).mkdir()
        for tune in tunes:
            shutil.copy(tune_path(tune), tmp_path / name)
    (tmp_path / "reels" / "broken.mid").write_bytes(b"MThd")
    out = tmp_path / "model"
    assert main(["style", "train", "--class", f"reels={tmp_path / 'reels'}", "--class",
                 f"lieder={tmp_path / 'lieder'}", "--out", str(out), "--folds", "2", "--steps", "30"]) == 0
    printed = capsys.readouterr().out
    assert "2-fold cross-validated accuracy" in printed and "skipped  reels:" in printed
    assert "how the shipped style model sees each class" in printed
    figures = json.loads((out / "user_classes.json").read_text())
    assert figures["styles"] == ["lieder", "reels"] and figures["tunes"] == {"lieder": 4, "reels": 4}
    for name in ("lieder", "reels"):
        shares = figures["shipped_view"][name]
        assert set(shares) == set(figures["shipped_styles"]) and sum(shares.values()) == pytest.approx(1.0)
    assert figures["shipped_view"]["reels"]["irish"] >= 0.5       # the shipped model knows Irish tunes
    assert json.loads((out / "metrics.json").read_text())["cv"]["folds"] == 2
    assert main(["style", "score", "--model", str(out), "--json", str(tmp_path / "reels")]) == 0
    records = [json.loads(r) for r in capsys.readouterr().out.splitlines()]
    scored = [r for r in records if "error" not in r]
    assert len(scored) == 4 and set(scored[0]["probabilities"]) == {"lieder", "reels"}


def test_style_train_classes_bad_inputs(tmp_path, capsys):
    good = tmp_path / "good"
    good.mkdir()
    shutil.copy(tune_path(IRISH[0]), good)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.mid").write_bytes(b"MThd")
    out = str(tmp_path / "model")
    for classes, text in (([f"a={good}"], "at least two classes"),
                          ([f"a={good}", f"b={empty}"], "class 'b' has no readable tune"),
                          ([f"a={good}", f"b={tmp_path / 'nope'}"], "does not exist"),
                          ([f"a={good}", f"a={good}"], "given twice")):
        args = [x for c in classes for x in ("--class", c)]
        assert main(["style", "train", *args, "--out", out]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and text in err[0], err
    for args in (["--class", "reels"], ["--class", f"a={good}", "--styles", "irish"]):
        with pytest.raises(SystemExit) as exit_:
            main(["style", "train", *args, "--out", out])
        assert exit_.value.code == 2
    assert "NAME=DIR" in capsys.readouterr().err
