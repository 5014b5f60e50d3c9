"""Tests of labkit.live: chunks on one tempo grid, the same seed the same music, steering by style, stop, speed."""
from __future__ import annotations

import time

import numpy as np
import pytest

from labkit.checkpoint import load_melody_model
from labkit.encoding import MelodyEncoding
from labkit.errors import ConfigError
from labkit.live import LiveEngine, axis_index
from labkit.style.model import load_style_model

SR = 16000


@pytest.fixture(scope="module")
def models():
    model, _ = load_melody_model(encoding=MelodyEncoding())
    return model, load_style_model()


def engine(models, **kwargs):
    settings = dict(seed=7, bars_per_chunk=1, candidates=4, primer_steps=16, window_bars=4, audio=False,
                    sample_rate=SR)
    settings.update(kwargs)
    return LiveEngine(*models, **settings)


def test_chunks_continue_in_time_without_gaps_or_overlaps(models):
    e = engine(models, audio=True, qpm=100.0, target="irish")
    chunks = list(e.chunks(4))
    sps = 60.0 / (100.0 * 4)
    for k, c in enumerate(chunks):
        assert (c.index, c.start_step, c.num_steps) == (k, 16 * k, 16)
        assert c.start_time == pytest.approx(16 * k * sps) and c.end_time == pytest.approx(16 * (k + 1) * sps)
        for note in c.sequence.notes:
            assert c.start_time - 1e-9 <= note.start_time < note.end_time <= c.end_time + 1e-9
        # audio exactly as long as the chunk on the sample grid
        assert len(c.audio) == round(c.end_time * SR) - round(c.start_time * SR) and c.audio.shape[1] == 2
    for a, b in zip(chunks, chunks[1:]):
        assert a.end_time == b.start_time                       # no gap, no overlap at the boundary
    notes = sorted((n.start_time, n.end_time) for c in chunks for n in c.sequence.notes)
    assert notes and all(e0 <= s1 + 1e-9 for (_, e0), (s1, _) in zip(notes, notes[1:]))  # one line, no overlaps
    total = sum(len(c.audio) for c in chunks)
    assert total == round(chunks[-1].end_time * SR)
    # the notes are the model's tokens: each chunk's note-ons are its tokens' pitches
    enc = MelodyEncoding()
    for c in chunks:
        assert [n.pitch for n in c.sequence.notes] == enc.decode(c.tokens).pitches.tolist()


def test_same_seed_and_target_changes_give_the_same_chunks(models):
    def run(seed):
        e = engine(models, seed=seed, target="german")
        e.set_target("irish", at_chunk=2)
        e.set_target(0.5, at_chunk=3)
        return [(c.tokens.tolist(), c.target) for c in e.chunks(4)]

    first = run(7)
    assert first == run(7)
    assert [t for _, t in first] == [0.0, 0.0, 1.0, 0.5]
    assert [tok for tok, _ in first] != [tok for tok, _ in run(8)]


def test_the_background_thread_plays_the_same_chunks_and_stops(models):
    expected = [c.tokens.tolist() for c in engine(models).chunks(3)]
    e = engine(models)
    got = []
    for chunk in e.stream(timeout=60):
        got.append(chunk.tokens.tolist())
        if len(got) == 3:
            break
    started = time.perf_counter()
    e.stop()
    assert time.perf_counter() - started < 10
    assert not e.running and e._thread is not None and not e._thread.is_alive()
    assert got == expected


def test_stop_ends_a_stream_from_another_thread(models):
    import threading

    e = engine(models).start()
    threading.Timer(0.5, e.stop).start()
    started = time.perf_counter()
    count = sum(1 for _ in e.stream(timeout=30))
    assert time.perf_counter() - started < 20
    assert count >= 1 and not e.running


def test_steering_toward_a_style_raises_its_index(models):
    def mean_index(target):
        e = engine(models, seed=3, candidates=8, target=target)
        return float(np.mean([c.style_index for c in e.chunks(4)]))

    toward_irish, toward_german = mean_index("irish"), mean_index("german")
    assert toward_irish > toward_german + 0.2
    e = engine(models, seed=3, candidates=8, target=0.3)
    c = next(e.chunks(1))
    assert abs(c.style_index - 0.3) == pytest.approx(np.abs(c.candidate_indices - 0.3).min())   # the closest kept


def test_real_time_factor_is_above_one(models):
    e = engine(models, audio=True)          # the shapes of the first test: compiled already
    chunks = list(e.chunks(4))
    assert all(c.compute_seconds > 0 for c in chunks)
    assert e.realtime_factor() > 1.0        # loose: benchmarks/live_rtf.py measures it


def test_axis_index_by_hand():
    assert axis_index(np.array([[0.2, 0.6, 0.2]]), (1, 0)).tolist() == pytest.approx([0.75])


def test_bad_settings_are_refused(models):
    e = engine(models)
    for bad in ("fiddle", 1.5, -0.1, True, "nonsense"):
        with pytest.raises(ConfigError, match="target"):
            e.set_target(bad)
    next(e.chunks(1))
    with pytest.raises(ConfigError, match="already generated"):
        e.set_target(0.5, at_chunk=0)
    with pytest.raises(ConfigError, match="axis"):
        engine(models, axis=("irish", "klezmer"))
    with pytest.raises(ConfigError, match="bars_per_chunk"):
        engine(models, bars_per_chunk=0)
    with pytest.raises(ConfigError, match="seed"):
        engine(models, seed=-1)
    with pytest.raises(ConfigError, match="program"):
        engine(models, audio=True, program=200)
