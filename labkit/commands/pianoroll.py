"""``python -m labkit pianoroll``: train, evaluate and sample piano-roll models (88 keys per frame).

* ``pianoroll train --data FILE.pickle --out DIR [--model sigmoid|nade|made] [--minutes M | --steps N] [--seed S]``
  trains on the ``train`` split of a pickle in the Boulanger-Lewandowski layout (or ``--data chorales``: the
  corpus's Bach chorales, one eighth note per frame) with early stopping on ``valid``; writes
  ``DIR/checkpoint.npz`` (resumed when the command is run again with the same settings), ``DIR/best.npz`` and
  ``DIR/training.json``, and prints the best validation figure.
* ``pianoroll eval --data FILE.pickle --checkpoint DIR [--split test] [--json]``: negative log-likelihood per
  frame in nats (the sum over the 88 keys, averaged over every frame of the split); ``--json`` prints
  ``{"split": ..., "nats_per_frame": X, "frames": N}``.
* ``pianoroll generate --checkpoint DIR --frames N --seed S --out DIR [--primer FILE.mid]``:
  ``pianoroll_001.mid``, a piano-roll picture ``pianoroll_001.png``, its sound ``pianoroll_001.wav``, and
  ``generation.json``. Same seed, same files. A frame lasts the data's stated step (an eighth note unless the
  checkpoint says otherwise). ``--primer``: the model first reads a MIDI file (all its notes, on the same grid of
  frames) and continues it; the written files hold the primer and its continuation.

A bad file or setting gives one line naming it and exit status 2.

Examples::

    python -m labkit pianoroll train --data ../shared/benchmarks/Nottingham.pickle --out runs/nott --minutes 8
    python -m labkit pianoroll eval --data ../shared/benchmarks/Nottingham.pickle --checkpoint runs/nott --json
    python -m labkit pianoroll generate --checkpoint runs/nott --frames 128 --seed 1 --out out/poly

Notebook: 08_polyphony.ipynb
"""
from __future__ import annotations

from labkit.commands._args import MAX_TRAIN_STEPS, integer, number, seed

#: ``--data`` value that names the corpus's chorales instead of a pickle file.
CHORALES = "chorales"
#: Minutes of training when neither ``--minutes`` nor ``--steps`` is given (issue 17's budget).
DEFAULT_MINUTES = 30.0
#: Most frames one ``generate`` run draws.
MAX_FRAMES = 10_000


