"""Tests of labkit.train and labkit.checkpoint on synthetic token data (no corpus needed)."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from labkit.checkpoint import flatten_tree, load_checkpoint, load_model, read_meta, save_checkpoint, save_model
from labkit.errors import CheckpointError, ConfigError, CorpusError, EncodingError
from labkit.models import ModelConfig, make_model
from labkit.train import (PRESETS, TrainConfig, evaluate_model, fit, learning_rate_at, learning_rate_schedule,
                          make_optimizer, prepare_batch, preset, token_stats)

VOCAB = 10
PERIOD = 5
MODEL = ModelConfig(vocab_size=VOCAB, embed_dim=8, hidden_size=16, num_layers=1, dropout=0.1)


def cyclic_batch(rng, batch=8, width=17):
    """Rows cycle through tokens 2..2+PERIOD-1 from a random phase: predictable after one token."""
    phase = rng.integers(0, PERIOD, size=(batch, 1))
    tokens = ((np.arange(width)[None] + phase) % PERIOD + 2).astype(np.int32)
    return {"tokens": tokens, "mask": np.ones((batch, width), np.float32)}


def epoch_batches(seed=0, num=4):
    """A data source like labkit.data.batches: a function of the epoch, deterministic."""
    def batches(epoch):
        rng = np.random.default_rng([seed, epoch])
        return [cyclic_batch(rng) for _ in range(num)]
    return batches


VALID = [cyclic_batch(np.random.default_rng(99)) for _ in range(2)]


def leaves(model):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param))]


def assert_same_params(a, b):
    for x, y in zip(leaves(a), leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


# --- configs, schedule, batches ------------------------------------------------------------------

def test_presets_and_overrides():
    assert set(PRESETS) == {"ci", "cpu", "gpu"}
    assert preset("cpu", num_steps=7, seed=3).num_steps == 7
    assert preset("cpu", num_steps=7, seed=3).seed == 3
    with pytest.raises(ConfigError, match="no training preset"):
        preset("tpu")
    with pytest.raises(ConfigError):
        preset("ci", no_such_field=1)


@pytest.mark.parametrize("changes", [dict(num_steps=0), dict(learning_rate=0.0), dict(eval_every=-1),
                                     dict(end_lr_ratio=2.0), dict(max_eval_batches=0), dict(seed=-1)])
def test_bad_train_config_raises(changes):
    with pytest.raises(ConfigError):
        TrainConfig(**changes)


def test_schedule_warms_up_and_decays():
    cfg = TrainConfig(learning_rate=0.01, warmup_steps=10, num_steps=110, end_lr_ratio=0.1)
    s = learning_rate_schedule(cfg)
    lrs = np.array([float(s(i)) for i in range(0, 111)])
    assert lrs[0] > 0
    assert np.all(np.diff(lrs[:10]) > 0)
    assert math.isclose(lrs.max(), 0.01, rel_tol=1e-5)
    assert np.all(np.diff(lrs[10:]) <= 1e-9)
    assert math.isclose(lrs[110], 0.001, rel_tol=1e-4)


def _closed_form_learning_rate(config, step):
    """Linear warm-up from learning_rate / warmup_steps, then cosine decay to end_lr_ratio * learning_rate."""
    warm = min(1.0, (step + 1.0) / max(config.warmup_steps, 1))
    progress = min(max((step - config.warmup_steps) / max(config.num_steps - config.warmup_steps, 1), 0.0), 1.0)
    end = config.end_lr_ratio
    return config.learning_rate * warm * (end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * progress)))


@pytest.mark.parametrize("warmup_steps, num_steps", [(0, 20), (1, 20), (5, 20), (100, 1500), (30, 30)])
def test_the_optax_schedule_is_the_closed_form(warmup_steps, num_steps):
    cfg = TrainConfig(learning_rate=3e-3, warmup_steps=warmup_steps, num_steps=num_steps, end_lr_ratio=0.05)
    for step in range(num_steps + 3):
        assert math.isclose(learning_rate_at(cfg, step), _closed_form_learning_rate(cfg, step), rel_tol=2e-6), step


def test_make_optimizer_is_adam_plus_decay_on_matrices_only():
    """optax.adamw(mask=...) gives exactly the updates of clipping, Adam scaling and decay of rank >= 2 arrays."""
    import optax

    params = nnx.state(make_model(MODEL, 0), nnx.Param)
    grads = jax.tree_util.tree_map(lambda p: jax.random.normal(jax.random.key(p.size), p.shape), params)
    cfg = preset("ci", weight_decay=0.1, grad_clip=0.5)
    reference = optax.chain(optax.clip_by_global_norm(0.5), optax.scale_by_adam(),
                            optax.add_decayed_weights(0.1, mask=lambda t: jax.tree_util.tree_map(lambda x: x.ndim >= 2, t)))
    tx = make_optimizer(cfg)
    assert tx is make_optimizer(preset("cpu", weight_decay=0.1, grad_clip=0.5))   # cached: fit reuses compiled steps
    ours, _ = tx.update(grads, tx.init(params), params)
    theirs, _ = reference.update(grads, reference.init(params), params)
    for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(theirs), strict=True):
        np.testing.assert_array_equal(a, -b)                  # adamw already points downhill
    bias = params["head"]["bias"]
    decayed_bias = tx.update(jax.tree_util.tree_map(np.zeros_like, grads), tx.init(params), params)[0]
    np.testing.assert_array_equal(decayed_bias["head"]["bias"], np.zeros_like(bias))   # no decay on biases
    assert np.any(np.asarray(decayed_bias["head"]["kernel"]) != 0)


def test_prepare_batch_pads_with_masked_rows_and_steps():
    batch = {"tokens": np.ones((5, 10), np.int64), "mask": np.ones((5, 10))}
    out = prepare_batch(batch, vocab_size=VOCAB, num_devices=4, pad_time_to=4)
    assert out["tokens"].shape == (8, 13) and out["tokens"].dtype == np.int32
    assert out["mask"].sum() == 50 and out["mask"][5:].sum() == 0 and out["mask"][:, 10:].sum() == 0


def test_prepare_batch_rejects_bad_batches():
    with pytest.raises(EncodingError, match="outside"):
        prepare_batch({"tokens": np.full((2, 4), VOCAB), "mask": np.ones((2, 4))}, vocab_size=VOCAB)
    with pytest.raises(CorpusError):
        prepare_batch({"tokens": np.ones((2, 4), np.int32), "mask": np.ones((2, 5))}, vocab_size=VOCAB)
    with pytest.raises(CorpusError):
        prepare_batch({"tokens": np.ones((2, 4), np.int32)}, vocab_size=VOCAB)


def test_token_stats_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 4)).astype(np.float32)
    targets = rng.integers(0, 4, size=(2, 3))
    weights = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
    stats = token_stats(logits, targets, weights)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
    assert math.isclose(float(stats["nll"]), float((nll * weights).sum()), rel_tol=1e-5)
    assert float(stats["weight"]) == 3
    assert float(stats["correct"]) == float(((logits.argmax(-1) == targets) * weights).sum())
    # no scatter in its gradient (GPUs run scatter-adds with atomics, in no fixed order)
    backward = jax.jit(jax.grad(lambda z: token_stats(z, targets, weights)["nll"])).lower(logits).as_text()
    assert "scatter" not in backward


# --- steps and fit -------------------------------------------------------------------------------

def test_one_step_run_changes_every_parameter():
    batch = cyclic_batch(np.random.default_rng(0))
    batch["tokens"][0, :VOCAB] = np.arange(VOCAB)   # every token is read, so every embedding row moves
    cfg = preset("ci", num_steps=1, weight_decay=0.0)  # no decay: only the gradient moves a parameter
    model, history = fit(MODEL, cfg, [batch], VALID)
    initial = make_model(MODEL, jax.random.fold_in(jax.random.key(cfg.seed), 0))   # as fit documents
    for before, after in zip(leaves(initial), leaves(model), strict=True):
        assert before.shape == after.shape
        assert np.all(before != after)
    assert [r["step"] for r in history] == [1]
    record = history[0]
    assert math.isclose(record["train_bits"], record["train_loss"] / math.log(2))
    again = evaluate_model(model, VALID, max_batches=cfg.max_eval_batches)     # the returned model is the one scored
    assert (record["valid_loss"], record["valid_accuracy"]) == (again["loss"], again["accuracy"])
    assert again["accuracy"] * again["events"] == round(again["accuracy"] * again["events"])  # a count of hits


def test_loss_decreases_on_a_learnable_pattern():
    cfg = preset("ci", num_steps=60, eval_every=20, learning_rate=2e-2, warmup_steps=5)
    model, history = fit(MODEL, cfg, epoch_batches(), VALID)
    losses = [r["valid_loss"] for r in history]
    assert losses[-1] < 0.5 * losses[0], losses
    # After one token the cycle is determined: well below the ~2.3 bits of guessing among 5 tokens.
    assert evaluate_model(model, VALID)["bits"] < 1.0
    assert evaluate_model(model, VALID)["accuracy"] > 0.8


def test_same_seed_same_parameters():
    cfg = preset("ci", num_steps=4, eval_every=2)
    a, hist_a = fit(MODEL, cfg, epoch_batches(), VALID)
    b, hist_b = fit(MODEL, cfg, epoch_batches(), VALID)
    assert_same_params(a, b)
    assert [r["valid_loss"] for r in hist_a] == [r["valid_loss"] for r in hist_b]
    c, _ = fit(MODEL, preset("ci", num_steps=4, eval_every=2, seed=1), epoch_batches(), VALID)
    assert any(not np.array_equal(x, y) for x, y in zip(leaves(a), leaves(c)))


def test_fit_can_start_from_a_given_model():
    start = make_model(MODEL, 42)
    before = leaves(start)
    cfg = preset("ci", num_steps=1, learning_rate=1e-9, warmup_steps=0)
    tuned, _ = fit(MODEL, cfg, epoch_batches(), None, initial_model=start)
    for x, y in zip(before, leaves(tuned), strict=True):
        np.testing.assert_allclose(x, y, atol=1e-6)                 # a negligible step away from the start
    for x, y in zip(before, leaves(start), strict=True):
        np.testing.assert_array_equal(x, y)                         # the given model is left alone
    other = ModelConfig(vocab_size=VOCAB, embed_dim=8, hidden_size=12, num_layers=1)
    with pytest.raises(ConfigError, match="initial_model"):
        fit(MODEL, cfg, epoch_batches(), None, initial_model=make_model(other, 0))


def test_early_stopping():
    cfg = preset("ci", num_steps=50, eval_every=2, patience=2, min_delta=100.0)
    _, history = fit(MODEL, cfg, epoch_batches(), VALID)
    # the first evaluation is the best; two more without (a 100-nat) improvement stop the run
    assert [r["step"] for r in history] == [2, 4, 6]
    assert [r["best"] for r in history] == [True, False, False]


def interrupting(source, after, exception):
    """A data source that raises ``exception`` when batch number ``after`` (0-based, over all epochs) is asked for."""
    count = {"n": 0}

    def batches(epoch):
        for batch in source(epoch):
            if count["n"] == after:
                raise exception
            count["n"] += 1
            yield batch
    return batches


@pytest.mark.parametrize("exception, last_checkpoint_step", [(KeyboardInterrupt(), 9), (RuntimeError("crash"), 8)])
def test_resumed_training_equals_uninterrupted(tmp_path, exception, last_checkpoint_step):
    """Ctrl-C writes a checkpoint at once; a crash loses the steps since the last evaluation.
    Either way the resumed run ends with exactly the parameters of an uninterrupted one
    (epochs of 4 batches, so the interruption falls inside an epoch)."""
    cfg = preset("ci", num_steps=14, eval_every=4)
    reference, ref_history = fit(MODEL, cfg, epoch_batches(), VALID)
    with pytest.raises(type(exception)):
        fit(MODEL, cfg, interrupting(epoch_batches(), 9, exception), VALID, workdir=tmp_path)
    assert read_meta(tmp_path / "checkpoint.npz")["progress"]["step"] == last_checkpoint_step
    resumed, history = fit(MODEL, cfg, epoch_batches(), VALID, workdir=tmp_path)
    assert_same_params(resumed, reference)
    assert [r["step"] for r in history] == [r["step"] for r in ref_history] == [4, 8, 12, 14]
    assert [r["valid_loss"] for r in history] == [r["valid_loss"] for r in ref_history]
    # a finished run resumes to itself without training
    again, _ = fit(MODEL, cfg, interrupting(epoch_batches(), 0, RuntimeError("no data needed")), VALID,
                   workdir=tmp_path)
    assert_same_params(again, reference)


def test_interrupted_evaluation_is_redone_on_resume(tmp_path):
    cfg = preset("ci", num_steps=14, eval_every=4)
    reference, ref_history = fit(MODEL, cfg, epoch_batches(), VALID)
    calls = {"n": 0}

    def valid():
        calls["n"] += 1
        if calls["n"] == 2:              # Ctrl-C during the evaluation at step 8
            raise KeyboardInterrupt
        return VALID

    with pytest.raises(KeyboardInterrupt):
        fit(MODEL, cfg, epoch_batches(), valid, workdir=tmp_path)
    progress = read_meta(tmp_path / "checkpoint.npz")["progress"]
    assert (progress["step"], progress["evaluated_step"], len(progress["history"])) == (8, 4, 1)
    resumed, history = fit(MODEL, cfg, epoch_batches(), valid, workdir=tmp_path)
    assert_same_params(resumed, reference)
    assert [(r["step"], r["valid_loss"], r["best"]) for r in history] == \
        [(r["step"], r["valid_loss"], r["best"]) for r in ref_history]


def test_resume_refuses_another_model(tmp_path):
    fit(MODEL, preset("ci", num_steps=1), epoch_batches(), None, workdir=tmp_path)
    other = ModelConfig(vocab_size=VOCAB, embed_dim=8, hidden_size=12, num_layers=1)
    with pytest.raises(CheckpointError, match="another workdir"):
        fit(other, preset("ci", num_steps=1), epoch_batches(), None, workdir=tmp_path)
    _, resumed = fit(MODEL, preset("ci", num_steps=2), epoch_batches(), None, workdir=tmp_path)
    assert [r["step"] for r in resumed] == [1, 2]
    _, fresh = fit(MODEL, preset("ci", num_steps=2), epoch_batches(), None, workdir=tmp_path, resume=False)
    assert [r["step"] for r in fresh] == [2]


def test_resume_removes_the_temporary_files_of_a_killed_save(tmp_path):
    """A save killed between writing and renaming leaves ``.checkpoint.npz.<pid>.<random>.tmp``; resuming
    removes it (its writer is dead) and keeps every other file, and the resumed run is the uninterrupted one."""
    cfg = preset("ci", num_steps=8, eval_every=4)
    reference, _ = fit(MODEL, cfg, epoch_batches(), VALID)
    with pytest.raises(KeyboardInterrupt):
        fit(MODEL, cfg, interrupting(epoch_batches(), 5, KeyboardInterrupt()), VALID, workdir=tmp_path)
    stale = [tmp_path / ".checkpoint.npz.999999999.k1ll3d.tmp", tmp_path / ".best.npz.999999999.x_y.tmp"]
    kept = [tmp_path / f".checkpoint.npz.{os.getppid()}.running.tmp", tmp_path / "notes.txt"]
    for path in stale + kept:
        path.write_bytes(b"half a checkpoint")
    resumed, history = fit(MODEL, cfg, epoch_batches(), VALID, workdir=tmp_path)
    assert not any(path.exists() for path in stale) and all(path.exists() for path in kept)
    assert_same_params(resumed, reference)
    assert [r["step"] for r in history] == [4, 8]


@pytest.mark.parametrize("progress", [None, [1, 2], {"step": 3}, "bad-counters"])
def test_resume_refuses_a_checkpoint_without_a_usable_progress_record(tmp_path, progress):
    fit(MODEL, preset("ci", num_steps=2, eval_every=2), epoch_batches(), None, workdir=tmp_path)
    path = tmp_path / "checkpoint.npz"
    meta = read_meta(path)
    if progress == "bad-counters":
        progress = {**meta["progress"], "step": -4}
    model = make_model(MODEL, 0)
    params = nnx.state(model, nnx.Param)
    trees, _ = load_checkpoint(path, {"params": params, "opt_state": make_optimizer(preset("ci")).init(params)})
    save_checkpoint(path, trees, {k: v for k, v in {**meta, "progress": progress}.items()
                                  if k not in ("format_version", "trees")})
    with pytest.raises(CheckpointError, match="progress record") as info:
        fit(MODEL, preset("ci", num_steps=4, eval_every=2), epoch_batches(), None, workdir=tmp_path)
    assert info.value.path == str(path)


def test_fit_rejects_one_shot_iterators_and_empty_data():
    with pytest.raises(ConfigError, match="re-iterable"):
        fit(MODEL, preset("ci", num_steps=1), iter([VALID[0]]), None)
    with pytest.raises(CorpusError, match="no batches"):
        fit(MODEL, preset("ci", num_steps=1), lambda epoch: [], None)


# --- checkpoints ---------------------------------------------------------------------------------

def test_checkpoint_round_trip_is_exact_and_atomic(tmp_path):
    model = make_model(MODEL, 3)
    params = nnx.state(model, nnx.Param)
    tx = make_optimizer(preset("ci"))
    opt_state = tx.init(params)
    path = save_checkpoint(tmp_path / "sub" / "c.npz", {"params": params, "opt_state": opt_state},
                           {"step": 5, "note": "hi"})
    assert sorted(p.name for p in path.parent.iterdir()) == ["c.npz"]   # no temporary file left
    template = nnx.state(make_model(MODEL, 4), nnx.Param)
    trees, meta = load_checkpoint(path, {"params": template, "opt_state": tx.init(template)})
    assert meta["step"] == 5 and meta["note"] == "hi"
    for x, y in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(trees["params"]), strict=True):
        np.testing.assert_array_equal(x, y)
    assert (jax.tree_util.tree_structure(trees["opt_state"]) == jax.tree_util.tree_structure(opt_state))


def test_save_and_load_model(tmp_path):
    cfg = ModelConfig(vocab_size=VOCAB, embed_dim=8, hidden_size=16, num_layers=1, attention_length=3)
    model = make_model(cfg, 1)
    loaded, loaded_cfg = load_model(save_model(tmp_path / "m.npz", model, cfg))
    assert loaded_cfg == cfg
    tokens = np.arange(6, dtype=np.int32)[None] % VOCAB
    np.testing.assert_array_equal(loaded(tokens), model(tokens))


def test_checkpoint_errors(tmp_path):
    template = {"params": nnx.state(make_model(MODEL, 0), nnx.Param)}
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.npz", template)
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match="junk.npz"):
        load_checkpoint(tmp_path / "junk.npz", template)
    # written for another model: a clear message naming the array
    other = ModelConfig(vocab_size=VOCAB, embed_dim=8, hidden_size=12, num_layers=1)
    path = save_model(tmp_path / "other.npz", make_model(other, 0), other)
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(path, template)
    two_layers = ModelConfig(vocab_size=VOCAB, embed_dim=8, hidden_size=16, num_layers=2)
    one_layer = save_model(tmp_path / "one.npz", make_model(MODEL, 0), MODEL)
    with pytest.raises(CheckpointError, match="'params/cells/1/.*' is missing"):
        load_checkpoint(one_layer, {"params": nnx.state(make_model(two_layers, 0), nnx.Param)})
    # an array that would need unpickling is refused, not executed
    arrays = {f"params/{name}": value for name, value in flatten_tree(template["params"]).items()}
    arrays["params/embed/embedding"] = np.array([{"a": 1}], dtype=object)
    np.savez(tmp_path / "pickled.npz", __meta__=np.frombuffer(json.dumps(
        {"format_version": 1, "model_config": MODEL.to_dict()}).encode(), np.uint8), **arrays)
    with pytest.raises(CheckpointError, match="Python objects, which labkit never loads") as info:
        load_checkpoint(tmp_path / "pickled.npz", template)
    assert "allow_pickle" not in str(info.value)
    with pytest.raises(CheckpointError, match="no metadata"):
        np.savez(tmp_path / "plain.npz", x=np.zeros(2))
        read_meta(tmp_path / "plain.npz")


# --- several devices -----------------------------------------------------------------------------

SHARDED_SCRIPT = r"""
import json, jax, numpy as np
from labkit.models import ModelConfig
from labkit.train import fit, preset, evaluate_model, data_mesh

