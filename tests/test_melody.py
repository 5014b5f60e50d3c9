"""Tests of labkit.melody: the Melody type, quantization, extraction, keys, phrases."""
import numpy as np
import pytest
from note_seq import sequences_lib
from note_seq.protobuf import music_pb2

from labkit.errors import (ConfigError, EncodingError, LabkitError, MidiValueError, NoMelodyError,
                           NoNotesError)
from labkit.melody import (KEY_TONIC_NAMES, KRUMHANSL_MAJOR, KRUMHANSL_MINOR, MELODY_VELOCITY, NO_EVENT, NOTE_OFF,
                           Melody, _note_table, as_notes, estimate_key, extract_melodies, key_correlations,
                           key_shift, melody_to_sequence, normalize_key, normalize_note_values,
                           pitch_class_durations, quantize, split_phrases, transpose, tune_melody)

MAJOR_SCALE = [0, 2, 4, 5, 7, 9, 11]
HARMONIC_MINOR = [0, 2, 3, 5, 7, 8, 11]


# --- helpers --------------------------------------------------------------------------

def make_sequence(notes, *, qpm=120.0, filename="song.mid", tempos=None, time_signatures=None,
                  key_signatures=None, total_time=None):
    """A NoteSequence from ``(pitch, start_s, end_s[, instrument[, is_drum]])`` tuples."""
    seq = music_pb2.NoteSequence()
    seq.filename = filename
    seq.ticks_per_quarter = 220
    for time, q in (tempos if tempos is not None else [(0.0, qpm)]):
        seq.tempos.add(time=time, qpm=q)
    for time, num, den in (time_signatures or []):
        seq.time_signatures.add(time=time, numerator=num, denominator=den)
    for time, key, mode in (key_signatures or []):
        seq.key_signatures.add(time=time, key=key, mode=mode)
    for note in notes:
        pitch, start, end = note[:3]
        instrument = note[3] if len(note) > 3 else 0
        drum = note[4] if len(note) > 4 else False
        seq.notes.add(pitch=pitch, start_time=start, end_time=end, velocity=80, instrument=instrument,
                      is_drum=drum)
    seq.total_time = total_time if total_time is not None else max([n[2] for n in notes], default=0.0)
    return seq


def step_notes(notes, spq=4, qpm=120.0, **kwargs):
    """make_sequence with times given in steps at ``spq`` and ``qpm``."""
    sec = 60.0 / (qpm * spq)
    return make_sequence([(n[0], n[1] * sec, n[2] * sec) + tuple(n[3:]) for n in notes], qpm=qpm, **kwargs)


def random_melody(rng, *, max_notes=40, max_rest=4, lo=48, hi=84, spq=4, lead_max=3, **fields):
    """A melody as Melody.from_notes builds it: random pitches, lengths and rests."""
    k = int(rng.integers(1, max_notes + 1))
    durations = rng.integers(1, 9, size=k)
    rests = rng.integers(0, max_rest + 1, size=k) * (rng.random(k) < 0.3)
    starts = np.empty(k, dtype=np.int64)
    bar = spq * 4 * fields.get("numerator", 4) // fields.get("denominator", 4)
    t = int(rng.integers(0, min(lead_max, bar - 1) + 1))  # the first note lies in the first bar
    for i in range(k):
        starts[i] = t
        t += int(durations[i] + rests[i])
    return Melody.from_notes(rng.integers(lo, hi + 1, size=k), starts, starts + durations,
                             steps_per_quarter=spq, **fields)


def notes_of(melody):
    return [tuple(int(x) for x in n) for n in zip(*melody.notes())]


# --- the Melody type -------------------------------------------------------------------

def test_from_notes_and_notes_are_inverse_on_random_melodies():
    rng = np.random.default_rng(0)
    for _ in range(200):
        m = random_melody(rng)
        p, s, e = m.notes()
        again = Melody.from_notes(p, s, e)
        assert again == m
        assert (e > s).all() and (s[1:] >= e[:-1]).all()
        assert m.events[-1] == NOTE_OFF and m.num_steps == e[-1] + 1


def test_melody_rejects_bad_events_and_overlaps():
    with pytest.raises(EncodingError, match="tune7"):
        Melody(np.array([60, 130]), source="tune7")
    with pytest.raises(EncodingError, match="overlap"):
        Melody.from_notes([60, 62], [0, 1], [2, 3])
    with pytest.raises(EncodingError):
        Melody.from_notes([60], [0], [4], num_steps=3)


