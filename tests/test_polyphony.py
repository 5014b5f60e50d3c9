"""Tests of ``labkit.polyphony`` (piano rolls, the sigmoid and NADE models, training) and ``pianoroll`` commands.

Every data set here is built by the test (tiny random piano rolls); none needs the benchmark pickles.
"""
from __future__ import annotations

import itertools
import json
import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from labkit._common import read_npz
from labkit.cli import main
from labkit.errors import CheckpointError, ConfigError, LabkitError
from labkit.polyphony.data import (NUM_KEYS, PICKLE_SPLITS, EmptySplitError, PianoRollFormatError,
                                   PianoRollPitchError, chorale_piano_rolls, count_frames, frames_to_roll,
                                   load_pianoroll_pickle, pianoroll_batches, roll_to_frames, save_pianoroll_pickle,
                                   transpose_roll, transposition_range)
from labkit.polyphony.models import PianoRollConfig, make_pianoroll_model, sample_frames
from labkit.polyphony.train import PianoRollTrainConfig, evaluate_pianoroll, fit_pianoroll, load_pianoroll_model

TINY = dict(hidden_size=8, key_hidden=4)


def random_tunes(rng, num, low=48, high=72, min_len=4, max_len=30):
    """``num`` tunes in the pickle layout: 0-3 random pitches per frame."""
    return [[tuple(sorted({int(p) for p in rng.integers(low, high, rng.integers(0, 4))}))
             for _ in range(int(rng.integers(min_len, max_len)))] for _ in range(num)]


def random_rolls(rng, num, keys=NUM_KEYS, min_len=3, max_len=12, p=0.2):
    return [(rng.random((int(rng.integers(min_len, max_len)), keys)) < p).astype(np.float32) for _ in range(num)]


