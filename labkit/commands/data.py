"""``python -m labkit data prepare``: a folder of MIDI files -> a dataset (see :mod:`labkit.prepare`)."""
from __future__ import annotations

import math

from labkit.commands._args import MAX_STEPS_PER_QUARTER, integer, number


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="datasets from your own MIDI files")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    prep = sub.add_parser("prepare", help="turn a folder of MIDI files into a dataset the course can train on")
    prep.add_argument("--midi-dir", required=True, help="folder searched recursively for .mid/.midi/.kar files")
    prep.add_argument("--out", required=True,
                      help="output folder (manifest.csv, midi/, prepare_report.csv): new, empty, or an earlier "
                           "dataset of this command, which is then replaced whole")
    prep.add_argument("--style", default="user", help="style label of every melody (default: user)")
    prep.add_argument("--collection", default=None, help="collection name (default: the folder's name)")
    prep.add_argument("--steps-per-quarter", type=integer(1, MAX_STEPS_PER_QUARTER), default=4, metavar="N",
                      help=f"time grid, steps per quarter note, 1..{MAX_STEPS_PER_QUARTER} (default: 4)")
    prep.add_argument("--min-notes", type=integer(1, 1_000_000), default=8, metavar="N",
                      help="shortest melody kept, in notes, at least 1 (default: 8)")
    prep.add_argument("--max-gap", type=number(0, math.inf, infinity=True), default=4.0, metavar="QUARTERS",
                      help="split a line at rests longer than this many quarter notes, >= 0; inf: never split "
                           "(default: 4)")
    prep.add_argument("--strategy", choices=("instrument", "skyline"), default="instrument",
                      help="one melody line per instrument, or the top line of all (default: instrument)")
    prep.set_defaults(func=_prepare)


def _prepare(args) -> int:
    from labkit.prepare import prepare_midi_folder

    report = prepare_midi_folder(
        args.midi_dir, args.out, style=args.style, collection=args.collection,
        steps_per_quarter=args.steps_per_quarter, min_notes=args.min_notes,
        max_gap_quarters=args.max_gap, strategy=args.strategy,
        progress=lambda result: print(result.line(), flush=True))
    print(report.summary())
    return 0 if report.melodies else 1
