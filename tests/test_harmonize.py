"""Tests of four-part harmony: the rules (labkit.polyphony.harmony), the chorale model
(labkit.polyphony.harmony_model) and `python -m labkit harmonize` with the shipped model."""
import note_seq
import numpy as np
import pytest
from flax import nnx

from labkit import cli
from labkit.errors import ConfigError
from labkit.midi_io import read_midi, write_midi
from labkit.polyphony.harmony import (VOICE_REST, ChoraleSetting, chorale_settings, harmony_counts, harmony_rates,
                                      key_scale, melody_chord_check, manifest_key, sequence_setting)
from labkit.polyphony.harmony_model import (HarmonyConfig, HarmonyTrainConfig, fit_harmony_model, harmonize_voices,
                                            load_harmony_model, make_harmony_model, save_harmony_model,
                                            soprano_shift)

C_MAJOR = (0, "major")


def setting(*columns):
    """Voices [4, T] from frames given as (S, A, T, B) columns."""
    return np.array(columns).T


# --- the rules, on hand-built settings -------------------------------------------------------------

def test_a_parallel_fifth_is_counted_once():
    # S and B a twelfth apart rise a step together; A and T hold: one pair move (S-B), one parallel fifth
    c = harmony_counts(setting((67, 64, 60, 48), (69, 64, 60, 50)), C_MAJOR)
    assert (c["parallel_fifths"], c["parallel_octaves"], c["pair_moves"]) == (1, 0, 1)
    assert harmony_rates(c)["parallel_fifths"] == 1.0


def test_contrary_and_oblique_motion_are_not_parallels():
    # a fifth to a twelfth by contrary motion (S up, B down): a pair move, no parallel fifth
    c = harmony_counts(setting((67, 64, 60, 60), (72, 64, 60, 53)), C_MAJOR)
    assert (c["parallel_fifths"], c["pair_moves"]) == (0, 1)
    # an octave kept while only one voice moves (the other holds): no move of the pair at all
    c = harmony_counts(setting((72, 64, 55, 48), (72, 64, 55, 48)), C_MAJOR)
    assert (c["parallel_octaves"], c["pair_moves"]) == (0, 0)


def test_parallel_octaves_and_unisons():
    # S and B two octaves apart both rise a step: a parallel octave (compound intervals count)
    c = harmony_counts(setting((72, 64, 55, 48), (74, 64, 55, 50)), C_MAJOR)
    assert (c["parallel_octaves"], c["parallel_fifths"], c["pair_moves"]) == (1, 0, 1)
    # A and T in unison both fall: a parallel unison; S holds, B holds
    c = harmony_counts(setting((72, 60, 60, 48), (72, 59, 59, 48)), C_MAJOR)
    assert (c["parallel_octaves"], c["pair_moves"]) == (1, 1)


def test_voice_crossing_counts_adjacent_pairs_per_frame():
    c = harmony_counts(setting((72, 55, 60, 48), (72, 64, 60, 48), (72, 60, 60, 48)), C_MAJOR)
    # frame 0: the alto below the tenor (one crossing); frame 2: a unison, no crossing; 3 pairs x 3 frames
    assert (c["crossings"], c["adjacent_frames"]) == (1, 9)


def test_ranges_and_rests():
    # soprano G#5 (80) above G5, bass C2 (36) below E2; the tenor rests in frame 1 (not counted at all)
    c = harmony_counts(setting((80, 64, 55, 36), (79, 64, VOICE_REST, 40)), C_MAJOR)
    assert (c["out_of_range"], c["voice_frames"]) == (2, 7)
    assert harmony_rates(c)["out_of_range"] == pytest.approx(2 / 7)


def test_bass_outside_the_key_allows_raised_sixth_and_seventh_in_minor():
    frames = [(72, 64, 60, b) for b in (54, 56, 58, 57)]         # F#, G#, Bb, A
    assert harmony_counts(setting(*frames), C_MAJOR)["bass_out_of_key"] == 3
    a_minor = harmony_counts(setting(*frames), manifest_key("A minor"))
    assert (a_minor["bass_out_of_key"], a_minor["bass_frames"]) == (1, 4)   # only Bb; F# and G# are raised 6, 7
    assert sorted(key_scale(*manifest_key("Eb major"))) == [0, 2, 3, 5, 7, 8, 10]
    with pytest.raises(ConfigError):
        manifest_key("H minor")


