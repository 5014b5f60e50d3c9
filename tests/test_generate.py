"""Tests of labkit.generate and `python -m labkit generate` (tiny models; the shipped model only loaded and sampled briefly)."""
import json
from pathlib import Path

import numpy as np
import pytest

from labkit import cli
from labkit.checkpoint import load_melody_model, save_model, shipped_melody_model_info, shipped_melody_model_path
from labkit.encoding import MelodyEncoding
from labkit.errors import CheckpointError, ConfigError, EncodingError, LabkitError, MidiReadError
from labkit.generate import check_settings, generate_melodies, melody_stats, read_primer, write_outputs
from labkit.melody import Melody, melody_to_sequence
from labkit.midi_io import read_midi, write_midi
from labkit.models import ModelConfig, make_model

TINY = ModelConfig(embed_dim=8, hidden_size=16, num_layers=1, dropout=0.0)


@pytest.fixture(scope="module")
def model():
    return make_model(TINY, 1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, model):
    return save_model(tmp_path_factory.mktemp("ckpt") / "tiny.npz", model, TINY)


def write_melody_midi(path, pitches, starts, ends, **kwargs):
    return write_midi(melody_to_sequence(Melody.from_notes(pitches, starts, ends, **kwargs)), path)


# --- generate_melodies ---------------------------------------------------------------------------

def test_generate_melodies_shapes_names_and_primer(model):
    enc = MelodyEncoding()
    primer = enc.encode(Melody.from_notes([62, 66], [0, 2], [2, 4]))
    mels = generate_melodies(model, num=3, length=20, primer=primer, seed=5, qpm=90)
    assert [m.source for m in mels] == ["melody_001", "melody_002", "melody_003"]
    for m in mels:
        assert m.num_steps == len(primer) + 20
        assert m.qpm == 90 and m.steps_per_quarter == 4
        np.testing.assert_array_equal(enc.encode(m)[:len(primer)], primer)


def test_same_seed_same_melodies_other_seed_other(model):
    a = generate_melodies(model, num=2, length=40, seed=11)
    b = generate_melodies(model, num=2, length=40, seed=11)
    c = generate_melodies(model, num=2, length=40, seed=12)
    assert all(x == y for x, y in zip(a, b))
    assert any(x != y for x, y in zip(a, c))
    assert a[0] != a[1]  # the samples of one batch differ from each other


def test_default_primer_is_middle_c(model):
    m = generate_melodies(model, num=1, length=4, seed=0)[0]
    assert m.events[0] == 60


def test_top_k_one_is_greedy_and_equals_beam_of_one(model):
    greedy = generate_melodies(model, num=2, length=16, top_k=1, seed=1)
    other_seed = generate_melodies(model, num=2, length=16, top_k=1, seed=2)
    beam = generate_melodies(model, num=1, length=16, beam=1)
    assert greedy[0] == greedy[1] == other_seed[0] == beam[0]


def test_beam_search_returns_the_best_num(model):
    mels = generate_melodies(model, num=2, length=12, beam=3, seed=0)
    again = generate_melodies(model, num=2, length=12, beam=3, seed=99)  # deterministic: no key
    assert len(mels) == 2 and all(x == y for x, y in zip(mels, again))
    assert mels[0] != mels[1]


@pytest.mark.parametrize("changes, word", [
    (dict(temperature=0), "temperature"), (dict(temperature=-1.0), "temperature"),
    (dict(temperature=float("nan")), "temperature"), (dict(top_p=0.0), "top_p"), (dict(top_p=1.5), "top_p"),
    (dict(length=0), "length"), (dict(num=0), "num"), (dict(top_k=-1), "top_k"), (dict(top_k=91), "top_k"),
    (dict(beam=2, num=3), "beam"), (dict(beam=-1), "beam"), (dict(seed=1.5), "seed"),
])
def test_bad_settings_name_the_problem(model, changes, word):
    with pytest.raises(ConfigError, match=word):
        generate_melodies(model, **{"num": 2, "length": 8, **changes})
    with pytest.raises(ConfigError, match=word):
        check_settings(**{"vocab_size": 90, **changes})


