"""Training: configs, pure jitted train/eval steps, and a fit loop with early stopping and checkpoints.

The loss is the cross-entropy of the next event, averaged over real events (``mask``):

.. math::

    \\mathcal{L} = -\\frac{\\sum_{b,t} m_{b,t+1} \\log p(x_{b,t+1} \\mid x_{b,\\le t})}{\\sum_{b,t} m_{b,t+1}}
    \\quad \\text{nats/event}, \\qquad \\text{bits/event} = \\mathcal{L} / \\ln 2

A batch is ``{"tokens": int32 [B, T+1], "mask": float32 [B, T+1]}``: the model reads
``tokens[:, :-1]`` and is scored on ``tokens[:, 1:]`` weighted by ``mask[:, 1:]``.

How the loop is built:

* The model is split once (``nnx.split``) into a static graph definition and a pytree of
  parameters; :func:`train_step` and :func:`eval_step` are pure functions of
  ``(params, opt_state, batch, key)`` compiled with ``jax.jit``, and the model is rebuilt
  inside them with ``nnx.merge`` (so no Python runs per step beyond the call itself).
* The optimizer is optax: global-norm gradient clipping, then AdamW with linear warm-up and
  cosine decay (:func:`make_optimizer`, :func:`learning_rate_at`); the learning rate is an
  argument of the compiled step, so changing the schedule does not recompile it.
* Randomness: the parameters come from ``fold_in(key(seed), 0)``; the dropout key of step
  ``s`` is ``fold_in(fold_in(key(seed), 1), s)``; the data of epoch ``e`` is whatever
  ``train_batches(e)`` yields (the data source seeds itself, e.g. from
  ``TrainConfig.seed``). A checkpoint stores the step, the epoch and the number of batches
  already used in it, so a resumed run continues exactly where the interrupted one stopped.
* Several devices (GPUs, TPU cores, or ``--xla_force_host_platform_device_count``): every
  batch is split along its first axis over a 1-D ``'data'`` mesh of all local devices,
  parameters and optimizer state are replicated, and XLA inserts the gradient all-reduce.
  Batches are padded with masked rows to a multiple of the device count. On one device
  this is a no-op.

Notebook: 04_lstm_melody_model.ipynb
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from labkit.checkpoint import load_checkpoint, read_meta, save_checkpoint
from labkit.errors import CheckpointError, ConfigError, CorpusError, EncodingError
from labkit.models import ModelConfig, make_model

LN2 = math.log(2.0)
CHECKPOINT_NAME = "checkpoint.npz"
BEST_NAME = "best.npz"


@dataclass(frozen=True)
class TrainConfig:
    """How to train (the model's sizes are in :class:`~labkit.models.ModelConfig`).

    Attributes:
        seed: the one seed of a run: parameters, dropout and (through your data source) data order.
        num_steps: optimizer steps at most (the run may stop earlier, see ``patience``).
        batch_size, seq_len: for the data source (``labkit.data.batches``); :func:`fit` itself
            takes whatever batches it is given.
        learning_rate: peak learning rate of AdamW.
        warmup_steps: linear warm-up from ``learning_rate / warmup_steps`` to the peak.
        end_lr_ratio: the cosine decay ends at ``end_lr_ratio * learning_rate`` at ``num_steps``.
        weight_decay: AdamW decoupled weight decay, on matrices only (not biases).
        grad_clip: clip the global gradient norm to this (``0``: no clipping).
        eval_every: evaluate on the validation batches, log and write a checkpoint every this many steps.
        max_eval_batches: use at most this many validation batches per evaluation (``None``: all).
        patience: stop after this many evaluations without an improvement of the validation loss
            by more than ``min_delta`` nats/event (``0``: never stop early).
        min_delta: see ``patience``.
        log_every: refresh the progress bar every this many steps.
        progress: show a tqdm progress bar.
        pad_time_to: pad the time axis of every batch to a multiple of this (masked), so that
            evaluation batches of varying length compile to few shapes.

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> preset("ci").num_steps <= 50
        True
    """

    seed: int = 0
    num_steps: int = 2000
    batch_size: int = 64
    seq_len: int = 128
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    end_lr_ratio: float = 0.1
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    eval_every: int = 200
    max_eval_batches: int | None = None
    patience: int = 5
    min_delta: float = 1e-4
    log_every: int = 10
    progress: bool = True
    pad_time_to: int = 32

    def __post_init__(self):
        positive = ("num_steps", "batch_size", "seq_len", "eval_every", "log_every", "pad_time_to")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        for name in ("warmup_steps", "patience", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"TrainConfig.{name} must be an integer >= 0, got {value!r}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ConfigError(f"TrainConfig.learning_rate must be > 0, got {self.learning_rate!r}")
        if not (0.0 <= self.end_lr_ratio <= 1.0):
            raise ConfigError(f"TrainConfig.end_lr_ratio must lie in [0, 1], got {self.end_lr_ratio!r}")
        if self.weight_decay < 0 or self.grad_clip < 0 or self.min_delta < 0:
            raise ConfigError("TrainConfig.weight_decay, grad_clip and min_delta must be >= 0")
        if self.max_eval_batches is not None and (not isinstance(self.max_eval_batches, int)
                                                  or self.max_eval_batches < 1):
            raise ConfigError(f"TrainConfig.max_eval_batches must be None or >= 1, got {self.max_eval_batches!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"TrainConfig has no field(s) {', '.join(unknown)}")
        return cls(**values)


#: Named settings. ``ci``: seconds, for tests and ``LABKIT_FAST``; ``cpu``: a student's laptop
#: (1500 steps of a 2x256 LSTM: about 7-8 minutes on 2 cores, 443 s in notebook 04); ``gpu``: a Colab
#: GPU or better.
PRESETS: dict[str, TrainConfig] = {
    "ci": TrainConfig(num_steps=20, batch_size=8, seq_len=32, learning_rate=3e-3, warmup_steps=2,
                      eval_every=10, max_eval_batches=2, patience=0, log_every=5, progress=False),
    "cpu": TrainConfig(num_steps=1500, batch_size=64, seq_len=128, learning_rate=2e-3, warmup_steps=100,
                       eval_every=100, max_eval_batches=20, patience=5),
    "gpu": TrainConfig(num_steps=20000, batch_size=128, seq_len=256, learning_rate=1e-3, warmup_steps=500,
                       eval_every=500, patience=8),
}


def preset(name: str, **overrides) -> TrainConfig:
    """The named :data:`PRESETS` entry with some fields replaced.

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> preset("cpu", num_steps=10).num_steps
        10
    """
    if name not in PRESETS:
        raise ConfigError(f"no training preset {name!r}; choose one of {', '.join(PRESETS)}")
    try:
        return dataclasses.replace(PRESETS[name], **overrides)
    except TypeError as error:
        raise ConfigError(f"preset({name!r}): {error}") from None


# --- optimizer -----------------------------------------------------------------------------------

def learning_rate_at(config: TrainConfig, step: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based): linear warm-up to ``learning_rate``
    over ``warmup_steps``, then cosine decay to ``end_lr_ratio * learning_rate`` at ``num_steps``.
    Step 0 already has a positive rate.

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> cfg = TrainConfig(learning_rate=1.0, warmup_steps=10, num_steps=110)
        >>> [round(learning_rate_at(cfg, s), 3) for s in (0, 9, 60, 110)]
        [0.1, 1.0, 0.55, 0.1]
    """
    warm = min(1.0, (step + 1.0) / max(config.warmup_steps, 1))
    progress = min(max((step - config.warmup_steps) / max(config.num_steps - config.warmup_steps, 1), 0.0), 1.0)
    end = config.end_lr_ratio
    return config.learning_rate * warm * (end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def learning_rate_schedule(config: TrainConfig) -> Callable[[int], float]:
    """:func:`learning_rate_at` as a function of the step alone (for plots).

    Notebook: 04_lstm_melody_model.ipynb
    """
    return lambda step: learning_rate_at(config, int(step))


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """AdamW's update *direction*: ``clip_by_global_norm(grad_clip)``, Adam's moment scaling, and
    decoupled weight decay on arrays of rank >= 2 (kernels, embeddings; not biases).

    :func:`train_step` multiplies the result by ``-learning_rate`` (from :func:`learning_rate_at`),
    so this is ``optax.adamw`` with the learning rate passed in at each step: changing the
    schedule (or ``num_steps``) does not recompile the step. Only ``grad_clip`` and
    ``weight_decay`` are read from ``config``.

    Notebook: 04_lstm_melody_model.ipynb
    """
    return _optimizer(float(config.grad_clip), float(config.weight_decay))


@lru_cache(maxsize=16)
def _optimizer(grad_clip: float, weight_decay: float) -> optax.GradientTransformation:
    # One object per setting, so that repeated fit() calls reuse the compiled steps.
    def decay_mask(params):
        return jax.tree_util.tree_map(lambda x: x.ndim >= 2, params)

    parts = [optax.clip_by_global_norm(grad_clip)] if grad_clip > 0 else []
    parts += [optax.scale_by_adam(), optax.add_decayed_weights(weight_decay, mask=decay_mask)]
    return optax.chain(*parts)


# --- pure steps ----------------------------------------------------------------------------------

def token_stats(logits: jax.Array, targets: jax.Array, weights: jax.Array) -> dict[str, jax.Array]:
    """Sums over a batch: ``nll`` (nats), ``weight`` (events counted), ``correct`` (argmax hits).

    ``logits`` ``[B, T, V]``, ``targets`` int ``[B, T]``, ``weights`` float ``[B, T]`` (0/1).
    Divide ``nll`` and ``correct`` by ``weight`` for the mean loss and the accuracy.

    Notebook: 04_lstm_melody_model.ipynb
    """
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    # A one-hot product rather than take_along_axis: the same numbers, and a gradient without the
    # scatter-add that GPUs run in a different order every time (see labkit.models.embed_tokens).
    nll = -jnp.sum(jax.nn.one_hot(targets, log_probs.shape[-1], dtype=log_probs.dtype) * log_probs, axis=-1)
    hits = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
    return {"nll": jnp.sum(nll * weights), "weight": jnp.sum(weights), "correct": jnp.sum(hits * weights)}


def _batch_stats(model, batch, key):
    tokens = batch["tokens"]
    logits = model(tokens[:, :-1], deterministic=key is None, key=key)
    return token_stats(logits, tokens[:, 1:], batch["mask"][:, 1:])


def train_step(graphdef, rest, tx, params, opt_state, batch, key, learning_rate):
    """One optimizer step (pure; :func:`fit` jit-compiles it).

    Args:
        graphdef, rest: from ``nnx.split(model, nnx.Param, ...)`` (structure and non-parameter state).
        tx: the optax transformation (:func:`make_optimizer`).
        params, opt_state: parameters (``nnx.State``) and optimizer state.
        batch: ``{"tokens": int32 [B, T+1], "mask": float32 [B, T+1]}``.
        key: dropout key of this step (``None``: no dropout).
        learning_rate: the step size of this step (a scalar; see :func:`learning_rate_at`).

    Returns ``(params, opt_state, stats)`` with ``stats`` as in :func:`token_stats` plus
    ``grad_norm`` (before clipping).

    Notebook: 04_lstm_melody_model.ipynb
    """
    def loss_fn(p):
        stats = _batch_stats(nnx.merge(graphdef, p, rest), batch, key)
        return stats["nll"] / jnp.maximum(stats["weight"], 1.0), stats

    (_, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    updates = jax.tree_util.tree_map(lambda u: -learning_rate * u, updates)
    params = optax.apply_updates(params, updates)
    grad_norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree_util.tree_leaves(grads)))
    return params, opt_state, {**stats, "grad_norm": grad_norm}


def eval_step(graphdef, rest, params, batch):
    """Sums of :func:`token_stats` on one batch, without dropout (pure; jitted by :func:`evaluate`).

    Notebook: 04_lstm_melody_model.ipynb
    """
    return _batch_stats(nnx.merge(graphdef, params, rest), batch, None)


def data_mesh() -> Mesh:
    """A 1-D mesh named ``'data'`` over all local devices (batches are split along it).

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> data_mesh().axis_names
        ('data',)
    """
    return Mesh(np.array(jax.local_devices()), ("data",))


@lru_cache(maxsize=16)
def _compiled_train_step(graphdef, tx, mesh: Mesh):
    """:func:`train_step` jitted for a model structure, optimizer and mesh (batch sharded, rest replicated)."""
    replicated = NamedSharding(mesh, PartitionSpec())
    sharded = NamedSharding(mesh, PartitionSpec("data"))

    def train_fn(rest, params, opt_state, batch, dropout_root, step, learning_rate):
        key = jax.random.fold_in(dropout_root, step)
        return train_step(graphdef, rest, tx, params, opt_state, batch, key, learning_rate)

    return jax.jit(train_fn, in_shardings=(replicated, replicated, replicated, sharded, replicated,
                                           replicated, replicated), out_shardings=replicated)


@lru_cache(maxsize=16)
def _compiled_eval_step(graphdef, mesh: Mesh):
    """:func:`eval_step` jitted for a model structure and mesh; also returns the replicated sharding."""
    replicated = NamedSharding(mesh, PartitionSpec())

    def eval_fn(rest, params, batch):
        return eval_step(graphdef, rest, params, batch)

    return jax.jit(eval_fn, in_shardings=(replicated, replicated, NamedSharding(mesh, PartitionSpec("data"))),
                   out_shardings=replicated), replicated


def prepare_batch(batch: dict, *, vocab_size: int, num_devices: int = 1, pad_time_to: int = 1) -> dict:
    """Check a batch and pad it: rows to a multiple of ``num_devices``, ``T`` to a multiple of
    ``pad_time_to``. Padding is masked, so it changes no sum. Returns numpy arrays.

    Raises :class:`EncodingError` for tokens outside ``0..vocab_size-1`` and
    :class:`CorpusError` for a malformed batch.

    Notebook: 04_lstm_melody_model.ipynb
    """
    if not isinstance(batch, dict) or "tokens" not in batch or "mask" not in batch:
        raise CorpusError(f"a batch must be a dict with 'tokens' and 'mask', got {type(batch).__name__}"
                          + (f" with keys {sorted(batch)}" if isinstance(batch, dict) else ""))
    tokens = np.asarray(batch["tokens"])
    mask = np.asarray(batch["mask"], dtype=np.float32)
    if tokens.ndim != 2 or tokens.shape != mask.shape or tokens.shape[1] < 2 or tokens.shape[0] < 1:
        raise CorpusError(f"batch tokens {tokens.shape} and mask {mask.shape} must both be [B, T+1] with T >= 1")
    if not np.issubdtype(tokens.dtype, np.integer):
        raise CorpusError(f"batch tokens must be integers, got {tokens.dtype}")
    if tokens.min() < 0 or tokens.max() >= vocab_size:
        raise EncodingError(f"batch holds token {int(tokens.min()) if tokens.min() < 0 else int(tokens.max())}, "
                            f"outside the model's vocabulary 0..{vocab_size - 1}")
    rows, width = tokens.shape
    pad_rows = -rows % num_devices
    pad_time = -(width - 1) % pad_time_to
    if pad_rows or pad_time:
        tokens = np.pad(tokens, ((0, pad_rows), (0, pad_time)))
        mask = np.pad(mask, ((0, pad_rows), (0, pad_time)))
    return {"tokens": tokens.astype(np.int32, copy=False), "mask": mask}


def _summary(sums: dict) -> dict:
    weight = float(sums["weight"])
    loss = float(sums["nll"]) / weight if weight else float("nan")
    return {"loss": loss, "bits": loss / LN2, "accuracy": float(sums["correct"]) / weight if weight else float("nan"),
            "events": weight}


def _valid_iter(source):
    if source is None:
        return None
    if callable(source):
        return iter(source())
    if iter(source) is source:
        raise ConfigError("validation batches must be re-iterable (a list) or a function of no "
                          "arguments returning batches; a one-shot iterator would be empty after the first evaluation")
    return iter(source)


def _epoch_iter(source, epoch: int):
    if callable(source):
        return iter(source(epoch))
    if iter(source) is source:
        raise ConfigError("train_batches must be re-iterable (a list) or a function epoch -> batches; "
                          "a one-shot iterator cannot be replayed for the next epoch or a resumed run")
    return iter(source)


def evaluate(model: nnx.Module, batches, *, max_batches: int | None = None, pad_time_to: int = 32) -> dict:
    """Cross-entropy of ``model`` on ``batches`` (an iterable, or a function of no arguments giving one).

    Returns ``{"loss": nats/event, "bits": bits/event, "accuracy": argmax accuracy, "events": count}``,
    averaged over all real events of all batches (not over batches). No dropout.

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> m = make_model(ModelConfig(vocab_size=5, embed_dim=4, hidden_size=8, num_layers=1), 0)
        >>> b = {"tokens": np.zeros((2, 9), np.int32), "mask": np.ones((2, 9), np.float32)}
        >>> evaluate(m, [b])["events"]
        16.0
    """
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    mesh = data_mesh()
    eval_fn, replicated = _compiled_eval_step(graphdef, mesh)
    params, rest = jax.device_put((params, rest), replicated)
    return _summary(_evaluate(eval_fn, rest, params, _valid_iter(batches), model.vocab_size,
                              mesh.size, pad_time_to, max_batches))


def _evaluate(eval_fn, rest, params, iterator, vocab_size, num_devices, pad_time_to, max_batches):
    total = {"nll": 0.0, "weight": 0.0, "correct": 0.0}
    for index, batch in enumerate(iterator):
        if max_batches is not None and index >= max_batches:
            break
        stats = eval_fn(rest, params, prepare_batch(batch, vocab_size=vocab_size, num_devices=num_devices,
                                                    pad_time_to=pad_time_to))
        total = {k: total[k] + stats[k] for k in total}
    if float(total["weight"]) == 0:
        raise CorpusError("the validation batches hold no events")
    return total


# --- the fit loop --------------------------------------------------------------------------------

def _fresh_progress() -> dict:
    return {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_loss": None, "best_step": None,
            "bad_evals": 0, "stopped_early": False, "evaluated_step": 0, "history": [], "acc": _zero_acc()}


def fit(model_config: ModelConfig, train_config: TrainConfig, train_batches,
        valid_batches=None, workdir: str | Path | None = None, resume: bool = True,
        initial_model: nnx.Module | None = None):
    """Train a model from scratch (or resume), with early stopping on the validation loss.

    Args:
        model_config: the model's sizes.
        train_config: steps, optimizer, evaluation, seed (see :class:`TrainConfig`, :func:`preset`).
        train_batches: a function ``epoch -> iterable of batches`` (deterministic in ``epoch``,
            e.g. ``lambda e: data.batches(train, batch_size=64, seq_len=128, seed=cfg.seed, epoch=e)``)
            or a re-iterable collection of batches (a list), replayed in order every epoch.
        valid_batches: a function of no arguments giving the validation batches, or a list;
            ``None`` for no evaluation (and no early stopping).
        workdir: folder for ``checkpoint.npz`` (the latest state, written at every evaluation
            and when the run is interrupted with Ctrl-C) and ``best.npz`` (the best validation
            parameters); ``None`` to write nothing.
        resume: continue from ``workdir/checkpoint.npz`` when it exists (the model config must match).
        initial_model: start from this model's parameters (e.g. a shipped, pre-trained model; it
            must have ``model_config``'s shapes) instead of fresh ones drawn from the seed; fine-tuning.
            It is not modified. A checkpoint being resumed takes precedence.

    Returns ``(model, history)``: the model with the parameters of the best evaluation (the
    last ones when there was no validation data), and a list with one dict per evaluation:
    ``step, epoch, learning_rate, train_loss, train_bits, train_accuracy, valid_loss, valid_bits,
    valid_accuracy, best, tokens_per_s, elapsed_s`` (losses in nats/event; ``train_*`` averaged
    over the steps since the previous evaluation; ``tokens_per_s`` counts real events).

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> batch = {"tokens": np.tile(np.arange(9, dtype=np.int32) % 3, (4, 1)),
        ...          "mask": np.ones((4, 9), np.float32)}
        >>> model, history = fit(ModelConfig(vocab_size=3, embed_dim=4, hidden_size=8, num_layers=1),
        ...                      preset("ci", num_steps=2, eval_every=2), [batch], [batch])
        >>> [record["step"] for record in history]
        [2]
    """
    if not isinstance(model_config, ModelConfig):
        raise ConfigError(f"fit needs a ModelConfig, got {type(model_config).__name__}")
    if not isinstance(train_config, TrainConfig):
        raise ConfigError(f"fit needs a TrainConfig, got {type(train_config).__name__}")
    cfg = train_config
    root = jax.random.key(cfg.seed)
    model = make_model(model_config, jax.random.fold_in(root, 0))
    dropout_root = jax.random.fold_in(root, 1)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    if initial_model is not None:
        params = _matching_params(initial_model, params)
    tx = make_optimizer(cfg)
    opt_state = tx.init(params)
    progress = _fresh_progress()
    best_params = None

    workdir = Path(workdir) if workdir is not None else None
    ckpt_path = workdir / CHECKPOINT_NAME if workdir else None
    best_path = workdir / BEST_NAME if workdir else None
    if ckpt_path is not None and resume and ckpt_path.exists():
        meta = read_meta(ckpt_path)
        if meta.get("model_config") != model_config.to_dict():
            raise CheckpointError(f"checkpoint was written for model {meta.get('model_config')}, "
                                  f"not {model_config.to_dict()}; use another workdir or resume=False",
                                  ckpt_path)
        trees, meta = load_checkpoint(ckpt_path, {"params": params, "opt_state": opt_state})
        params, opt_state, progress = trees["params"], trees["opt_state"], meta["progress"]
        if progress["best_step"] is not None and best_path.exists():
            best_params = load_checkpoint(best_path, {"params": params})[0]["params"]

    mesh = data_mesh()
    train_fn = _compiled_train_step(graphdef, tx, mesh)
    eval_fn, replicated = _compiled_eval_step(graphdef, mesh)
    params, opt_state, rest = jax.device_put((params, opt_state, rest), replicated)
    meta_base = {"model_config": model_config.to_dict(), "train_config": cfg.to_dict()}

    def write_checkpoint():
        if ckpt_path is not None:
            save_checkpoint(ckpt_path, {"params": params, "opt_state": opt_state},
                            {**meta_base, "progress": progress})

    acc_dev = {"nll": 0.0, "weight": 0.0, "correct": 0.0}
    log_dev = dict(acc_dev)
    bar = _progress_bar(cfg, progress["step"])
    postfix = {}   # shown on the bar: train loss (nats/event) and bits/event, last validation bits/event
    started = time.perf_counter()

    def evaluate_and_checkpoint():
        """Evaluate at the current step; commit history, best and patience only when done, so that
        an interruption in here leaves ``progress`` as it was (and a resumed run evaluates again)."""
        nonlocal acc_dev, best_params, started
        step = progress["step"]
        record = _evaluation_record(progress, acc_dev, time.perf_counter() - started,
                                    learning_rate_at(cfg, step - 1))
        update = {"bad_evals": progress["bad_evals"]}
        new_best = False
        if valid_batches is not None:
            valid = _summary(_evaluate(eval_fn, rest, params, _valid_iter(valid_batches), model_config.vocab_size,
                                       mesh.size, cfg.pad_time_to, cfg.max_eval_batches))
            record.update(valid_loss=valid["loss"], valid_bits=valid["bits"], valid_accuracy=valid["accuracy"])
            best = progress["best_loss"]
            if best is None or valid["loss"] < best - cfg.min_delta:
                new_best = record["best"] = True
                update = {"best_loss": valid["loss"], "best_step": step, "bad_evals": 0}
                if best_path is not None:
                    save_checkpoint(best_path, {"params": params},
                                    {**meta_base, "step": step, "valid_loss": valid["loss"]})
            else:
                update["bad_evals"] += 1
                update["stopped_early"] = bool(cfg.patience and update["bad_evals"] >= cfg.patience)
            postfix["valid_bits"] = f"{valid['bits']:.3f}"
            bar.set_postfix(postfix, refresh=False)
        # commit
        progress.update(update, evaluated_step=step, history=progress["history"] + [record], acc=_zero_acc())
        acc_dev = {k: 0.0 for k in acc_dev}
        if new_best:
            best_params = params
        write_checkpoint()
        started = time.perf_counter()

    def eval_due(step):
        return step > 0 and (step % cfg.eval_every == 0 or step == cfg.num_steps)

    try:
        if eval_due(progress["step"]) and progress.get("evaluated_step") != progress["step"]:
            evaluate_and_checkpoint()   # the interrupted run stopped inside its evaluation
        while progress["step"] < cfg.num_steps and not progress["stopped_early"]:
            iterator = _epoch_iter(train_batches, progress["epoch"])
            used = 0
            for _ in range(progress["batch_in_epoch"]):  # resume inside (or at the end of) an epoch
                used += next(iterator, None) is not None
            for batch in iterator:
                used += 1
                step = progress["step"]
                batch = prepare_batch(batch, vocab_size=model_config.vocab_size, num_devices=mesh.size,
                                      pad_time_to=cfg.pad_time_to)
                params, opt_state, stats = train_fn(rest, params, opt_state, batch, dropout_root, np.int32(step),
                                                    np.float32(learning_rate_at(cfg, step)))
                progress["step"] = step = step + 1
                progress["batch_in_epoch"] += 1
                acc_dev = {k: acc_dev[k] + stats[k] for k in acc_dev}
                log_dev = {k: log_dev[k] + stats[k] for k in log_dev}
                if step % cfg.log_every == 0 or step == cfg.num_steps:
                    logged = _summary(log_dev)
                    log_dev = {k: 0.0 for k in log_dev}
                    postfix.update(loss=f"{logged['loss']:.3f}", bits=f"{logged['bits']:.3f}")
                    bar.set_postfix(postfix, refresh=False)
                    bar.update(step - bar.n)
                if eval_due(step):
                    evaluate_and_checkpoint()
                if progress["step"] >= cfg.num_steps or progress["stopped_early"]:
                    break
            if used == 0:
                raise CorpusError(f"train_batches gave no batches for epoch {progress['epoch']}")
            if progress["step"] < cfg.num_steps and not progress["stopped_early"]:
                progress["epoch"] += 1
                progress["batch_in_epoch"] = 0
    except KeyboardInterrupt:
        _fold_accumulator(progress, acc_dev, time.perf_counter() - started)
        write_checkpoint()
        bar.close()
        raise
    bar.close()
    final = best_params if best_params is not None else params
    nnx.update(model, jax.device_get(final))
    return model, progress["history"]


def _matching_params(initial_model, params):
    """``initial_model``'s parameters (copied), checked against the structure and shapes of ``params``."""
    given = nnx.state(initial_model, nnx.Param)
    expected = jax.tree_util.tree_map(lambda x: (x.shape, x.dtype), params)
    found = jax.tree_util.tree_map(lambda x: (x.shape, x.dtype), given)
    if jax.tree_util.tree_structure(params) != jax.tree_util.tree_structure(given) or \
            jax.tree_util.tree_leaves(expected) != jax.tree_util.tree_leaves(found):
        raise ConfigError(f"initial_model ({type(initial_model).__name__}) does not have the parameters "
                          "of the ModelConfig given to fit; build it with make_model(model_config)")
    return jax.tree_util.tree_map(jnp.array, given)


def _zero_acc() -> dict:
    return {"nll": 0.0, "weight": 0.0, "correct": 0.0, "seconds": 0.0}


def _fold_accumulator(progress, acc_dev, seconds):
    """Move the device-side sums since the last evaluation into ``progress`` (for a checkpoint)."""
    acc = dict(progress["acc"])
    for k in ("nll", "weight", "correct"):
        acc[k] += float(acc_dev[k])
    acc["seconds"] += seconds
    progress["acc"] = acc
    for k in acc_dev:
        acc_dev[k] = 0.0


def _evaluation_record(progress, acc_dev, seconds, learning_rate) -> dict:
    """The history record of an evaluation, with the training metrics since the previous one."""
    acc = dict(progress["acc"])
    for k in ("nll", "weight", "correct"):
        acc[k] += float(acc_dev[k])
    acc["seconds"] += seconds
    train = _summary(acc)
    return {"step": progress["step"], "epoch": progress["epoch"], "learning_rate": learning_rate,
            "train_loss": train["loss"], "train_bits": train["bits"], "train_accuracy": train["accuracy"],
            "valid_loss": None, "valid_bits": None, "valid_accuracy": None, "best": False,
            "tokens_per_s": acc["weight"] / acc["seconds"] if acc["seconds"] > 0 else None,
            "elapsed_s": acc["seconds"]}


class _NoBar:
    n = 0

    def set_postfix(self, *args, **kwargs):
        pass

    def update(self, n):
        self.n += n

    def close(self):
        pass


def _progress_bar(cfg: TrainConfig, initial: int):
    if not cfg.progress:
        bar = _NoBar()
        bar.n = initial
        return bar
    from tqdm.auto import tqdm

    return tqdm(total=cfg.num_steps, initial=initial, desc="training", unit="step")
