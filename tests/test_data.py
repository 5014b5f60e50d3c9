"""Tests of labkit.data: packing, batching, masks and augmentation."""
import numpy as np

from labkit.data import MelodySet, batches, transpose_events
from labkit.encoding import MelodyEncoding
from labkit.melody import NO_EVENT, NOTE_OFF, Melody


def random_melodies(n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = int(rng.integers(3, 20))
        durations = rng.integers(1, 5, size=k)
        starts = np.concatenate([[0], np.cumsum(durations)[:-1]])
        out.append(Melody.from_notes(rng.integers(55, 80, size=k), starts, starts + durations, source=f"t{i}"))
    return out


def test_pack_and_unpack_round_trip():
    mels = random_melodies(30)
    packed = MelodySet.from_melodies(mels, splits=["train", "valid", "test"] * 10)
    assert len(packed) == 30
    for i, m in enumerate(mels):
        assert packed.melody(i) == m
    valid = packed.split("valid")
    assert len(valid) == 10 and valid.melody(0) == mels[1]
    assert valid.lengths.tolist() == [mels[i].num_steps for i in range(1, 30, 3)]


def test_batches_pad_and_mask_whole_melodies():
    mels = random_melodies(7)
    packed = MelodySet.from_melodies(mels)
    enc = MelodyEncoding()
    seen = 0
    for batch in batches(packed, batch_size=3, shuffle=False):
        tokens, mask = batch["tokens"], batch["mask"]
        assert tokens.dtype == np.int32 and mask.dtype == np.float32 and tokens.shape == mask.shape
        for row in range(tokens.shape[0]):
            m = mels[seen]
            n = m.num_steps
            assert mask[row].sum() == n and mask[row, :n].all()
            np.testing.assert_array_equal(tokens[row, :n], enc.encode(m))
            assert (tokens[row, n:] == 0).all()
            seen += 1
    assert seen == 7


def test_batches_crop_windows_and_are_reproducible():
    packed = MelodySet.from_melodies(random_melodies(20, seed=3))
    a = list(batches(packed, batch_size=4, seq_len=8, seed=5, epoch=2, augment_semitones=3))
    b = list(batches(packed, batch_size=4, seq_len=8, seed=5, epoch=2, augment_semitones=3))
    c = list(batches(packed, batch_size=4, seq_len=8, seed=5, epoch=3, augment_semitones=3))
    assert all(x["tokens"].shape[1] == 9 for x in a)
    assert all(np.array_equal(x["tokens"], y["tokens"]) for x, y in zip(a, b))
    assert not all(np.array_equal(x["tokens"], y["tokens"]) for x, y in zip(a, c))


def test_augmentation_transposes_pitches_only_and_stays_in_range():
    enc = MelodyEncoding(min_pitch=48, max_pitch=84)
    m = Melody.from_notes([48, 60, 84], [0, 2, 4], [2, 4, 6])  # spans the whole range: no shift fits
    packed = MelodySet.from_melodies([m] * 8)
    for batch in batches(packed, batch_size=8, seed=1, augment_semitones=5, encoding=enc):
        for row in batch["tokens"]:
            np.testing.assert_array_equal(row, enc.encode(m))
    narrow = Melody.from_notes([60, 62], [0, 2], [2, 4])
    shifts = set()
    for epoch in range(20):
        for batch in batches(MelodySet.from_melodies([narrow]), batch_size=1, seed=0, epoch=epoch,
                             augment_semitones=4, encoding=enc):
            decoded = enc.decode(batch["tokens"][0])
            shifts.add(int(decoded.pitches[0]) - 60)
            assert (decoded.pitches - narrow.pitches == decoded.pitches[0] - 60).all()
            np.testing.assert_array_equal(decoded.events < 0, narrow.events < 0)
    assert shifts <= set(range(-4, 5)) and len(shifts) > 3


def test_transpose_events_keeps_specials():
    ev = np.array([60, NO_EVENT, NOTE_OFF, 62], dtype=np.int8)
    assert transpose_events(ev, -2).tolist() == [58, NO_EVENT, NOTE_OFF, 60]
