"""``python -m labkit corpus ...``: build and inspect the shipped corpus.

* ``corpus build [--out DIR] [--jobs N] [--only NAME ...] [--quiet]``: convert
  music21's corpus into ``DIR/midi/<collection>/<id>.mid`` + ``manifest.csv``
  (see :func:`labkit.corpus.build.build`).
* ``corpus info [--root DIR]``: tunes per collection, style and split.

Notebook: 02_preprocessing.ipynb
"""
from __future__ import annotations

import argparse

from labkit.commands._args import integer


def register(subparsers) -> None:
    """Add the ``corpus`` command group to ``python -m labkit``."""
    parser = subparsers.add_parser("corpus", help="build or inspect the shipped MIDI corpus")
    sub = parser.add_subparsers(dest="corpus_command", metavar="ACTION")

    b = sub.add_parser("build", help="convert music21's corpus into MIDI files and a manifest",
                       description="Convert the corpus shipped inside music21 into MIDI files plus "
                                   "manifest.csv, build_report.json (skipped tunes and why) and a cache "
                                   "that makes a re-run with nothing changed take seconds.")
    b.add_argument("--out", metavar="DIR", default=None, help="output folder (default: the repository's data/)")
    b.add_argument("--jobs", metavar="N", type=integer(1, 1024), default=None,
                   help="worker processes, 1..1024 (default: all cores)")
    b.add_argument("--only", metavar="NAME", nargs="+", default=None,
                   help="rebuild only these collections (essen oneills ryans airds bach) or subsets (essen/kinder0)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_build)

    i = sub.add_parser("info", help="tunes per collection, style and split")
    i.add_argument("--root", metavar="DIR", default=None, help="corpus folder (default: the shipped corpus)")
    i.set_defaults(func=_info)

    parser.set_defaults(func=lambda args: (parser.print_help(), 1)[1])


def _build(args: argparse.Namespace) -> int:
    from labkit.corpus import build

    report = build.build(args.out, jobs=args.jobs, only=args.only, progress=not args.quiet)
    print(report.summary())
    print(f"report: {report.out_dir / build.REPORT_FILE}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from labkit import corpus

    manifest = corpus.load_manifest(args.root)
    print(f"{len(manifest)} tunes in {corpus.corpus_root() if args.root is None else args.root}")
    table = manifest.groupby(["collection", "style"], sort=False).agg(
        tunes=("id", "size"), notes=("notes", "sum"), hours=("duration_seconds", lambda s: round(s.sum() / 3600, 1)))
    print(table.to_string())
    print(manifest["split"].value_counts().reindex(list(corpus.SPLITS)).to_string())
    return 0
