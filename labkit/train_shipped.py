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
* test: every test tune whole, scored by :func:`labkit.train.split_scores`.

``python -m labkit.train_shipped --conditioned`` trains the second shipped model,
``labkit/assets/melody_conditioned.npz`` (:func:`labkit.conditioned.train_conditioned_model`): the same
LSTM with style, metre and key tokens, bar lines and an end, that ``generate --style/--meter/--key``
uses; ``make model`` trains both.

The figures (bits per event, bits per note) are those of :func:`labkit.train.split_scores`;
the data sources are :func:`labkit.train.train_source` and :func:`labkit.train.valid_source`.

Notebook: 04_lstm_melody_model.ipynb
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from labkit._common import atomic_write
from labkit.checkpoint import shipped_melody_model_path
from labkit.data import MelodySet
from labkit.encoding import MelodyEncoding
from labkit.models import ModelConfig
from labkit.train import AUGMENT_SEMITONES, TrainConfig, split_scores, train_source, valid_source

#: Styles of the corpus the shipped model learns from (all but ``chorale``).
FOLK_STYLES = ("german", "chinese", "luxembourg", "lorraine", "irish", "scottish", "fiddle")

#: The shipped model's sizes: one 256-unit LSTM layer over a 64-dimensional embedding
#: (358k parameters, 1.4 MB of float32).
SHIPPED_MODEL = ModelConfig(vocab_size=90, embed_dim=64, hidden_size=256, num_layers=1, dropout=0.1)

#: How the shipped model is trained (a few minutes on 2 CPU cores; ``melody_lstm.json`` records the time).
SHIPPED_TRAIN = TrainConfig(seed=0, num_steps=1200, batch_size=64, seq_len=128, learning_rate=3e-3,
                            warmup_steps=50, end_lr_ratio=0.05, eval_every=100, max_eval_batches=None,
                            patience=4, log_every=10, progress=True)


def folk_melodies(root=None, styles=FOLK_STYLES) -> MelodySet:
    """The corpus melodies of ``styles`` (default :data:`FOLK_STYLES`), from labkit's cache.

    Notebook: 04_lstm_melody_model.ipynb
    """
    from labkit.data import load_melodies

    return load_melodies(root, styles=list(styles))


def train_shipped_model(out: str | Path | None = None, *, model_config: ModelConfig = SHIPPED_MODEL,
          train_config: TrainConfig = SHIPPED_TRAIN, styles=FOLK_STYLES, workdir: str | Path | None = None,
          root=None) -> dict:
    """Train the shipped model and write ``<out>.npz`` and ``<out>.json``; returns the JSON document.

    ``out`` defaults to :func:`labkit.checkpoint.shipped_melody_model_path` without its suffix.
    ``workdir`` keeps :func:`labkit.train.fit`'s checkpoints, so an interrupted run resumes.

    Notebook: 04_lstm_melody_model.ipynb
    """
    import jax

    from labkit import env
    from labkit.checkpoint import save_model
    from labkit.train import fit

    out = Path(out) if out is not None else shipped_melody_model_path().with_suffix("")
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
        "machine": {"cpus": os.cpu_count(), "devices": env.devices(),
                    "platform": platform.platform(), "jax": jax.__version__},
        "history": [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()} for r in history],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_model(out.with_suffix(".npz"), model, model_config,
               {"scores": scores, "train_config": train_config.to_dict(), "styles": list(styles)})
    atomic_write(out.with_suffix(".json"), (json.dumps(document, indent=1, sort_keys=False) + "\n").encode("utf-8"))
    return document


#: Most optimizer steps ``--steps`` accepts (the shipped model stops near a thousand).
MAX_STEPS = 10_000_000


def _steps(text: str) -> int:
    """``--steps``: an integer in 1..:data:`MAX_STEPS` (argparse reports anything else as one usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer in 1..{MAX_STEPS}, got {text!r}") from None
    if not 1 <= value <= MAX_STEPS:
        raise argparse.ArgumentTypeError(f"must be an integer in 1..{MAX_STEPS}, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m labkit.train_shipped [--out PATH] [--steps N] [--workdir DIR]``.

    Exit status 0 when trained, 2 with one line on stderr for a bad input (``labkit: <file>: <problem>``),
    130 on Ctrl-C (the ``--workdir`` checkpoint is left whole, so the same command resumes).
    """
    import dataclasses

    from labkit.conditioned import CONDITIONED_TRAIN, train_conditioned_model

    parser = argparse.ArgumentParser(prog="python -m labkit.train_shipped",
                                     description="Train the melody LSTM that ships with labkit.")
    parser.add_argument("--out", default=None,
                        help="path without suffix for the .npz and .json (default: labkit/assets/melody_lstm, "
                             "with --conditioned labkit/assets/melody_conditioned)")
    parser.add_argument("--conditioned", action="store_true",
                        help="train the conditioned model (style, metre, key; whole tunes) instead")
    parser.add_argument("--steps", type=_steps, default=None, metavar="N",
                        help=f"optimizer steps, 1..{MAX_STEPS} (default: {SHIPPED_TRAIN.num_steps}; "
                             f"conditioned: {CONDITIONED_TRAIN.num_steps})")
    parser.add_argument("--workdir", default=None, help="keep checkpoints here so an interrupted run resumes")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    cfg = CONDITIONED_TRAIN if args.conditioned else SHIPPED_TRAIN
    if args.steps is not None:
        cfg = dataclasses.replace(cfg, num_steps=args.steps)
    if args.no_progress:
        cfg = dataclasses.replace(cfg, progress=False)
    from labkit.errors import LabkitError

    try:
        if args.conditioned:
            doc = train_conditioned_model(args.out, train_config=cfg, workdir=args.workdir)
        else:
            doc = train_shipped_model(args.out, train_config=cfg, workdir=args.workdir)
    except LabkitError as exc:
        print(f"labkit: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:   # fit has written its checkpoint (with --workdir); atomic writes left no half file
        where = (f"; run the same command to resume from {args.workdir}" if args.workdir
                 else "; nothing was saved (use --workdir DIR to be able to resume)")
        print(f"labkit: interrupted{where}", file=sys.stderr)
        return 130
    if args.conditioned:
        test, base = doc["scores"]["test_folk"], (doc["unconditioned"] or {}).get("test_folk")
        print(f"trained {doc['steps_run']} steps in {doc['train_seconds']:.0f} s; folk test tunes: "
              f"{test['bits_per_event']:.3f} bits/event ({test['bits_per_event_all']:.3f} with bar lines and end)"
              + (f"; unconditioned model {base['bits_per_event']:.3f}" if base else ""))
        return 0
    test = doc["scores"]["test"]
    print(f"trained {doc['steps_run']} steps in {doc['train_seconds']:.0f} s; test: "
          f"{test['bits_per_event']:.3f} bits/event, {test['bits_per_note']:.3f} bits/note")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