# --- quantize --------------------------------------------------------------------------

def test_quantize_matches_note_seq_for_one_tempo():
    seq = make_sequence([(60, 0.0, 0.49), (62, 0.51, 0.74), (64, 0.76, 1.9)], qpm=100.0)
    ours, theirs = quantize(seq, 4), sequences_lib.quantize_note_sequence(seq, 4)
    assert ours == theirs
    assert [n.quantized_start_step for n in ours.notes] == [0, 3, 5]
    assert sequences_lib.is_relative_quantized_sequence(ours)


def test_quantize_counts_steps_through_tempo_changes():
    # 120 qpm for 2 s (4 quarters = 16 steps), then 60 qpm: 1 s more is one quarter (4 steps).
    seq = make_sequence([(60, 0.0, 2.0), (62, 2.0, 3.0), (64, 3.0, 5.0)], tempos=[(0.0, 120.0), (2.0, 60.0)])
    with pytest.raises(sequences_lib.MultipleTempoError):
        sequences_lib.quantize_note_sequence(seq, 4)
    q = quantize(seq, 4)
    assert [(n.quantized_start_step, n.quantized_end_step) for n in q.notes] == [(0, 16), (16, 20), (20, 28)]
    assert len(q.tempos) == 1 and q.tempos[0].qpm == 120.0
    assert q.total_quantized_steps == 28
    assert sequences_lib.is_relative_quantized_sequence(q)


def test_quantize_implicit_first_tempo_and_signature_changes():
    # first tempo event at 1 s: 120 qpm holds before it (2 quarters = 8 steps)
    seq = make_sequence([(60, 0.0, 1.0), (62, 1.0, 2.0)], tempos=[(1.0, 60.0)],
                        time_signatures=[(0.0, 3, 4), (1.0, 2, 4)])
    q = quantize(seq, 4)
    assert [(n.quantized_start_step, n.quantized_end_step) for n in q.notes] == [(0, 8), (8, 12)]
    assert [(t.numerator, t.denominator) for t in q.time_signatures] == [(3, 4)]
    bad = make_sequence([(60, 0.0, 1.0)], time_signatures=[(0.0, 3, 3)])
    q = quantize(bad, 4)
    assert [(t.numerator, t.denominator) for t in q.time_signatures] == [(4, 4)]
    assert q.notes[0].quantized_end_step == 8


def test_quantize_errors_name_the_file():
    with pytest.raises(MidiValueError, match=r"^neg\.mid: .*negative"):
        quantize(make_sequence([(60, -1.0, 0.5)], filename="neg.mid"))
    with pytest.raises(MidiValueError, match=r"^slow\.mid: .*tempo"):
        quantize(make_sequence([(60, 0.0, 0.5)], tempos=[(0.0, 120.0), (1.0, 0.0)], filename="slow.mid"))
    with pytest.raises(ConfigError, match="steps_per_quarter"):
        quantize(make_sequence([(60, 0.0, 0.5)]), 0)


def test_fast_note_table_agrees_with_quantize_on_random_tempo_maps():
    rng = np.random.default_rng(1)
    for trial in range(30):
        n = int(rng.integers(1, 30))
        starts = np.sort(rng.random(n) * 20)
        notes = [(int(rng.integers(40, 90)), float(s), float(s + rng.random() * 2)) for s in starts]
        k = int(rng.integers(0, 4))
        tempos = [(0.0, float(rng.uniform(40, 200)))] + [(float(t), float(rng.uniform(40, 200)))
                                                          for t in np.sort(rng.random(k) * 20)]
        seq = make_sequence(notes, tempos=tempos)
        q = quantize(seq, 4)
        _, start, end, _, _ = _note_table(seq, 4, "x")
        assert start.tolist() == [n.quantized_start_step for n in q.notes]
        assert end.tolist() == [n.quantized_end_step for n in q.notes]


# --- extract_melodies ------------------------------------------------------------------