@pytest.fixture
def tiny_pickle(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.pickle"
    save_pianoroll_pickle({s: random_tunes(rng, 6) for s in PICKLE_SPLITS}, path)
    return path


def perturbed(model, seed=1):
    """The model with every parameter (the NADE's zero-initialised direct weights too) drawn at random."""
    params = nnx.state(model, nnx.Param)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    nnx.update(model, jax.tree_util.tree_unflatten(
        treedef, [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]))
    return model


# --- data ----------------------------------------------------------------------------------------

def test_a_pickle_reads_as_float32_rolls(tiny_pickle):
    data = load_pianoroll_pickle(tiny_pickle)
    raw = pickle.loads(tiny_pickle.read_bytes())
    assert sorted(data) == sorted(PICKLE_SPLITS)
    roll = data["train"][0]
    assert roll.dtype == np.float32 and roll.shape == (len(raw["train"][0]), NUM_KEYS)
    assert roll_to_frames(roll) == [tuple(sorted(f)) for f in raw["train"][0]]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_pickle_protocol_and_frame_type_is_read(tmp_path, protocol):
    path = tmp_path / "p.pickle"
    frames = [(60, 64), [62], {65, 69}, frozenset({21, 108}), (), (60.0,)]
    path.write_bytes(pickle.dumps({s: [frames] for s in PICKLE_SPLITS}, protocol=protocol))
    roll = load_pianoroll_pickle(path)["valid"][0]
    assert roll_to_frames(roll) == [(60, 64), (62,), (65, 69), (21, 108), (), (60,)]


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_names_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    _Exploit.marker = marker
    path = tmp_path / "evil.pickle"
    path.write_bytes(pickle.dumps({"train": [[(60,)]], "valid": _Exploit(), "test": [[(60,)]]}))
    with pytest.raises(PianoRollFormatError, match=r"names the global (posix|os|nt)\.system") as info:
        load_pianoroll_pickle(path)
    assert not marker.exists()
    assert str(path) in str(info.value)
    # numpy arrays are globals too: refused (a data set needs only lists, tuples and numbers)
    path.write_bytes(pickle.dumps({s: [[(60,)]] for s in PICKLE_SPLITS} | {"x": np.zeros(2)}))
    with pytest.raises(PianoRollFormatError, match="numpy"):
        load_pianoroll_pickle(path)


@pytest.mark.parametrize("content, error, words", [
    (b"", PianoRollFormatError, "empty"),
    (b"MThd\x00\x00\x00\x06", PianoRollFormatError, "not a"),
    (pickle.dumps([1, 2]), PianoRollFormatError, "holds a list, not a dict"),
    (pickle.dumps({"train": [], "valid": []}), PianoRollFormatError, "lacks the split(s) test"),
    (pickle.dumps({"train": {}, "valid": [], "test": []}), PianoRollFormatError, "'train' is a dict"),
    (pickle.dumps({s: [[60]] for s in PICKLE_SPLITS}), PianoRollFormatError, "frame 0 is a int"),
    (pickle.dumps({s: [[(20,)]] for s in PICKLE_SPLITS}), PianoRollPitchError, "holds 20, not a MIDI pitch"),
    (pickle.dumps({s: [[(60,), (109,)]] for s in PICKLE_SPLITS}), PianoRollPitchError, "frame 1 holds 109"),
    (pickle.dumps({s: [[(60.5,)]] for s in PICKLE_SPLITS}), PianoRollPitchError, "60.5"),
    (pickle.dumps({s: [[("60",)]] for s in PICKLE_SPLITS}), PianoRollPitchError, "'60'"),
    (pickle.dumps({"train": [[(60,)]], "valid": [], "test": [[(60,)]]}), EmptySplitError, "'valid' holds no tunes"),
    (pickle.dumps({"train": [[(60,)]], "valid": [[]], "test": [[(60,)]]}), EmptySplitError, "'valid' holds no frames"),
])
def test_bad_data_sets_are_named_and_explained(tmp_path, content, error, words):
    path = tmp_path / "bad.pickle"
    path.write_bytes(content)
    with pytest.raises(error) as info:
        load_pianoroll_pickle(path)
    assert words in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_a_small_pickle_that_shares_lists_cannot_describe_too_many_frames(tmp_path):
    tune = [(60,)] * 1000
    path = tmp_path / "bomb.pickle"
    path.write_bytes(pickle.dumps({s: [tune] * 2000 for s in PICKLE_SPLITS}))     # 6M frames in a few kB
    assert path.stat().st_size < 100_000
    with pytest.raises(PianoRollFormatError, match="more than 5000000 frames"):
        load_pianoroll_pickle(path)
    path.write_bytes(pickle.dumps({s: [[tuple(range(21, 109)) * 2]] for s in PICKLE_SPLITS}))
    with pytest.raises(PianoRollFormatError, match="176 pitches"):
        load_pianoroll_pickle(path)


def test_a_missing_file_or_a_folder_is_a_format_error(tmp_path):
    with pytest.raises(PianoRollFormatError, match="no such file"):
        load_pianoroll_pickle(tmp_path / "none.pickle")
    with pytest.raises(PianoRollFormatError, match="is a folder"):
        load_pianoroll_pickle(tmp_path)


def test_transposition_stays_on_the_keyboard():
    roll = frames_to_roll([(22, 100), (60,)])
    assert transposition_range(roll, 12) == (-1, 8)
    assert roll_to_frames(transpose_roll(roll, -1)) == [(21, 99), (59,)]
    assert roll_to_frames(transpose_roll(roll, 8)) == [(30, 108), (68,)]
    rng = np.random.default_rng(3)
    rolls = random_rolls(rng, 20, max_len=40)
    for batch in pianoroll_batches(rolls, batch_size=4, seq_len=8, seed=1, augment_semitones=12):
        # transposition moves notes, never loses them
        assert batch["frames"].sum() + batch["previous"].sum() > 0
    total = sum(r.sum() for r in rolls)
    kept = sum(b["frames"].sum() for b in pianoroll_batches(rolls, batch_size=4, seq_len=8, seed=1,
                                                           augment_semitones=5))
    assert kept == total


def test_batches_hold_every_frame_once_per_epoch_and_are_seeded():
    rng = np.random.default_rng(4)
    rolls = random_rolls(rng, 9, max_len=30)
    for epoch in range(3):
        batches = list(pianoroll_batches(rolls, batch_size=4, seq_len=7, seed=2, epoch=epoch))
        assert all(b["frames"].shape == (4, 7, NUM_KEYS) and b["mask"].shape == (4, 7) for b in batches)
        assert sum(b["mask"].sum() for b in batches) == count_frames(rolls)
        assert sum(b["frames"].sum() for b in batches) == sum(r.sum() for r in rolls)
        again = list(pianoroll_batches(rolls, batch_size=4, seq_len=7, seed=2, epoch=epoch))
        assert all(np.array_equal(a["frames"], b["frames"]) for a, b in zip(batches, again))
    # the frame before a window is its tune's frame before it
    batch = next(iter(pianoroll_batches([rolls[0]], batch_size=8, seq_len=2, shuffle=False)))
    assert np.array_equal(batch["previous"][1], rolls[0][1]) and batch["previous"][0].sum() == 0


def test_the_corpus_chorales_are_piano_rolls_split_as_the_corpus():
    rolls = chorale_piano_rolls(max_tunes=1)
    assert sorted(rolls) == sorted(PICKLE_SPLITS)
    roll = rolls["train"][0]
    assert roll.dtype == np.float32 and roll.shape[1] == NUM_KEYS
    assert roll[0].sum() >= 3                           # it starts with its first chord
    assert 3 <= np.median(roll.sum(axis=1)) <= 4        # four voices, some in unison


# --- models --------------------------------------------------------------------------------------

def numpy_nll_sigmoid(model, rolls_batch):
    """NLL per frame ``[B, T]`` by hand: the library's LSTM states, then logits and BCE in numpy."""
    h, _ = model.rnn.states(jnp.asarray(rolls_batch))
    h = np.asarray(h, np.float64)
    z = h @ np.asarray(model.out.kernel[...], np.float64) + np.asarray(model.out.bias[...], np.float64)
    x = rolls_batch.astype(np.float64)
    p = 1.0 / (1.0 + np.exp(-z))
    return -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(-1)


def numpy_nll_nade(model, rolls_batch):
    """NLL per frame by hand: a loop over the keys, each conditioned on the keys below it (numpy, float64)."""
    h, _ = model.rnn.states(jnp.asarray(rolls_batch))
    h = np.asarray(h, np.float64)
    f = lambda layer: h @ np.asarray(layer.kernel[...], np.float64) + np.asarray(layer.bias[...], np.float64)  # noqa
    b, c = f(model.visible_bias), f(model.hidden_bias)
    w_in, w_out = np.asarray(model.w_in[...], np.float64), np.asarray(model.w_out[...], np.float64)
    direct = np.asarray(model.direct[...], np.float64)
    x = rolls_batch.astype(np.float64)
    nll = np.zeros(x.shape[:2])
    a = c.copy()
    for k in range(x.shape[-1]):
        hidden = 1.0 / (1.0 + np.exp(-a))
        logit = b[..., k] + hidden @ w_out[k] + x[..., :k] @ direct[k, :k]
        p = 1.0 / (1.0 + np.exp(-logit))
        nll -= x[..., k] * np.log(p) + (1 - x[..., k]) * np.log(1 - p)
        a = a + x[..., k:k + 1] * w_in[k]
    return nll


def numpy_nll_made(model, rolls_batch):
    """NLL per frame by hand: a loop over the keys; hidden unit d reads keys j <= d (K-1) // n, key k reads the
    hidden units of degree < k (numpy, float64)."""
    h, _ = model.rnn.states(jnp.asarray(rolls_batch))
    h = np.asarray(h, np.float64)
    f = lambda layer: h @ np.asarray(layer.kernel[...], np.float64) + np.asarray(layer.bias[...], np.float64)  # noqa
    b, c = f(model.visible_bias), f(model.hidden_bias)
    w_in, w_out = np.asarray(model.w_in[...], np.float64), np.asarray(model.w_out[...], np.float64)
    direct = np.asarray(model.direct[...], np.float64)
    keys, n = w_in.shape
    degree = np.arange(n) * (keys - 1) // n
    x = rolls_batch.astype(np.float64)
    nll = np.zeros(x.shape[:2])
    for k in range(keys):
        hidden = np.maximum(c + x[..., :k] @ (w_in[:k] * (np.arange(k)[:, None] <= degree[None, :])), 0.0)
        logit = b[..., k] + (hidden * (degree < k)) @ w_out[:, k] + x[..., :k] @ direct[k, :k]
        p = 1.0 / (1.0 + np.exp(-logit))
        nll -= x[..., k] * np.log(p) + (1 - x[..., k]) * np.log(1 - p)
    return nll


@pytest.mark.parametrize("kind, by_hand", [("sigmoid", numpy_nll_sigmoid), ("nade", numpy_nll_nade),
                                           ("made", numpy_nll_made)])
def test_the_loss_per_frame_by_hand_equals_the_library(kind, by_hand):
    rng = np.random.default_rng(5)
    model = perturbed(make_pianoroll_model(PianoRollConfig(model=kind, **TINY), 0))
    rolls = random_rolls(rng, 3, min_len=5, max_len=11)
    width = max(len(r) for r in rolls)
    batch = np.zeros((len(rolls), width, NUM_KEYS), np.float32)
    for i, r in enumerate(rolls):
        batch[i, :len(r)] = r
    expected = sum(by_hand(model, batch[i:i + 1, :len(r)]).sum() for i, r in enumerate(rolls))
    nll, _ = model.frame_nll(jnp.asarray(batch))
    assert np.allclose(nll, by_hand(model, batch), rtol=1e-5, atol=1e-4)
    # evaluate_pianoroll: every frame of every tune, read in chunks with the state carried over
    result = evaluate_pianoroll(model, rolls, batch_size=2, chunk=4)
    assert result["frames"] == sum(len(r) for r in rolls)
    assert result["nats_per_frame"] == pytest.approx(expected / result["frames"], rel=1e-5)


@pytest.mark.parametrize("kind", ["sigmoid", "nade", "made"])
def test_the_probabilities_of_all_chords_sum_to_one(kind):
    keys = 6
    model = perturbed(make_pianoroll_model(PianoRollConfig(model=kind, num_keys=keys, **TINY), 0), seed=2)
    chords = np.array(list(itertools.product([0.0, 1.0], repeat=keys)), np.float32)      # all 2^6
    past = np.random.default_rng(6).integers(0, 2, (1, 3, keys)).astype(np.float32)
    frames = np.concatenate([np.repeat(past, len(chords), 0), chords[:, None]], axis=1)
    nll, _ = model.frame_nll(jnp.asarray(frames))
    assert np.exp(-np.asarray(nll[:, -1], np.float64)).sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("kind", ["nade", "made"])
def test_key_by_key_models_draw_chords_with_the_probabilities_they_score(kind):
    keys = 3
    model = perturbed(make_pianoroll_model(PianoRollConfig(model=kind, num_keys=keys, **TINY), 0), seed=3)
    chords = np.array(list(itertools.product([0.0, 1.0], repeat=keys)), np.float32)
    p = np.exp(-np.asarray(model.frame_nll(jnp.asarray(chords[:, None]))[0][:, 0], np.float64))
    draws = np.asarray(sample_frames(model, 1, jax.random.key(0), num=4000))[:, 0]
    index = (draws * 2 ** np.arange(keys - 1, -1, -1)).sum(-1).astype(int)
    freq = np.bincount(index, minlength=2 ** keys) / len(index)
    assert np.abs(freq - p).max() < 0.035


@pytest.mark.parametrize("kind", ["sigmoid", "nade", "made"])
def test_sampling_is_seeded_and_gives_binary_frames(kind):
    model = make_pianoroll_model(PianoRollConfig(model=kind, **TINY), 0)
    a = sample_frames(model, 5, jax.random.key(1), num=2)
    assert a.shape == (2, 5, NUM_KEYS) and set(np.unique(a)) <= {0.0, 1.0}
    assert np.array_equal(a, sample_frames(model, 5, jax.random.key(1), num=2))
    assert not np.array_equal(a, sample_frames(model, 5, jax.random.key(2), num=2))
    primed = sample_frames(model, 3, jax.random.key(1), num=2, primer=np.ones((1, 4, NUM_KEYS)))
    assert primed.shape == (2, 3, NUM_KEYS)


def test_configs_refuse_bad_values():
    with pytest.raises(ConfigError, match="model must be one of"):
        PianoRollConfig(model="softmax")
    with pytest.raises(ConfigError, match="hidden_size"):
        PianoRollConfig(hidden_size=0)
    with pytest.raises(ConfigError, match="lr_decay"):
        PianoRollTrainConfig(lr_decay=0)
    with pytest.raises(ConfigError, match="max_minutes"):
        PianoRollTrainConfig(max_minutes=float("nan"))


# --- training ------------------------------------------------------------------------------------

def small_train_config(**overrides):
    settings = dict(num_steps=6, eval_every=3, batch_size=4, seq_len=8, warmup_steps=2, progress=False,
                    eval_batch_size=4, eval_chunk=8)
    return PianoRollTrainConfig(**{**settings, **overrides})


def params_of(path):
    return {k: v for k, v in read_npz(path).items() if k.startswith("params/")}


@pytest.mark.parametrize("kind", ["sigmoid", "nade"])
def test_training_lowers_the_loss_and_the_same_seed_gives_the_same_parameters(kind, tmp_path):
    rng = np.random.default_rng(7)
    train, valid = random_rolls(rng, 8, max_len=20), random_rolls(rng, 3)
    cfg = PianoRollConfig(model=kind, **TINY)
    before = evaluate_pianoroll(make_pianoroll_model(cfg, jax.random.fold_in(jax.random.key(0), 0)), valid)
    _, history = fit_pianoroll(cfg, small_train_config(num_steps=12, learning_rate=1e-2), train, valid,
                               workdir=tmp_path / "a")
    fit_pianoroll(cfg, small_train_config(num_steps=12, learning_rate=1e-2), train, valid, workdir=tmp_path / "b")
    fit_pianoroll(cfg, small_train_config(num_steps=12, learning_rate=1e-2, seed=1), train, valid,
                  workdir=tmp_path / "c")
    assert min(r["valid_nll"] for r in history) < before["nats_per_frame"]
    a, b, c = (params_of(tmp_path / d / "checkpoint.npz") for d in "abc")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], c[k]) for k in a)
    model, config, meta = load_pianoroll_model(tmp_path / "a")
    assert config == cfg and meta["valid_nll"] == min(r["valid_nll"] for r in history)


