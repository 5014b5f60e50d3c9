"""The style index at work: training the style model on the corpus, scoring MIDI files with it.

:mod:`labkit.style` has the classifier; this module puts it to use for the
command line (``python -m labkit style train|score``), the demo and the notebooks:

* :func:`corpus_style_data`: the corpus tunes of some styles and splits, as
  melodies ready for :func:`labkit.features.feature_matrix`, with their manifest rows;
* :func:`train_style_model`: features, k-fold cross-validation by tune on the
  train+valid splits, the final model, its test-split figures, all saved in one
  folder (``model.json``, ``arrays.npz``, ``metrics.json``);
* :func:`load_style_model`: a saved :class:`~labkit.style.StyleModel` or
  :class:`~labkit.style.GroupEnsemble`, by default the one shipped in
  ``labkit/assets/style_model/`` (trained by ``make style-model``);
* :func:`melody_from_file` and :func:`score_paths`: MIDI files (or folders of
  them) -> one record per file with the most likely style, each style's
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

from labkit.errors import CheckpointError, ConfigError, CorpusError, LabkitError
from labkit.melody import Melody

#: The shipped style model: ``model.json`` + ``arrays.npz`` (+ ``metrics.json``), inside the package.
SHIPPED_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "style_model"
METRICS_FILE = "metrics.json"

#: Styles of the shipped model (the manifest's labels).
SHIPPED_STYLES: tuple[str, ...] = ("chinese", "chorale", "fiddle", "german", "irish")

#: File name endings that :func:`find_midi_files` collects from folders.
MIDI_SUFFIXES: tuple[str, ...] = (".mid", ".midi")

#: Fewest notes a melody found in a MIDI file must have to be scored.
MIN_NOTES = 4

#: Feature and penalty settings of :func:`train_style_model` (and ``style train``). 256 n-gram buckets
#: per family classified five styles as well as 2,048 (86.5% against 85.7% balanced accuracy, 5-fold CV
#: on every tune) in an eighth of the time, and L2 = 0.03 beat 1e-3 (0.825) and 0.1 (0.862).
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
        >>> m = melody_from_file("data/midi/essen/essen-kinder0-0001.mid")   # doctest: +SKIP
        >>> len(m.pitches) > 10                                              # doctest: +SKIP
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
        >>> mels, rows = corpus_style_data(["german", "irish"], ["test"], max_per_style=5)  # doctest: +SKIP
        >>> len(mels), rows["style"].value_counts().to_dict()                               # doctest: +SKIP
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

def shipped_style_model_dir() -> Path:
    """``<labkit package>/assets/style_model`` (found from the package folder, so it works installed).

    Notebook: 07_style_index.ipynb
    """
    return SHIPPED_MODEL_DIR


def load_style_model(directory: str | os.PathLike | None = None):
    """A saved style model: :class:`~labkit.style.StyleModel` or :class:`~labkit.style.GroupEnsemble`.

    The kind is read from ``model.json``. ``directory=None`` loads the shipped
    model. Raises :class:`~labkit.errors.CheckpointError` naming the folder
    when it holds no model (for the shipped one: how to train it).

    Example:
        >>> model = load_style_model()          # doctest: +SKIP
        >>> model.styles                        # doctest: +SKIP
        ('chinese', 'chorale', 'fiddle', 'german', 'irish')

    Notebook: 07_style_index.ipynb
    """
    from labkit.style import GroupEnsemble, StyleModel

    where = Path(directory) if directory is not None else SHIPPED_MODEL_DIR
    config_path = where / "model.json"
    if not config_path.is_file():
        hint = (" (train it with `make style-model`)" if directory is None
                else " (a folder written by `python -m labkit style train --out DIR`)")
        raise CheckpointError(f"no style model here: model.json is missing{hint}", where)
    try:
        kind = json.loads(config_path.read_text(encoding="utf-8")).get("kind")
    except (ValueError, UnicodeDecodeError, AttributeError) as exc:
        raise CheckpointError(f"not valid JSON ({exc})", config_path) from None
    if kind == "GroupEnsemble":
        return GroupEnsemble.load(where)
    if kind == "StyleModel":
        return StyleModel.load(where)
    raise CheckpointError(f"holds a model of kind {kind!r}, not a style model", config_path)


def style_model_metrics(directory: str | os.PathLike | None = None) -> dict:
    """The figures saved beside a model by :func:`train_style_model` (``metrics.json``).

    Notebook: 07_style_index.ipynb
    """
    path = (Path(directory) if directory is not None else SHIPPED_MODEL_DIR) / METRICS_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError("no metrics.json beside the style model", path) from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read the style model's figures ({exc})", path) from None


def default_target(styles: Sequence[str]) -> str:
    """``"irish"`` if the model knows it, else its first style.

    >>> default_target(("chinese", "german")), default_target(("german", "irish"))
    ('chinese', 'irish')
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

