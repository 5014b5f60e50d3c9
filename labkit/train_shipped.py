"""The shipped melody model: how it is trained and scored, in one command.

``python -m labkit.train_shipped`` (``make model``) trains the small LSTM that ships as
``labkit/assets/melody_lstm.npz`` and is used by ``python -m labkit generate`` when no
checkpoint is given. It writes the model and ``labkit/assets/melody_lstm.json``: the
settings, the training history, the training time and the test-split figures.

The recipe:

* data: every tune of the corpus's folk styles (:data:`FOLK_STYLES`: German, Chinese,
  Luxembourg and Lorraine songs from the Essen collection, Irish, Scottish and fiddle tunes;
  the Bach chorales are left out), split by tune as the manifest says (``train``/``valid``/``test``);
* training batches: random windows of ``seq_len + 1`` events, each melody transposed by a
  random shift of up to :data:`AUGMENT_SEMITONES` semitones (train split only);
* validation (for early stopping): the first ``seq_len * 2`` events of each valid tune, unaltered;
* test: every test tune whole, scored by :func:`split_scores`.

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

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np

from labkit.data import MelodySet, batches
from labkit.encoding import MelodyEncoding
from labkit.models import ModelConfig
from labkit.train import TrainConfig

#: Styles of the corpus the shipped model learns from (all but ``chorale``).
FOLK_STYLES = ("german", "chinese", "luxembourg", "lorraine", "irish", "scottish", "fiddle")

#: Largest random transposition of a training melody, in semitones (either way).
AUGMENT_SEMITONES = 5

#: The shipped model's sizes: one 256-unit LSTM layer over a 64-dimensional embedding
#: (358k parameters, 1.4 MB of float32).
SHIPPED_MODEL = ModelConfig(vocab_size=90, embed_dim=64, hidden_size=256, num_layers=1, dropout=0.1)

#: How the shipped model is trained (about 3 minutes on 2 CPU cores: 173-182 s measured).
SHIPPED_TRAIN = TrainConfig(seed=0, num_steps=1200, batch_size=64, seq_len=128, learning_rate=3e-3,
                            warmup_steps=50, end_lr_ratio=0.05, eval_every=100, max_eval_batches=None,
                            patience=4, log_every=10, progress=True)

LN2 = math.log(2.0)


def assets_dir() -> Path:
    """``labkit/assets`` inside the installed (or cloned) package."""
    return Path(__file__).resolve().parent / "assets"


def shipped_model_path() -> Path:
    """Where the shipped model lives: ``<labkit package>/assets/melody_lstm.npz``."""
    return assets_dir() / "melody_lstm.npz"


def folk_melodies(root=None, styles=FOLK_STYLES) -> MelodySet:
    """The corpus melodies of ``styles`` (default :data:`FOLK_STYLES`), from labkit's cache.

    Notebook: 04_lstm_melody_model.ipynb
    """
    from labkit.data import load_melodies

    return load_melodies(root, styles=list(styles))


def train_source(train: MelodySet, config: TrainConfig, augment_semitones: int = AUGMENT_SEMITONES):
    """A data source for :func:`labkit.train.fit`: ``epoch -> batches`` of random windows of ``train``,
    transposed by up to ``augment_semitones`` (deterministic in ``config.seed`` and the epoch).

    Notebook: 04_lstm_melody_model.ipynb
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
    """
    order = np.argsort(mels.lengths, kind="stable")
    return batches(mels.subset(order), batch_size=batch_size, seq_len=None, shuffle=False, encoding=encoding)


def split_scores(model, mels: MelodySet, *, batch_size: int = 32, max_melodies: int | None = None) -> dict:
    """Bits per event and bits per note of ``model`` on whole melodies (see the module docstring).

    Args:
        model: a labkit melody model.
        mels: the melodies to score (e.g. ``folk_melodies().split("test")``).
        batch_size: melodies per evaluation batch.
        max_melodies: score only the first this many melodies (``None``: all).

    Returns ``{"bits_per_event", "bits_per_note", "nats_per_event", "accuracy", "events", "notes",
    "melodies"}``; ``events`` and ``notes`` count what was scored (every event after a tune's first).

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> from labkit.models import make_model
        >>> from labkit.melody import Melody
        >>> mels = MelodySet.from_melodies([Melody.from_notes([60, 62], [0, 2], [2, 4])])
        >>> m = make_model(ModelConfig(embed_dim=4, hidden_size=8, num_layers=1), 0)
        >>> s = split_scores(m, mels)
        >>> s["events"], s["notes"]
        (4.0, 1)
    """
    from labkit.train import evaluate

    if max_melodies is not None:
        mels = mels.subset(np.arange(min(max_melodies, len(mels))))
    result = evaluate(model, lambda: length_sorted_batches(mels, batch_size), pad_time_to=64)
    notes = sum(int((mels.events_of(i)[1:] >= 0).sum()) for i in range(len(mels)))
    bits_total = result["loss"] * result["events"] / LN2
    return {"bits_per_event": result["bits"], "bits_per_note": bits_total / max(notes, 1),
            "nats_per_event": result["loss"], "accuracy": result["accuracy"], "events": result["events"],
            "notes": notes, "melodies": len(mels)}


def finetune(model, model_config: ModelConfig, train_config: TrainConfig, train_batches, valid_batches=None):
    """Continue training ``model`` (e.g. the shipped one) from its current parameters.

    :func:`labkit.train.fit` with ``initial_model=model`` (its loop, AdamW schedule, dropout keys
    and early stopping; no checkpoint is written), plus one evaluation before any update: the
    model keeps its starting parameters unless an evaluation improves on them by more than
    ``train_config.min_delta`` nats/event.

    Args:
        model: a labkit melody model with ``model_config``'s shapes (e.g. the ``(model, config)``
            of :func:`labkit.generate.load_generator`); it is updated in place and returned.
        model_config: the model's :class:`~labkit.models.ModelConfig`.
        train_config: steps, learning rate, evaluation period, patience, seed.
        train_batches: ``epoch -> batches`` (e.g. :func:`train_source`) or a list of batches.
        valid_batches: a list of batches or a function of no arguments giving them; ``None``: none
            (then the model ends with the last parameters).

    Returns ``(model, history)``: ``history`` is :func:`labkit.train.fit`'s (one dict per evaluation:
    ``step, train_bits, valid_bits, valid_loss, ...``; bits per event, nats per event) after a first
    record at step 0, before any update, whose ``train_*`` fields are ``None``.

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> from labkit.models import make_model
        >>> b = {"tokens": np.tile(np.arange(9, dtype=np.int32) % 3, (4, 1)), "mask": np.ones((4, 9), np.float32)}
        >>> cfg = ModelConfig(vocab_size=3, embed_dim=4, hidden_size=8, num_layers=1)
        >>> _, history = finetune(make_model(cfg, 0), cfg, TrainConfig(num_steps=4, eval_every=2, progress=False),
        ...                       [b], [b])
        >>> [r["step"] for r in history]
        [0, 2, 4]
    """
    from flax import nnx

    from labkit.train import evaluate, fit

    cfg = train_config
    start = None
    if valid_batches is not None:
        start = evaluate(model, valid_batches, max_batches=cfg.max_eval_batches, pad_time_to=cfg.pad_time_to)
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


def train(out: str | Path | None = None, *, model_config: ModelConfig = SHIPPED_MODEL,
          train_config: TrainConfig = SHIPPED_TRAIN, styles=FOLK_STYLES, workdir: str | Path | None = None,
          root=None) -> dict:
    """Train the shipped model and write ``<out>.npz`` and ``<out>.json``; returns the JSON document.

    ``out`` defaults to :func:`shipped_model_path` without its suffix. ``workdir`` keeps
    :func:`labkit.train.fit`'s checkpoints, so an interrupted run resumes.

    Notebook: 04_lstm_melody_model.ipynb
    """
    import jax

    from labkit import env
    from labkit.checkpoint import save_model
    from labkit.train import fit

    out = Path(out) if out is not None else shipped_model_path().with_suffix("")
    mels = folk_melodies(root, styles)
    train_set, valid_set, test_set = (mels.split(s) for s in ("train", "valid", "test"))
    started = time.perf_counter()
    model, history = fit(model_config, train_config, train_source(train_set, train_config),
                         valid_source(valid_set, train_config), workdir=workdir)
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    scores = {name: split_scores(model, subset) for name, subset in (("valid", valid_set), ("test", test_set))}
    eval_seconds = time.perf_counter() - started
    best = min((r for r in history if r["valid_loss"] is not None), key=lambda r: r["valid_loss"], default=None)
    document = {
        "what": "labkit's shipped melody LSTM (python -m labkit.train_shipped)",
        "model_config": model_config.to_dict(),
        "train_config": train_config.to_dict(),
        "num_params": model_config.num_params(),
        "data": {"styles": list(styles), "augment_semitones": AUGMENT_SEMITONES,
                 "tunes": {s: int((mels.splits == s).sum()) for s in ("train", "valid", "test")},
                 "events": {s: int(sum(mels.split(s).lengths)) for s in ("train", "valid", "test")},
                 "steps_per_quarter": int(mels.steps_per_quarter),
                 "encoding": {"min_pitch": MelodyEncoding().min_pitch, "max_pitch": MelodyEncoding().max_pitch}},
        "scores": scores,
        "best_step": best["step"] if best else None,
        "steps_run": history[-1]["step"] if history else 0,
        "stopped_early": bool(history and history[-1]["step"] < train_config.num_steps),
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "machine": {"cpus": __import__("os").cpu_count(), "devices": env.devices(),
                    "platform": platform.platform(), "jax": jax.__version__},
        "history": [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()} for r in history],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_model(out.with_suffix(".npz"), model, model_config,
               {"scores": scores, "train_config": train_config.to_dict(), "styles": list(styles)})
    out.with_suffix(".json").write_text(json.dumps(document, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    return document


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m labkit.train_shipped [--out PATH] [--steps N] [--workdir DIR]``."""
    import dataclasses

    parser = argparse.ArgumentParser(prog="python -m labkit.train_shipped",
                                     description="Train the melody LSTM that ships with labkit.")
    parser.add_argument("--out", default=None,
                        help="path without suffix for the .npz and .json (default: labkit/assets/melody_lstm)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default: %d)"
                        % SHIPPED_TRAIN.num_steps)
    parser.add_argument("--workdir", default=None, help="keep checkpoints here so an interrupted run resumes")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    cfg = SHIPPED_TRAIN
    if args.steps is not None:
        cfg = dataclasses.replace(cfg, num_steps=args.steps)
    if args.no_progress:
        cfg = dataclasses.replace(cfg, progress=False)
    from labkit.errors import LabkitError

    try:
        doc = train(args.out, train_config=cfg, workdir=args.workdir)
    except LabkitError as exc:
        print(f"labkit: {exc}")
        return 2
    test = doc["scores"]["test"]
    print(f"trained {doc['steps_run']} steps in {doc['train_seconds']:.0f} s; test: "
          f"{test['bits_per_event']:.3f} bits/event, {test['bits_per_note']:.3f} bits/note")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
