"""Tests of labkit.mix and ``python -m labkit mix``: pan law, levels, room, WAV, bad input (measured, not heard)."""
from __future__ import annotations

import math
import wave

import numpy as np
import pytest

from labkit import cli
from labkit.melody import Melody, melody_to_sequence
from labkit.midi_io import write_midi
from labkit.mix import (Track, accompaniment, apply_reverb, db_to_gain, drone, mix_tracks, pan_gains, render_track,
                        rms_db)
from labkit.errors import ConfigError

SR = 16000
MELODY = Melody.from_notes([60, 64, 67, 72, 67, 64], [0, 4, 8, 12, 16, 20], [4, 8, 12, 16, 20, 28])


def _mix(*tracks, **kwargs):
    return mix_tracks(list(tracks), sample_rate=SR, **kwargs)


def _read_wav(path):
    with wave.open(str(path), "rb") as w:
        frames = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, w.getnchannels())
        return w.getnchannels(), w.getframerate(), frames.astype(np.float32) / 32767.0


@pytest.fixture()
def midi_files(tmp_path):
    a = write_midi(melody_to_sequence(MELODY, velocity=100), tmp_path / "a.mid")
    b = write_midi(melody_to_sequence(MELODY.replace(qpm=90.0), velocity=100), tmp_path / "b.mid")
    return a, b


def test_pan_law_by_hand():
    for p in (-1.0, -0.3, 0.0, 0.5, 1.0):
        left, right = pan_gains(p)
        assert left ** 2 + right ** 2 == pytest.approx(1.0)          # constant power
        assert left == pytest.approx(math.cos((p + 1) * math.pi / 4))
    with pytest.raises(ConfigError, match="pan"):
        pan_gains(1.5)


def test_hard_left_leaves_the_right_channel_40_db_below():
    hard_left = _mix(Track(MELODY, pan=-1.0))
    left, right = hard_left.rms_db
    assert right < left - 40.0
    hard_right = _mix(Track(MELODY, pan=1.0))
    assert hard_right.rms_db[0] < hard_right.rms_db[1] - 40.0
    assert hard_right.rms_db[1] == pytest.approx(left, abs=1e-3)   # mirror image


def test_centre_is_3_db_below_hard_left_in_each_channel():
    left_only = _mix(Track(MELODY, pan=-1.0)).rms_db[0]
    centre = _mix(Track(MELODY, pan=0.0)).rms_db
    assert centre[0] == pytest.approx(centre[1], abs=1e-4)
    assert centre[0] - left_only == pytest.approx(20 * math.log10(math.cos(math.pi / 4)), abs=0.01)  # -3.01 dB


def test_levels_follow_the_volume_controls():
    base = _mix(Track(MELODY, volume_db=-6.0206)).audio
    loud = _mix(Track(MELODY, volume_db=0.0)).audio
    ratio = np.sqrt((loud ** 2).mean()) / np.sqrt((base ** 2).mean())
    assert 20 * math.log10(ratio) == pytest.approx(6.0206, abs=0.1)   # +6 dB -> RMS x 2
    assert ratio == pytest.approx(2.0, rel=0.012)
    quiet = _mix(Track(MELODY, volume_db=-20.0)).rms_db[0]
    assert quiet == pytest.approx(_mix(Track(MELODY)).rms_db[0] - 20.0, abs=0.05)
    master = _mix(Track(MELODY), master_db=-10.0).rms_db[0]
    assert master == pytest.approx(_mix(Track(MELODY)).rms_db[0] - 10.0, abs=0.05)


def test_two_voices_add_and_the_program_changes_the_sound():
    one = _mix(Track(MELODY, pan=-1.0))
    two = _mix(Track(MELODY, pan=-1.0), Track(MELODY, pan=1.0))
    assert two.rms_db[0] == pytest.approx(one.rms_db[0], abs=1e-3)
    assert two.rms_db[1] == pytest.approx(one.rms_db[0], abs=1e-3)
    flute = render_track(Track(MELODY, program=73), sample_rate=SR)
    piano = render_track(Track(MELODY, program=0), sample_rate=SR)
    n = min(len(flute), len(piano))
    assert not np.allclose(flute[:n], piano[:n])


def test_reverb_lengthens_the_tail():
    dry = _mix(Track(MELODY))
    wet = _mix(Track(MELODY), reverb=0.6)
    end = int(round(28 * 60 / (120 * 4) * SR))            # the last note's end (step 28 at 120 qpm)
    energy = lambda a: float((a[end:].astype(np.float64) ** 2).sum())
    assert len(wet.audio) > len(dry.audio)
    assert energy(wet.audio) > 2 * energy(dry.audio)
    assert np.array_equal(apply_reverb(dry.audio, 0.0, SR), dry.audio)     # 0 = dry, unchanged
    assert np.array_equal(_mix(Track(MELODY), reverb=0.6).audio, wet.audio)  # deterministic


