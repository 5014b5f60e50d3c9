"""Tests of labkit.encoding: melody tokens and piano-roll frames."""
import numpy as np
import pytest
from note_seq.protobuf import music_pb2

from labkit.encoding import (NO_EVENT_TOKEN, NOTE_OFF_TOKEN, MelodyEncoding, piano_roll,
                             piano_roll_to_sequence)
from labkit.errors import EncodingError
from labkit.melody import NO_EVENT, NOTE_OFF, Melody, melody_to_sequence, quantize


def random_melody(rng, lo=21, hi=108, spq=4):
    k = int(rng.integers(1, 40))
    durations = rng.integers(1, 9, size=k)
    gaps = rng.integers(0, 5, size=k) * (rng.random(k) < 0.3)
    starts = np.concatenate([[0], np.cumsum(durations + gaps)[:-1]]) + int(rng.integers(0, 3))
    return Melody.from_notes(rng.integers(lo, hi + 1, size=k), starts, starts + durations, steps_per_quarter=spq)


# --- MelodyEncoding ----------------------------------------------------------------------

def test_encode_decode_identity_on_random_melodies():
    rng = np.random.default_rng(0)
    for lo, hi in [(21, 108), (48, 84), (0, 127)]:
        enc = MelodyEncoding(lo, hi)
        assert enc.vocab_size == hi - lo + 3
        for _ in range(100):
            m = random_melody(rng, lo, hi)
            tokens = enc.encode(m)
            assert tokens.dtype == np.int32 and tokens.shape == m.events.shape
            assert tokens.min() >= 0 and tokens.max() < enc.vocab_size
            assert enc.decode(tokens, steps_per_quarter=m.steps_per_quarter) == m
            assert np.array_equal(enc.encode(enc.decode(tokens)), tokens)
    enc = MelodyEncoding()
    assert enc.encode(np.array([NO_EVENT, NOTE_OFF, 21, 108])).tolist() == [NO_EVENT_TOKEN, NOTE_OFF_TOKEN, 2, 89]


def test_encoding_errors():
    with pytest.raises(EncodingError, match=r"^low\.mid: .*20\.\.60.*21\.\.108"):
        MelodyEncoding().encode(Melody.from_notes([20, 60], [0, 1], [1, 2], source="low.mid"))
    with pytest.raises(EncodingError, match="token"):
        MelodyEncoding().decode([0, 90])
    with pytest.raises(EncodingError):
        MelodyEncoding(60, 50)


# --- piano rolls --------------------------------------------------------------------------

def test_piano_roll_of_a_melody_and_repeated_notes():
    m = Melody.from_notes([60, 60, 62], [0, 2, 6], [2, 4, 7])  # two Cs back to back, a rest, a D
    roll, onsets = piano_roll(m, min_pitch=60, max_pitch=62, onsets=True)
    assert roll.dtype == bool and roll.shape == (m.num_steps, 3)
    assert roll[:, 0].astype(int).tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    assert roll[:, 2].astype(int).tolist() == [0, 0, 0, 0, 0, 0, 1, 0]
    assert not roll[:, 1].any()
    assert onsets[:, 0].astype(int).tolist() == [1, 0, 1, 0, 0, 0, 0, 0]
    # without onsets the two Cs merge; with them they stay apart
    merged = piano_roll_to_sequence(roll, min_pitch=60)
    apart = piano_roll_to_sequence(roll, min_pitch=60, onsets=onsets)
    assert [(n.pitch, n.start_time, n.end_time) for n in merged.notes] == [(60, 0.0, 0.5), (62, 0.75, 0.875)]
    assert [(n.pitch, n.start_time, n.end_time) for n in apart.notes] == \
        [(60, 0.0, 0.25), (60, 0.25, 0.5), (62, 0.75, 0.875)]


def test_piano_roll_of_sequences_drums_range_and_quantization():
    seq = music_pb2.NoteSequence(filename="x.mid")
    seq.tempos.add(qpm=60.0)
    seq.notes.add(pitch=60, start_time=0.0, end_time=1.0, velocity=80)          # steps 0..4
    seq.notes.add(pitch=64, start_time=0.5, end_time=0.74, velocity=80)         # steps 2..3
    seq.notes.add(pitch=36, start_time=0.0, end_time=0.25, velocity=80, is_drum=True)
    seq.notes.add(pitch=110, start_time=0.0, end_time=0.25, velocity=80)        # above the piano
    seq.total_time = 2.0                                                         # 8 steps
    roll = piano_roll(seq)
    assert roll.shape == (8, 88)
    assert roll[:4, 60 - 21].all() and not roll[4:, 60 - 21].any()
    assert roll[2:3, 64 - 21].all() and roll.sum() == 5
    drums = piano_roll(seq, include_drums=True)
    assert drums[0, 36 - 21] and drums.sum() == 6
    assert np.array_equal(piano_roll(quantize(seq, 4)), roll)
    assert piano_roll(seq, steps_per_quarter=8).shape == (16, 88)
    assert piano_roll(seq, min_pitch=0, max_pitch=127)[0, 110]
    with pytest.raises(EncodingError):
        piano_roll(seq, min_pitch=50, max_pitch=40)


def test_piano_roll_of_melody_equals_that_of_its_sequence():
    rng = np.random.default_rng(1)
    for _ in range(30):
        m = random_melody(rng)
        assert np.array_equal(piano_roll(m), piano_roll(melody_to_sequence(m)))
    m = Melody.from_notes([60], [0], [2], steps_per_quarter=2)
    assert piano_roll(m, steps_per_quarter=4)[:, 60 - 21].astype(int).tolist() == [1, 1, 1, 1, 0, 0]


def test_piano_roll_round_trip_on_random_rolls():
    rng = np.random.default_rng(2)
    for _ in range(50):
        frames, width = int(rng.integers(1, 40)), int(rng.integers(1, 12))
        roll = rng.random((frames, width)) < 0.4
        before = np.vstack([np.zeros((1, width), bool), roll[:-1]])
        onsets = roll & (~before | (rng.random((frames, width)) < 0.3))  # every note start, some re-strikes
        qpm, spq, lo = float(rng.choice([60.0, 97.0, 120.0])), int(rng.choice([2, 4, 12])), int(rng.integers(0, 100))
        seq = piano_roll_to_sequence(roll, onsets=onsets, qpm=qpm, steps_per_quarter=spq, min_pitch=lo)
        r2, o2 = piano_roll(seq, steps_per_quarter=spq, min_pitch=lo, max_pitch=lo + width - 1, onsets=True)
        assert np.array_equal(r2, roll) and np.array_equal(o2, onsets)
        # without onsets the roll still comes back (repeated notes merged)
        r3 = piano_roll(piano_roll_to_sequence(roll, qpm=qpm, steps_per_quarter=spq, min_pitch=lo),
                        steps_per_quarter=spq, min_pitch=lo, max_pitch=lo + width - 1)
        assert np.array_equal(r3, roll)


def test_piano_roll_to_sequence_errors():
    with pytest.raises(EncodingError, match="shape"):
        piano_roll_to_sequence(np.zeros(5, bool))
    with pytest.raises(EncodingError, match="0..127"):
        piano_roll_to_sequence(np.zeros((4, 10), bool), min_pitch=120)
    with pytest.raises(EncodingError, match="onsets"):
        piano_roll_to_sequence(np.zeros((4, 10), bool), onsets=np.zeros((4, 9), bool))
    empty = piano_roll_to_sequence(np.zeros((4, 3), bool), qpm=60)
    assert len(empty.notes) == 0 and empty.total_time == 1.0