def test_skyline_keeps_the_highest_sounding_pitch():
    # a chord (top wins), a lower note under a held high note (not heard, comes in when the high
    # note ends), a higher note cutting a lower one for good, and a re-strike of the top pitch.
    seq = step_notes([(60, 0, 4), (64, 0, 4), (67, 0, 4),
                      (72, 4, 8), (65, 6, 10),
                      (60, 10, 16), (62, 12, 14),
                      (70, 16, 22), (70, 18, 20)])
    (m,) = extract_melodies(seq, min_notes=1)
    assert notes_of(m) == [(67, 0, 4), (72, 4, 8), (65, 8, 10), (60, 10, 12), (62, 12, 14),
                           (70, 16, 18), (70, 18, 20)]
    # a hidden note that still sounds beats a lower note starting when the top note ends;
    # a cut note does not come back
    seq = step_notes([(72, 0, 4), (65, 2, 8), (60, 4, 6), (55, 8, 12), (67, 9, 10)])
    (m,) = extract_melodies(seq, min_notes=1)
    assert notes_of(m) == [(72, 0, 4), (65, 4, 8), (55, 8, 9), (67, 9, 10)]


def test_skyline_properties_on_random_polyphony():
    from labkit.melody import _skyline

    rng = np.random.default_rng(6)
    for _ in range(200):
        n = int(rng.integers(1, 25))
        pitch = rng.integers(50, 60, size=n)
        start = rng.integers(0, 40, size=n)
        end = start + rng.integers(1, 12, size=n)
        p, s, e = _skyline(pitch, start, end)
        assert (e > s).all() and (s[1:] >= e[:-1]).all()  # monophonic
        sounding = np.zeros((60, 128), dtype=bool)
        for a, b, c in zip(pitch, start, end):
            sounding[b:c, a] = True
        for a, b, c in zip(p, s, e):
            assert sounding[b:c, a].all()  # every melody note sounds in the input all along
        for t in np.unique(start):  # whatever starts, the melody then sounds at least as high
            k = np.searchsorted(s, t, side="right") - 1
            assert k >= 0 and s[k] <= t < e[k] and p[k] >= pitch[start == t].max()
        assert Melody.from_notes(p, s, e).notes()[0].tolist() == p.tolist()


def test_instrument_and_skyline_strategies():
    upper = [(72 + i % 3, 2 * i, 2 * i + 2, 1) for i in range(8)]
    lower = [(48 + i % 2, 4 * i, 4 * i + 4, 0) for i in range(4)]
    drums = [(36, i, i + 1, 9, True) for i in range(16)]
    seq = step_notes(upper + lower + drums)
    by_instrument = extract_melodies(seq, min_notes=4)
    assert [m.pitches.tolist() for m in by_instrument] == [[48, 49, 48, 49], [72, 73, 74, 72, 73, 74, 72, 73]]
    (top,) = extract_melodies(seq, min_notes=4, strategy="skyline")
    assert top.pitches.tolist() == [72, 73, 74, 72, 73, 74, 72, 73]
    with pytest.raises(ConfigError, match="strategy"):
        extract_melodies(seq, strategy="loudest")


def test_melodies_split_at_long_rests_and_start_at_a_bar_line():
    # 8 notes, a rest of exactly 4 quarters (16 steps: kept), 8 notes, a rest of 17 steps (split)
    first = [(60 + i, 2 * i, 2 * i + 2) for i in range(8)]
    second = [(70 + i, 32 + 2 * i, 34 + 2 * i) for i in range(8)]
    third = [(50 + i, 64 + 1 + 2 * i, 64 + 3 + 2 * i) for i in range(8)]
    seq = step_notes(first + second + third)
    mels = extract_melodies(seq)
    assert [len(m.pitches) for m in mels] == [16, 8]
    # the third group starts at step 65, inside bar 5 (steps 64..79): the melody starts at 64
    assert mels[1].events[0] == NO_EVENT and mels[1].events[1] == 50
    assert len(extract_melodies(seq, max_gap_quarters=2.0)) == 3
    assert len(extract_melodies(seq, max_gap_quarters=100)) == 1


def test_min_notes_and_pitch_range():
    seq = step_notes([(60 + i, 2 * i, 2 * i + 2) for i in range(8)] + [(100, 0, 16, 1)])
    assert [m.pitches.tolist() for m in extract_melodies(seq, max_pitch=90)] == [list(range(60, 68))]
    with pytest.raises(NoMelodyError, match=r"^song\.mid: .*at least 9 notes.*longest has 8"):
        extract_melodies(seq, min_notes=9)
    with pytest.raises(NoMelodyError, match="within pitches 20..30"):
        extract_melodies(seq, min_pitch=20, max_pitch=30)
    with pytest.raises(ConfigError):
        extract_melodies(seq, min_notes=0)


