"""``python -m labkit evaluate cv``: cross-entropy of a melody model under k-fold cross-validation by tune.

Examples::

    python -m labkit evaluate cv --corpus-subset kinder0 --pitch-only          # IDyOM's kinder set
    python -m labkit evaluate cv --corpus-subset kinder0 --pitch-only --model ngram   # n-grams only, seconds
    python -m labkit evaluate cv --midi-dir my_tunes/ --folds 10 --json
    python -m labkit evaluate cv --corpus-subset kinder0 --pitch-only --model lstm \\
        --pretrain-style german                                                 # LSTM, pretrained

See :mod:`labkit.evaluate` for the protocol.
"""
from __future__ import annotations

import argparse
import json
import sys

from labkit.commands._args import MAX_STEPS_PER_QUARTER, MAX_TRAIN_STEPS, integer, number, seed


#: Defaults of ``--model lstm+ngram`` and of the LSTMs' augmentation (measured in benchmarks/README.md):
#: with the pitch view, ensemble members alternate between no transposition and up to 5 semitones
#: (a single LSTM: none).
HYBRID_NGRAM = "both+"
HYBRID_BIAS = 2.0
PITCH_TRANSPOSES = (0, 5)
#: Largest order bound of ``--order`` (PPM's contexts never grow past a tune's length; 'star' is unbounded).
MAX_ORDER = 1000


def _order(text: str):
    if text.strip().lower() in ("*", "star", "none", "unbounded"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"order must be an integer in 0..{MAX_ORDER} or 'star', "
                                         f"got {text[:40]!r}") from None
    if not 0 <= value <= MAX_ORDER:
        raise argparse.ArgumentTypeError(f"order must be an integer in 0..{MAX_ORDER} or 'star', got {text[:40]!r}")
    return value