def test_a_resumed_run_ends_exactly_as_an_uninterrupted_one(tmp_path):
    rng = np.random.default_rng(8)
    train, valid = random_rolls(rng, 6, max_len=20), random_rolls(rng, 2)
    cfg = PianoRollConfig(model="nade", dropout=0.3, **TINY)
    _, straight = fit_pianoroll(cfg, small_train_config(num_steps=9, augment_semitones=3), train, valid,
                                workdir=tmp_path / "straight")
    fit_pianoroll(cfg, small_train_config(num_steps=3, augment_semitones=3), train, valid, workdir=tmp_path / "cut")
    _, resumed = fit_pianoroll(cfg, small_train_config(num_steps=9, augment_semitones=3), train, valid,
                               workdir=tmp_path / "cut")
    a, b = params_of(tmp_path / "straight" / "checkpoint.npz"), params_of(tmp_path / "cut" / "checkpoint.npz")
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
    assert [r["valid_nll"] for r in straight] == [r["valid_nll"] for r in resumed]
    with pytest.raises(CheckpointError, match="other model or training settings"):
        fit_pianoroll(cfg, small_train_config(num_steps=12, learning_rate=0.1), train, valid,
                      workdir=tmp_path / "cut")


def test_early_stopping_ends_a_run_that_no_longer_improves():
    rng = np.random.default_rng(9)
    train = random_rolls(rng, 4, max_len=10)
    _, history = fit_pianoroll(PianoRollConfig(model="sigmoid", **TINY),
                               small_train_config(num_steps=200, eval_every=1, patience=2, min_delta=100.0),
                               train, train)
    assert len(history) == 3      # the first evaluation is the best; two without improvement end the run