def test_no_notes_and_drums_only_name_the_file():
    with pytest.raises(NoNotesError, match=r"^empty\.mid: no notes"):
        extract_melodies(make_sequence([], filename="empty.mid"))
    drums = make_sequence([(36, 0.0, 0.1, 9, True)], filename="beat.mid")
    with pytest.raises(NoNotesError, match=r"^beat\.mid: only drum notes"):
        extract_melodies(drums)
    with pytest.raises(NoNotesError, match=r"^beat\.mid"):
        tune_melody(drums)
    assert issubclass(NoNotesError, LabkitError)


def test_extracted_fields_come_from_the_first_annotations():
    notes = [(57 + MAJOR_SCALE[i % 7], 3 * i, 3 * i + 3) for i in range(10)]
    minor = music_pb2.NoteSequence.KeySignature.MINOR
    seq = step_notes(notes, qpm=90.0, time_signatures=[(0.0, 6, 8), (3.0, 3, 4)],
                     key_signatures=[(0.0, 9, minor), (2.0, 2, 0)])
    (m,) = extract_melodies(seq)
    assert (m.qpm, m.key, m.mode, m.numerator, m.denominator, m.source) == (90.0, 9, "minor", 6, 8, "song.mid")
    seq.filename = ""
    seq.id = "tune-42"
    assert extract_melodies(seq)[0].source == "tune-42"


def test_key_is_estimated_when_the_file_has_none():
    notes = [(62 + MAJOR_SCALE[i % 7], 2 * i, 2 * i + 2) for i in range(14)] + [(62, 28, 40)]
    (m,) = extract_melodies(step_notes(notes))  # D major scale, no key signature
    assert (m.key, m.mode) == (2, "major")


def test_extract_accepts_quantized_sequences():
    seq = step_notes([(60 + i, 2 * i, 2 * i + 1) for i in range(8)])
    assert extract_melodies(quantize(seq, 4)) == extract_melodies(seq)
    assert extract_melodies(quantize(seq, 8), steps_per_quarter=8)[0].steps_per_quarter == 8
    with pytest.raises(ConfigError, match=r"^song\.mid: .*quantized at 8"):
        extract_melodies(quantize(seq, 8))


def test_extract_survives_tempo_changes():
    # 8 eighth notes at 120 then 8 at 60 qpm: every note is two steps on the grid
    sec = [0.25 * i for i in range(9)] + [2.0 + 0.5 * i for i in range(1, 9)]
    notes = [(60 + i, sec[i], sec[i + 1]) for i in range(16)]
    (m,) = extract_melodies(make_sequence(notes, tempos=[(0.0, 120.0), (2.0, 60.0)]))
    assert notes_of(m) == [(60 + i, 2 * i, 2 * i + 2) for i in range(16)]
    assert m.qpm == 120.0


def test_melody_to_sequence_and_back_on_random_melodies():
    rng = np.random.default_rng(2)
    for trial in range(100):
        fields = dict(qpm=float(rng.choice([60, 96, 120, 151.5])), key=int(rng.integers(12)),
                      mode=str(rng.choice(["major", "minor"])), numerator=int(rng.choice([2, 3, 4, 6])),
                      denominator=int(rng.choice([4, 8])), source=f"t{trial}")
        spq = int(rng.choice([2, 4, 12]))
        m = random_melody(rng, spq=spq, **fields)
        seq = melody_to_sequence(m)
        (back,) = extract_melodies(seq, steps_per_quarter=spq, min_notes=1, max_gap_quarters=100)
        assert back == m
        assert (back.qpm, back.key, back.mode, back.numerator, back.denominator, back.source) == \
            (m.qpm, m.key, m.mode, m.numerator, m.denominator, m.source)
        assert tune_melody(seq, steps_per_quarter=spq) == m


