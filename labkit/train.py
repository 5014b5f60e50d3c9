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
* The optimizer is optax: global-norm gradient clipping, then ``optax.adamw`` with weight decay on
  matrices only (:func:`make_optimizer`); the learning rate follows a linear warm-up and a cosine
  decay (:func:`learning_rate_schedule`, optax's ``linear_schedule`` and ``cosine_decay_schedule``)
  and is an argument of the compiled step, so changing the schedule does not recompile it.
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

Beyond the loop: :func:`evaluate_model` scores a model on batches, :func:`split_scores` on whole
tunes (bits per event and per note), :func:`finetune` continues training a trained model, and
:func:`train_source` / :func:`valid_source` / :func:`length_sorted_batches` make the data sources
of the shipped model's recipe (``python -m labkit.train_shipped``).

Two figures describe a model on a split (:func:`split_scores`):

* **bits per event**: the mean cross-entropy ``-log2 p(event | events before)`` over every
  event after a tune's first one (holds, note-offs and note-ons alike);
* **bits per note**: the same total divided by the number of notes (note-ons) scored: what
  the model pays, in bits, for a whole tune (rhythm and rests included) per note. It is *not*
  IDyOM's pitch-only figure (Pearce 2005), which predicts the pitch of each note given the
  earlier pitches, with the rhythm known; notebook ``04_lstm_melody_model.ipynb`` computes both.

Notebook: 04_lstm_melody_model.ipynb
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from labkit._common import MAX_SEED, ConfigDict, remove_stale_temporaries
from labkit.checkpoint import load_checkpoint, read_meta, save_checkpoint
from labkit.data import MelodySet, batches
from labkit.encoding import MelodyEncoding
from labkit.errors import CheckpointError, ConfigError, CorpusError, EncodingError
from labkit.models import ModelConfig, make_model

LN2 = math.log(2.0)
CHECKPOINT_NAME = "checkpoint.npz"
BEST_NAME = "best.npz"

#: Largest random transposition of a training melody by :func:`train_source`, in semitones (either way).
AUGMENT_SEMITONES = 5


@dataclass(frozen=True)
class TrainConfig(ConfigDict):
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
        for name in ("warmup_steps", "patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"TrainConfig.{name} must be an integer >= 0, got {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"TrainConfig.seed must be an integer in 0..{MAX_SEED} (2**32 - 1), got {self.seed!r}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ConfigError(f"TrainConfig.learning_rate must be > 0, got {self.learning_rate!r}")
        if not (0.0 <= self.end_lr_ratio <= 1.0):
            raise ConfigError(f"TrainConfig.end_lr_ratio must lie in [0, 1], got {self.end_lr_ratio!r}")
        if self.weight_decay < 0 or self.grad_clip < 0 or self.min_delta < 0:
            raise ConfigError("TrainConfig.weight_decay, grad_clip and min_delta must be >= 0")
        if self.max_eval_batches is not None and (not isinstance(self.max_eval_batches, int)
                                                  or self.max_eval_batches < 1):
            raise ConfigError(f"TrainConfig.max_eval_batches must be None or >= 1, got {self.max_eval_batches!r}")




#: Named settings. ``ci``: seconds, for tests and ``LABKIT_FAST``; ``cpu``: a student's laptop
#: (1500 steps of a 2x256 LSTM: several minutes on 2 cores); ``gpu``: a Colab GPU or better.
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
    Step 0 already has a positive rate (``learning_rate / warmup_steps``). Computed by
    :func:`learning_rate_schedule` (float32).

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> cfg = TrainConfig(learning_rate=1.0, warmup_steps=10, num_steps=110)
        >>> [round(learning_rate_at(cfg, s), 3) for s in (0, 9, 60, 110)]
        [0.1, 1.0, 0.55, 0.1]
    """
    return float(learning_rate_schedule(config)(int(step)))


@cache
def learning_rate_schedule(config: TrainConfig) -> optax.Schedule:
    """The learning-rate schedule of ``config`` as an optax schedule (a function of the step).

    ``optax.join_schedules`` of a ``linear_schedule`` from ``learning_rate / warmup_steps`` at step 0
    to ``learning_rate`` at step ``warmup_steps - 1``, and a ``cosine_decay_schedule`` from
    ``learning_rate`` at step ``warmup_steps`` to ``end_lr_ratio * learning_rate`` at ``num_steps``.

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> schedule = learning_rate_schedule(TrainConfig(learning_rate=1.0, warmup_steps=4, num_steps=8))
        >>> [round(float(schedule(s)), 3) for s in range(9)]
        [0.25, 0.5, 0.75, 1.0, 1.0, 0.868, 0.55, 0.232, 0.1]
    """
    peak, warmup = config.learning_rate, config.warmup_steps
    decay = optax.cosine_decay_schedule(peak, max(config.num_steps - warmup, 1), alpha=config.end_lr_ratio)
    if warmup == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(peak / warmup, peak, warmup - 1), decay], [warmup])


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """AdamW's update *direction*: ``clip_by_global_norm(grad_clip)``, then ``optax.adamw`` with a
    learning rate of 1 and decoupled weight decay on arrays of rank >= 2 (kernels, embeddings; not
    biases), through its ``mask``.

    :func:`train_step` multiplies the result by the step's learning rate (from
    :func:`learning_rate_at`), so changing the schedule (or ``num_steps``) does not recompile the
    step. Only ``grad_clip`` and ``weight_decay`` are read from ``config``; the same settings give
    the same object, so repeated :func:`fit` calls reuse the compiled steps.

    Notebook: 04_lstm_melody_model.ipynb
    """
    return _optimizer(float(config.grad_clip), float(config.weight_decay))


def _matrices(params):
    return jax.tree_util.tree_map(lambda x: x.ndim >= 2, params)


@cache
def _optimizer(grad_clip: float, weight_decay: float) -> optax.GradientTransformation:
    adamw = optax.adamw(learning_rate=1.0, weight_decay=weight_decay, mask=_matrices)
    return optax.chain(optax.clip_by_global_norm(grad_clip), adamw) if grad_clip > 0 else adamw


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
    updates, opt_state = tx.update(grads, opt_state, params)        # already points downhill
    updates = jax.tree_util.tree_map(lambda u: learning_rate * u, updates)
    params = optax.apply_updates(params, updates)
    grad_norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree_util.tree_leaves(grads)))
    return params, opt_state, {**stats, "grad_norm": grad_norm}


def eval_step(graphdef, rest, params, batch):
    """Sums of :func:`token_stats` on one batch, without dropout (pure; jitted by :func:`evaluate_model`).

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


@cache
def _compiled_train_step(graphdef, tx, mesh: Mesh):
    """:func:`train_step` jitted for a model structure, optimizer and mesh (batch sharded, rest replicated)."""
    replicated = NamedSharding(mesh, PartitionSpec())
    sharded = NamedSharding(mesh, PartitionSpec("data"))

    def train_fn(rest, params, opt_state, batch, dropout_root, step, learning_rate):
        key = jax.random.fold_in(dropout_root, step)
        return train_step(graphdef, rest, tx, params, opt_state, batch, key, learning_rate)

    return jax.jit(train_fn, in_shardings=(replicated, replicated, replicated, sharded, replicated,
                                           replicated, replicated), out_shardings=replicated)


@cache
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


def evaluate_model(model: nnx.Module, batches, *, max_batches: int | None = None, pad_time_to: int = 32) -> dict:
    """Cross-entropy of ``model`` on ``batches`` (an iterable, or a function of no arguments giving one).

    Returns ``{"loss": nats/event, "bits": bits/event, "accuracy": argmax accuracy, "events": count}``,
    averaged over all real events of all batches (not over batches). No dropout.

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> m = make_model(ModelConfig(vocab_size=5, embed_dim=4, hidden_size=8, num_layers=1), 0)
        >>> b = {"tokens": np.zeros((2, 9), np.int32), "mask": np.ones((2, 9), np.float32)}
        >>> evaluate_model(m, [b])["events"]
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


def workdir_paths(workdir: str | os.PathLike | None) -> tuple[Path | None, Path | None]:
    """``(checkpoint, best)`` paths of a training run's folder (``None, None`` without one).

    Removes the temporary files that a killed save of either left behind, so that a resumed run
    starts from a clean folder. Shared by :func:`fit` and the piano-roll models' training loop.

    Notebook: 04_lstm_melody_model.ipynb
    """
    if workdir is None:
        return None, None
    workdir = Path(workdir)
    paths = workdir / CHECKPOINT_NAME, workdir / BEST_NAME
    for path in paths:
        remove_stale_temporaries(path)
    return paths


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
            Temporary files that a killed save left in ``workdir`` are removed first (see
            :func:`labkit._common.remove_stale_temporaries`).
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

    ckpt_path, best_path = workdir_paths(workdir)
    if ckpt_path is not None and resume and ckpt_path.exists():
        meta = read_meta(ckpt_path)
        if meta.get("model_config") != model_config.to_dict():
            raise CheckpointError(f"checkpoint was written for model {meta.get('model_config')}, "
                                  f"not {model_config.to_dict()}; use another workdir or resume=False",
                                  ckpt_path)
        trees, meta = load_checkpoint(ckpt_path, {"params": params, "opt_state": opt_state})
        params, opt_state, progress = trees["params"], trees["opt_state"], _checked_progress(meta, ckpt_path)
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


def _checked_progress(meta: dict, path: Path) -> dict:
    """The ``progress`` record of a checkpoint's metadata, checked enough to resume from (else CheckpointError)."""
    progress = meta.get("progress")
    fresh = _fresh_progress()
    if not isinstance(progress, dict) or not set(fresh) <= set(progress):
        raise CheckpointError("checkpoint has no usable training progress record; it was not written by fit "
                              "(use another workdir or resume=False)", path)
    counters = ("step", "epoch", "batch_in_epoch", "bad_evals")
    if (any(not isinstance(progress[k], int) or isinstance(progress[k], bool) or progress[k] < 0 for k in counters)
            or not isinstance(progress["history"], list) or not isinstance(progress["acc"], dict)):
        raise CheckpointError("checkpoint's training progress record is corrupt", path)
    return progress


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


def _progress_bar(cfg: TrainConfig, initial: int):
    return tqdm(total=cfg.num_steps, initial=initial, desc="training", unit="step", disable=not cfg.progress)


# --- data sources, scores on whole tunes, fine-tuning ---------------------------------------------

def train_source(train: MelodySet, config: TrainConfig, augment_semitones: int = AUGMENT_SEMITONES):
    """A data source for :func:`fit`: ``epoch -> batches`` of random windows of ``train``,
    transposed by up to ``augment_semitones`` (deterministic in ``config.seed`` and the epoch).

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> from labkit.melody import Melody
        >>> mels = MelodySet.from_melodies([Melody.from_notes([60, 62, 64], [0, 2, 4], [2, 4, 8])] * 4)
        >>> first = next(iter(train_source(mels, TrainConfig(batch_size=2, seq_len=4))(0)))
        >>> first["tokens"].shape
        (2, 5)
    """
    def source(epoch: int):
        return batches(train, batch_size=config.batch_size, seq_len=config.seq_len, seed=config.seed,
                       epoch=epoch, shuffle=True, augment_semitones=augment_semitones, drop_remainder=True)
    return source


def valid_source(valid: MelodySet, config: TrainConfig, max_melodies: int | None = 384):
    """Validation batches (a list): the first ``2 * seq_len + 1`` events of each tune, unaltered.

    ``max_melodies`` tunes at most, drawn once from ``config.seed`` (so every style is
    represented and each evaluation stays cheap); ``None`` for all.

    Notebook: 04_lstm_melody_model.ipynb
    """
    if max_melodies is not None and len(valid) > max_melodies:
        pick = np.sort(np.random.default_rng([config.seed, 7]).permutation(len(valid))[:max_melodies])
        valid = valid.subset(pick)
    return list(batches(valid, batch_size=config.batch_size, seq_len=2 * config.seq_len, shuffle=False))


def length_sorted_batches(mels: MelodySet, batch_size: int = 32, encoding: MelodyEncoding | None = None):
    """Whole melodies, shortest first, in batches of similar length (little padding, few shapes).

    Yields ``{"tokens": int32 [B, L], "mask": float32 [B, L]}`` as :func:`labkit.data.batches`.

    Notebook: 04_lstm_melody_model.ipynb
    """
    order = np.argsort(mels.lengths, kind="stable")
    return batches(mels.subset(order), batch_size=batch_size, seq_len=None, shuffle=False, encoding=encoding)


def split_scores(model, mels: MelodySet, *, batch_size: int = 32, max_melodies: int | None = None) -> dict:
    """Bits per event and bits per note of ``model`` on whole melodies (see the module docstring).

    Args:
        model: a labkit melody model.
        mels: the melodies to score (e.g. the ``test`` split of the corpus).
        batch_size: melodies per evaluation batch.
        max_melodies: score only the first this many melodies (``None``: all).

    Returns ``{"bits_per_event", "bits_per_note", "nats_per_event", "accuracy", "events", "notes",
    "melodies"}``; ``events`` and ``notes`` count what was scored (every event after a tune's first).

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> from labkit.melody import Melody
        >>> mels = MelodySet.from_melodies([Melody.from_notes([60, 62], [0, 2], [2, 4])])
        >>> m = make_model(ModelConfig(embed_dim=4, hidden_size=8, num_layers=1), 0)
        >>> s = split_scores(m, mels)
        >>> s["events"], s["notes"]
        (4.0, 1)
    """
    if max_melodies is not None:
        mels = mels.subset(np.arange(min(max_melodies, len(mels))))
    result = evaluate_model(model, lambda: length_sorted_batches(mels, batch_size), pad_time_to=64)
    notes = sum(int((mels.events_of(i)[1:] >= 0).sum()) for i in range(len(mels)))
    bits_total = result["loss"] * result["events"] / LN2
    return {"bits_per_event": result["bits"], "bits_per_note": bits_total / max(notes, 1),
            "nats_per_event": result["loss"], "accuracy": result["accuracy"], "events": result["events"],
            "notes": notes, "melodies": len(mels)}


def finetune(model, model_config: ModelConfig, train_config: TrainConfig, train_batches, valid_batches=None):
    """Continue training ``model`` (e.g. the shipped one) from its current parameters.

    :func:`fit` with ``initial_model=model`` (its loop, AdamW schedule, dropout keys and early
    stopping; no checkpoint is written), plus one evaluation before any update: the model keeps
    its starting parameters unless an evaluation improves on them by more than
    ``train_config.min_delta`` nats/event.

    Args:
        model: a labkit melody model with ``model_config``'s shapes (e.g. the ``(model, config)``
            of :func:`labkit.checkpoint.load_melody_model`); it is updated in place and returned.
        model_config: the model's :class:`~labkit.models.ModelConfig`.
        train_config: steps, learning rate, evaluation period, patience, seed.
        train_batches: ``epoch -> batches`` (e.g. :func:`train_source`) or a list of batches.
        valid_batches: a list of batches or a function of no arguments giving them; ``None``: none
            (then the model ends with the last parameters).

    Returns ``(model, history)``: ``history`` is :func:`fit`'s (one dict per evaluation:
    ``step, train_bits, valid_bits, valid_loss, ...``; bits per event, nats per event) after a first
    record at step 0, before any update, whose ``train_*`` fields are ``None``.

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> b = {"tokens": np.tile(np.arange(9, dtype=np.int32) % 3, (4, 1)), "mask": np.ones((4, 9), np.float32)}
        >>> cfg = ModelConfig(vocab_size=3, embed_dim=4, hidden_size=8, num_layers=1)
        >>> _, history = finetune(make_model(cfg, 0), cfg, TrainConfig(num_steps=4, eval_every=2, progress=False),
        ...                       [b], [b])
        >>> [r["step"] for r in history]
        [0, 2, 4]
    """
    cfg = train_config
    start = None
    if valid_batches is not None:
        start = evaluate_model(model, valid_batches, max_batches=cfg.max_eval_batches, pad_time_to=cfg.pad_time_to)
    before = start or {}
    first = {"step": 0, "epoch": 0, "learning_rate": None, "train_loss": None, "train_bits": None,
             "train_accuracy": None, "valid_loss": before.get("loss"), "valid_bits": before.get("bits"),
             "valid_accuracy": before.get("accuracy"), "best": start is not None, "tokens_per_s": None,
             "elapsed_s": 0.0}
    trained, history = fit(model_config, cfg, train_batches, valid_batches, initial_model=model)
    best = [r["valid_loss"] for r in history if r["best"]]    # the last one is that of fit's model
    if start is None or (best and best[-1] < start["loss"] - cfg.min_delta):
        nnx.update(model, nnx.state(trained, nnx.Param))
    return model, [first] + history
