"""Tests of ``python -m labkit midi inspect``."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mido
import pytest

import labkit.melody
from labkit.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "midi"
SONG = FIXTURES / "symusic_les_yeux_revolvers.mid"  # 11 tracks, drums, 9 tempos
EMPTY = FIXTURES / "symusic_empty.mid"              # no notes at all
CORRUPT = FIXTURES / "bad" / "symusic_control_value_168.mid"


def corrupt_problem() -> str:
    """The reader's one-line problem for CORRUPT (its wording belongs to labkit.midi_io)."""
    from labkit.errors import MidiReadError
    from labkit.midi_io import read_midi

    with pytest.raises(MidiReadError) as info:
        read_midi(CORRUPT)
    assert info.value.problem.startswith("corrupt MIDI data (")
    return info.value.problem


def drum_loop(path: Path) -> Path:
    track = mido.MidiTrack()
    for i in range(16):
        track.append(mido.Message("note_on", channel=9, note=36, velocity=90, time=0 if i == 0 else 60))
        track.append(mido.Message("note_off", channel=9, note=36, time=60))
    mido.MidiFile(type=0, ticks_per_beat=120, tracks=[track]).save(path)
    return path


def inspect(capsys, *args) -> tuple[int, str, str]:
    status = main(["midi", "inspect", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def test_a_song_is_described(capsys):
    status, out, err = inspect(capsys, SONG)
    assert status == 0 and err == ""
    assert out.startswith(f"{SONG}\n")
    assert "MIDI format 1, 11 tracks, 480 ticks per quarter note" in out
    assert "duration 215.0 s, 2746 notes (189 on drums)" in out
    assert "tempo 80 qpm at the start, 8 changes" in out
    assert "key signature Bb major" in out
    assert "drums" in out and "10 instruments:" in out
    assert " melodies at 4 steps per quarter note:" in out
    assert "melody extraction not available" not in out


def test_melodies_are_listed_with_notes_and_steps(capsys):
    from labkit.melody import extract_melodies
    from labkit.midi_io import read_midi

    melodies = extract_melodies(read_midi(SONG), steps_per_quarter=2)
    status, out, _ = inspect(capsys, "--steps-per-quarter", "2", SONG)
    assert status == 0
    assert f"{len(melodies)} melodies at 2 steps per quarter note:" in out
    first = melodies[0]
    assert f"  1: {len(first.pitches)} notes, {first.num_steps} steps" in out


def test_drums_only_is_readable_but_has_no_melody(capsys, tmp_path):
    path = drum_loop(tmp_path / "drums.mid")
    status, out, err = inspect(capsys, path)
    assert status == 0 and err == ""
    assert "16 notes (16 on drums)" in out
    assert "no melody: holds only drums" in out


def test_no_notes_is_readable_but_has_no_melody(capsys):
    status, out, _ = inspect(capsys, EMPTY)
    assert status == 0
    assert "0 notes" in out and "no melody: holds no notes" in out


def test_an_unreadable_file_gives_one_line_and_status_2(capsys):
    status, out, err = inspect(capsys, CORRUPT)
    assert status == 2 and out == ""
    assert err == f"labkit: {CORRUPT}: {corrupt_problem()}\n"


def test_every_file_is_reported_and_one_bad_file_fails_the_run(capsys, tmp_path):
    missing = tmp_path / "missing.mid"
    status, out, err = inspect(capsys, SONG, missing, CORRUPT, EMPTY)
    assert status == 2
    assert out.count("MIDI format") == 2 and str(SONG) in out and str(EMPTY) in out
    assert err.splitlines() == [f"labkit: {missing}: no such file or folder",
                                f"labkit: {CORRUPT}: {corrupt_problem()}"]


def test_json_gives_one_object_per_file(capsys, tmp_path):
    drums = drum_loop(tmp_path / "drums.mid")
    status, out, _ = inspect(capsys, "--json", SONG, drums, CORRUPT)
    assert status == 2
    song, loop, bad = (json.loads(line) for line in out.splitlines())
    assert song["file"] == str(SONG) and song["num_tracks"] == 11 and song["num_notes"] == 2746
    assert len(song["tempos"]) == 9 and song["melody_problem"] is None
    assert all(m["notes"] > 0 and m["steps"] >= m["notes"] for m in song["melodies"])
    assert loop["melodies"] == [] and loop["melody_problem"] == "no melody: holds only drums (16 drum notes)"
    assert bad == {"file": str(CORRUPT), "error": corrupt_problem()}


def test_without_melody_extraction_the_command_still_works(capsys, monkeypatch):
    monkeypatch.delattr(labkit.melody, "extract_melodies")
    status, out, _ = inspect(capsys, SONG)
    assert status == 0
    assert "2746 notes" in out and "melody extraction not available" in out


def test_the_note_seq_reader_can_be_chosen(capsys):
    status, out, _ = inspect(capsys, "--reader", "note_seq", SONG)
    assert status == 0 and "2746 notes (189 on drums)" in out


def test_midi_without_an_action_prints_help(capsys):
    assert main(["midi"]) == 1
    assert "inspect" in capsys.readouterr().out


def test_steps_per_quarter_must_be_positive(capsys):
    with pytest.raises(SystemExit) as info:
        main(["midi", "inspect", "--steps-per-quarter", "0", str(SONG)])
    assert info.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_python_dash_m_labkit(tmp_path):
    """The real command line, in a fresh interpreter."""
    result = subprocess.run([sys.executable, "-m", "labkit", "midi", "inspect", str(EMPTY), str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "no melody: holds no notes" in result.stdout
    assert f"labkit: {tmp_path}: folder holds no .mid/.midi/.kar files" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_folder_is_searched_and_every_entry_gets_one_line(capsys, tmp_path):
    """Issue 16: a folder named x.mid, dangling and looping links and an undecodable name each get one line."""
    import os

    folder = tmp_path / "songs"
    (folder / "x.mid").mkdir(parents=True)
    (folder / "good.mid").write_bytes(SONG.read_bytes())
    (folder / os.fsdecode(b"bad\xff.mid")).write_bytes(EMPTY.read_bytes())
    (folder / "dangling.mid").symlink_to(folder / "gone.mid")
    (folder / "loop.mid").symlink_to(folder / "loop.mid")
    (folder / "up").symlink_to(folder)
    status, out, err = inspect(capsys, "--json", folder)
    assert status == 2
    lines = [json.loads(line) for line in out.splitlines()]
    assert [os.path.basename(r["file"]) for r in lines] == ["bad\ufffd.mid", "dangling.mid", "good.mid", "loop.mid",
                                                            "up", "x.mid"]
    bad, dangling, good, loop, up, x_mid = lines
    assert bad["num_notes"] == 0 and good["num_notes"] == 2746
    assert "broken symbolic link" in dangling["error"] and "loops" in loop["error"]
    assert "searched already" in up["error"] and "folder named like a MIDI file" in x_mid["error"]
    assert len(err.splitlines()) == 4 and all(line.startswith("labkit: ") for line in err.splitlines())
