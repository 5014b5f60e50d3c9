"""``python -m labkit judge``: generated MIDI files against real ones, feature by feature (Yang and Lerch 2018).

For each feature of :mod:`labkit.judge` (pitch count, pitch-class histogram, ... groove consistency) the
table gives the overlap area and the KL divergence of the real set's intra-set distance density with the
inter-set one (1 and 0: the generated tunes are as close to the real ones as real tunes are to each
other), the feature's mean in both sets and the mean distances; then the shipped style model's verdicts
on the generated files (the share of files given to each style and, with ``--style``, the mean style
index of that style). ``--json`` prints one JSON object instead::

    {"features": {name: {"overlap", "kl", "generated_mean", "real_mean", ...}}, "style_verdicts": {...},
     "generated": n, "real": m, "style": STYLE or null, "problems": [{"path", "problem"}]}

A file that cannot be judged (not MIDI, no notes, fewer than 4 notes) gives one line on stderr and the
others are kept; no readable generated tune (or fewer than two real ones) is one line and exit status 2.

Examples::

    python -m labkit judge --generated out/generated --style irish
    python -m labkit judge --generated out/generated --real my_tunes/ --json

Notebook: 09_judging_generated_music.ipynb
"""
from __future__ import annotations

import json
import sys


def register(subparsers) -> None:
    """Add ``judge`` to ``python -m labkit``."""
    parser = subparsers.add_parser(
        "judge", help="judge generated MIDI files against real ones (Yang and Lerch's overlap and KL per feature)",
        description="Compare a folder of generated MIDI files with real music, feature by feature: the overlap "
                    "area and KL divergence of the intra-set and inter-set distance densities (Yang and Lerch "
                    "2018), and the style model's verdicts on the generated files.")
    parser.add_argument("--generated", required=True, nargs="+", metavar="DIR",
                        help="the generated MIDI files or folders")
    real = parser.add_mutually_exclusive_group(required=True)
    real.add_argument("--real", nargs="+", metavar="DIR", help="the real MIDI files or folders")
    real.add_argument("--style", metavar="STYLE",
                      help="the real set: the shipped corpus's test-split tunes of this style (irish, german, ...)")
    parser.add_argument("--model", default=None, metavar="DIR",
                        help="style model folder for the verdicts (default: the shipped model)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    """Handler: read both sets, compare them, print the table (or JSON); bad files one line each on stderr."""
    from labkit.judge import format_judgement, judge_paths

    report = judge_paths(args.generated, args.real, style=args.style, model=args.model)
    for problem in report["problems"]:
        print(f"{problem['path']}: skipped: {problem['problem']}", file=sys.stderr)
    if args.json:
        print(json.dumps(report, allow_nan=False))
    else:
        print(format_judgement(report))
    return 0