def test_melody_to_sequence_contents():
    m = Melody.from_notes([60, 64], [0, 4], [2, 8], qpm=60.0, key=4, mode="minor", numerator=3,
                          denominator=4, source="x")
    seq = melody_to_sequence(m, velocity=70, program=40)
    assert [(n.pitch, n.start_time, n.end_time, n.velocity, n.program) for n in seq.notes] == \
        [(60, 0.0, 0.5, 70, 40), (64, 1.0, 2.0, 70, 40)]
    assert seq.total_time == pytest.approx(9 * 0.25)
    assert (seq.key_signatures[0].key, seq.key_signatures[0].mode) == (4, music_pb2.NoteSequence.KeySignature.MINOR)
    assert (seq.time_signatures[0].numerator, seq.tempos[0].qpm, seq.id) == (3, 60.0, "x")
    with pytest.raises(ConfigError):
        melody_to_sequence(m, velocity=0)


def test_tune_melody_is_the_first_pitched_instrument_unsplit():
    # a chorale-like file: drums on instrument 0, soprano 1, alto 2; a long rest and a pickup rest
    soprano = [(72, 2, 4, 1), (74, 4, 8, 1), (76, 40, 48, 1)]
    alto = [(65, 0, 8, 2), (67, 40, 48, 2)]
    seq = step_notes(soprano + alto + [(36, 0, 1, 0, True)])
    m = tune_melody(seq)
    assert notes_of(m) == [(72, 2, 4), (74, 4, 8), (76, 40, 48)]
    assert m.events[0] == NO_EVENT and m.source == "song.mid"
    with pytest.raises(NoMelodyError):
        extract_melodies(seq)  # the default min_notes=8 finds nothing here


# --- transposition and keys -------------------------------------------------------------

def test_transpose_inverse_and_range():
    rng = np.random.default_rng(3)
    for _ in range(100):
        m = random_melody(rng, key=int(rng.integers(12)))
        k = int(rng.integers(-30, 31))
        up = transpose(m, k)
        assert (up.pitches == m.pitches + k).all() and up.key == (m.key + k) % 12
        assert transpose(up, -k) == m and transpose(up, -k).key == m.key
        assert ((up.events < 0) == (m.events < 0)).all()
    high = Melody.from_notes([120], [0], [1], source="hi.mid")
    with pytest.raises(EncodingError, match=r"^hi\.mid: .*121\.\.128|^hi\.mid: .*128"):
        transpose(high, 8)


def scale_melody(tonic, degrees, base=60):
    # up and down the scale, tonic long at the end
    pitches = [base + tonic + d for d in degrees] + [base + tonic + 12] + \
              [base + tonic + d for d in reversed(degrees)]
    k = len(pitches)
    starts = np.arange(k) * 2
    ends = starts + 2
    ends[-1] += 6
    return Melody.from_notes(pitches, starts, ends)


@pytest.mark.parametrize("tonic", range(12))
def test_estimate_key_finds_scales_in_every_key(tonic):
    assert estimate_key(scale_melody(tonic, MAJOR_SCALE)) == (tonic, "major")
    assert estimate_key(scale_melody(tonic, HARMONIC_MINOR)) == (tonic, "minor")


def test_estimate_key_is_transposition_equivariant_and_uses_durations():
    rng = np.random.default_rng(4)
    for _ in range(30):
        m = random_melody(rng, max_notes=30)
        tonic, mode = estimate_key(m)
        k = int(rng.integers(-6, 7))
        assert estimate_key(transpose(m, k)) == ((tonic + k) % 12, mode)
    # the same pitches, weighted by duration: a long E and G make C major; a long A makes A minor
    assert estimate_key(Melody.from_notes([60, 64, 67, 69], [0, 8, 9, 17], [8, 9, 17, 18])) == (0, "major")
    assert estimate_key(Melody.from_notes([60, 64, 67, 69], [0, 1, 2, 3], [1, 2, 3, 20])) == (9, "minor")
    assert estimate_key(Melody(np.array([], dtype=np.int32))) == (0, "major")
    corr = key_correlations(scale_melody(0, MAJOR_SCALE))
    assert corr.shape == (2, 12) and corr.argmax() == 0
    # the same numbers as numpy's Pearson correlation with each rotated profile
    hist = pitch_class_durations(scale_melody(0, MAJOR_SCALE))
    expected = [[np.corrcoef(hist, np.roll(profile, tonic))[0, 1] for tonic in range(12)]
                for profile in (KRUMHANSL_MAJOR, KRUMHANSL_MINOR)]
    np.testing.assert_allclose(corr, expected, atol=1e-12)
    assert KRUMHANSL_MAJOR.argmax() == 0


