"""Tests of `python -m labkit data prepare` (labkit.prepare): good files kept, bad ones reported."""
import numpy as np
import pytest

from labkit.cli import main
from labkit.corpus import load_manifest
from labkit.data import load_melodies
from labkit.melody import Melody, melody_to_sequence
from labkit.midi_io import write_midi
from labkit.prepare import prepare_midi_folder


def scale(start=60, n=12):
    return Melody.from_notes(np.arange(start, start + n), np.arange(n) * 2, np.arange(n) * 2 + 2)


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "my_songs"
    (d / "nested").mkdir(parents=True)
    write_midi(melody_to_sequence(scale(60)), d / "good_one.mid")
    write_midi(melody_to_sequence(scale(55, 16)), d / "nested" / "Good Two.MID")
    (d / "empty.mid").write_bytes(b"")
    (d / "not_midi.mid").write_text("hello, I am a text file\n")
    good = (d / "good_one.mid").read_bytes()
    (d / "truncated.mid").write_bytes(good[: len(good) // 2])
    write_midi(melody_to_sequence(scale(60, 3)), d / "too_short.mid")
    (d / "notes.txt").write_text("not a MIDI suffix: ignored")
    return d


def test_prepare_keeps_good_files_and_reports_bad_ones(folder, tmp_path):
    out = tmp_path / "dataset"
    report = prepare_midi_folder(folder, out, style="mine")
    status = {f.path: f for f in report.files}
    assert set(status) == {"good_one.mid", "nested/Good Two.MID", "empty.mid", "not_midi.mid",
                           "truncated.mid", "too_short.mid"}
    assert status["good_one.mid"].status == "ok" and status["good_one.mid"].melodies == 1
    assert status["nested/Good Two.MID"].status == "ok"
    for bad in ("empty.mid", "not_midi.mid", "truncated.mid", "too_short.mid"):
        assert status[bad].status == "skipped" and status[bad].reason
    assert "melody" in status["too_short.mid"].reason
    manifest = load_manifest(out)
    assert len(manifest) == 2 and set(manifest["style"]) == {"mine"}
    assert (out / "prepare_report.csv").read_text().count("skipped") == 4
    mels = load_melodies(out, use_cache=False, jobs=1)
    got = sorted(mels.melodies(), key=lambda m: m.num_steps)
    assert got[0].pitches.tolist() == list(range(60, 72))
    assert got[1].pitches.tolist() == list(range(55, 71))


def test_prepare_cli_exit_codes(folder, tmp_path, capsys):
    assert main(["data", "prepare", "--midi-dir", str(folder), "--out", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    assert "skipped  empty.mid" in printed and "ok       good_one.mid: 1 melody" in printed
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.mid").write_bytes(b"MThd")
    assert main(["data", "prepare", "--midi-dir", str(only_bad), "--out", str(tmp_path / "b")]) == 1
    assert main(["data", "prepare", "--midi-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "c")]) == 2
    assert "missing: not a folder" in capsys.readouterr().err


def test_prepare_reads_karaoke_files_and_rejects_a_folder_without_midi(tmp_path):
    from labkit.errors import CorpusError

    d = tmp_path / "karaoke"
    d.mkdir()
    write_midi(melody_to_sequence(scale(62)), d / "song.kar")
    report = prepare_midi_folder(d, tmp_path / "out")
    assert [(f.path, f.status) for f in report.files] == [("song.kar", "ok")]
    (tmp_path / "text_only").mkdir()
    (tmp_path / "text_only" / "notes.txt").write_text("no MIDI here")
    with pytest.raises(CorpusError, match=r"no MIDI files \(\.mid, \.midi, \.kar\)"):
        prepare_midi_folder(tmp_path / "text_only", tmp_path / "out2")