def test_chorale_settings_read_four_voices_from_the_corpus():
    settings, skipped = chorale_settings("test", max_tunes=2)
    assert skipped == [] and len(settings) == 2
    s = settings[0]
    assert s.voices.shape[0] == 4 and s.split == "test" and s.bar_position.shape == s.voices.shape[1:]
    sounding = s.voices[:, (s.voices != VOICE_REST).all(axis=0)]
    assert (sounding[0] >= sounding[3]).all()                        # soprano on top, bass below


def test_sequence_setting_skips_three_voices():
    seq = note_seq.NoteSequence()
    seq.tempos.add(qpm=120)
    for i, p in enumerate((72, 64, 48)):
        seq.notes.add(pitch=p, start_time=0, end_time=1, velocity=80, instrument=i)
    assert sequence_setting(seq) is None


def test_soprano_shift_moves_by_octaves_when_it_can():
    assert soprano_shift([67, 72, 76]) == 0
    assert soprano_shift([55, 60, 64]) == 12
    assert soprano_shift([40, 70]) == 15      # too wide for whole octaves: centred on 70


# --- the model --------------------------------------------------------------------------------------

TINY = HarmonyConfig(embed=4, soprano_hidden=8, hidden=8, head_hidden=8, dropout=0.1)


def toy_settings(n=3):
    out = []
    for k in range(n):
        v = np.array([[72, 74, 76, 77, 79, 77, 76, 74], [67, 67, 67, 69, 71, 69, 67, 67],
                      [64, 62, 60, 60, 62, 60, 60, 59], [48, 55, 48, 53, 55, 53, 48, 55]]) + k
        out.append(ChoraleSetting(f"toy{k}", v, np.ones_like(v, bool), np.arange(8) % 8, C_MAJOR))
    return out


def test_a_tiny_training_run_is_reproducible(tmp_path):
    cfg = HarmonyTrainConfig(steps=3, batch_size=2, eval_every=2, seed=4)
    a, ha = fit_harmony_model(toy_settings(), toy_settings(1), config=TINY, train_config=cfg)
    b, hb = fit_harmony_model(toy_settings(), toy_settings(1), config=TINY, train_config=cfg)
    wa, wb = nnx.state(a, nnx.Param), nnx.state(b, nnx.Param)
    assert all(np.array_equal(x, y) for x, y in zip(jax_leaves(wa), jax_leaves(wb)))
    assert ha["valid_nats"] == hb["valid_nats"] and ha["steps"] == 3
    save_harmony_model(tmp_path / "m", a, {"note": "tiny"})
    loaded, meta = load_harmony_model(tmp_path / "m")
    s = toy_settings(1)[0]
    same = [harmonize_voices(m, s.voices[0], s.onsets[0], s.bar_position, seed=9) for m in (a, loaded)]
    assert np.array_equal(*same) and meta["note"] == "tiny"
    assert np.array_equal(same[0][0], s.voices[0]) and same[0].shape == (4, 8)


def jax_leaves(tree):
    import jax
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def test_sampling_is_seeded():
    model = make_harmony_model(TINY, 0)
    s = toy_settings(1)[0]
    draw = [harmonize_voices(model, s.voices[0], s.onsets[0], s.bar_position, seed=k) for k in (1, 1, 2)]
    assert np.array_equal(draw[0], draw[1]) and not np.array_equal(draw[0], draw[2])


# --- the command, with the shipped model ------------------------------------------------------------

def own_melody(path, *, chord=False, empty=False):
    """A tune written here (not from the corpus), in 3/4 at 100 qpm, with a rest and a dotted note."""
    seq = note_seq.NoteSequence(ticks_per_quarter=480)
    seq.tempos.add(qpm=100)
    seq.time_signatures.add(numerator=3, denominator=4)
    q = 0.6
    notes = [(62, 0, 1), (66, 1, 2), (69, 2, 3), (71, 3, 4.5), (69, 4.5, 5), (66, 5, 6), (64, 6, 7), (62, 7, 8),
             (61, 8, 9), (62, 10, 12)]                               # a rest at beat 9
    if not empty:
        for p, a, b in notes:
            seq.notes.add(pitch=p, start_time=a * q, end_time=b * q, velocity=90)
    if chord:
        seq.notes.add(pitch=74, start_time=3 * q, end_time=4 * q, velocity=90)
    write_midi(seq, path)
    return path


