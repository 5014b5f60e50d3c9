"""``python -m labkit style``: train the style model, and score MIDI files with it.

Examples::

    python -m labkit style score tune.mid my_folder/                  # the shipped model, target 'irish'
    python -m labkit style score --target german --json out/generated/
    python -m labkit style train --out runs/style --styles german irish --paragraph
    python -m labkit style train --out runs/mine --class reels=my/reels --class airs=my/airs   # your own classes
    python -m labkit style experiment --json runs/style_experiment.json   # five styles, CV by tune
    python -m labkit style typicality                  # does it know a string quartet is no folk tune?

``score`` prints one line per file: the most likely style, the style index
(the probability of ``--target``), every style's probability and the
typicality (how typical the tune is of the model's training tunes; below 0.01
the line says the tune is unlike every style the model knows); with
``--json`` one JSON object per line, ``{"path", "style", "index",
"probabilities", "typicality"}``, or ``{"path", "error"}`` for a file that cannot be used
(such files never stop the others). Exit status 0 when at least one file was
scored, 1 when none was, 2 for a usage error (bad option, model or target).

See :mod:`labkit.style.scoring`. Notebook: 07_style_index.ipynb
"""
from __future__ import annotations

import argparse
import json
import sys

from labkit.commands._args import MAX_TRAIN_STEPS, integer, number, seed

#: ``--l2``: a penalty > 0 and at most this.
MAX_L2 = 1e6
_positive_float = number(0, MAX_L2, low_open=True)
#: Most columns of a hashed n-gram group (``--ngram-dims``).
MAX_NGRAM_DIMS = 65536


def _folds(text: str) -> int:
    """``style train --folds``: 0 (no cross-validation) or 2..1000."""
    value = integer(0, 1000, note=", 0 (none) or at least 2")(text)
    if value == 1:
        raise argparse.ArgumentTypeError(f"must be 0 (no cross-validation) or an integer in 2..1000, got {text!r}")
    return value