def test_a_mix_that_would_clip_is_scaled_down_as_a_whole():
    r = _mix(*[Track(MELODY, volume_db=12.0)] * 4, master_db=12.0)
    assert r.scaled_db < 0
    assert float(np.abs(r.audio).max()) == pytest.approx(db_to_gain(-1.0), rel=1e-4)


def test_drone_and_accompaniment_follow_the_key():
    g_major = Melody.from_notes([67, 71, 74, 79, 74, 71, 67, 66, 67], range(0, 36, 4), range(4, 40, 4))
    d = drone(g_major)
    assert [n.pitch % 12 for n in d.notes] == [7, 2]
    assert d.notes[0].end_time == pytest.approx(g_major.num_steps * 60 / (120 * 4))
    acc = accompaniment(g_major)
    assert {n.pitch % 12 for n in acc.notes if n.start_time == 0.0} == {7, 11, 2}   # bar 1: G B D
    r = _mix(Track(g_major, pan=0.3), Track(d, volume_db=-12, pan=-0.5, program=48),
             Track(acc, volume_db=-9, pan=0.5))
    assert r.audio.shape[1] == 2 and np.isfinite(r.audio).all()


def test_bad_settings_name_the_setting():
    for kwargs, word in (({"volume_db": 13}, "volume_db"), ({"pan": -1.01}, "pan"), ({"volume_db": math.nan}, "volume_db"),
                         ({"program": 128}, "program")):
        with pytest.raises(ConfigError, match=word):
            _mix(Track(MELODY, **kwargs))
    with pytest.raises(ConfigError, match="reverb"):
        _mix(Track(MELODY), reverb=1.5)
    with pytest.raises(ConfigError, match="at least one track"):
        mix_tracks([])


def test_rms_db_by_hand():
    assert rms_db(np.ones((10, 2)) * 0.1).tolist() == pytest.approx([-20.0, -20.0])


# --- the command -------------------------------------------------------------------------------

def test_command_writes_a_stereo_wav_that_reads_back(midi_files, tmp_path, capsys):
    a, b = midi_files
    out = tmp_path / "mix.wav"
    assert cli.main(["mix", str(a), str(b), "--volume", "0", "-6", "--pan", "-1", "1",
                                          "--program", "0", "73", "--sample-rate", str(SR), "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{out}: 2 tracks") and "RMS L" in line
    channels, rate, frames = _read_wav(out)
    assert (channels, rate) == (2, SR)
    direct = _mix(Track(a, volume_db=0, pan=-1, program=0), Track(b, volume_db=-6, pan=1, program=73))
    assert len(frames) == len(direct.audio)
    assert np.abs(frames - direct.audio).max() < 2 / 32767


def test_command_hard_left_measured_from_the_file(midi_files, tmp_path, capsys):
    out = tmp_path / "left.wav"
    assert cli.main(["mix", str(midi_files[0]), "--pan", "-1", "--sample-rate", str(SR), "--out", str(out)]) == 0
    _, _, frames = _read_wav(out)
    left, right = rms_db(frames)
    assert right < left - 40.0


@pytest.mark.parametrize("extra, flag", [
    (["--volume", "1", "2", "3"], "--volume"),
    (["--pan", "0", "0", "0"], "--pan"),
    (["--program", "1", "2", "3"], "--program"),
    (["--volume", "13"], "--volume"),
    (["--volume", "nan"], "--volume"),
    (["--pan", "-2"], "--pan"),
    (["--program", "128"], "--program"),
    (["--reverb", "1.1"], "--reverb"),
    (["--master", "100"], "--master"),
])
def test_command_refuses_bad_values_in_one_line(midi_files, tmp_path, capsys, extra, flag):
    argv = ["mix", str(midi_files[0]), str(midi_files[1]), *extra, "--out", str(tmp_path / "x.wav")]
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and flag in err[0] and err[0].startswith("labkit: mix:")
    assert not (tmp_path / "x.wav").exists()


def test_command_reports_every_bad_file_one_line_each(midi_files, tmp_path, capsys):
    text = tmp_path / "notes.mid"
    text.write_text("not midi")
    empty = tmp_path / "empty.mid"
    empty.write_bytes(b"")
    code = cli.main(["mix", str(text), str(midi_files[0]), str(empty), str(tmp_path / "gone.mid"),
                     "--out", str(tmp_path / "x.wav")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 3
    assert [line.split(":")[1].strip() for line in err] == [str(text), str(empty), str(tmp_path / "gone.mid")]
    assert all(line.startswith("labkit: ") for line in err)
    assert not (tmp_path / "x.wav").exists()


def test_command_refuses_an_output_in_a_missing_folder(midi_files, tmp_path, capsys):
    assert cli.main(["mix", str(midi_files[0]), "--out", str(tmp_path / "no" / "x.wav")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