# --- the command line ----------------------------------------------------------------------------

def run(capsys, *args):
    try:
        status = main([str(a) for a in args])
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


def test_train_eval_generate_on_a_tiny_pickle(capsys, tmp_path, tiny_pickle):
    out = tmp_path / "run"
    status, text, err = run(capsys, "pianoroll", "train", "--data", tiny_pickle, "--out", out, "--model", "nade",
                            "--steps", 4, "--eval-every", 2, "--seed", 3, "--quiet", "--dropout", 0.1, "--augment", 1)
    assert status == 0, err
    assert "best valid" in text and (out / "best.npz").is_file()
    report = json.loads((out / "training.json").read_text())
    assert report["pianoroll_config"]["model"] == "nade" and report["pianoroll_config"]["dropout"] == 0.1
    assert report["pianoroll_train_config"]["augment_semitones"] == 1
    status, text, err = run(capsys, "pianoroll", "eval", "--data", tiny_pickle, "--checkpoint", out, "--json")
    assert status == 0, err
    result = json.loads(text)
    assert result["split"] == "test" and result["frames"] == count_frames(load_pianoroll_pickle(tiny_pickle)["test"])
    model, _, _ = load_pianoroll_model(out)
    expected = evaluate_pianoroll(model, load_pianoroll_pickle(tiny_pickle)["test"])["nats_per_frame"]
    assert result["nats_per_frame"] == pytest.approx(expected)
    status, text, err = run(capsys, "pianoroll", "eval", "--data", tiny_pickle, "--checkpoint", out / "best.npz",
                            "--split", "valid")
    assert status == 0 and text.startswith("valid: ") and "nats/frame" in text
    gen = tmp_path / "gen"
    status, text, err = run(capsys, "pianoroll", "generate", "--checkpoint", out, "--frames", 12, "--seed", 1,
                            "--out", gen)
    assert status == 0, err
    first = (gen / "pianoroll_001.mid").read_bytes()
    assert first[:4] == b"MThd" and (gen / "pianoroll_001.png").is_file()
    assert (gen / "pianoroll_001.wav").read_bytes()[:4] == b"RIFF"          # sound by default
    assert json.loads((gen / "generation.json").read_text())["seed"] == 1
    status, _, err = run(capsys, "pianoroll", "generate", "--checkpoint", out, "--frames", 12, "--seed", 1,
                         "--out", gen, "--no-audio", "--no-picture")
    assert status == 0, err
    assert (gen / "pianoroll_001.mid").read_bytes() == first and not (gen / "pianoroll_001.wav").exists()