def test_key_shift_is_the_smallest_move_to_c_major_or_a_minor():
    for tonic in range(12):
        for mode, target in (("major", 0), ("minor", 9)):
            s = key_shift(tonic, mode)
            assert -6 <= s <= 5 and (tonic + s) % 12 == target


def test_normalize_key_by_signature_or_estimate():
    g_major = scale_melody(7, MAJOR_SCALE, base=60)
    signed = g_major.replace(key=7, mode="major")
    c = normalize_key(signed)
    assert (c.key, c.mode) == (0, "major") and (c.pitches == g_major.pitches + 5).all()
    # a wrong signature is trusted with use_signature=True, ignored with False
    wrong = g_major.replace(key=2, mode="major")
    assert (normalize_key(wrong).pitches == g_major.pitches - 2).all()
    assert (normalize_key(wrong, use_signature=False).pitches == g_major.pitches + 5).all()
    e_minor = scale_melody(4, HARMONIC_MINOR).replace(key=4, mode="minor")
    a = normalize_key(e_minor)
    assert (a.key, a.mode) == (9, "minor") and (a.pitches == e_minor.pitches + 5).all()
    # near the top of the range: +5 would leave 0..127, so the melody goes down 7 instead
    top = Melody.from_notes([124, 126], [0, 1], [1, 2], key=7)
    assert normalize_key(top).pitches.tolist() == [117, 119]


def test_normalize_note_values_rereads_only_long_notations():
    # a 4/2 tune in half notes (8 steps at 4 per quarter), with one whole note: median 2 quarters
    halves = Melody.from_notes([67, 69, 71, 72, 74], [0, 8, 16, 24, 32], [8, 16, 24, 32, 48],
                               numerator=4, denominator=2, qpm=100.0)
    m = normalize_note_values(halves)
    assert (m.steps_per_quarter, m.numerator, m.denominator, m.qpm) == (16, 4, 8, 25.0)
    assert np.array_equal(m.events, halves.events)           # the same steps: nothing is lost
    _, s, e = m.notes()
    assert np.median((e - s) / m.steps_per_quarter) == 0.5   # halves read as eighths
    # seconds per step are unchanged (steps_per_quarter and qpm move together)
    assert 60 / (m.qpm * m.steps_per_quarter) == 60 / (halves.qpm * halves.steps_per_quarter)
    # 3/1 in whole notes (16 steps): divided by 8, to eighths in 3/8
    wholes = Melody.from_notes([60, 62, 64], [0, 16, 32], [16, 32, 48], numerator=3, denominator=1)
    w = normalize_note_values(wholes)
    assert (w.steps_per_quarter, w.denominator) == (32, 8)
    # a chorale in quarters, a tune in dotted eighths and a reel in eighths keep their values
    for steps in (4, 3, 2):
        tune = Melody.from_notes([60, 62, 64, 65], [0, steps, 2 * steps, 3 * steps],
                                 [steps, 2 * steps, 3 * steps, 4 * steps])
        assert normalize_note_values(tune) is tune
    empty = Melody(np.zeros(0, np.int32))
    assert normalize_note_values(empty) is empty


# --- phrases ----------------------------------------------------------------------------

def test_split_phrases_at_rests_and_long_notes_at_bar_ends():
    # 4/4, 16 steps a bar. Bar 1: four quarters; bar 2: two quarters and a half note ending the bar
    # (a long note at a bar end: phrase end); bar 3: two eighths, a quarter rest (longer than half a
    # quarter: phrase end), then eighths and a quarter.
    m = Melody.from_notes([60, 62, 64, 65, 67, 69, 71, 72, 74, 71, 69, 67],
                          [0, 4, 8, 12, 16, 20, 24, 32, 34, 40, 42, 44],
                          [4, 8, 12, 16, 20, 24, 32, 34, 36, 42, 44, 48], source="t")
    phrases = split_phrases(m, min_phrase_bars=0)
    assert [p.pitches.tolist() for p in phrases] == [[60, 62, 64, 65, 67, 69, 71], [72, 74], [71, 69, 67]]
    assert [p.source for p in phrases] == ["t#1", "t#2", "t#3"]
    assert [p.num_steps for p in phrases] == [32, 8, 9]
    # a quarter rest is not longer than max_rest_quarters=1.0
    assert len(split_phrases(m, min_phrase_bars=0, max_rest_quarters=1.0)) == 2
    # moving the bar lines by a quarter loses the half note's bar line
    assert len(split_phrases(m, min_phrase_bars=0, bar_offset_steps=4)) == 2
    assert len(split_phrases(m, min_phrase_bars=0, long_note_quarters=3)) == 2
    # by default a phrase spans at least 2 bars: the rest after bar 3's eighths is no boundary
    assert [len(p.pitches) for p in split_phrases(m)] == [7, 5]
    with pytest.raises(ConfigError):
        split_phrases(m, steps_per_bar=0)