def register(subparsers) -> None:
    """Add ``style train`` and ``style score`` to ``python -m labkit``."""
    from labkit.style.scoring import DEFAULT_L2, DEFAULT_NGRAM_DIMS, MIN_NOTES, SHIPPED_STYLES

    parser = subparsers.add_parser("style", help="style index: train the style model, score MIDI files",
                                   description="A logistic-regression style classifier on melody features: "
                                               "train it on the corpus, or score MIDI files with it.")
    sub = parser.add_subparsers(dest="style_command", metavar="ACTION", required=True)

    train = sub.add_parser("train", help="train a style model on the corpus's train+valid splits",
                           description="Read the corpus tunes of the chosen styles, cross-validate by tune on the "
                                       "train+valid splits, train the model on them, report the test split's "
                                       "balanced accuracy, and save model.json, arrays.npz and metrics.json.")
    train.add_argument("--out", required=True, metavar="DIR", help="folder for the model and its figures")
    labels = train.add_mutually_exclusive_group()
    labels.add_argument("--styles", nargs="+", metavar="STYLE", default=None,
                        help=f"manifest style labels (default: {' '.join(SHIPPED_STYLES)})")
    labels.add_argument("--class", dest="classes", action="append", type=_user_class, default=None,
                        metavar="NAME=DIR",
                        help="train on your own labelled folders instead of the corpus: one class per option, at "
                             "least two (each MIDI file of DIR is one tune of class NAME); prints the "
                             "cross-validated accuracy and how the shipped style model sees each class")
    train.add_argument("--variant", choices=("raw", "processed"), default="processed",
                       help="feature variant (default: processed: key-normalised frequencies)")
    train.add_argument("--paragraph", action="store_true",
                       help="add phrase (paragraph) features: per-phrase mean and spread of each group")
    train.add_argument("--ensemble", action="store_true",
                       help="one model per feature group (pitch, interval, rhythm, contour, n-gram), stacked")
    train.add_argument("--ngram-dims", type=integer(1, MAX_NGRAM_DIMS), default=DEFAULT_NGRAM_DIMS, metavar="D",
                       help=f"columns of each hashed n-gram group, 1..{MAX_NGRAM_DIMS} (default: {DEFAULT_NGRAM_DIMS})")
    train.add_argument("--l2", type=_positive_float, default=DEFAULT_L2,
                       help=f"L2 penalty > 0 (default: {DEFAULT_L2})")
    train.add_argument("--steps", type=integer(1, MAX_TRAIN_STEPS), default=300,
                       help="L-BFGS iterations at most (default: 300)")
    train.add_argument("--folds", type=_folds, default=5,
                       help="cross-validation folds on train+valid, 2..1000 (default: 5; 0: none)")
    train.add_argument("--max-per-style", type=integer(1, 10_000_000), default=None, metavar="N",
                       help="use at most N tunes of each style per split (a quick run)")
    train.add_argument("--seed", type=seed, default=0,
                       help="seed of subsampling, folds and calibration, 0..4294967295 (default: 0)")
    train.set_defaults(func=_train)

    score = sub.add_parser("score", help="style of MIDI files: most likely style, style index, probabilities",
                           description="Score MIDI files (or folders, searched recursively for .mid/.midi/.kar) with "
                                       "a style model: the longest melody of each file is scored. Exit status 0 "
                                       "when at least one file was scored, else 1.")
    score.add_argument("paths", nargs="+", metavar="PATH", help="MIDI files or folders")
    score.add_argument("--model", default=None, metavar="DIR",
                       help="folder written by `style train` (default: the model shipped with labkit)")
    score.add_argument("--target", default=None, metavar="STYLE",
                       help="style whose probability is the style index (default: irish, or the model's first style)")
    score.add_argument("--json", action="store_true",
                       help='one JSON object per line: {"path", "style", "index", "probabilities", "typicality"} '
                            'or {"path", "error"}')
    score.add_argument("--strategy", choices=("skyline", "instrument"), default="skyline",
                       help="melody extraction: skyline of all instruments (default) or one line per instrument; "
                            "the longest melody is scored")
    score.add_argument("--min-notes", type=integer(1, 1_000_000), default=MIN_NOTES,
                       help=f"fewest notes of a usable melody, at least 1 (default: {MIN_NOTES})")
    score.set_defaults(func=_score)

    exp = sub.add_parser("experiment", help="the five-style and generalisation experiments (CV by tune)",
                         description="Cross-validate by tune the basic and the improved style features on five "
                                     "styles (nested choice of L2), with and without cross-style near-duplicates, "
                                     "and test on Essen sub-collections held out of training. See "
                                     "labkit.style.experiments.")
    exp.add_argument("--styles", nargs="+", metavar="STYLE", default=None,
                     help="manifest style labels (default: chinese chorale fiddle german irish)")
    exp.add_argument("--max-per-style", type=integer(1, 10_000_000), default=2000, metavar="N",
                     help="at most N tunes per style (default: 2000)")
    exp.add_argument("--folds", type=integer(2, 1000), default=5, help="cross-validation folds, 2..1000 (default: 5)")
    exp.add_argument("--ngram-dims", type=integer(1, MAX_NGRAM_DIMS), default=DEFAULT_NGRAM_DIMS, metavar="D",
                     help=f"columns of each hashed n-gram group, 1..{MAX_NGRAM_DIMS} (default: {DEFAULT_NGRAM_DIMS})")
    exp.add_argument("--l2-grid", nargs="+", type=_positive_float, default=None, metavar="L2",
                     help="candidates (> 0) of the nested L2 choice (default: 0.01 0.03 0.1 0.3 1)")
    exp.add_argument("--steps", type=integer(1, MAX_TRAIN_STEPS), default=200,
                     help="L-BFGS iterations at most (default: 200)")
    exp.add_argument("--seed", type=seed, default=0,
                     help="seed of the subsample and the folds, 0..4294967295 (default: 0)")
    exp.add_argument("--no-dedup", action="store_true", help="skip the near-duplicate protocol")
    exp.add_argument("--no-generalisation", action="store_true", help="skip the held-out sub-collections")
    exp.add_argument("--with-raw", action="store_true",
                     help="also cross-validate the improved features with the raw variant's columns beside them")
    exp.add_argument("--with-trees", action="store_true",
                     help="also mix the improved logistic regression with gradient-boosted trees "
                          "(needs scikit-learn; see labkit.style.experiments.mix_with_trees)")
    exp.add_argument("--with-lstm", action="store_true",
                     help="also cross-validate with the shipped melody model's state columns beside the others "
                          "(see labkit.style.features.melody_model_features)")
    exp.add_argument("--json", default=None, metavar="FILE", help="also write every figure to this JSON file")
    exp.set_defaults(func=_experiment)

    typ = sub.add_parser("typicality", help="how often the model says a tune is unlike every style it knows",
                         description="Score the typicality of the corpus's test split (the model's own styles, "
                                     "then the other folk styles) and of classical works from music21's corpus, "
                                     "and count the tunes below the floor. "
                                     "See labkit.style.experiments.typicality_check.")
    typ.add_argument("--model", default=None, metavar="DIR",
                     help="folder written by `style train` (default: the model shipped with labkit)")
    typ.add_argument("--per-composer", type=integer(1, 10_000), default=4, metavar="N",
                     help="classical works per composer, at least 1 (default: 4)")
    typ.add_argument("--json", default=None, metavar="FILE", help="also write every figure to this JSON file")
    typ.set_defaults(func=_typicality)