def test_generate_continues_a_primer_midi_file(capsys, tmp_path, tiny_pickle):
    from labkit.encoding import piano_roll
    from labkit.midi_io import read_midi, write_midi
    from note_seq.protobuf import music_pb2

    out = tmp_path / "run"
    status, _, err = run(capsys, "pianoroll", "train", "--data", tiny_pickle, "--out", out, "--model", "sigmoid",
                         "--steps", 2, "--quiet")
    assert status == 0, err
    primer = music_pb2.NoteSequence()
    primer.tempos.add(qpm=120.0)
    for i, pitches in enumerate([(60, 64, 67), (62, 65, 69), (59, 62, 67)]):     # three chords, a quarter each
        for p in pitches:
            primer.notes.add(pitch=p, velocity=80, start_time=0.5 * i, end_time=0.5 * (i + 1))
    primer.total_time = 1.5
    path = write_midi(primer, tmp_path / "primer.mid")
    gen = tmp_path / "gen"
    status, text, err = run(capsys, "pianoroll", "generate", "--checkpoint", out, "--frames", 10, "--seed", 2,
                            "--out", gen, "--primer", path, "--no-audio", "--no-picture")
    assert status == 0, err
    assert "after a primer of 6" in text                       # three quarters, two frames (eighths) each
    roll = piano_roll(read_midi(gen / "pianoroll_001.mid"), steps_per_quarter=2)
    expected = piano_roll(primer, steps_per_quarter=2)
    assert np.array_equal(roll[:6, 21:], expected[:6, 21:])     # the file begins with the primer, as written
    assert json.loads((gen / "generation.json").read_text())["primer_frames"] == 6
    silent = tmp_path / "silent.mid"
    empty = music_pb2.NoteSequence()
    empty.tempos.add(qpm=120.0)
    write_midi(empty, silent)
    status, _, err = run(capsys, "pianoroll", "generate", "--checkpoint", out, "--out", tmp_path / "g2",
                         "--primer", silent)
    assert status == 2 and err.count("\n") == 1 and "silent.mid" in err, err


