"""Tests of labkit.train beyond the loop: scoring whole melodies, fine-tuning, the data sources (synthetic data)."""
import math

import jax
import numpy as np
import pytest
from flax import nnx

from labkit.data import MelodySet
from labkit.encoding import MelodyEncoding
from labkit.errors import ConfigError
from labkit.melody import Melody
from labkit.models import ModelConfig, make_model
from labkit.train import (TrainConfig, evaluate_model, finetune, length_sorted_batches, split_scores, train_source,
                          valid_source)

TINY = ModelConfig(embed_dim=8, hidden_size=16, num_layers=1, dropout=0.0)


def scale_melody(start, n, step=2, source=""):
    pitches = [start + (i % 5) * 2 for i in range(n)]
    return Melody.from_notes(pitches, [i * step for i in range(n)], [i * step + step for i in range(n)], source=source)


def melody_set(n=12, lengths=(6, 9, 14)):
    mels = [scale_melody(55 + i % 7, lengths[i % len(lengths)], source=f"t{i}") for i in range(n)]
    return MelodySet.from_melodies(mels, splits=["train"] * n)


def test_split_scores_equal_a_sum_by_hand():
    model = make_model(TINY, 3)
    mels = melody_set(5)
    enc = MelodyEncoding()
    nats = events = notes = 0.0
    for i in range(len(mels)):
        tokens = enc.encode(mels.events_of(i))
        logits = model(tokens[None, :-1])[0]
        log_p = jax.nn.log_softmax(logits, axis=-1)
        nats -= float(np.take_along_axis(np.asarray(log_p), tokens[1:, None], axis=-1).sum())
        events += len(tokens) - 1
        notes += int((tokens[1:] >= 2).sum())
    s = split_scores(model, mels, batch_size=2)
    assert s["events"] == events and s["notes"] == notes and s["melodies"] == 5
    assert s["nats_per_event"] == pytest.approx(nats / events, rel=1e-5)
    assert s["bits_per_event"] == pytest.approx(nats / events / math.log(2), rel=1e-5)
    assert s["bits_per_note"] == pytest.approx(nats / notes / math.log(2), rel=1e-5)
    assert split_scores(model, mels, max_melodies=2)["melodies"] == 2


def test_length_sorted_batches_cover_every_melody_once():
    mels = melody_set(7)
    seen = []
    for b in length_sorted_batches(mels, batch_size=3):
        seen += b["mask"].sum(axis=1).astype(int).tolist()
    assert sorted(seen) == sorted(mels.lengths.tolist()) and seen == sorted(seen)


def test_sources_are_deterministic_and_augment_only_training():
    mels = melody_set(16, lengths=(40,))
    cfg = TrainConfig(seed=4, batch_size=4, seq_len=16)
    a, b = list(train_source(mels, cfg)(0)), list(train_source(mels, cfg)(0))
    assert all(np.array_equal(x["tokens"], y["tokens"]) for x, y in zip(a, b))
    assert not all(np.array_equal(x["tokens"], y["tokens"]) for x, y in zip(a, train_source(mels, cfg)(1)))
    # training windows are transposed: some start on pitches the melodies never start on
    firsts = {int(t) for x in a for t in x["tokens"][:, 0] if t >= 2}
    valid = valid_source(mels, cfg, max_melodies=8)
    assert sum(len(v["tokens"]) for v in valid) == 8
    valid_firsts = {int(t) for v in valid for t in v["tokens"][:, 0]}
    untransposed = {int(MelodyEncoding().pitch_to_token(55 + i % 7)) for i in range(16)}
    assert valid_firsts <= untransposed
    assert firsts - untransposed
    assert all(np.array_equal(x["tokens"], y["tokens"]) for x, y in zip(valid, valid_source(mels, cfg, max_melodies=8)))


def test_finetune_continues_from_the_given_parameters_and_keeps_the_best():
    mels = melody_set(24, lengths=(30,))
    cfg = TrainConfig(seed=0, num_steps=30, batch_size=8, seq_len=16, learning_rate=1e-2, warmup_steps=2,
                      eval_every=10, patience=0, progress=False)
    valid = valid_source(mels, cfg)
    model = make_model(TINY, 1)
    before = [np.asarray(x).copy() for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param))]
    returned, history = finetune(model, TINY, cfg, train_source(mels, cfg), valid)
    assert returned is model                                   # updated in place
    assert [r["step"] for r in history] == [0, 10, 20, 30]
    assert history[0]["train_bits"] is None
    assert history[-1]["valid_bits"] < history[0]["valid_bits"] - 0.5
    after = jax.tree_util.tree_leaves(nnx.state(model, nnx.Param))
    assert all(not np.array_equal(x, np.asarray(y)) for x, y in zip(before, after))
    # the model holds the best validation parameters
    best = min(r["valid_bits"] for r in history)
    assert evaluate_model(model, valid)["bits"] == pytest.approx(best, rel=1e-5)


def test_finetune_is_deterministic():
    mels = melody_set(16, lengths=(30,))
    cfg = TrainConfig(seed=2, num_steps=6, batch_size=4, seq_len=16, eval_every=3, progress=False)
    runs = []
    for _ in range(2):
        config = ModelConfig(embed_dim=8, hidden_size=16, num_layers=1, dropout=0.2)
        model, _ = finetune(make_model(config, 0), config, cfg, train_source(mels, cfg), valid_source(mels, cfg))
        runs.append([np.asarray(x) for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param))])
    assert all(np.array_equal(x, y) for x, y in zip(*runs))


def test_finetune_keeps_the_starting_parameters_unless_they_improve():
    mels = melody_set(8, lengths=(20,))
    cfg = TrainConfig(seed=0, num_steps=4, batch_size=4, seq_len=16, eval_every=2, patience=0, progress=False,
                      min_delta=100.0)                           # no evaluation can beat the start by 100 nats
    valid = valid_source(mels, cfg)
    model = make_model(TINY, 5)
    start = [np.asarray(x).copy() for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param))]
    model, history = finetune(model, TINY, cfg, train_source(mels, cfg), valid)
    assert [r["step"] for r in history] == [0, 2, 4]
    assert history[0]["valid_bits"] == pytest.approx(evaluate_model(model, valid)["bits"], rel=1e-6)
    assert all(np.array_equal(x, np.asarray(y))
               for x, y in zip(start, jax.tree_util.tree_leaves(nnx.state(model, nnx.Param))))
    with pytest.raises(ConfigError, match="initial_model"):       # the config must describe the model
        finetune(model, ModelConfig(embed_dim=8, hidden_size=32, num_layers=1), cfg, train_source(mels, cfg), valid)