def register(subparsers) -> None:
    """Add ``pianoroll`` (train, eval, generate) to ``python -m labkit``."""
    parser = subparsers.add_parser("pianoroll", help="polyphonic piano-roll models: train, eval, generate",
                                   description="Piano-roll models of polyphony (88 keys per frame).")
    sub = parser.add_subparsers(dest="pianoroll_command", metavar="ACTION", required=True)

    train = sub.add_parser("train", help="train a model on a piano-roll pickle",
                           description="Train a piano-roll model with early stopping on the valid split.")
    train.add_argument("--data", required=True, metavar="FILE.pickle",
                       help=f"a pickle in the Boulanger-Lewandowski layout, or {CHORALES!r} for the corpus's chorales")
    train.add_argument("--out", required=True, metavar="DIR", help="folder for checkpoint.npz, best.npz, training.json")
    train.add_argument("--model", choices=("sigmoid", "nade", "made"), default="made",
                       help="sigmoid: 88 independent sigmoids; nade: keys one after another with a NADE (RNN-NADE, "
                            "Boulanger-Lewandowski 2012); made: keys one after another with a MADE, faster and "
                            "better (default: made)")
    limit = train.add_mutually_exclusive_group()
    limit.add_argument("--minutes", type=number(0, 10_000, low_open=True), default=None, metavar="M",
                       help="stop after M minutes of training (default: 30, when --steps is not given)")
    limit.add_argument("--steps", type=integer(1, MAX_TRAIN_STEPS), default=None, metavar="N",
                       help="stop after N optimizer steps")
    train.add_argument("--seed", type=seed, default=0, metavar="S", help="seed of the run (default: 0)")
    train.add_argument("--eval-every", type=integer(1, MAX_TRAIN_STEPS), default=None, metavar="N",
                       help="evaluate on valid every N steps (default: 250)")
    train.add_argument("--dropout", type=number(0, 1, high_open=True), default=None, metavar="P",
                       help="dropout rate on the LSTM's output, in [0, 1) (default: 0.5)")
    train.add_argument("--augment", type=integer(0, 12), default=None, metavar="SEMITONES",
                       help="transpose training windows by up to this many semitones either way (default: 2)")
    train.add_argument("--restart", action="store_true", help="ignore a checkpoint in --out and start afresh")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_train)

    evaluate = sub.add_parser("eval", help="negative log-likelihood per frame of a split",
                              description="Score a trained model: nats per frame, the sum over the keys, "
                                          "averaged over every frame of the split.")
    evaluate.add_argument("--data", required=True, metavar="FILE.pickle",
                          help=f"a pickle in the Boulanger-Lewandowski layout, or {CHORALES!r}")
    evaluate.add_argument("--checkpoint", required=True, metavar="DIR",
                          help="a `pianoroll train` output folder (its best.npz) or a checkpoint file")
    evaluate.add_argument("--split", choices=("train", "valid", "test"), default="test",
                          help="the split to score (default: test)")
    evaluate.add_argument("--json", action="store_true", help='print {"split", "nats_per_frame", "frames"} as JSON')
    evaluate.set_defaults(func=_eval)

    generate = sub.add_parser("generate", help="draw piano rolls from a trained model (MIDI, PNG)",
                              description="Draw piano rolls from a trained model and write them as MIDI.")
    generate.add_argument("--checkpoint", required=True, metavar="DIR",
                          help="a `pianoroll train` output folder (its best.npz) or a checkpoint file")
    generate.add_argument("--frames", type=integer(1, MAX_FRAMES), default=128, metavar="N",
                          help=f"frames to draw, 1..{MAX_FRAMES} (default: 128)")
    generate.add_argument("--num", type=integer(1, 100), default=1, metavar="K", help="rolls to draw (default: 1)")
    generate.add_argument("--seed", type=seed, default=0, metavar="S", help="seed of the draw (default: 0)")
    generate.add_argument("--qpm", type=number(4, 1000, high_open=True), default=120.0,
                          help="tempo of the MIDI files, quarter notes per minute (default: 120)")
    generate.add_argument("--out", required=True, metavar="DIR", help="output folder")
    generate.add_argument("--primer", default=None, metavar="FILE.mid",
                          help="a MIDI file the model reads first and continues (its notes, on the frame grid)")
    generate.add_argument("--no-picture", action="store_true", help="write no piano-roll PNG")
    generate.add_argument("--no-audio", action="store_true", help="write no WAV (SoundFont rendering)")
    generate.add_argument("--audio", action="store_true", help=argparse_suppress())
    generate.set_defaults(func=_generate)


def argparse_suppress():
    """``--audio`` is kept for scripts written before WAV files became the default (it changes nothing)."""
    import argparse

    return argparse.SUPPRESS


def _primer_roll(path: str, steps_per_quarter: int):
    """The piano roll ``[P, 88]`` of a primer MIDI file on the model's frame grid (a clear error if empty)."""
    import numpy as np

    from labkit.encoding import PIANO_MAX_PITCH, PIANO_MIN_PITCH, piano_roll
    from labkit.errors import MidiValueError, NoNotesError
    from labkit.midi_io import read_midi

    sequence = read_midi(path)
    notes = [n for n in sequence.notes if not n.is_drum]
    if not notes:
        raise NoNotesError("has no pitched notes to use as a primer", path)
    outside = sorted({n.pitch for n in notes if not PIANO_MIN_PITCH <= n.pitch <= PIANO_MAX_PITCH})
    if outside:
        raise MidiValueError(f"has pitches outside the piano's 21..108 (e.g. {outside[0]}): the model cannot read them",
                        path)
    roll = piano_roll(sequence, steps_per_quarter=steps_per_quarter, min_pitch=PIANO_MIN_PITCH,
                      max_pitch=PIANO_MAX_PITCH)
    sounding = np.flatnonzero(roll.any(axis=1))
    return roll[sounding[0]:sounding[-1] + 1].astype(np.float32)


