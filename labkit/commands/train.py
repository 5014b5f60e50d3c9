"""``python -m labkit train``: a melody model trained on your own folder of MIDI files.

One line per MIDI file (how many melodies it gave, or why none), a progress bar, early stopping
on validation files held out by seed, and a run folder beside the model (``MODEL.run/``: the prepared
dataset, checkpoints, ``report.json``), so the same command again resumes an interrupted run.
After training it generates a few melodies and says how often their 8-bar spans repeat your files,
with a warning when the folder is too small to learn from without copying it
(:func:`labkit.personal.memorization_rate`). Bad input (no folder, no MIDI file, no file giving a
melody, a bad ``--out``) is one line and exit status 2.

Examples::

    python -m labkit train --midi-dir my_tunes/ --out models/mine.npz             # fine-tune the shipped model
    python -m labkit train --midi-dir my_tunes/ --out models/new.npz --from scratch --minutes 20
    python -m labkit generate --checkpoint models/mine.npz --num 4 --out out/mine

Notebook: 09_judging_generated_music.ipynb
"""
from __future__ import annotations

from labkit.commands._args import MAX_TRAIN_STEPS, integer, number, seed

#: Most minutes ``--minutes`` accepts (a week).
MAX_MINUTES = 7 * 24 * 60


def register(subparsers) -> None:
    """Add ``train`` to ``python -m labkit``."""
    parser = subparsers.add_parser(
        "train", help="train or fine-tune a melody model on your own folder of MIDI files",
        description="Train (--from scratch) or fine-tune (--from shipped, the default) the melody LSTM on a folder "
                    "of MIDI files, with early stopping on held-out files; run it again with the same --out to "
                    "resume. Then: python -m labkit generate --checkpoint MODEL.npz")
    parser.add_argument("--midi-dir", required=True, metavar="DIR",
                        help="folder searched recursively for .mid/.midi/.kar files")
    parser.add_argument("--out", required=True, metavar="MODEL.npz",
                        help="the model file to write; its run folder (checkpoints, for resuming) is MODEL.run")
    parser.add_argument("--from", dest="start", choices=("shipped", "scratch"), default="shipped",
                        help="fine-tune the shipped model (default) or train a new one from scratch")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=integer(1, MAX_TRAIN_STEPS), default=None, metavar="N",
                        help=f"optimizer steps at most, 1..{MAX_TRAIN_STEPS} (default: 500 fine-tuning, "
                             "1500 from scratch; early stopping may end sooner)")
    length.add_argument("--minutes", type=number(0, MAX_MINUTES, low_open=True), default=None, metavar="M",
                        help=f"train for M minutes at most, in (0, {MAX_MINUTES}] (early stopping may end sooner)")
    parser.add_argument("--seed", type=seed, default=0, metavar="S",
                        help="seed of the validation split, the parameters, the batches and the melodies "
                             "generated to measure copying, 0..4294967295 (default: 0)")
    parser.add_argument("--no-measure", action="store_true",
                        help="skip generating melodies to measure how often they copy your files")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    """Handler: train, print one line per file and per stage; 0 when a model was written."""
    import sys

    from labkit._common import display_name
    from labkit.personal import run_folder, train_on_folder

    try:
        train_on_folder(args.midi_dir, args.out, start=args.start, steps=args.steps, minutes=args.minutes,
                        seed=args.seed, measure=not args.no_measure, log=lambda line: print(line, flush=True))
    except KeyboardInterrupt:   # fit has written its checkpoint; every write is atomic
        print(f"labkit: interrupted; run the same command to resume from {display_name(run_folder(args.out))}",
              file=sys.stderr)
        return 130
    return 0