def find_midi_files(paths: Iterable[str | os.PathLike]) -> list[tuple[str, str | None]]:
    """Expand files and folders into ``(path, problem)`` pairs, in the order given.

    A folder contributes every ``.mid``/``.midi`` file below it (recursively,
    sorted); a folder with none gives one entry with a problem, and so does a
    path that does not exist. A file named directly is taken whatever its name
    (reading it will tell whether it is MIDI).

    Notebook: 07_style_index.ipynb
    """
    found: list[tuple[str, str | None]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES)
            if not files:
                found.append((os.fspath(raw), f"folder holds no {'/'.join(MIDI_SUFFIXES)} files"))
            found.extend((str(p), None) for p in files)
        elif path.exists():
            found.append((os.fspath(raw), None))
        else:
            found.append((os.fspath(raw), "no such file or folder"))
    return found


def score_melodies(model, melodies: Sequence[Melody], target: str | None = None) -> list[dict]:
    """Style probabilities of melodies: one ``{"path", "style", "index", "probabilities", "typicality"}`` each.

    ``path`` is the melody's ``source``; ``style`` the most probable style;
    ``probabilities`` ``{style: p}`` (floats summing to 1, in the model's style
    order); ``index`` the probability of ``target`` (default :func:`default_target`);
    ``typicality`` how typical the melody is of the model's training tunes
    (:class:`labkit.style.Typicality`; below :data:`labkit.style.TYPICAL_FLOOR`
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
        paths: files and folders (searched recursively for ``.mid``/``.midi``).
        model: a style model, or a folder holding one, or ``None`` for the shipped model.
        target: the style whose probability is the index (default: :func:`default_target`).
        strategy, min_notes: how the melody is found (:func:`melody_from_file`).

    Returns:
        A list of dicts: ``{"path", "style", "index", "probabilities"}`` for a
        scored file, ``{"path", "error"}`` for one that could not be used
        (unreadable, not MIDI, no melody). Bad files never stop the others.

    Raises:
        CheckpointError: the model cannot be loaded. ConfigError: ``target``
        is not one of its styles.

    Example:
        >>> records = score_paths(["my_tunes/"], target="german")    # doctest: +SKIP
        >>> records[0]["style"], round(records[0]["index"], 2)       # doctest: +SKIP
        ('german', 0.97)

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
                records.append({"path": path})
                continue
            except LabkitError as exc:
                problem = exc.problem
        records.append({"path": path, "error": problem})
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
    """
    from labkit.style import TYPICAL_FLOOR

    return f"{value:.3f}" + (" (unlike every style it knows)" if value < TYPICAL_FLOOR else "")


# ----------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------

def _figures(y, proba, styles) -> dict:
    from labkit import style as S

    pred = proba.argmax(1)
    C = len(styles)
    cm = S.confusion_matrix(y, pred, C)
    support = cm.sum(axis=1)
    return {"tunes": int(len(y)), "balanced_accuracy": S.balanced_accuracy(y, pred, C),
            "accuracy": float(np.mean(pred == y)), "log_loss": S.log_loss(proba, y), "ece": S.ece(proba, y),
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
        variant, paragraph, ngram_dims: feature settings (:func:`labkit.features.feature_matrix`).
        ensemble: a :class:`~labkit.style.GroupEnsemble` of the paper's five
            feature groups (``combine``: ``"stack"`` or ``"mean"``) instead of one
            :class:`~labkit.style.StyleModel`.
        l2, steps: the logistic regression (:func:`labkit.style.fit_logreg`).
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
    from labkit import features as F
    from labkit import style as S

    say = log or (lambda line: None)
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
        result = S.cross_validate(Xf, yf, k=folds, seed=seed, l2=l2, steps=steps, num_classes=len(styles),
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
        model = S.GroupEnsemble.fit_features(Xf, labels[fit_rows], names, member_groups=member_groups,
                                             combine=combine, **common)
    else:
        model = S.StyleModel.fit_features(Xf, labels[fit_rows], names, groups=groups, **common)
    fit_seconds = time.perf_counter() - t
    test = None
    if test_rows.any():
        test = _figures(y[test_rows], model.proba_from_features(X[test_rows]), styles)
        say(f"test split ({test['tunes']} tunes): balanced accuracy {test['balanced_accuracy']:.4f}, "
            f"accuracy {test['accuracy']:.4f}, ECE {test['ece']:.3f}")
        if getattr(model, "typical", None) is not None:
            # tunes of the model's own styles that it would call unlike every style: its false alarms
            test["below_typical_floor"] = float(np.mean(model.typicality_from_features(X[test_rows]) < S.TYPICAL_FLOOR))
            say(f"test split tunes with typicality below {S.TYPICAL_FLOOR}: {test['below_typical_floor']:.1%}")
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
    model.save(out)
    tmp = out / (METRICS_FILE + ".tmp")
    tmp.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out / METRICS_FILE)
    say(f"saved the {type(model).__name__} to {out} ({_folder_size(out) / 1e6:.2f} MB)")
    return figures


def _folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file())
