"""The shipped corpus: where it lives, its manifest, its splits, and reading its tunes.

The course ships about eleven thousand tunes as standard MIDI files under
``data/midi/<collection>/<id>.mid``, described one row per tune by
``data/manifest.csv`` (columns: :data:`MANIFEST_COLUMNS`). They are converted
from the corpus that ships inside the ``music21`` pip package:

=============  ==========================================  ===================================
collection     source (music21 corpus)                     style(s)
=============  ==========================================  ===================================
``essen``      Essen Folksong Collection (``essenFolksong``) ``german``, ``chinese``,
                                                           ``lorraine``, ``luxembourg``, ``irish``
``oneills``    O'Neill's Music of Ireland, 1850             ``irish``
``ryans``      Ryan's Mammoth Collection, 1883              ``fiddle``
``airds``      Aird's Airs (6 volumes, 1778-1803)           ``scottish``
``bach``       J. S. Bach's four-part chorales              ``chorale``
=============  ==========================================  ===================================

Reading it::

    >>> from labkit import corpus
    >>> manifest = corpus.load_manifest()                         # doctest: +SKIP
    >>> train = corpus.select(manifest, styles="irish", split="train")  # doctest: +SKIP
    >>> sequence = corpus.read_tune(train.iloc[0])                # doctest: +SKIP

Building it from music21's collections is a maintainer tool, :mod:`labkit.corpus.build`
(``python -m labkit corpus build``); this module never imports music21.

Notebook: 02_preprocessing.ipynb
"""
from __future__ import annotations

import hashlib
import importlib.resources
import os
import re
from pathlib import Path

from labkit.errors import ConfigError, CorpusError

#: Columns of ``manifest.csv``, in order. ``index`` is the tune's position
#: (1-based) in its source file; ``catalogue`` is the collection's own number
#: for it (Essen code, O'Neill's number, BWV and Riemenschneider number);
#: ``notes`` counts the melody's notes (ties merged; the soprano of a chorale);
#: ``path`` is relative to the corpus root.
MANIFEST_COLUMNS: tuple[str, ...] = (
    "id", "collection", "subset", "style", "title", "source", "index", "catalogue",
    "meter", "key", "notes", "duration_quarters", "duration_seconds", "path", "split",
)

#: Fractions of tunes in the train / valid / test splits (by a hash of the id).
SPLIT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)
SPLITS: tuple[str, ...] = ("train", "valid", "test")

MANIFEST_FILE = "manifest.csv"

_ID_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def _repo_data_dir() -> Path:
    """The ``data/`` folder of the repository that holds this labkit package (may not exist)."""
    return Path(__file__).resolve().parent.parent / "data"


def corpus_root() -> Path:
    """The folder that holds ``manifest.csv`` and ``midi/``.

    In order: the environment variable ``LABKIT_DATA``; the repository's
    ``data/`` beside the ``labkit`` package when it holds ``manifest.csv``
    (a clone, or an editable install); the installed package ``labkit_data``
    (``pip install`` of the repository, as in Colab).

    Raises:
        CorpusError: none of these holds the corpus.

    Notebook: 02_preprocessing.ipynb

    >>> (corpus_root() / "manifest.csv").exists()   # doctest: +SKIP
    True
    """
    env = os.environ.get("LABKIT_DATA", "").strip()
    if env:
        return Path(env).expanduser()
    repo = _repo_data_dir()
    if (repo / MANIFEST_FILE).is_file():
        return repo
    try:
        resource = importlib.resources.files("labkit_data")
        candidate = Path(str(resource))
        if (candidate / MANIFEST_FILE).is_file():
            return candidate
    except (ModuleNotFoundError, TypeError, ValueError):
        pass
    raise CorpusError(
        "the shipped corpus was not found: set LABKIT_DATA to a folder with manifest.csv, "
        "install the repository (pip install .), or build it with `python -m labkit corpus build`",
        repo / MANIFEST_FILE,
    )