def test_every_bad_input_is_one_line_and_status_2(capsys, tmp_path, tiny_pickle):
    from labkit.checkpoint import save_checkpoint

    bad = tmp_path / "bad.pickle"
    bad.write_bytes(pickle.dumps({s: [[(60,), (120,)]] for s in PICKLE_SPLITS}))
    empty = tmp_path / "empty.pickle"
    empty.write_bytes(pickle.dumps({"train": [[(60,)]], "valid": [], "test": [[(60,)]]}))
    layout = tmp_path / "layout.pickle"
    layout.write_bytes(pickle.dumps([[(60,)]]))
    evil = tmp_path / "evil.pickle"
    _Exploit.marker = tmp_path / "ran"
    evil.write_bytes(pickle.dumps({"train": _Exploit(), "valid": [], "test": []}))
    other = save_checkpoint(tmp_path / "other.npz", {"w": {"a": np.ones(2)}}, {"step": 1})
    out = tmp_path / "o"
    cases = [
        (("train", "--data", tmp_path / "none.pickle", "--out", out), "no such file"),
        (("train", "--data", bad, "--out", out), "frame 1 holds 120"),
        (("train", "--data", empty, "--out", out), "'valid' holds no tunes"),
        (("train", "--data", layout, "--out", out), "not a dict"),
        (("train", "--data", evil, "--out", out), "names the global"),
        (("train", "--data", tiny_pickle, "--out", out, "--steps", 0), "--steps"),
        (("train", "--data", tiny_pickle, "--out", out, "--steps", 2, "--minutes", 1), "not allowed with"),
        (("train", "--data", tiny_pickle, "--out", out, "--model", "softmax"), "--model"),
        (("train", "--data", tiny_pickle, "--out", out, "--dropout", 1), "--dropout"),
        (("train", "--data", tiny_pickle, "--out", out, "--augment", 13), "--augment"),
        (("train", "--data", tiny_pickle, "--out", tiny_pickle), "not a folder"),
        (("eval", "--data", tiny_pickle, "--checkpoint", tmp_path / "nowhere"), "no checkpoint file"),
        (("eval", "--data", tiny_pickle, "--checkpoint", tmp_path), "holds no best.npz"),
        (("eval", "--data", tiny_pickle, "--checkpoint", other), "holds no piano-roll model"),
        (("eval", "--data", tiny_pickle, "--checkpoint", other, "--split", "dev"), "--split"),
        (("generate", "--checkpoint", other, "--frames", 0, "--out", out), "--frames"),
        (("generate", "--checkpoint", tiny_pickle, "--out", out), "not a readable labkit checkpoint"),
    ]
    for args, words in cases:
        status, text, err = run(capsys, "pianoroll", *args)
        assert status == 2, (args, err)
        assert err.count("\n") == 1 and words in err, (args, err)
    assert not _Exploit.marker.exists()