def register(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="evaluate melody models (cross-entropy, cross-validation)")
    sub = parser.add_subparsers(dest="evaluate_command", metavar="ACTION", required=True)
    cv = sub.add_parser("cv", help="k-fold cross-validation by tune: bits per note of held-out tunes",
                        description="Cross-entropy (bits per note) of held-out tunes under k-fold "
                                    "cross-validation by tune. Each fold's model never sees the fold's tunes.")
    source = cv.add_argument_group("tunes (one of these is needed)")
    source.add_argument("--midi-dir", help="folder searched recursively for .mid/.midi/.kar files (one tune each)")
    source.add_argument("--corpus-subset", nargs="+", metavar="SUBSET",
                        help="shipped corpus tunes of these subsets (e.g. kinder0)")
    source.add_argument("--style", nargs="+", metavar="STYLE", help="shipped corpus tunes of these styles")
    source.add_argument("--collection", nargs="+", metavar="NAME", help="shipped corpus tunes of these collections")
    source.add_argument("--ids", nargs="+", metavar="ID",
                        help="shipped corpus tunes with these ids or shell-style patterns (e.g. 'bach-bwv3[0-9][0-9]')")
    cv.add_argument("--folds", type=integer(2, 10_000), default=10,
                    help="number of folds, at least 2 and at most the number of tunes (default: 10)")
    cv.add_argument("--seed", type=seed, default=0, help="seed of the folds and of the LSTM, 0..4294967295 (default: 0)")
    cv.add_argument("--pitch-only", action="store_true",
                    help="predict each note's pitch from the previous pitches (IDyOM's setting); "
                         "default: predict every event (pitch and rhythm)")
    cv.add_argument("--pitch-alphabet", choices=("midi", "corpus"), default="midi",
                    help="pitch-only symbols: all 128 MIDI pitches (default), or only the pitches that occur "
                         "in the tunes (IDyOM's convention; it lowers the cost of rare fallbacks)")
    cv.add_argument("--model", choices=("ngram", "lstm", "lstm+ngram"), default="lstm+ngram",
                    help="model (default: lstm+ngram, the LSTM's prediction combined with IDyOM-style n-gram "
                         "models note by note, see --ngram-models and --bias: the best we measured, minutes "
                         "per run; ngram: the n-gram models alone, seconds)")
    cv.add_argument("--json", action="store_true",
                    help='print only {"folds": [...], "mean_bits_per_note": X, "notes": N}')
    cv.add_argument("--steps-per-quarter", type=integer(1, MAX_STEPS_PER_QUARTER), default=4,
                    help=f"time grid of the event view, 1..{MAX_STEPS_PER_QUARTER} (default: 4)")
    ngram = cv.add_argument_group("n-gram model")
    ngram.add_argument("--ngram-models", choices=("ltm", "ltm+", "stm", "both", "both+"), default=None,
                       help="IDyOM configuration (default: both+ = long-term model that keeps learning, "
                            "plus a short-term model of the tune itself; with lstm+ngram: "
                            f"{HYBRID_NGRAM})")
    ngram.add_argument("--bias", type=number(0, 100), default=None,
                       help="entropy bias of the combination, 0..100 (IDyOM: 7 for its two n-gram models; default "
                            f"with lstm+ngram: {HYBRID_BIAS})")
    ngram.add_argument("--order", type=_order, default=None,
                       help=f"order bound of the long-term model, 0..{MAX_ORDER}, or 'star' for unbounded PPM* "
                            "(default: star)")
    lstm = cv.add_argument_group("LSTM model")
    lstm.add_argument("--hidden-size", type=integer(1, 4096), default=128, help="LSTM units, 1..4096 (default: 128)")
    lstm.add_argument("--layers", type=integer(1, 16), default=1, help="LSTM layers, 1..16 (default: 1)")
    lstm.add_argument("--steps", type=integer(1, MAX_TRAIN_STEPS), default=None,
                      help="training steps per fold (default: 1200)")
    lstm.add_argument("--members", type=integer(1, 64), default=1, metavar="K",
                      help="average K LSTMs (1..64) that differ in their seed and augmentation (K times the "
                           "training; default: 1)")
    lstm.add_argument("--transpose", type=integer(0, 12), nargs="+", default=None, metavar="N",
                      help="transposition augmentation of the training tunes by up to N semitones (0..12); ensemble "
                           "members take the values in turn (pitch-only with the MIDI alphabet; default there: "
                           f"{' '.join(map(str, PITCH_TRANSPOSES))}, so a single LSTM is not transposed; else 0)")
    pre = cv.add_argument_group("pretraining (both models)")
    pre.add_argument("--pretrain-style", nargs="+", metavar="STYLE",
                     help="also train on shipped corpus tunes of these styles (the LSTM: first, then it is "
                          "fine-tuned on each fold); evaluated tunes and their near-duplicates are removed")
    pre.add_argument("--pretrain-subset", nargs="+", metavar="SUBSET",
                     help="the same, with corpus subsets")
    cv.set_defaults(func=_cv)


def _say(args, text: str) -> None:
    print(text, file=sys.stderr if args.json else sys.stdout, flush=True)