def test_harmonize_the_students_own_melody(tmp_path, capsys):
    melody = own_melody(tmp_path / "tune.mid")
    assert cli.main(["harmonize", str(melody), "--out", str(tmp_path / "a"), "--seed", "3"]) == 0
    out = read_midi(tmp_path / "a" / "harmonized.mid")
    assert [i.name for i in sorted(out.instrument_infos, key=lambda i: i.instrument)] == [
        "Soprano", "Alto", "Tenor", "Bass"]
    assert sorted({n.instrument for n in out.notes}) == [0, 1, 2, 3]
    given = read_midi(melody)
    soprano = sorted((n.pitch, round(n.start_time, 3), round(n.end_time, 3)) for n in out.notes if n.instrument == 0)
    assert soprano == sorted((n.pitch, round(n.start_time, 3), round(n.end_time, 3)) for n in given.notes)
    for i in (1, 2, 3):
        assert all(n.pitch < 74 for n in out.notes if n.instrument == i)
    assert (tmp_path / "a" / "harmonized.wav").stat().st_size > 1000
    assert (tmp_path / "a" / "harmonized.png").read_bytes()[:4] == b"\x89PNG"
    assert "4 voices" in capsys.readouterr().out
    # the same seed gives the same bytes; another seed other voices
    assert cli.main(["harmonize", str(melody), "--out", str(tmp_path / "b"), "--seed", "3"]) == 0
    for name in ("harmonized.mid", "harmonized.wav", "harmonized.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert cli.main(["harmonize", str(melody), "--out", str(tmp_path / "c"), "--seed", "4"]) == 0
    assert (tmp_path / "a" / "harmonized.mid").read_bytes() != (tmp_path / "c" / "harmonized.mid").read_bytes()


@pytest.mark.parametrize("kind, words", [("empty", "holds no notes"), ("chord", "chord at 1.80 s"),
                                         ("garbage", "")])
def test_bad_melodies_give_one_line_and_exit_2(tmp_path, capsys, kind, words):
    path = tmp_path / f"{kind}.mid"
    if kind == "garbage":
        path.write_bytes(b"this is not a MIDI file at all")
    else:
        own_melody(path, chord=kind == "chord", empty=kind == "empty")
    assert cli.main(["harmonize", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("labkit: ") and str(path) in err and words in err
    assert not (tmp_path / "out" / "harmonized.mid").exists()


def test_chord_check_allows_a_legato_overlap():
    seq = note_seq.NoteSequence()
    seq.tempos.add(qpm=120)
    seq.notes.add(pitch=60, start_time=0, end_time=0.52, velocity=80)
    seq.notes.add(pitch=62, start_time=0.5, end_time=1, velocity=80)    # 0.02 s overlap: legato, not a chord
    melody_chord_check(seq, "legato.mid")


def test_the_rules_leave_out_forbidden_pitches_even_for_an_untrained_model():
    model = make_harmony_model(TINY, 3)
    rng = np.random.default_rng(0)
    soprano = rng.integers(62, 78, size=96)
    onset, position = np.ones(96, bool), np.arange(96) % 8
    free = harmonize_voices(model, soprano, onset, position, seed=2, temperature=2.0, rules=False)
    ruled = harmonize_voices(model, soprano, onset, position, seed=2, temperature=2.0, rules=True)
    f, r = harmony_counts(free, C_MAJOR), harmony_counts(ruled, C_MAJOR)
    assert f["parallel_fifths"] + f["parallel_octaves"] + f["crossings"] + f["out_of_range"] > 0
    assert (r["parallel_fifths"], r["parallel_octaves"], r["crossings"], r["out_of_range"]) == (0, 0, 0, 0)
    assert np.array_equal(ruled[0], soprano)


def test_no_rules_flag(tmp_path):
    melody = own_melody(tmp_path / "tune.mid")
    assert cli.main(["harmonize", str(melody), "--out", str(tmp_path / "free"), "--no-rules", "--seed", "3"]) == 0
    assert len(read_midi(tmp_path / "free" / "harmonized.mid").instrument_infos) == 4