def _read_data(name: str):
    """``(splits, info)`` of ``--data``: the chorales, or a pickle (read safely)."""
    from labkit.polyphony.data import CHORALE_STEPS_PER_QUARTER, chorale_piano_rolls, load_pianoroll_pickle

    if name == CHORALES:
        return chorale_piano_rolls(), {"data": CHORALES, "steps_per_quarter": CHORALE_STEPS_PER_QUARTER}
    return load_pianoroll_pickle(name), {"data": name}


def _train(args) -> int:
    import json
    import os

    from labkit._common import atomic_write, check_output_folder, display_name
    from labkit.polyphony.models import PianoRollConfig
    from labkit.polyphony.train import PianoRollTrainConfig, fit_pianoroll

    check_output_folder(args.out, ["checkpoint.npz", "best.npz", "training.json"],
                        reads=[] if args.data == CHORALES else [args.data])
    splits, info = _read_data(args.data)
    minutes = None if args.steps is not None else (args.minutes if args.minutes is not None else DEFAULT_MINUTES)
    settings = {"seed": args.seed, "max_minutes": minutes, "progress": not args.quiet}
    if args.steps is not None:
        settings["num_steps"] = args.steps
    if args.eval_every is not None:
        settings["eval_every"] = args.eval_every
    if args.augment is not None:
        settings["augment_semitones"] = args.augment
    model_config = PianoRollConfig(model=args.model, **({} if args.dropout is None else {"dropout": args.dropout}))
    train_config = PianoRollTrainConfig(**settings)
    if args.restart:
        for name in ("checkpoint.npz", "best.npz"):
            path = os.path.join(args.out, name)
            if os.path.isfile(path):
                os.remove(path)
    info = {**info, "data": display_name(info["data"])}
    model, history = fit_pianoroll(model_config, train_config, splits["train"], splits["valid"], workdir=args.out,
                                   data_info=info)
    report = {"pianoroll_config": model_config.to_dict(), "pianoroll_train_config": train_config.to_dict(),
              "data": info, "history": history}
    atomic_write(os.path.join(args.out, "training.json"), json.dumps(report, indent=1).encode("utf-8"))
    best = [r for r in history if r["best"]]
    last = history[-1] if history else {"step": 0, "elapsed_s": 0.0}
    if best:
        print(f"{display_name(args.out)}: best valid {best[-1]['valid_nll']:.4f} nats/frame at step "
              f"{best[-1]['step']} ({last['step']} steps, {last['elapsed_s'] / 60:.1f} min)")
    else:
        print(f"{display_name(args.out)}: {last['step']} steps")
    return 0


def _eval(args) -> int:
    import json

    from labkit.polyphony.train import evaluate_pianoroll, load_pianoroll_model

    model, config, _ = load_pianoroll_model(args.checkpoint)
    splits, _ = _read_data(args.data)
    result = evaluate_pianoroll(model, splits[args.split])
    if args.json:
        print(json.dumps({"split": args.split, "nats_per_frame": result["nats_per_frame"],
                          "frames": result["frames"]}))
    else:
        print(f"{args.split}: {result['nats_per_frame']:.4f} nats/frame over {result['frames']} frames "
              f"({config.model} model)")
    return 0


