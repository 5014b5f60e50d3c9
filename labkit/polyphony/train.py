"""Training piano-roll models: a jitted pure step, early stopping on ``valid``, exact resume, NLL per frame.

The loss is the negative log-likelihood of each frame given the frames before it, summed over the keys
and averaged over the real frames of the batch (``mask``), in nats per frame:

.. math::

    \\mathcal{L} = \\frac{\\sum_{b,t} m_{b,t}\\, \\big(-\\log p(x_{b,t} \\mid x_{b,<t})\\big)}{\\sum_{b,t} m_{b,t}}

How the loop is built (as :func:`labkit.train.fit`, whose optimizer it reuses):

* :func:`pianoroll_train_step` is a pure function of ``(params, opt_state, batch, key, learning_rate)``,
  compiled once with ``jax.jit`` (the model is rebuilt inside with ``nnx.merge``).
* The optimizer is :func:`labkit.train.make_optimizer` (gradient clipping, AdamW with decay on matrices);
  the learning rate warms up linearly over ``warmup_steps``, and is multiplied by ``lr_decay`` at every
  evaluation that does not improve the validation loss; after ``patience`` such evaluations in a row the
  run stops (early stopping). The schedule never depends on ``num_steps`` or ``max_minutes``, so a run may
  be given more steps or minutes and resumed.
* Parameters start from ``fold_in(key(seed), 0)``, and the keys' output biases at the logits of their
  frequencies in the training frames (:func:`key_frequency_logits`); the dropout key of step ``s`` is
  ``fold_in(fold_in(key(seed), 1), s)``; the windows of epoch ``e`` from
  :func:`labkit.polyphony.data.pianoroll_batches` with ``seed`` and ``e``. The same seed gives the same
  parameters.
* Checkpoints (:func:`labkit.checkpoint.save_checkpoint`, atomic): ``checkpoint.npz`` (parameters, optimizer
  state and the progress record: step, epoch, batches used, best loss, learning-rate scale, history) at every
  evaluation and on Ctrl-C, and ``best.npz`` (the best validation parameters and the model's config). A run
  resumed from ``checkpoint.npz`` continues exactly where it stopped: a run interrupted at an evaluation (or
  by Ctrl-C) and resumed ends with the same parameters as one that never stopped. A run that stops between
  evaluations (``num_steps`` or ``max_minutes``) evaluates once more; that evaluation may update
  ``best.npz`` but not the learning-rate scale or the patience count.

Notebook: 08_polyphony.ipynb
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from labkit._common import MAX_SEED, ConfigDict
from labkit.checkpoint import load_checkpoint, read_meta, save_checkpoint
from labkit.errors import CheckpointError, ConfigError, CorpusError
from labkit.polyphony.data import count_frames, pianoroll_batches
from labkit.polyphony.models import PianoRollConfig, make_pianoroll_model
from labkit.train import BEST_NAME, make_optimizer, workdir_paths

#: Fields of :class:`PianoRollTrainConfig` that only say when to stop: a run may be resumed with others.
STOPPING_FIELDS: tuple[str, ...] = ("num_steps", "max_minutes", "progress")


@dataclass(frozen=True)
class PianoRollTrainConfig(ConfigDict):
    """How to train a piano-roll model (its sizes are in :class:`~labkit.polyphony.models.PianoRollConfig`).

    Attributes:
        seed: the one seed of a run: parameters, dropout, windows and transpositions.
        num_steps: optimizer steps at most.
        max_minutes: stop after this many minutes of training (wall time, summed over resumed runs;
            ``None``: no limit). The stopping point then depends on the machine's speed.
        batch_size, seq_len: windows per step and frames per window (:func:`pianoroll_batches`).
        learning_rate: peak learning rate of AdamW; ``warmup_steps``: linear warm-up to it.
        weight_decay, grad_clip: as :class:`labkit.train.TrainConfig`'s.
        augment_semitones: transpose each training window by up to this many semitones either way.
        eval_every: evaluate on ``valid``, and write ``checkpoint.npz``, every this many steps.
        patience: stop after this many evaluations in a row without an improvement by ``min_delta``.
        lr_decay: multiply the learning rate by this at every evaluation without improvement.
        eval_batch_size, eval_chunk: tunes per evaluation batch, frames per compiled evaluation call.
        progress: show a tqdm progress bar.

    Example:
        >>> PianoRollTrainConfig(num_steps=10).eval_every
        250

    Notebook: 08_polyphony.ipynb
    """

    seed: int = 0
    num_steps: int = 100_000
    max_minutes: float | None = None
    batch_size: int = 32
    seq_len: int = 128
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    augment_semitones: int = 2
    eval_every: int = 250
    patience: int = 4
    min_delta: float = 1e-3
    lr_decay: float = 0.5
    eval_batch_size: int = 16
    eval_chunk: int = 128
    progress: bool = True

    def __post_init__(self):
        for name in ("num_steps", "batch_size", "seq_len", "eval_every", "eval_batch_size", "eval_chunk"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"PianoRollTrainConfig.{name} must be a positive integer, got {value!r}")
        for name in ("warmup_steps", "patience", "augment_semitones"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"PianoRollTrainConfig.{name} must be an integer >= 0, got {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"PianoRollTrainConfig.seed must be an integer in 0..{MAX_SEED} (2**32 - 1), "
                              f"got {self.seed!r}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ConfigError(f"PianoRollTrainConfig.learning_rate must be > 0, got {self.learning_rate!r}")
        if self.max_minutes is not None and not (self.max_minutes > 0 and math.isfinite(self.max_minutes)):
            raise ConfigError(f"PianoRollTrainConfig.max_minutes must be > 0 or None, got {self.max_minutes!r}")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"PianoRollTrainConfig.lr_decay must lie in (0, 1], got {self.lr_decay!r}")
        if self.weight_decay < 0 or self.grad_clip < 0 or self.min_delta < 0 or self.augment_semitones > 44:
            raise ConfigError("PianoRollTrainConfig.weight_decay, grad_clip and min_delta must be >= 0 and "
                              "augment_semitones at most 44")




# --- pure steps ----------------------------------------------------------------------------------

def pianoroll_train_step(graphdef, rest, tx, params, opt_state, batch, key, learning_rate):
    """One optimizer step (pure; :func:`fit_pianoroll` jit-compiles it).

    ``batch``: ``{"frames": [B, T, K], "previous": [B, K], "start": [B], "mask": [B, T]}``
    (:func:`pianoroll_batches`);
    ``key``: this step's dropout key (``None``: none). Returns ``(params, opt_state, stats)`` with the sums
    ``stats = {"nll": nats, "frames": real frames}`` of the batch.

    Notebook: 08_polyphony.ipynb
    """
    def loss_fn(p):
        model = nnx.merge(graphdef, p, rest)
        carry = model.init_carry(batch["frames"].shape[0], batch["start"])
        carry = (carry[0], batch["previous"], carry[2])
        nll, _ = model.frame_nll(batch["frames"], carry, deterministic=key is None, key=key)
        total, count = jnp.sum(nll * batch["mask"]), jnp.sum(batch["mask"])
        return total / jnp.maximum(count, 1.0), {"nll": total, "frames": count}

    (_, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    updates = jax.tree_util.tree_map(lambda u: learning_rate * u, updates)
    return optax.apply_updates(params, updates), opt_state, stats


@cache
def _compiled_train_step(graphdef, tx):
    def step_fn(rest, params, opt_state, batch, dropout_root, step, learning_rate):
        key = jax.random.fold_in(dropout_root, step)
        return pianoroll_train_step(graphdef, rest, tx, params, opt_state, batch, key, learning_rate)
    return jax.jit(step_fn)


@cache
def _compiled_eval_chunk(graphdef):
    def chunk_fn(state, frames, mask, carry):
        model = nnx.merge(graphdef, state)
        nll, carry = model.frame_nll(frames, carry)
        return jnp.sum(nll * mask), carry
    return jax.jit(chunk_fn)


def evaluate_pianoroll(model, rolls: list[np.ndarray], *, batch_size: int = 16, chunk: int = 128) -> dict:
    """Negative log-likelihood of whole tunes: ``{"nats_per_frame", "frames", "nll"}`` (no dropout).

    Every frame of every tune is scored given all the frames before it in its tune (the first from the
    silent frame before it), summed over the keys and averaged over all frames of all tunes, as
    Boulanger-Lewandowski et al. (2012) and Bai et al. (2018) report it. Tunes are sorted by length and
    read ``chunk`` frames at a time with the LSTM state carried over, so one compiled function serves
    tunes of any length.

    Example:
        >>> from labkit.polyphony.models import PianoRollConfig, make_pianoroll_model
        >>> m = make_pianoroll_model(PianoRollConfig(model="sigmoid", hidden_size=8))
        >>> r = evaluate_pianoroll(m, [np.zeros((5, 88), np.float32), np.zeros((3, 88), np.float32)], chunk=4)
        >>> r["frames"]
        8

    Notebook: 08_polyphony.ipynb
    """
    if not rolls:
        raise CorpusError("no tunes to evaluate")
    keys = model.config.num_keys
    for roll in rolls:
        if np.ndim(roll) != 2 or np.shape(roll)[1] != keys:
            raise ConfigError(f"the model reads frames of {keys} keys, got a roll of shape {np.shape(roll)}")
    graphdef, state = nnx.split(model)
    fn = _compiled_eval_chunk(graphdef)
    order = np.argsort([len(r) for r in rolls], kind="stable")
    total = 0.0
    for first in range(0, len(order), batch_size):
        group = [rolls[i] for i in order[first:first + batch_size]]
        length = max(len(r) for r in group)
        width = -(-length // chunk) * chunk
        frames = np.zeros((batch_size, width, keys), np.float32)
        mask = np.zeros((batch_size, width), np.float32)
        for row, roll in enumerate(group):
            frames[row, :len(roll)] = roll
            mask[row, :len(roll)] = 1.0
        carry = model.init_carry(batch_size)
        for start in range(0, width, chunk):
            nll, carry = fn(state, frames[:, start:start + chunk], mask[:, start:start + chunk], carry)
            total += float(nll)
    frames_count = count_frames(rolls)
    return {"nats_per_frame": total / frames_count, "frames": frames_count, "nll": total}


# --- the fit loop --------------------------------------------------------------------------------

def key_frequency_logits(rolls: list[np.ndarray], floor: float = 1e-3) -> np.ndarray:
    """``log(f / (1 - f))`` of each key's frequency ``f`` in the frames of ``rolls`` (clipped to
    ``[floor, 1 - floor]``): float32 ``[K]``. :func:`fit_pianoroll` starts the keys' output biases here,
    so a model begins as the frequency model (on Nottingham 10.29 nats/frame; 10.25 with ``floor=1e-4``, as
    ``../shared/benchmarks/README.md`` computes it), not at ``K log 2`` (61).

    Example:
        >>> [round(float(x), 3) for x in key_frequency_logits([np.array([[1, 0], [0, 0]], np.float32)], floor=0.01)]
        [0.0, -4.595]

    Notebook: 08_polyphony.ipynb
    """
    frequency = sum(np.asarray(r, np.float64).sum(axis=0) for r in rolls) / max(count_frames(rolls), 1)
    frequency = np.clip(frequency, floor, 1.0 - floor)
    return np.log(frequency / (1.0 - frequency)).astype(np.float32)


def _fresh_progress() -> dict:
    return {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_loss": None, "best_step": None, "bad_evals": 0,
            "lr_scale": 1.0, "stopped_early": False, "elapsed_s": 0.0, "history": [],
            "acc": {"nll": 0.0, "frames": 0.0}}


def _learning_rate(cfg: PianoRollTrainConfig, step: int, scale: float) -> float:
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    return cfg.learning_rate * warm * scale


def _same_run(a: dict, b: dict) -> bool:
    strip = lambda d: {k: v for k, v in d.items() if k not in STOPPING_FIELDS}   # noqa: E731
    return strip(a) == strip(b)


def fit_pianoroll(model_config: PianoRollConfig, train_config: PianoRollTrainConfig, train: list[np.ndarray],
                  valid: list[np.ndarray] | None = None, workdir: str | Path | None = None, resume: bool = True,
                  data_info: dict | None = None):
    """Train a piano-roll model on the rolls ``train`` with early stopping on ``valid``; returns ``(model, history)``.

    Args:
        model_config: the model (:class:`~labkit.polyphony.models.PianoRollConfig`).
        train_config: steps, minutes, optimizer, evaluation, seed (:class:`PianoRollTrainConfig`).
        train, valid: lists of piano rolls ``[T, K]`` (``valid=None``: no evaluation, no early stopping).
        workdir: folder for ``checkpoint.npz`` and ``best.npz`` (``None``: write nothing).
        resume: continue from ``workdir/checkpoint.npz`` when it exists (same model and training settings,
            but for :data:`STOPPING_FIELDS`); else :class:`~labkit.errors.CheckpointError`.
        data_info: JSON-able facts about the data (file, frame length), stored in the checkpoints' metadata.

    ``history`` has one dict per evaluation: ``step, epoch, learning_rate, train_nll, valid_nll, best,
    elapsed_s, frames_per_s`` (nats per frame). The model returned has the best validation parameters.

    Example:
        >>> rolls = [np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0, 1]]] * 2
        >>> m, h = fit_pianoroll(PianoRollConfig(model="sigmoid", num_keys=4, hidden_size=8),
        ...                      PianoRollTrainConfig(num_steps=4, eval_every=2, batch_size=2, seq_len=4,
        ...                                           progress=False), rolls, rolls)
        >>> [r["step"] for r in h]
        [2, 4]

    Notebook: 08_polyphony.ipynb
    """
    if not isinstance(model_config, PianoRollConfig) or not isinstance(train_config, PianoRollTrainConfig):
        raise ConfigError("fit_pianoroll needs a PianoRollConfig and a PianoRollTrainConfig")
    cfg = train_config
    if not train:
        raise CorpusError("no training tunes")
    for roll in list(train) + list(valid or []):
        if np.ndim(roll) != 2 or np.shape(roll)[1] != model_config.num_keys:
            raise ConfigError(f"the model reads frames of {model_config.num_keys} keys, got a roll of shape "
                              f"{np.shape(roll)}")
    root = jax.random.key(cfg.seed)
    model = make_pianoroll_model(model_config, jax.random.fold_in(root, 0))
    bias = model.key_bias()
    prior = jnp.asarray(key_frequency_logits(train))
    if hasattr(bias, "set_value"):     # flax >= 0.12 (the .value setter is deprecated there)
        bias.set_value(prior)
    else:                              # pragma: no cover - flax 0.11 (Colab)
        bias.value = prior
    dropout_root = jax.random.fold_in(root, 1)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = make_optimizer(cfg)
    opt_state = tx.init(params)
    progress = _fresh_progress()
    best_params = None
    meta_base = {"pianoroll_config": model_config.to_dict(), "pianoroll_train_config": cfg.to_dict(),
                 "data": data_info or {}}

    ckpt_path, best_path = workdir_paths(workdir)
    if ckpt_path is not None and resume and ckpt_path.exists():
        meta = read_meta(ckpt_path)
        if meta.get("pianoroll_config") != model_config.to_dict() or not isinstance(
                meta.get("pianoroll_train_config"), dict) or not _same_run(meta["pianoroll_train_config"],
                                                                           cfg.to_dict()):
            raise CheckpointError("holds a run with other model or training settings; give another output "
                                  "folder, or the same settings to resume it", ckpt_path)
        trees, meta = load_checkpoint(ckpt_path, {"params": params, "opt_state": opt_state})
        params, opt_state = trees["params"], trees["opt_state"]
        progress = meta.get("progress")
        if not isinstance(progress, dict) or set(_fresh_progress()) - set(progress):
            raise CheckpointError("its training progress record is missing or corrupt", ckpt_path)
        if progress["best_step"] is not None and best_path.exists():
            best_params = load_checkpoint(best_path, {"params": params})[0]["params"]

    train_fn = _compiled_train_step(graphdef, tx)

    def write_checkpoint():
        if ckpt_path is not None:
            save_checkpoint(ckpt_path, {"params": params, "opt_state": opt_state}, {**meta_base, "progress": progress})

    def evaluate(scheduled: bool):
        nonlocal best_params
        acc = progress["acc"]
        record = {"step": progress["step"], "epoch": progress["epoch"],
                  "learning_rate": _learning_rate(cfg, max(progress["step"] - 1, 0), progress["lr_scale"]),
                  "train_nll": acc["nll"] / acc["frames"] if acc["frames"] else None, "valid_nll": None,
                  "best": False, "elapsed_s": progress["elapsed_s"],
                  "frames_per_s": acc["frames"] / acc.get("seconds", 1.0) if acc.get("seconds") else None}
        if valid is not None:
            model_now = nnx.merge(graphdef, params, rest)
            score = evaluate_pianoroll(model_now, valid, batch_size=cfg.eval_batch_size, chunk=cfg.eval_chunk)
            record["valid_nll"] = loss = score["nats_per_frame"]
            best = progress["best_loss"]
            if best is None or loss < best - cfg.min_delta:
                record["best"] = True
                progress.update(best_loss=loss, best_step=progress["step"], bad_evals=0 if scheduled
                                else progress["bad_evals"])
                best_params = params
                if best_path is not None:
                    save_checkpoint(best_path, {"params": params}, {**meta_base, "step": progress["step"],
                                                                    "valid_nll": loss})
            elif scheduled:
                progress["bad_evals"] += 1
                progress["lr_scale"] *= cfg.lr_decay
                progress["stopped_early"] = bool(cfg.patience and progress["bad_evals"] >= cfg.patience)
            bar.set_postfix(valid=f"{loss:.3f}", refresh=False)
        progress["history"] = progress["history"] + [record]
        progress["acc"] = {"nll": 0.0, "frames": 0.0, "seconds": 0.0}
        write_checkpoint()

    bar = tqdm(total=cfg.num_steps, initial=progress["step"], desc="training", unit="step", disable=not cfg.progress)
    limit_s = None if cfg.max_minutes is None else 60.0 * cfg.max_minutes
    tick = time.perf_counter()

    def clock():
        nonlocal tick
        now = time.perf_counter()
        progress["elapsed_s"] += now - tick
        progress["acc"]["seconds"] = progress["acc"].get("seconds", 0.0) + now - tick
        tick = now
        return progress["elapsed_s"]

    out_of_time = False
    try:
        while progress["step"] < cfg.num_steps and not progress["stopped_early"] and not out_of_time:
            batches = pianoroll_batches(train, batch_size=cfg.batch_size, seq_len=cfg.seq_len, seed=cfg.seed,
                                        epoch=progress["epoch"], shuffle=True,
                                        augment_semitones=cfg.augment_semitones)
            used = 0
            for batch in batches:
                used += 1
                if used <= progress["batch_in_epoch"]:
                    continue
                step = progress["step"]
                lr = _learning_rate(cfg, step, progress["lr_scale"])
                params, opt_state, stats = train_fn(rest, params, opt_state, batch, dropout_root, np.int32(step),
                                                    np.float32(lr))
                progress["step"] = step = step + 1
                progress["batch_in_epoch"] += 1
                acc = progress["acc"]
                acc["nll"] += float(stats["nll"])
                acc["frames"] += float(stats["frames"])
                bar.update(1)
                if step % 10 == 0:
                    bar.set_postfix(train=f"{acc['nll'] / max(acc['frames'], 1):.3f}", refresh=False)
                elapsed = clock()
                out_of_time = limit_s is not None and elapsed >= limit_s
                if step % cfg.eval_every == 0:
                    evaluate(scheduled=True)
                elif step >= cfg.num_steps or out_of_time:
                    evaluate(scheduled=False)
                if step >= cfg.num_steps or progress["stopped_early"] or out_of_time:
                    break
            if used == 0:
                raise CorpusError("the training tunes gave no batches")
            if progress["step"] < cfg.num_steps and not progress["stopped_early"] and not out_of_time:
                progress["epoch"] += 1
                progress["batch_in_epoch"] = 0
    except KeyboardInterrupt:
        clock()
        write_checkpoint()
        bar.close()
        raise
    bar.close()
    final = best_params if best_params is not None else params
    nnx.update(model, jax.device_get(final))
    return model, progress["history"]


def load_pianoroll_model(path: str | Path):
    """``(model, config, meta)`` from a checkpoint file or a training folder (its ``best.npz``).

    Raises :class:`~labkit.errors.CheckpointError` naming the file when it is missing or holds no
    piano-roll model.

    Notebook: 08_polyphony.ipynb
    """
    path = Path(path)
    if path.is_dir():
        if not (path / BEST_NAME).is_file():
            raise CheckpointError(f"holds no {BEST_NAME}: not a `pianoroll train` output folder", path)
        path = path / BEST_NAME
    meta = read_meta(path)
    if "pianoroll_config" not in meta:
        raise CheckpointError("holds no piano-roll model (no pianoroll_config): a checkpoint of another kind", path)
    try:
        config = PianoRollConfig.from_dict(meta["pianoroll_config"])
    except (ConfigError, TypeError, ValueError) as error:
        raise CheckpointError(f"its pianoroll_config is invalid: {error}", path) from None
    if config.hidden_size * (config.hidden_size + config.num_keys) * 4 > path.stat().st_size * 8 + 10**6:
        raise CheckpointError("its pianoroll_config describes a model far larger than the file", path)
    model = make_pianoroll_model(config, 0)
    trees, _ = load_checkpoint(path, {"params": nnx.state(model, nnx.Param)})
    nnx.update(model, trees["params"])
    return model, config, meta


def check_rolls_fit(model_config: PianoRollConfig, rolls: list[np.ndarray]) -> None:
    """Raise :class:`~labkit.errors.ConfigError` unless every roll has the model's number of keys.

    Example:
        >>> check_rolls_fit(PianoRollConfig(), [np.zeros((2, 88))])

    Notebook: 08_polyphony.ipynb
    """
    for roll in rolls:
        if np.ndim(roll) != 2 or np.shape(roll)[1] != model_config.num_keys:
            raise ConfigError(f"the model reads frames of {model_config.num_keys} keys, got a roll of shape "
                              f"{np.shape(roll)}")
