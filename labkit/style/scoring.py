"""The style index at work: melodies from the corpus and from MIDI files, scoring them, training the model.

:mod:`labkit.style.model` has the classifier; this module puts it to use for the
command line (``python -m labkit style train|score``), the demo and the notebooks:

* :func:`corpus_style_data`: the corpus tunes of some styles and splits, as
  melodies ready for :func:`labkit.style.features.feature_matrix`, with their manifest rows;
* :func:`train_style_model`: features, k-fold cross-validation by tune on the
  train+valid splits, the final model, its test-split figures, all saved in one
  folder (``model.json``, ``arrays.npz``, ``metrics.json``) that is replaced as one unit;
* :func:`melody_from_file` and :func:`score_paths`: MIDI files (or folders of
  them, :func:`labkit._common.find_midi_files`) -> one record per file with the most likely style, each style's
  probability and the style index of a target style; a file that cannot be
  used gives an error record and never stops the others.

**Keys.** The ``processed`` features move every melody to C major / A minor
first. Which key a melody is in is taken from :func:`labkit.melody.estimate_key`
(Krumhansl-Kessler profiles), never from the file's key signature: generated
melodies and most MIDI files found in the wild carry no key signature, or a
default C major one, so a model trained on notated key signatures would see
differently normalised melodies at scoring time. Estimating the key everywhere
keeps training and scoring the same.

Notebook: 07_style_index.ipynb
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from labkit._common import check_output_folder, display_name, find_midi_files
from labkit.errors import ConfigError, CorpusError, LabkitError
from labkit.melody import Melody
from labkit.style import features as F
from labkit.style.logreg import balanced_accuracy, confusion_matrix, cross_validate_logreg, ece, log_loss
from labkit.style.model import (METRICS_FILE, TYPICAL_FLOOR, GroupEnsemble, StyleModel, _check_model_folder,
                                load_style_model)

#: Styles of the shipped model (the manifest's labels).
SHIPPED_STYLES: tuple[str, ...] = ("chinese", "chorale", "fiddle", "german", "irish")

#: Fewest notes a melody found in a MIDI file must have to be scored.
MIN_NOTES = 4

#: Feature and penalty settings of :func:`train_style_model` (and ``style train``), those of the shipped
#: model (5-fold cross-validated balanced accuracy 89.0%, its ``metrics.json``): 256 n-gram buckets per
#: family classify five styles as well as 2,048 in an eighth of the time, and L2 = 0.03 beat 1e-3 and 0.1.
DEFAULT_NGRAM_DIMS = 256
DEFAULT_L2 = 0.03

#: The target style when none is given (if the model knows it; else the model's first style).
DEFAULT_TARGET = "irish"


# ----------------------------------------------------------------------------------
# Melodies
# ----------------------------------------------------------------------------------

def with_estimated_key(melody: Melody) -> Melody:
    """The melody with ``key``/``mode`` set by :func:`labkit.melody.estimate_key` (notes unchanged).

    The style model's features normalise the key with these fields (see the
    module text for why they are estimated, not read from the file).

    >>> m = Melody.from_notes([67, 71, 74, 79, 74, 71, 67], range(0, 28, 4), range(4, 32, 4))
    >>> with_estimated_key(m).key
    7

    Notebook: 06_style_features.ipynb
    """
    from labkit.melody import estimate_key

    if not isinstance(melody, Melody):
        raise ConfigError(f"expected a labkit.melody.Melody, got {type(melody).__name__}")
    if not len(melody.pitches):
        return melody
    tonic, mode = estimate_key(melody)
    return melody.replace(key=int(tonic), mode=mode)


def melody_from_sequence(sequence, *, strategy: str = "skyline", min_notes: int = MIN_NOTES,
                         steps_per_quarter: int = 4) -> Melody:
    """The melody the style model scores in a ``NoteSequence``: the longest extracted line.

    :func:`labkit.melody.extract_melodies` (``strategy="skyline"``: the highest
    sounding pitch of all pitched instruments together, which is the tune for a
    one-line file and the soprano for a chorale; ``"instrument"``: one line per
    instrument) splits the music at long rests; the melody with the most notes
    is kept (the first of equals), and its key is estimated (:func:`with_estimated_key`).

    Raises:
        NoNotesError: no pitched notes (an empty or drums-only file).
        NoMelodyError: no melody of ``min_notes`` notes.

    Notebook: 07_style_index.ipynb
    """
    from labkit.melody import extract_melodies

    melodies = extract_melodies(sequence, steps_per_quarter=steps_per_quarter, min_notes=min_notes,
                                strategy=strategy)
    longest = max(melodies, key=lambda m: len(m.pitches))  # max keeps the first of equals
    return with_estimated_key(longest)


def melody_from_file(path: str | os.PathLike, *, strategy: str = "skyline", min_notes: int = MIN_NOTES,
                     steps_per_quarter: int = 4) -> Melody:
    """Read a MIDI file and return the melody the style model scores (see :func:`melody_from_sequence`).

    Raises a :class:`~labkit.errors.LabkitError` that names the file when it
    cannot be read or holds no usable melody. ``source`` is the path.

    Example:
        >>> from labkit.corpus import tune_path
        >>> m = melody_from_file(tune_path("essen-kinder0-0001"))
        >>> len(m.pitches) > 10
        True

    Notebook: 07_style_index.ipynb
    """
    from labkit.midi_io import read_midi

    melody = melody_from_sequence(read_midi(path), strategy=strategy, min_notes=min_notes,
                                  steps_per_quarter=steps_per_quarter)
    return melody.replace(source=os.fspath(path))


def corpus_style_data(styles: Sequence[str] | None = None, splits: Sequence[str] | None = None, *,
                      max_per_style: int | None = None, seed: int = 0, root=None,
                      collections: Sequence[str] | None = None, subsets: Sequence[str] | None = None):
    """Corpus tunes as style-model inputs: ``(melodies, rows)``.

    Each tune is read (:func:`labkit.corpus.read_tune`), its whole melody taken
    (:func:`labkit.melody.tune_melody`: a chorale's soprano) and its key
    estimated (:func:`with_estimated_key`); ``source`` is the tune id. The
    cached :func:`labkit.data.load_melodies` is not used because it keeps only
    the events, and the features need each tune's time signature.

    Args:
        styles, splits, collections, subsets: manifest filters (``None``: all);
            see :func:`labkit.corpus.select`.
        max_per_style: keep at most this many tunes of each style, drawn at
            random (numpy Generator from ``seed``), in manifest order.
        root: corpus folder (default: the shipped corpus).

    Returns:
        ``melodies``: list of :class:`~labkit.melody.Melody`; ``rows``: the
        manifest rows (``pandas.DataFrame``, index reset) of the same tunes, in
        the same order. ``rows.attrs["skipped"]`` is ``{tune id: problem}`` for
        the tunes that could not be read (left out; the others are all kept).

    Example:
        >>> mels, rows = corpus_style_data(["german", "irish"], ["test"], max_per_style=5)
        >>> len(mels), rows["style"].value_counts().to_dict()
        (10, {'german': 5, 'irish': 5})

    Notebook: 06_style_features.ipynb
    """
    from labkit.corpus import load_manifest, read_tune, select
    from labkit.melody import tune_melody

    manifest = load_manifest(root)
    rows = select(manifest, styles=list(styles) if styles is not None else None, split=splits,
                  collections=collections, subsets=subsets)
    if max_per_style is not None:
        if int(max_per_style) < 1:
            raise ConfigError(f"max_per_style must be at least 1, got {max_per_style}")
        rng = np.random.default_rng(seed)
        keep = []
        for style in sorted(set(rows["style"])):
            where = np.flatnonzero(rows["style"].to_numpy() == style)
            keep.extend(rng.permutation(where)[: int(max_per_style)].tolist())
        rows = rows.iloc[sorted(keep)].reset_index(drop=True)
    melodies, kept, skipped = [], [], {}
    for i, row in enumerate(rows.to_dict("records")):
        try:
            melody = tune_melody(read_tune(row, root))
        except LabkitError as exc:
            skipped[row["id"]] = exc.problem
            continue
        melodies.append(with_estimated_key(melody).replace(source=row["id"]))
        kept.append(i)
    rows = rows.iloc[kept].reset_index(drop=True)
    rows.attrs["skipped"] = skipped
    return melodies, rows


# ----------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------

def default_target(styles: Sequence[str]) -> str:
    """``"irish"`` if the model knows it, else its first style.

    >>> default_target(("chinese", "german")), default_target(("german", "irish"))
    ('chinese', 'irish')

    Notebook: 07_style_index.ipynb
    """
    return DEFAULT_TARGET if DEFAULT_TARGET in styles else str(styles[0])


def _model_proba(model, melodies) -> tuple[np.ndarray, np.ndarray | None]:
    """Style probabilities ``[n, C]`` and, where the model keeps its figures, typicality ``[n]`` (else ``None``)."""
    if getattr(model, "typical", None) is None:
        return np.asarray(model.predict_proba(melodies), dtype=np.float64), None
    X = model.features(melodies)          # computed once for both
    return (np.asarray(model.proba_from_features(X), dtype=np.float64),
            np.asarray(model.typicality_from_features(X), dtype=np.float64))


# ----------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------

def score_melodies(model, melodies: Sequence[Melody], target: str | None = None) -> list[dict]:
    """Style probabilities of melodies: one ``{"path", "style", "index", "probabilities", "typicality"}`` each.

    ``path`` is the melody's ``source``; ``style`` the most probable style;
    ``probabilities`` ``{style: p}`` (floats summing to 1, in the model's style
    order); ``index`` the probability of ``target`` (default :func:`default_target`);
    ``typicality`` how typical the melody is of the model's training tunes
    (:class:`labkit.style.model.Typicality`; below :data:`labkit.style.model.TYPICAL_FLOOR`
    it is unlike every style the model knows, and its style means little).
    Models saved without typicality figures give no ``typicality``.

    Notebook: 07_style_index.ipynb
    """
    target = target if target is not None else default_target(model.styles)
    if target not in model.styles:
        raise ConfigError(f"target style {target!r} is not one of the model's styles: {', '.join(model.styles)}")
    if not len(melodies):
        return []
    proba, typical = _model_proba(model, list(melodies))
    out = []
    for i, (melody, p) in enumerate(zip(melodies, proba)):
        probabilities = {s: float(v) for s, v in zip(model.styles, p)}
        out.append({"path": melody.source, "style": model.styles[int(np.argmax(p))],
                    "index": probabilities[target], "probabilities": probabilities})
        if typical is not None:
            out[-1]["typicality"] = float(typical[i])
    return out


def score_paths(paths: Iterable[str | os.PathLike], model=None, target: str | None = None, *,
                strategy: str = "skyline", min_notes: int = MIN_NOTES) -> list[dict]:
    """Score MIDI files and folders: one record per file, in order (see :func:`score_melodies`).

    Args:
        paths: files and folders (searched recursively for ``.mid``/``.midi``/``.kar``).
        model: a style model, or a folder holding one, or ``None`` for the shipped model.
        target: the style whose probability is the index (default: :func:`default_target`).
        strategy, min_notes: how the melody is found (:func:`melody_from_file`).

    Returns:
        A list of dicts: ``{"path", "style", "index", "probabilities"}`` for a
        scored file, ``{"path", "error"}`` for one that could not be used
        (unreadable, not MIDI, no melody; a broken or looping link, a folder named
        like a MIDI file: one record per entry of :func:`labkit._common.find_midi_files`).
        Bad files never stop the others. ``path`` is printable text
        (:func:`labkit._common.display_name`: undecodable bytes of a name shown as U+FFFD).

    Raises:
        CheckpointError: the model cannot be loaded. ConfigError: ``target``
        is not one of its styles.

    Example:
        >>> from labkit.corpus import tune_path
        >>> records = score_paths([tune_path("essen-kinder0-0001"), "no_such_file.mid"], target="german")
        >>> records[0]["style"], records[0]["index"] > 0.5, records[1]["error"]
        ('german', True, 'no such file or folder')

    Notebook: 07_style_index.ipynb
    """
    if model is None or isinstance(model, (str, os.PathLike)):
        model = load_style_model(model)
    target = target if target is not None else default_target(model.styles)
    if target not in model.styles:
        raise ConfigError(f"target style {target!r} is not one of the model's styles: {', '.join(model.styles)}")
    records: list[dict] = []
    melodies, slots = [], []
    for path, problem in find_midi_files(paths):
        if problem is None:
            try:
                melodies.append(melody_from_file(path, strategy=strategy, min_notes=min_notes))
                slots.append(len(records))
                records.append({"path": display_name(path)})
                continue
            except LabkitError as exc:
                problem = exc.problem
        records.append({"path": display_name(path), "error": display_name(problem)})
    for slot, scored in zip(slots, score_melodies(model, melodies, target)):
        records[slot] = {**scored, "path": records[slot]["path"]}
    return records


def format_record(record: dict, target: str) -> str:
    """One line of ``python -m labkit style score`` for a record of :func:`score_paths`.

    >>> format_record({"path": "a.mid", "style": "irish", "index": 0.75,
    ...                "probabilities": {"german": 0.25, "irish": 0.75}}, "irish")
    'a.mid: irish  index(irish)=0.750  german 0.250, irish 0.750'
    >>> format_record({"path": "b.mid", "error": "not a MIDI file"}, "irish")
    'b.mid: error: not a MIDI file'
    >>> format_record({"path": "c.mid", "style": "german", "index": 0.1, "typicality": 0.004,
    ...                "probabilities": {"german": 0.9, "irish": 0.1}}, "irish")
    'c.mid: german  index(irish)=0.100  german 0.900, irish 0.100  typicality 0.004 (unlike every style it knows)'

    Notebook: 07_style_index.ipynb
    """
    if "error" in record:
        return f"{record['path']}: error: {record['error']}"
    probs = ", ".join(f"{s} {p:.3f}" for s, p in record["probabilities"].items())
    line = f"{record['path']}: {record['style']}  index({target})={record['index']:.3f}  {probs}"
    if "typicality" in record:
        line += f"  typicality {describe_typicality(record['typicality'])}"
    return line


def describe_typicality(value: float) -> str:
    """A typicality as ``style score`` and the demo report print it: flagged below the floor.

    >>> describe_typicality(0.4632), describe_typicality(0.004)
    ('0.463', '0.004 (unlike every style it knows)')

    Notebook: 12_style_research_appendix.ipynb
    """
    return f"{value:.3f}" + (" (unlike every style it knows)" if value < TYPICAL_FLOOR else "")


# ----------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------

def _figures(y, proba, styles) -> dict:
    pred = proba.argmax(1)
    C = len(styles)
    cm = confusion_matrix(y, pred, C)
    support = cm.sum(axis=1)
    return {"tunes": int(len(y)), "balanced_accuracy": balanced_accuracy(y, pred, C),
            "accuracy": float(np.mean(pred == y)), "log_loss": log_loss(proba, y), "ece": ece(proba, y),
            "recall": {s: (float(cm[i, i] / support[i]) if support[i] else None) for i, s in enumerate(styles)},
            "confusion": cm.tolist()}


def train_style_model(out: str | os.PathLike, styles: Sequence[str] | None = None, *,
                      variant: str = "processed", paragraph: bool = False, ensemble: bool = False,
                      combine: str = "stack", ngram_dims: int = DEFAULT_NGRAM_DIMS, l2: float = DEFAULT_L2,
                      steps: int = 300, folds: int = 5, max_per_style: int | None = None, val_fraction: float = 0.1,
                      seed: int = 0, root=None, log: Callable[[str], None] | None = print) -> dict:
    """Train a style model on the corpus, measure it, and save it with its figures in ``out``.

    Steps: read the tunes of ``styles`` (:func:`corpus_style_data`); compute
    their features once; ``folds``-fold stratified cross-validation by tune on
    the train+valid splits (each fold standardises and fits on its own
    training part; 0 skips it); fit the final model on train+valid (weights on
    all but a stratified ``val_fraction``, which fits the temperature); score
    the test split, which nothing above has seen.

    Args:
        out: folder for ``model.json``, ``arrays.npz`` and ``metrics.json``.
        styles: manifest style labels (default :data:`SHIPPED_STYLES`).
        variant, paragraph, ngram_dims: feature settings (:func:`labkit.style.features.feature_matrix`).
        ensemble: a :class:`~labkit.style.model.GroupEnsemble` of the paper's five
            feature groups (``combine``: ``"stack"`` or ``"mean"``) instead of one
            :class:`~labkit.style.model.StyleModel`.
        l2, steps: the logistic regression (:func:`labkit.style.logreg.fit_logreg`).
        folds: cross-validation folds (0: none).
        max_per_style: at most this many tunes per style and split (a quick run).
        val_fraction: share of train+valid that calibrates the temperature.
        seed: subsampling, folds and the calibration split.
        log: called with one line of progress at a time (``None``: silent).

    Returns:
        The figures written to ``metrics.json``: ``styles``, ``settings``,
        ``tunes`` (per split and style), ``cv`` (mean and std of the folds'
        balanced accuracy, pooled accuracy, log loss, ECE, confusion matrix),
        ``test`` (the same on the test split, with the final model), ``seconds``.

    Example:
        >>> figures = train_style_model("out/style", ["german", "chinese"], max_per_style=50, folds=3)  # doctest: +SKIP
        >>> figures["test"]["balanced_accuracy"] > 0.8                                                  # doctest: +SKIP
        True

    Notebook: 07_style_index.ipynb
    """
    say = log or (lambda line: None)
    check_output_folder(out, what="model folder")   # before the work: a file, /proc, no permission
    _check_model_folder(out)                 # before the work: a folder of other files is never replaced
    styles = tuple(sorted(set(styles if styles is not None else SHIPPED_STYLES)))
    if len(styles) < 2:
        raise ConfigError(f"a style model needs at least two styles, got {styles}")
    folds = int(folds)
    if folds == 1 or folds < 0:
        raise ConfigError(f"folds must be 0 (no cross-validation) or at least 2, got {folds}")
    import pandas as pd

    started = time.perf_counter()
    melodies, parts = [], []
    for split_names in (("train", "valid"), ("test",)):
        m, r = corpus_style_data(styles, split_names, max_per_style=max_per_style, seed=seed, root=root)
        melodies += m
        parts.append(r)
    rows = pd.concat(parts, ignore_index=True)
    skipped = {**parts[0].attrs.get("skipped", {}), **parts[1].attrs.get("skipped", {})}
    missing = [s for s in styles if not (rows["style"] == s).any()]
    if missing:
        raise CorpusError(f"the corpus has no tunes of style(s) {', '.join(missing)}")
    labels = rows["style"].to_numpy()
    y = np.array([styles.index(s) for s in labels], dtype=np.int32)
    fit_rows = rows["split"].isin(["train", "valid"]).to_numpy()
    test_rows = ~fit_rows
    say(f"read {len(melodies)} tunes of {len(styles)} styles ({int(fit_rows.sum())} train+valid, "
        f"{int(test_rows.sum())} test, {len(skipped)} unreadable) in {time.perf_counter() - started:.0f} s")
    groups = None
    member_groups = F.PAPER_GROUPS if ensemble else None
    if ensemble:
        groups = F._check_groups({g for gs in member_groups.values() for g in gs})
    t = time.perf_counter()
    X, names = F.feature_matrix(melodies, variant, groups, paragraph=paragraph, ngram_dims=ngram_dims)
    say(f"features: {X.shape[1]} columns ({variant}{', paragraph' if paragraph else ''}) "
        f"in {time.perf_counter() - t:.0f} s")

    cv = None
    Xf, yf = X[fit_rows], y[fit_rows]
    if folds:
        t = time.perf_counter()
        columns = {k: F.group_columns(names, v) for k, v in member_groups.items()} if ensemble else None
        result = cross_validate_logreg(Xf, yf, k=folds, seed=seed, l2=l2, steps=steps, num_classes=len(styles),
                                  ensemble=columns, combine=combine, names=names)
        cv = {"folds": folds, **_figures(yf, result["proba"], styles),
              "balanced_accuracy": result["balanced_accuracy"],
              "balanced_accuracy_std": result["balanced_accuracy_std"],
              "fold_balanced_accuracy": [float(v) for v in result["fold_balanced_accuracy"]],
              "seconds": time.perf_counter() - t}
        say(f"{folds}-fold cross-validation by tune on train+valid: balanced accuracy "
            f"{cv['balanced_accuracy']:.4f} +- {cv['balanced_accuracy_std']:.4f}, accuracy {cv['accuracy']:.4f} "
            f"({cv['seconds']:.0f} s)")

    t = time.perf_counter()
    common = dict(styles=styles, variant=variant, paragraph=paragraph, ngram_dims=ngram_dims, l2=l2, steps=steps,
                  val_fraction=val_fraction, seed=seed)
    if ensemble:
        model = GroupEnsemble.fit_features(Xf, labels[fit_rows], names, member_groups=member_groups,
                                             combine=combine, **common)
    else:
        model = StyleModel.fit_features(Xf, labels[fit_rows], names, groups=groups, **common)
    fit_seconds = time.perf_counter() - t
    test = None
    if test_rows.any():
        test = _figures(y[test_rows], model.proba_from_features(X[test_rows]), styles)
        say(f"test split ({test['tunes']} tunes): balanced accuracy {test['balanced_accuracy']:.4f}, "
            f"accuracy {test['accuracy']:.4f}, ECE {test['ece']:.3f}")
        if getattr(model, "typical", None) is not None:
            # tunes of the model's own styles that it would call unlike every style: its false alarms
            test["below_typical_floor"] = float(np.mean(model.typicality_from_features(X[test_rows]) < TYPICAL_FLOOR))
            say(f"test split tunes with typicality below {TYPICAL_FLOOR}: {test['below_typical_floor']:.1%}")
    counts = {split: {s: int(((rows["split"] == split) & (rows["style"] == s)).sum()) for s in styles}
              for split in ("train", "valid", "test")}
    figures = {
        "styles": list(styles),
        "kind": type(model).__name__,
        "settings": {"variant": variant, "paragraph": bool(paragraph), "ngram_dims": int(ngram_dims),
                     "features": len(names), "ensemble": bool(ensemble), "combine": combine if ensemble else None,
                     "l2": l2, "steps": steps, "val_fraction": val_fraction, "seed": seed,
                     "max_per_style": max_per_style, "class_weight": "balanced",
                     "key": "estimated (labkit.melody.estimate_key)", "temperature": float(model.temperature)},
        "tunes": counts,
        "unreadable": skipped,
        "cv": cv,
        "test": test,
        "fit_seconds": fit_seconds,
        "seconds": time.perf_counter() - started,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
    }
    out = Path(out)
    model.save(out, extra_files={METRICS_FILE: (json.dumps(figures, indent=1) + "\n").encode("utf-8")})
    say(f"saved the {type(model).__name__} to {out} ({_folder_size(out) / 1e6:.2f} MB)")
    return figures


def _folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file())