def _generate(args) -> int:
    import json
    import os

    import jax

    from labkit._common import atomic_write, check_output_folder, display_name
    from labkit.encoding import PIANO_MIN_PITCH, piano_roll_to_sequence
    from labkit.errors import ConfigError
    from labkit.midi_io import write_midi
    from labkit.polyphony.data import NUM_KEYS, CHORALE_STEPS_PER_QUARTER
    from labkit.polyphony.models import sample_frames
    from labkit.polyphony.train import load_pianoroll_model

    from pathlib import Path

    import numpy as np

    names = [f"pianoroll_{i + 1:03d}.{ext}" for i in range(args.num) for ext in ("mid", "png", "wav")]
    check_output_folder(args.out, names + ["generation.json"],
                        reads=[args.checkpoint] + ([args.primer] if args.primer else []))
    model, config, meta = load_pianoroll_model(args.checkpoint)
    if config.num_keys != NUM_KEYS:
        raise ConfigError(f"the model has {config.num_keys} keys, not a piano's {NUM_KEYS}: nothing to write as MIDI")
    steps_per_quarter = int((meta.get("data") or {}).get("steps_per_quarter", CHORALE_STEPS_PER_QUARTER))
    primer = _primer_roll(args.primer, steps_per_quarter) if args.primer else None
    rolls = jax.device_get(sample_frames(model, args.frames, jax.random.key(args.seed), num=args.num,
                                         primer=None if primer is None else primer[None]))
    for old in Path(args.out).glob("pianoroll_[0-9][0-9][0-9].*"):   # a re-run replaces the whole set
        if old.suffix in (".mid", ".png", ".wav") and old.is_file():
            old.unlink()
    if primer is not None:
        rolls = np.concatenate([np.broadcast_to(primer, (len(rolls),) + primer.shape), rolls], axis=1)
    written = []
    for i, roll in enumerate(rolls):
        sequence = piano_roll_to_sequence(roll > 0.5, steps_per_quarter=steps_per_quarter, qpm=args.qpm,
                                          min_pitch=PIANO_MIN_PITCH)
        midi = write_midi(sequence, os.path.join(args.out, f"pianoroll_{i + 1:03d}.mid"))
        png = None
        if not args.no_picture:
            png = _picture(sequence, os.path.join(args.out, f"pianoroll_{i + 1:03d}.png"), f"{config.model} model, "
                           f"seed {args.seed}")
        wav = None
        if not args.no_audio:
            from labkit import audio

            wav = audio.write_wav(os.path.join(args.out, f"pianoroll_{i + 1:03d}.wav"), audio.render(sequence))
        written.append((midi, png, wav, len(sequence.notes)))
        extra = ", ".join(display_name(p) for p in (png, wav) if p)
        print(f"{display_name(midi)}: {len(sequence.notes)} notes, {args.frames} frames"
              + (f" after a primer of {len(primer)}" if primer is not None else "")
              + (f" (+ {extra})" if extra else ""))
    settings = {"checkpoint": display_name(args.checkpoint), "frames": args.frames, "num": args.num,
                "primer": display_name(args.primer) if args.primer else None,
                "primer_frames": 0 if primer is None else len(primer),
                "seed": args.seed, "qpm": args.qpm, "steps_per_quarter": steps_per_quarter, "model": config.model,
                "files": [{"midi": display_name(m), "png": display_name(p) if p else None,
                           "wav": display_name(w) if w else None, "notes": n} for m, p, w, n in written]}
    atomic_write(os.path.join(args.out, "generation.json"), json.dumps(settings, indent=1).encode("utf-8"))
    return 0


def _picture(sequence, path, title):
    """A piano-roll PNG of ``sequence`` (:func:`labkit.viz.plot_piano_roll`), written atomically."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from labkit._common import atomic_write
    from labkit.viz import plot_piano_roll

    ax = plot_piano_roll(sequence, title=title, time_unit="beats")   # beats and bar lines
    buffer = io.BytesIO()
    ax.figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(ax.figure)
    atomic_write(path, buffer.getvalue())
    return path