def test_primer_tokens_outside_the_vocabulary_raise(model):
    with pytest.raises(EncodingError, match="outside"):
        generate_melodies(model, num=1, length=4, primer=np.array([41, 95]))


def test_melody_stats():
    s = melody_stats(Melody.from_notes([60, 67, 64], [0, 4, 12], [4, 8, 16]))
    assert (s["notes"], s["lowest"], s["highest"], s["longest_note_steps"]) == (3, 60, 67, 4)
    assert s["mean_note_steps"] == 4.0
    assert s["silence_share"] == pytest.approx(1 - 12 / 17, abs=1e-4)
    assert melody_stats(Melody(np.array([-2, -1, -2])))["notes"] == 0


# --- primers ----------------------------------------------------------------------------------

def test_read_primer_round_trip_and_cut(tmp_path):
    path = write_melody_midi(tmp_path / "p.mid", [60, 62, 64, 65], [4, 6, 8, 12], [6, 8, 12, 14])
    tokens, melody = read_primer(path)
    enc = MelodyEncoding()
    assert enc.decode(tokens).pitches.tolist() == [60, 62, 64, 65]
    assert tokens[0] == enc.pitch_to_token(60)  # the leading rest is dropped
    assert str(path) == melody.source
    cut, _ = read_primer(path, num_steps=8)     # the bar from step 0: rest, C, D
    assert enc.decode(cut).pitches.tolist() == [60, 62]


@pytest.mark.parametrize("pitch", [10, 120])
def test_read_primer_outside_the_pitch_range(tmp_path, pitch):
    path = write_melody_midi(tmp_path / "low.mid", [60, pitch], [0, 2], [2, 4])
    with pytest.raises(EncodingError, match=r"low\.mid.*21\.\.108"):
        read_primer(path)


def test_read_primer_bad_files(tmp_path):
    junk = tmp_path / "junk.mid"
    junk.write_bytes(b"RIFF not a midi file at all")
    with pytest.raises(MidiReadError, match="junk.mid"):
        read_primer(junk)
    with pytest.raises(MidiReadError, match="missing.mid"):
        read_primer(tmp_path / "missing.mid")
    empty = write_midi(melody_to_sequence(Melody(np.array([-2, -2]))), tmp_path / "empty.mid")
    with pytest.raises(LabkitError, match="empty.mid"):
        read_primer(empty)


# --- files and the command line ----------------------------------------------------------------

def test_write_outputs_files_and_summary(tmp_path, model):
    mels = generate_melodies(model, num=2, length=24, seed=3)
    records = write_outputs(mels, tmp_path / "o", audio=True, piano_roll=True, settings={"seed": 3})
    names = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert names == ["generation.json", "melody_001.mid", "melody_001.png", "melody_001.wav",
                     "melody_002.mid", "melody_002.png", "melody_002.wav"]
    summary = json.loads((tmp_path / "o" / "generation.json").read_text())
    assert summary["settings"] == {"seed": 3}
    assert [m["midi"] for m in summary["melodies"]] == ["melody_001.mid", "melody_002.mid"]
    for record, melody in zip(records, mels):
        seq = read_midi(record["midi"])
        assert len(seq.notes) == melody_stats(melody)["notes"] == record["notes"]
        assert sorted(n.pitch for n in seq.notes) == sorted(melody.pitches.tolist())
        assert Path(record["png"]).read_bytes()[:4] == b"\x89PNG"


def run_cli(*args):
    try:
        return cli.main(["generate", *map(str, args)])
    except SystemExit as exc:   # a flag out of its range is a usage error (one line, exit status 2)
        return exc.code


def test_cli_same_seed_writes_byte_identical_files(tmp_path, checkpoint, capsys):
    common = ["--checkpoint", checkpoint, "--num", 2, "--length", 32, "--temperature", 0.9, "--top-p", 0.95,
              "--seed", 7, "--audio"]
    assert run_cli(*common, "--out", tmp_path / "a") == 0
    assert run_cli(*common, "--out", tmp_path / "b") == 0
    assert run_cli(*common[:-2], 8, "--audio", "--out", tmp_path / "c") == 0
    out = capsys.readouterr().out
    assert "melody_001.mid" in out and "melody_002.wav" in out
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["generation.json", "melody_001.mid", "melody_001.wav", "melody_002.mid", "melody_002.wav"]
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "melody_001.mid").read_bytes() != (tmp_path / "c" / "melody_001.mid").read_bytes()
    assert len(read_midi(tmp_path / "a" / "melody_002.mid").notes) > 0