def run():
    rng = np.random.default_rng(0)
    def batches(epoch):
        rng = np.random.default_rng([0, epoch])
        out = []
        for rows in (8, 6, 8):   # 6 rows: padded with masked rows on 8 devices
            phase = rng.integers(0, 5, size=(rows, 1))
            tokens = ((np.arange(17)[None] + phase) % 5 + 2).astype(np.int32)
            mask = np.ones(tokens.shape, np.float32)
            mask[0, 12:] = 0.0
            out.append({"tokens": tokens, "mask": mask})
        return out
    cfg = ModelConfig(vocab_size=10, embed_dim=8, hidden_size=16, num_layers=1, dropout=0.1)
    model, history = fit(cfg, preset("ci", num_steps=3, eval_every=3, learning_rate=1e-2), batches, batches(7))
    return {"devices": data_mesh().size, "train_loss": history[-1]["train_loss"],
            "valid_loss": history[-1]["valid_loss"], "eval": evaluate_model(model, batches(9))["loss"]}

if __name__ == "__main__":
    print("RESULT " + json.dumps(run()))
"""


def test_sharded_training_matches_one_device(tmp_path):
    script = tmp_path / "sharded.py"
    script.write_text(SHARDED_SCRIPT)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    sharded = json.loads(done.stdout.split("RESULT ", 1)[1])
    namespace = {}
    exec(compile(SHARDED_SCRIPT, "sharded.py", "exec"), namespace)
    single = namespace["run"]()
    assert namespace["ModelConfig"](**MODEL.to_dict()) == MODEL  # the model compiled by the other tests
    assert sharded["devices"] == 8 and single["devices"] == jax.local_device_count()
    for name in ("train_loss", "valid_loss", "eval"):
        assert math.isclose(sharded[name], single[name], rel_tol=1e-4), (name, sharded, single)


def test_training_seeds_outside_32_bits_are_refused_not_aliased():
    from labkit._common import MAX_SEED

    assert TrainConfig(seed=MAX_SEED).seed == MAX_SEED
    for bad in (MAX_SEED + 1, -1, 2 ** 64, True):
        with pytest.raises(ConfigError, match="TrainConfig.seed must be an integer in 0..4294967295"):
            TrainConfig(seed=bad)