def _cv(args) -> int:
    from labkit.errors import ConfigError
    from labkit.evaluate import (VIEWS, HybridModel, LSTMEnsemble, LSTMModel, LSTMSettings, NgramModel,
                                 corpus_pitch_view, cross_entropy_cv, load_corpus_melodies, load_midi_dir,
                                 usable_for_view)

    corpus_filters = dict(subsets=args.corpus_subset, styles=args.style, collections=args.collection,
                          ids=args.ids)
    use_corpus = any(v for v in corpus_filters.values())
    if args.pitch_alphabet != "midi" and not args.pitch_only:
        raise ConfigError("--pitch-alphabet applies to --pitch-only evaluations")
    if bool(args.midi_dir) == use_corpus:
        raise ConfigError("give either --midi-dir or corpus filters (--corpus-subset, --style, --collection, --ids)")
    if args.midi_dir:
        melodies, skipped = load_midi_dir(args.midi_dir, args.steps_per_quarter)
        where = args.midi_dir
    else:
        melodies, skipped = load_corpus_melodies(steps_per_quarter=args.steps_per_quarter, **corpus_filters)
        where = "the corpus selection"
    view = "pitch" if args.pitch_only else "event"
    melodies, unusable = usable_for_view(melodies, view)
    for path, problem in skipped + unusable:
        _say(args, f"skipped  {path}: {problem}")
    if len(melodies) < args.folds:
        raise ConfigError(f"{len(melodies)} usable tune(s) in {where}; {args.folds}-fold cross-validation "
                          f"needs at least {args.folds}")

    pretrain = None
    if args.pretrain_style or args.pretrain_subset:
        pre, pre_skipped = load_corpus_melodies(steps_per_quarter=args.steps_per_quarter,
                                                styles=args.pretrain_style, subsets=args.pretrain_subset)
        pre, pre_unusable = usable_for_view(pre, view)
        evaluated = {m.source for m in melodies}
        pretrain = [m for m in pre if m.source not in evaluated]   # never pretrain on an evaluated tune
        _say(args, f"pretraining tunes: {len(pretrain)} (before removing near-duplicates; "
                   f"{len(pre_skipped) + len(pre_unusable)} unreadable skipped)")

    if args.pitch_only and args.pitch_alphabet == "corpus":
        view = corpus_pitch_view(melodies, pretrain or [])
    alphabet = VIEWS[view][1] if isinstance(view, str) else view[1]

    pitch_symbols = args.pitch_only and args.pitch_alphabet == "midi"
    transposes = list(args.transpose or (PITCH_TRANSPOSES if pitch_symbols else [0]))
    transposes = transposes[:max(args.members, 1)]
    if any(transposes) and not pitch_symbols:
        raise ConfigError("--transpose needs --pitch-only with the MIDI pitch alphabet (symbols = pitches)")
    if min(transposes) < 0:
        raise ConfigError(f"--transpose must be >= 0, got {min(transposes)}")
    if args.model == "ngram":
        models = args.ngram_models or "both+"
        options = {} if args.bias is None else {"bias": args.bias}
        description = f"n-gram {models}, order {'*' if args.order is None else args.order}"

        def factory():
            return NgramModel(alphabet, models, max_order=args.order, **options)
    else:
        settings = LSTMSettings(hidden_size=args.hidden_size, num_layers=args.layers, seed=args.seed,
                                seq_len=64 if args.pitch_only else 128, augment_semitones=transposes[0],
                                **({"num_steps": args.steps} if args.steps else {}))
        cache: dict = {}
        description = f"LSTM {args.layers}x{args.hidden_size}" + (" pretrained" if pretrain else "")
        if args.members < 1:
            raise ConfigError(f"--members must be >= 1, got {args.members}")
        if args.members > 1:
            description += f", ensemble of {args.members}"
        if any(transposes):
            description += f", transposed up to {'/'.join(map(str, transposes))} semitones"
        if args.model == "lstm":
            def factory():
                if args.members > 1:
                    return LSTMEnsemble(alphabet, settings, cache, args.members, transposes)
                return LSTMModel(alphabet, settings, cache)
        else:
            models = args.ngram_models or HYBRID_NGRAM
            bias = HYBRID_BIAS if args.bias is None else args.bias
            description += f" + n-gram {models}, bias {bias:g}"

            def factory():
                return HybridModel(alphabet, settings, cache, ngram_models=models, bias=bias, max_order=args.order,
                                   members=args.members, transposes=transposes)

    notes = sum(len(m.pitches) for m in melodies)
    view_name = f"{view} view" if isinstance(view, str) else f"pitch view over {alphabet} pitches"
    _say(args, f"{len(melodies)} tunes, {notes} notes; {view_name}; {description}; {args.folds} folds, "
               f"seed {args.seed}")

    def progress(fold, k, bits, seconds):
        _say(args, f"fold {fold + 1:2d}/{k}: {bits:.3f} bits/note ({seconds:.1f} s)")

    result = cross_entropy_cv(melodies, factory, k=args.folds, seed=args.seed, pretrain=pretrain,
                              view=view, progress=progress)
    if args.json:
        print(json.dumps(result.to_json()))
        return 0
    if pretrain is not None:
        print(f"pretraining: {result.pretrain_used} tunes used, {result.pretrain_removed} removed as "
              f"near-duplicates of evaluated tunes")
    per_event = "" if args.pitch_only else f", {result.mean_bits_per_symbol:.3f} bits/event"
    print(f"mean: {result.mean_bits_per_note:.3f} bits/note over {result.notes} notes{per_event} "
          f"({result.seconds / 60:.1f} min)")
    return 0