def _user_class(text: str) -> tuple[str, str]:
    """``style train --class``: ``NAME=DIR`` (argparse reports anything else as one usage error)."""
    from labkit.errors import ConfigError
    from labkit.personal import parse_class

    try:
        return parse_class(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(exc.problem.replace("--class ", "")) from None


def _train_classes(args) -> int:
    """Handler of ``style train --class NAME=DIR ...``: a style model on the user's own folders."""
    from labkit.errors import ConfigError
    from labkit.personal import user_style_model

    for flag, given in (("--ensemble", args.ensemble), ("--paragraph", args.paragraph),
                        ("--max-per-style", args.max_per_style is not None), ("--variant raw", args.variant == "raw")):
        if given:
            raise ConfigError(f"{flag} is for corpus styles; --class trains the processed single model")
    classes: dict[str, str] = {}
    for name, folder in args.classes:
        if name in classes:
            raise ConfigError(f"class {name!r} is given twice (--class {name}=...); give each class once")
        classes[name] = folder
    user_style_model(classes, args.out, folds=args.folds, seed=args.seed, l2=args.l2, steps=args.steps,
                     ngram_dims=args.ngram_dims, log=lambda line: print(line, flush=True))
    return 0


def _train(args) -> int:
    """Handler of ``style train``."""
    from labkit.style.scoring import train_style_model

    if args.classes is not None:
        return _train_classes(args)

    figures = train_style_model(args.out, args.styles, variant=args.variant, paragraph=args.paragraph,
                                ensemble=args.ensemble, ngram_dims=args.ngram_dims, l2=args.l2, steps=args.steps,
                                folds=args.folds, max_per_style=args.max_per_style, seed=args.seed,
                                log=lambda line: print(line, flush=True))
    test = figures["test"]
    if test is not None:
        print(f"test balanced accuracy {test['balanced_accuracy']:.4f} ({test['tunes']} tunes, "
              f"{len(figures['styles'])} styles)")
    return 0


def _score(args) -> int:
    """Handler of ``style score``: one line per file; 0 if any file scored, else 1."""
    from labkit.style.model import load_style_model
    from labkit.style.scoring import default_target, format_record, score_paths

    model = load_style_model(args.model)
    target = args.target if args.target is not None else default_target(model.styles)
    records = score_paths(args.paths, model, target, strategy=args.strategy, min_notes=args.min_notes)
    for record in records:
        line = json.dumps(record) if args.json else format_record(record, target)
        print(line, flush=True)
    scored = sum("error" not in r for r in records)
    if not args.json:
        print(f"{scored} of {len(records)} files scored (style index = P({target}))", file=sys.stderr)
    return 0 if scored else 1


def _write_json(figures: dict, where: str) -> None:
    from labkit._common import atomic_write

    path = atomic_write(where, (json.dumps(figures, indent=1) + "\n").encode("utf-8"))
    print(f"figures written to {path}")


def _typicality(args) -> int:
    """Handler of ``style typicality``: one line per set of tunes (and ``--json FILE``)."""
    from labkit.style.experiments import typicality_check

    figures = typicality_check(args.model, per_composer=args.per_composer, log=lambda line: print(line, flush=True))
    if args.json:
        _write_json(figures, args.json)
    return 0


def _experiment(args) -> int:
    """Handler of ``style experiment``: progress lines, then the figures (and ``--json FILE``)."""
    from labkit.style.experiments import FIVE_STYLES, run_experiment as experiment

    figures = experiment(args.styles or FIVE_STYLES, max_per_style=args.max_per_style, folds=args.folds,
                         seed=args.seed, ngram_dims=args.ngram_dims, l2_grid=args.l2_grid, steps=args.steps,
                         dedup=not args.no_dedup, generalisation=not args.no_generalisation, with_raw=args.with_raw,
                         with_trees=args.with_trees, with_lstm=args.with_lstm,
                         log=lambda line: print(line, flush=True))
    if args.json:
        _write_json(figures, args.json)
    return 0