def load_manifest(root: str | os.PathLike | None = None):
    """Read and check ``manifest.csv``: one row per tune, columns :data:`MANIFEST_COLUMNS`.

    Args:
        root: corpus folder; default :func:`corpus_root`.

    Returns:
        ``pandas.DataFrame`` with string columns (empty string, never NaN, for a
        missing subset/meter/key), int ``index`` and ``notes``, float durations.

    Raises:
        CorpusError: the file is missing, unreadable, lacks a column, has a
        duplicate or malformed id, or a bad number; the message names the file.

    Notebook: 02_preprocessing.ipynb

    >>> m = load_manifest()                 # doctest: +SKIP
    >>> m.groupby("style").size()["irish"]  # doctest: +SKIP
    1900
    """
    import pandas as pd

    root = Path(root) if root is not None else corpus_root()
    path = root / MANIFEST_FILE
    if not path.is_file():
        raise CorpusError("manifest not found (build it with `python -m labkit corpus build`)", path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except Exception as exc:  # pandas raises many kinds: report them as one
        raise CorpusError(f"not a readable CSV manifest ({type(exc).__name__}: {exc})", path) from None
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise CorpusError(f"manifest lacks column(s) {', '.join(missing)}", path)
    bad_ids = frame.loc[~frame["id"].str.match(_ID_RE.pattern), "id"]
    if len(bad_ids):
        raise CorpusError(f"malformed tune id {bad_ids.iloc[0]!r} (row {bad_ids.index[0] + 2})", path)
    dupes = frame.loc[frame["id"].duplicated(), "id"]
    if len(dupes):
        raise CorpusError(f"duplicate tune id {dupes.iloc[0]!r}", path)
    bad_splits = frame.loc[~frame["split"].isin(SPLITS), "split"]
    if len(bad_splits):
        raise CorpusError(f"unknown split {bad_splits.iloc[0]!r} (expected one of {SPLITS})", path)
    for column, kind in (("index", int), ("notes", int), ("duration_quarters", float), ("duration_seconds", float)):
        try:
            frame[column] = frame[column].astype(kind)
        except (ValueError, TypeError):
            bad = next(v for v in frame[column] if not _parses_as(v, kind))
            raise CorpusError(f"column {column!r} holds {bad!r}, not a number", path) from None
    return frame


def _parses_as(value, kind) -> bool:
    try:
        kind(value)
        return True
    except (ValueError, TypeError):
        return False


def split_of(tune_id: str) -> str:
    """The split (``"train"``, ``"valid"`` or ``"test"``) of a tune, from a hash of its id.

    The first 8 bytes of ``sha1(id)`` give a number u in [0, 1); u < 0.8 is
    train, u < 0.9 valid, else test. A tune keeps its split across rebuilds,
    and all windows cut from one tune share it (split by tune, never by window).

    Notebook: 02_preprocessing.ipynb

    >>> split_of("essen-kinder0-0001") in ("train", "valid", "test")
    True
    >>> split_of("oneills-0001") == split_of("oneills-0001")
    True
    """
    digest = hashlib.sha1(str(tune_id).encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    train, valid, _ = SPLIT_FRACTIONS
    if u < train:
        return "train"
    if u < train + valid:
        return "valid"
    return "test"


def _row_id_and_path(row_or_id) -> tuple[str, str | None]:
    if isinstance(row_or_id, str):
        return row_or_id, None
    try:
        tune_id = row_or_id["id"]
    except (KeyError, TypeError, IndexError):
        raise ConfigError(f"expected a tune id or a manifest row with an 'id', got {type(row_or_id).__name__}") from None
    try:
        rel = row_or_id["path"]
    except (KeyError, TypeError, IndexError):
        rel = None
    return str(tune_id), (str(rel) if rel else None)


def tune_path(row_or_id, root: str | os.PathLike | None = None) -> Path:
    """Path of a tune's MIDI file, from its id (``"oneills-0001"``) or its manifest row.

    An id alone is enough: the file is ``midi/<collection>/<id>.mid`` and the
    collection is the id's first part.

    Raises:
        CorpusError: the file does not exist.

    Notebook: 02_preprocessing.ipynb

    >>> tune_path("essen-kinder0-0001").name   # doctest: +SKIP
    'essen-kinder0-0001.mid'
    """
    tune_id, rel = _row_id_and_path(row_or_id)
    if not _ID_RE.match(tune_id):
        raise CorpusError(f"{tune_id!r} is not a tune id (lower-case words joined by '-')")
    root = Path(root) if root is not None else corpus_root()
    path = root / rel if rel else root / "midi" / tune_id.split("-", 1)[0] / f"{tune_id}.mid"
    if not path.is_file():
        raise CorpusError(f"tune {tune_id!r} has no MIDI file (rebuild with `python -m labkit corpus build`)", path)
    return path


def read_tune(tune_id_or_row, root: str | os.PathLike | None = None):
    """Read one tune of the corpus as a ``note_seq.NoteSequence``.

    Melodies have one instrument (0); chorales four (0 soprano, 1 alto,
    2 tenor, 3 bass). Times are in seconds; the tempo, time signature and key
    signature annotations come from the source.

    Args:
        tune_id_or_row: a tune id or a manifest row (``pandas.Series`` or dict).
        root: corpus folder; default :func:`corpus_root`.

    Raises:
        CorpusError: no such tune file. MidiReadError: the file cannot be read.

    Notebook: 02_preprocessing.ipynb

    >>> seq = read_tune("essen-kinder0-0001")   # doctest: +SKIP
    >>> len(seq.notes)                          # doctest: +SKIP
    30
    """
    from labkit.midi_io import read_midi

    return read_midi(tune_path(tune_id_or_row, root))


def _as_set(values, name: str) -> set[str] | None:
    if values is None:
        return None
    if isinstance(values, str):
        return {values}
    try:
        return {str(v) for v in values}
    except TypeError:
        raise ConfigError(f"{name} must be a string or a list of strings, got {values!r}") from None


def select(manifest, styles=None, collections=None, subsets=None, split=None):
    """Rows of the manifest that match every filter given (each a name or a list of names).

    Args:
        manifest: the ``DataFrame`` from :func:`load_manifest`.
        styles, collections, subsets: keep rows whose column is one of these.
        split: ``"train"``, ``"valid"``, ``"test"`` or a list of them.

    Returns:
        A new ``DataFrame`` (index reset), in manifest order.

    Raises:
        ConfigError: a value names no style/collection/subset/split in the
        manifest (a typo would otherwise select nothing, silently).

    Notebook: 02_preprocessing.ipynb

    >>> kinder = select(load_manifest(), subsets="kinder0")   # doctest: +SKIP
    >>> len(kinder)                                           # doctest: +SKIP
    213
    """
    mask = None
    for column, values, name in (
        ("style", styles, "styles"),
        ("collection", collections, "collections"),
        ("subset", subsets, "subsets"),
        ("split", split, "split"),
    ):
        wanted = _as_set(values, name)
        if wanted is None:
            continue
        known = set(manifest[column]) | (set(SPLITS) if column == "split" else set())
        unknown = sorted(wanted - known)
        if unknown:
            raise ConfigError(
                f"{name}: {', '.join(map(repr, unknown))} not in the manifest "
                f"(known: {', '.join(sorted(k for k in known if k))})"
            )
        hit = manifest[column].isin(wanted)
        mask = hit if mask is None else (mask & hit)
    out = manifest if mask is None else manifest[mask]
    return out.reset_index(drop=True)