def test_cli_with_a_primer_file(tmp_path, checkpoint):
    primer = write_melody_midi(tmp_path / "primer.mid", [67, 69, 71], [0, 4, 8], [4, 8, 12])
    assert run_cli("--checkpoint", checkpoint, "--primer", primer, "--num", 1, "--length", 8,
                   "--out", tmp_path / "o") == 0
    pitches = [n.pitch for n in sorted(read_midi(tmp_path / "o" / "melody_001.mid").notes,
                                       key=lambda n: n.start_time)]
    assert pitches[:3] == [67, 69, 71]


@pytest.mark.parametrize("args, message", [
    (["--temperature", "0"], "temperature must be a number > 0"),
    (["--temperature", "-0.5"], "temperature"),
    (["--top-p", "0"], "top_p must lie in (0, 1]"),
    (["--top-p", "1.01"], "top_p"),
    (["--length", "0"], "length"),
    (["--num", "3", "--beam", "2"], "beam"),
    (["--primer", "PRIMER_LOW"], "outside the model's range 21..108"),
    (["--primer", "PRIMER_JUNK"], "junk.mid"),
    (["--primer", "PRIMER_MISSING"], "missing.mid"),
    (["--checkpoint", "NOT_A_CHECKPOINT"], "not_a_checkpoint.npz"),
    (["--primer-steps", "4"], "--primer-steps needs --primer"),
])
def test_cli_bad_parameters_exit_2_with_one_line(tmp_path, checkpoint, capsys, args, message):
    low = write_melody_midi(tmp_path / "low.mid", [15, 60], [0, 2], [2, 4])
    junk = tmp_path / "junk.mid"
    junk.write_bytes(b"MThd garbage")
    bad_ckpt = tmp_path / "not_a_checkpoint.npz"
    bad_ckpt.write_text("hello")
    swap = {"PRIMER_LOW": low, "PRIMER_JUNK": junk, "PRIMER_MISSING": tmp_path / "missing.mid",
            "NOT_A_CHECKPOINT": bad_ckpt}
    args = [str(swap.get(a, a)) for a in args]
    if "--checkpoint" not in args:
        args = ["--checkpoint", str(checkpoint), *args]
    assert run_cli(*args, "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("labkit: ")
    assert message in err
    assert not (tmp_path / "o").exists()  # nothing written


# --- the shipped model -------------------------------------------------------------------------

def test_the_shipped_model_is_in_the_package_and_generates(tmp_path, capsys):
    path = shipped_melody_model_path()
    assert path.parent.name == "assets" and path.parent.parent.name == "labkit"
    assert path.is_file(), "labkit/assets/melody_lstm.npz is missing: run `make model`"
    assert path.stat().st_size < 5 * 2 ** 20
    info = shipped_melody_model_info()
    test = info["scores"]["test"]
    assert test["bits_per_note"] == pytest.approx(test["bits_per_event"] * test["events"] / test["notes"], rel=1e-9)
    assert test["bits_per_event"] == pytest.approx(test["nats_per_event"] / np.log(2), rel=1e-9)
    model, config = load_melody_model()
    assert config == ModelConfig.from_dict(info["model_config"])     # a field added later reads as its default
    assert run_cli("--num", 2, "--length", 64, "--seed", 3, "--out", tmp_path / "s") == 0
    for name in ("melody_001.mid", "melody_002.mid"):
        notes = read_midi(tmp_path / "s" / name).notes
        assert len(notes) >= 4
        assert all(36 <= n.pitch <= 96 for n in notes)  # folk-tune range, not the whole piano


def test_load_melody_model_errors(tmp_path):
    with pytest.raises(CheckpointError, match="folder"):
        load_melody_model(tmp_path)
    with pytest.raises(CheckpointError, match="nope.npz"):
        load_melody_model(tmp_path / "nope.npz")