def test_split_phrases_pickup_cadence_and_longest_phrase():
    # 3/4 (12 steps a bar), a quarter pickup; phrases end on a half note on the downbeat
    # followed by the next phrase's pickup
    starts = [8, 12, 16, 20, 24, 32, 36, 40, 44, 48, 56, 60, 64, 68, 72]
    durations = [4, 4, 4, 4, 8, 4, 4, 4, 4, 8, 4, 4, 4, 4, 12]
    m = Melody.from_notes(60 + np.arange(15), starts, np.add(starts, durations), numerator=3, denominator=4)
    phrases = split_phrases(m, min_phrase_bars=1)
    assert [p.num_steps for p in phrases] == [32, 24, 29]
    assert [p.pitches.tolist()[0] for p in phrases] == [60, 65, 70]  # later phrases open with their pickup
    assert split_phrases(m) == phrases
    # at least 2.5 bars (30 steps): the second cadence, 24 steps after the first, is no boundary
    assert [p.num_steps for p in split_phrases(m, min_phrase_bars=2.5)] == [32, 53]
    # eighths for 12 bars, no rest, no long note: cut every max_phrase_bars bars
    run = Melody.from_notes(np.full(96, 60), np.arange(96) * 2, np.arange(96) * 2 + 2)
    assert [p.num_steps for p in split_phrases(run)] == [64, 64, 65]
    assert len(split_phrases(run, max_phrase_bars=None)) == 1
    assert [p.num_steps for p in split_phrases(run, max_phrase_bars=2)] == [32] * 5 + [33]


def test_phrases_partition_the_melody():
    rng = np.random.default_rng(5)
    for _ in range(100):
        m = random_melody(rng, numerator=int(rng.choice([3, 4, 6])), denominator=int(rng.choice([4, 8])),
                          source="tune")
        phrases = split_phrases(m)
        assert np.array_equal(np.concatenate([p.events for p in phrases]), m.events)
        assert sum(len(p.pitches) for p in phrases) == len(m.pitches)
        assert all(p.events[p.events != NO_EVENT][0] >= 0 for p in phrases[1:])  # phrases open with a note
        assert all(p.numerator == m.numerator and p.steps_per_quarter == m.steps_per_quarter for p in phrases)
    assert split_phrases(Melody(np.array([NO_EVENT, NO_EVENT]))) == []


def test_as_notes_converts_melody_steps_to_seconds():
    m = Melody.from_notes([60, 62], [0, 4], [4, 6], qpm=60, steps_per_quarter=4)  # a step is 0.25 s
    notes = as_notes(m)
    assert notes.pitch.tolist() == [60, 62]
    assert notes.start.tolist() == [0.0, 1.0] and notes.end.tolist() == [1.0, 1.5]
    assert notes.velocity.tolist() == [MELODY_VELOCITY] * 2
    seq = melody_to_sequence(m, velocity=70, program=40)
    from_seq = as_notes(seq)
    np.testing.assert_allclose(from_seq.start, notes.start)
    np.testing.assert_allclose(from_seq.end, notes.end)
    assert from_seq.velocity.tolist() == [70, 70] and from_seq.program.tolist() == [40, 40]
    assert as_notes(seq, program=5).program.tolist() == [5, 5]
    with pytest.raises(ConfigError, match="General MIDI program"):
        as_notes(m, program=128)
    with pytest.raises(ConfigError, match="expected a note_seq.NoteSequence"):
        as_notes([60, 62])


def test_key_tonic_names_spell_keys_as_signatures_do():
    assert [KEY_TONIC_NAMES[k] for k in (3, 8, 10, 6)] == ["Eb", "Ab", "Bb", "F#"]