def test_the_commands_errors_are_labkit_errors():
    assert issubclass(PianoRollFormatError, LabkitError) and issubclass(EmptySplitError, LabkitError)


def test_the_clock_tells_the_lstm_where_each_frame_falls():
    model = make_pianoroll_model(PianoRollConfig(model="sigmoid", clock_periods=(2, 3), **TINY), 0)
    features = np.asarray(model.rnn.clock(jnp.array([0, 1, 5])))
    by_hand = [[np.cos(2 * np.pi * (t % p) / p) for p in (2, 3)] + [np.sin(2 * np.pi * (t % p) / p) for p in (2, 3)]
               for t in (0, 1, 5)]
    assert np.allclose(features, by_hand, atol=1e-6)
    # a window that starts 4 frames into its tune reads the clock from 4: the same LSTM input as the whole tune's
    roll = (np.random.default_rng(8).random((1, 9, NUM_KEYS)) < 0.05).astype(np.float32)
    whole, _ = model.frame_nll(jnp.asarray(roll))
    _, carry = model.rnn.states(jnp.asarray(roll[:, :4]))
    assert int(carry[2][0]) == 4
    rest, _ = model.frame_nll(jnp.asarray(roll[:, 4:]), carry)
    assert np.allclose(rest, whole[:, 4:], atol=1e-5)
    # and the batches say where each window starts, so training sees the clock a whole tune would
    batch = next(iter(pianoroll_batches([roll[0]], batch_size=3, seq_len=4, shuffle=False)))
    assert batch["start"].tolist() == [0, 4, 8]
    no_clock = make_pianoroll_model(PianoRollConfig(model="sigmoid", clock_periods=(), **TINY), 0)
    assert no_clock.rnn.clock(jnp.array([3])).shape == (1, 0)
