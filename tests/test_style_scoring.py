"""Tests of ``python -m labkit style``, labkit.style.scoring, the shipped style model and labkit.style.demo."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import note_seq
import numpy as np
import pytest

from labkit.style import model as style_model
from labkit.style import scoring
from labkit.cli import main
from labkit.corpus import tune_path
from labkit.errors import CheckpointError, ConfigError, NoNotesError
from labkit.melody import Melody, melody_to_sequence
from labkit.midi_io import write_midi

# Corpus tunes copied into the scoring folder: (tune id, its style).
TUNES = [("essen-kinder0-0001", "german"), ("oneills-0001", "irish"), ("essen-han1-0001", "chinese")]
KINDER = "essen-kinder0-0001"


def drums_only(path: Path) -> Path:
    """A readable MIDI file whose only notes are on the drum channel."""
    seq = note_seq.NoteSequence()
    seq.tempos.add(qpm=120)
    for i in range(16):
        seq.notes.add(pitch=36, velocity=90, start_time=0.25 * i, end_time=0.25 * i + 0.1, is_drum=True,
                      instrument=9)
    seq.total_time = 4.0
    return write_midi(seq, path)


@pytest.fixture(scope="module")
def midi_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("score")
    (folder / "sub").mkdir()
    for tune_id, _ in TUNES:
        shutil.copy(tune_path(tune_id), folder / "sub" / f"{tune_id}.mid")
    (folder / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01")   # a header cut short
    drums_only(folder / "drums.mid")
    (folder / "notes.txt").write_text("not collected: not a .mid/.midi name")
    return folder


@pytest.fixture(scope="module")
def shipped():
    return style_model.load_style_model()


def score_json(capsys, *args) -> tuple[int, list[dict], str]:
    status = main(["style", "score", "--json", *map(str, args)])
    out, err = capsys.readouterr()
    return status, [json.loads(line) for line in out.splitlines()], err


# --- scoring ------------------------------------------------------------------------------

def test_score_json_lines_one_per_file_bad_files_do_not_stop_the_others(capsys, midi_folder, shipped):
    status, records, _ = score_json(capsys, midi_folder)
    assert status == 0
    by_name = {Path(r["path"]).name: r for r in records}
    assert set(by_name) == {"broken.mid", "drums.mid"} | {f"{t}.mid" for t, _ in TUNES}
    assert "MIDI" in by_name["broken.mid"]["error"] or "truncated" in by_name["broken.mid"]["error"]
    assert "drum" in by_name["drums.mid"]["error"]
    assert set(by_name["broken.mid"]) == {"path", "error"}
    target = scoring.default_target(shipped.styles)
    for tune_id, _ in TUNES:
        r = by_name[f"{tune_id}.mid"]
        assert set(r) == {"path", "style", "index", "probabilities", "typicality"}
        share = r["typicality"] * len(shipped.typical.reference)     # a share of the training tunes
        assert share == pytest.approx(round(share), abs=1e-3) and 0 <= round(share) <= len(shipped.typical.reference)
        assert list(r["probabilities"]) == list(shipped.styles)
        assert abs(sum(r["probabilities"].values()) - 1.0) < 1e-9
        assert r["index"] == r["probabilities"][target]
        assert r["style"] == max(r["probabilities"], key=r["probabilities"].get)


def test_score_agrees_with_the_model_on_the_same_melody(midi_folder, shipped):
    path = midi_folder / "sub" / f"{KINDER}.mid"
    record = scoring.score_paths([path], shipped, "german")[0]
    melody = scoring.melody_from_file(path)
    assert record["index"] == pytest.approx(float(shipped.predict_proba([melody])[0, shipped.styles.index("german")]))


def test_score_target_and_text_output(capsys, midi_folder, shipped):
    path = midi_folder / "sub" / f"{KINDER}.mid"
    status = main(["style", "score", "--target", "chinese", str(path), str(midi_folder / "drums.mid")])
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert status == 0 and len(lines) == 2
    assert lines[0].startswith(f"{path}: ") and "index(chinese)=" in lines[0]
    assert lines[1].startswith(f"{midi_folder / 'drums.mid'}: error: ")
    assert "1 of 2 files scored" in err


def test_nothing_scored_is_status_1_and_usage_errors_are_status_2(capsys, midi_folder, tmp_path):
    status, records, _ = score_json(capsys, midi_folder / "broken.mid", tmp_path / "missing.mid", tmp_path)
    assert status == 1
    assert [("error" in r) for r in records] == [True, True, True]
    assert "no such file" in records[1]["error"] and "no .mid/.midi/.kar files" in records[2]["error"]
    assert main(["style", "score", "--target", "klezmer", str(midi_folder)]) == 2
    assert "klezmer" in capsys.readouterr().err
    assert main(["style", "score", "--model", str(tmp_path), str(midi_folder)]) == 2
    assert "model.json is missing" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["style", "score"])
    assert exc.value.code == 2


def test_melody_from_sequence_takes_the_longest_line_and_estimates_the_key():
    # four C-major notes, a 6-bar silence (melodies split at rests over 4 quarters), then a longer G-major line
    g = [67, 71, 74, 72, 71, 69, 67, 66, 67]
    starts = [0, 4, 8, 12] + [112 + 4 * i for i in range(len(g))]
    both = Melody.from_notes([60, 62, 64, 65] + g, starts, [s + 4 for s in starts])   # key 0: C major
    seq = melody_to_sequence(both)
    melody = scoring.melody_from_sequence(seq)
    assert melody.pitches.tolist() == g
    assert (melody.key, melody.mode) == (7, "major")     # the file says C major; the notes say G
    with pytest.raises(NoNotesError):
        scoring.melody_from_sequence(note_seq.NoteSequence())


def test_score_collects_karaoke_files_from_folders(tmp_path, shipped):
    shutil.copy(tune_path(KINDER), tmp_path / "song.KAR")
    records = scoring.score_paths([tmp_path], shipped, "german")
    assert [Path(r["path"]).name for r in records] == ["song.KAR"] and records[0]["style"] == "german"


# --- the shipped model ----------------------------------------------------------------------

def test_shipped_model_is_small_plain_and_measured(shipped):
    folder = style_model.shipped_style_model_dir()
    assert folder.parent.name == "assets" and folder.parent.parent.name == "labkit"
    assert {p.name for p in folder.iterdir()} >= {"model.json", "arrays.npz", "metrics.json"}
    assert sum(p.stat().st_size for p in folder.iterdir()) < 3_000_000
    with np.load(folder / "arrays.npz", allow_pickle=False) as arrays:     # plain arrays, no pickles
        assert all(arrays[k].dtype in (np.float32, np.bool_) for k in arrays.files)   # the scaler's root mask: bool
    figures = style_model.style_model_metrics()
    assert set(shipped.styles) >= {"german", "chinese", "irish", "fiddle", "chorale"}
    assert figures["styles"] == list(shipped.styles)
    assert figures["test"]["tunes"] > 500 and figures["cv"]["folds"] >= 5
    assert figures["test"]["balanced_accuracy"] > 0.8 and figures["cv"]["balanced_accuracy"] > 0.8


def test_shipped_model_says_a_kinder_tune_is_german(shipped):
    record = scoring.score_paths([tune_path(KINDER)], shipped, "german")[0]
    assert record["style"] == "german" and record["index"] > 0.5


# --- training --------------------------------------------------------------------------------

def test_train_a_tiny_model_then_score_with_it(capsys, tmp_path, midi_folder):
    out = tmp_path / "model"
    status = main(["style", "train", "--out", str(out), "--styles", "german", "chinese", "--max-per-style", "12",
                   "--folds", "2", "--ngram-dims", "32", "--steps", "40"])
    text = capsys.readouterr().out
    assert status == 0 and "test balanced accuracy" in text
    figures = json.loads((out / "metrics.json").read_text())
    assert figures["styles"] == ["chinese", "german"]
    assert figures["tunes"]["train"]["german"] + figures["tunes"]["valid"]["german"] <= 24
    assert len(figures["cv"]["fold_balanced_accuracy"]) == 2
    assert figures["cv"]["balanced_accuracy"] == pytest.approx(np.mean(figures["cv"]["fold_balanced_accuracy"]))
    assert sorted(p.name for p in out.iterdir()) == ["arrays.npz", "metrics.json", "model.json"]   # one unit
    assert np.asarray(figures["test"]["confusion"]).sum() == figures["test"]["tunes"]
    model = style_model.load_style_model(out)
    assert model.styles == ("chinese", "german") and model.ngram_dims == 32
    status, records, _ = score_json(capsys, "--model", out, midi_folder / "sub")
    assert status == 0 and len(records) == 3
    assert all(set(r["probabilities"]) == {"chinese", "german"} for r in records)
    assert all(r["index"] == r["probabilities"]["chinese"] for r in records)   # no irish: the first style


def test_train_rejects_bad_settings(tmp_path):
    with pytest.raises(ConfigError):
        scoring.train_style_model(tmp_path, ["german"], folds=0, log=None)
    with pytest.raises(ConfigError):
        scoring.train_style_model(tmp_path, ["german", "irish"], folds=1, log=None)
    (tmp_path / "notes.txt").write_text("mine")              # a folder of other files is refused before any work
    with pytest.raises(CheckpointError, match="other files"):
        scoring.train_style_model(tmp_path, ["german", "irish"], log=None)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_load_style_model_explains_a_missing_or_foreign_model(tmp_path):
    with pytest.raises(CheckpointError, match="model.json is missing"):
        style_model.load_style_model(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({"kind": "Tokenizer"}))
    with pytest.raises(CheckpointError, match="Tokenizer"):
        style_model.load_style_model(tmp_path)


# --- the demo's stage --------------------------------------------------------------------------

def test_style_stage_adds_a_section_with_the_axis(tmp_path, shipped):
    from labkit.demo import Report
    from labkit.style.demo import style_stage

    generated = tmp_path / "generated"
    generated.mkdir()
    tune = scoring.melody_from_file(tune_path(KINDER))
    write_midi(melody_to_sequence(tune), generated / "melody_001.mid")
    drums_only(generated / "melody_002.mid")
    report = Report(tmp_path)
    result = style_stage(report, generated, target="german", model=shipped, real_per_style=2)
    text = "\n".join(report.lines)
    assert "## 4. The style of the generated melodies" in text and "![style axis](style_axis.png)" in text
    assert (tmp_path / "style_axis.png").stat().st_size > 5_000
    assert [("error" in r) for r in result["generated"]] == [False, True]
    assert result["generated"][0]["style"] == "german"
    assert all(len(v) == 2 for v in result["real"].values())
    assert "`melody_002.mid`" in text and "not scored" in text
    assert "| typicality |" in text and f"{result['generated'][0]['typicality']:.3f}" in text
    again = style_stage(Report(tmp_path), generated, target="lorraine", model=shipped, real_per_style=1,
                        image="axis2.png")
    assert again["target"] == "irish" and (tmp_path / "axis2.png").exists()


def test_style_stage_without_a_model_says_so(tmp_path):
    from labkit.demo import Report
    from labkit.style.demo import style_stage

    report = Report(tmp_path)
    assert style_stage(report, tmp_path, model=tmp_path / "nothing") == {}
    assert "could not be loaded" in "\n".join(report.lines)
