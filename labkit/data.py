"""The corpus as arrays: a compact cache, batches with padding and masks, augmentation.

Reading twelve thousand MIDI files and extracting their melodies takes a while,
so :func:`load_melodies` does it once and keeps the result in a compact cache
(one ``.npz`` holding every melody's events as ``int8`` in one flat array plus
offsets); later calls load it in a fraction of a second. The cache is keyed by
the manifest's content, the grid resolution and this module's format version,
so it is rebuilt by itself whenever the corpus changes.

A batch is a dict of numpy arrays::

    {"tokens": int32 [B, T + 1], "mask": float32 [B, T + 1]}

where ``mask`` is 1 on real events and 0 on padding. A model reads
``tokens[:, :-1]`` and predicts ``tokens[:, 1:]``, weighting each position by
``mask[:, 1:]``. Transposition augmentation (``augment_semitones``) is applied
to the training split only; evaluation batches are never altered.

Notebook: 02_preprocessing.ipynb
"""
from __future__ import annotations

import hashlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from labkit._common import atomic_write
from labkit.encoding import MelodyEncoding
from labkit.errors import CorpusError, LabkitError
from labkit.melody import Melody

#: Bump when the cache layout or the melody extraction changes.
CACHE_VERSION = 1


def cache_dir() -> Path:
    """Where caches live: ``$LABKIT_CACHE``, else ``~/.cache/labkit``.

    Notebook: 02_preprocessing.ipynb
    """
    return Path(os.environ.get("LABKIT_CACHE", Path.home() / ".cache" / "labkit"))


@dataclass(frozen=True)
class MelodySet:
    """Melodies of many tunes, stored flat.

    Attributes:
        events: int8 ``[total_steps]``: every melody's events (Magenta convention) one after another.
        offsets: int64 ``[n + 1]``: melody ``i`` is ``events[offsets[i]:offsets[i+1]]``.
        ids, styles, collections, splits: str arrays ``[n]`` from the manifest.
        steps_per_quarter: the grid of every melody.
        skipped: ``{tune id: reason}`` for tunes whose melody could not be extracted.
    """

    events: np.ndarray
    offsets: np.ndarray
    ids: np.ndarray
    styles: np.ndarray
    collections: np.ndarray
    splits: np.ndarray
    steps_per_quarter: int = 4
    skipped: dict | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def events_of(self, i: int) -> np.ndarray:
        """The events (int32) of melody ``i``."""
        return self.events[self.offsets[i]:self.offsets[i + 1]].astype(np.int32)

    def melody(self, i: int) -> Melody:
        """Melody ``i`` as a :class:`~labkit.melody.Melody`."""
        return Melody(self.events_of(i), steps_per_quarter=self.steps_per_quarter, source=str(self.ids[i]))

    def melodies(self) -> list[Melody]:
        return [self.melody(i) for i in range(len(self))]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def subset(self, mask_or_index) -> "MelodySet":
        """The melodies selected by a boolean mask or an index array, in that order."""
        index = np.asarray(mask_or_index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        pieces = [self.events[self.offsets[i]:self.offsets[i + 1]] for i in index]
        lengths = np.array([len(p) for p in pieces], dtype=np.int64)
        return MelodySet(
            events=np.concatenate(pieces) if pieces else np.zeros(0, np.int8),
            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            ids=self.ids[index], styles=self.styles[index], collections=self.collections[index],
            splits=self.splits[index], steps_per_quarter=self.steps_per_quarter, skipped=self.skipped)

    def split(self, name: str) -> "MelodySet":
        """The melodies of one split: ``"train"``, ``"valid"`` or ``"test"``."""
        return self.subset(self.splits == name)

    @classmethod
    def from_melodies(cls, melodies: list[Melody], *, ids=None, styles=None, collections=None,
                      splits=None) -> "MelodySet":
        """Pack melodies (all on one grid) into a set; missing labels default to ``""`` and ``"train"``."""
        n = len(melodies)
        spq = {m.steps_per_quarter for m in melodies} or {4}
        if len(spq) > 1:
            raise CorpusError(f"melodies on different grids ({sorted(spq)} steps per quarter)")
        lengths = np.array([m.num_steps for m in melodies], dtype=np.int64)
        return cls(
            events=(np.concatenate([m.events for m in melodies]) if n else np.zeros(0)).astype(np.int8),
            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            ids=np.array(ids if ids is not None else [m.source or str(i) for i, m in enumerate(melodies)]),
            styles=np.array(styles if styles is not None else [""] * n),
            collections=np.array(collections if collections is not None else [""] * n),
            splits=np.array(splits if splits is not None else ["train"] * n),
            steps_per_quarter=spq.pop())


# --- building and caching -----------------------------------------------------------

def _tune_events(args) -> tuple[str, np.ndarray | None, str]:
    """Worker: (id, path, steps_per_quarter) -> (id, events or None, reason)."""
    tune_id, path, steps_per_quarter = args
    from labkit.melody import tune_melody
    from labkit.midi_io import read_midi

    try:
        melody = tune_melody(read_midi(path), steps_per_quarter=steps_per_quarter)
        return tune_id, melody.events.astype(np.int8), ""
    except LabkitError as exc:
        return tune_id, None, exc.problem


def _manifest_digest(manifest_path: Path, steps_per_quarter: int) -> str:
    h = hashlib.sha1(manifest_path.read_bytes())
    h.update(f"spq={steps_per_quarter};v={CACHE_VERSION}".encode())
    return h.hexdigest()[:16]


def load_melodies(root=None, *, steps_per_quarter: int = 4, styles=None, collections=None,
                  use_cache: bool = True, jobs: int | None = None) -> MelodySet:
    """Every corpus tune's melody (the whole tune; chorales: the soprano), cached.

    Args:
        root: corpus folder (default :func:`labkit.corpus.corpus_root`); a folder
            written by ``python -m labkit data prepare`` works too.
        steps_per_quarter: grid of the melodies (4 = sixteenth notes).
        styles, collections: keep only these (after loading the cache).
        use_cache: read/write the cache in :func:`cache_dir`.
        jobs: worker processes for a cache miss (default: all cores).

    Returns a :class:`MelodySet`; tunes whose melody cannot be extracted are
    listed in ``skipped`` and left out (nothing else is lost).

    Example:
        >>> mels = load_melodies(styles=["german"])      # doctest: +SKIP
        >>> len(mels.split("train")), mels.melody(0)     # doctest: +SKIP

    Notebook: 02_preprocessing.ipynb
    """
    from labkit.corpus import corpus_root, load_manifest

    root = Path(root) if root is not None else corpus_root()
    manifest = load_manifest(root)
    cache_path = cache_dir() / f"melodies-{_manifest_digest(root / 'manifest.csv', steps_per_quarter)}.npz"
    mels = None
    if use_cache and cache_path.exists():
        try:
            with np.load(cache_path, allow_pickle=False) as z:
                mels = MelodySet(z["events"], z["offsets"], z["ids"], z["styles"], z["collections"],
                                 z["splits"], int(z["steps_per_quarter"]),
                                 dict(zip(z["skipped_ids"].tolist(), z["skipped_reasons"].tolist())))
        except Exception:  # a damaged cache is rebuilt, not trusted
            mels = None
    if mels is None:
        mels = _build_melody_set(root, manifest, steps_per_quarter, jobs)
        if use_cache:
            skipped = mels.skipped or {}
            arrays = dict(events=mels.events, offsets=mels.offsets, ids=mels.ids, styles=mels.styles,
                          collections=mels.collections, splits=mels.splits,
                          steps_per_quarter=np.int64(steps_per_quarter),
                          skipped_ids=np.array(list(skipped), dtype=str),
                          skipped_reasons=np.array(list(skipped.values()), dtype=str))
            atomic_write(cache_path, lambda f: np.savez_compressed(f, **arrays))
    keep = np.ones(len(mels), dtype=bool)
    if styles is not None:
        keep &= np.isin(mels.styles, list(styles))
    if collections is not None:
        keep &= np.isin(mels.collections, list(collections))
    return mels if keep.all() else mels.subset(keep)


def _build_melody_set(root: Path, manifest, steps_per_quarter: int, jobs: int | None) -> MelodySet:
    work = [(row.id, str(root / row.path), steps_per_quarter) for row in manifest.itertuples()]
    jobs = jobs or os.cpu_count() or 1
    if jobs > 1 and len(work) > 200:
        # spawn, not fork: a forked copy of a process that runs JAX's threads can deadlock
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_tune_events, work, chunksize=64))
    else:
        results = [_tune_events(w) for w in work]
    by_id = {tune_id: (events, reason) for tune_id, events, reason in results}
    rows = [row for row in manifest.itertuples() if by_id[row.id][0] is not None]
    pieces = [by_id[row.id][0] for row in rows]
    lengths = np.array([len(p) for p in pieces], dtype=np.int64)
    return MelodySet(
        events=np.concatenate(pieces) if pieces else np.zeros(0, np.int8),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        ids=np.array([r.id for r in rows], dtype=str),
        styles=np.array([r.style for r in rows], dtype=str),
        collections=np.array([r.collection for r in rows], dtype=str),
        splits=np.array([r.split for r in rows], dtype=str),
        steps_per_quarter=steps_per_quarter,
        skipped={tid: reason for tid, (events, reason) in by_id.items() if events is None})


# --- augmentation and batching -----------------------------------------------------------

def transpose_events(events: np.ndarray, semitones: int) -> np.ndarray:
    """Shift the pitches of an event array (note-offs and holds stay put).

    Notebook: 02_preprocessing.ipynb
    """
    events = np.asarray(events)
    return np.where(events >= 0, events + semitones, events).astype(events.dtype)


def _random_shift(events: np.ndarray, rng: np.random.Generator, max_semitones: int,
                  encoding: MelodyEncoding) -> int:
    """A shift in ``[-max, max]`` that keeps the melody inside the encoding's range (0 if none)."""
    pitches = events[events >= 0]
    if max_semitones == 0 or pitches.size == 0:
        return 0
    lo = max(-max_semitones, encoding.min_pitch - int(pitches.min()))
    hi = min(max_semitones, encoding.max_pitch - int(pitches.max()))
    return int(rng.integers(lo, hi + 1)) if lo <= hi else 0


def _crop(row: np.ndarray, rng: np.random.Generator, seq_len: int | None, shuffle: bool) -> np.ndarray:
    """A window of ``seq_len + 1`` entries of ``row``: at a random start when ``shuffle``, else the first."""
    if seq_len is not None and len(row) > seq_len + 1:
        start = int(rng.integers(0, len(row) - seq_len)) if shuffle else 0
        row = row[start:start + seq_len + 1]
    return row


def pad_batch(rows, width: int | None = None) -> dict:
    """Token rows of different lengths as one batch ``{"tokens": int32 [B, W], "mask": float32 [B, W]}``.

    ``W`` is ``width`` (default: the longest row); padding is token 0 with mask 0.

    >>> pad_batch([np.array([5, 6, 7]), np.array([8])])["mask"].tolist()
    [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]

    Notebook: 02_preprocessing.ipynb
    """
    width = width if width is not None else max(len(r) for r in rows)
    tokens = np.zeros((len(rows), width), dtype=np.int32)
    mask = np.zeros((len(rows), width), dtype=np.float32)
    for i, row in enumerate(rows):
        tokens[i, :len(row)] = row
        mask[i, :len(row)] = 1.0
    return {"tokens": tokens, "mask": mask}


def token_batches(rows, *, batch_size: int, seq_len: int | None = None, seed: int = 0, epoch: int = 0,
                  shuffle: bool = True) -> Iterator[dict]:
    """Padded, masked batches of ready-made token rows (any vocabulary), like :func:`batches`.

    The order and the crops come from ``numpy.random.default_rng([seed, epoch])``.

    Notebook: 02_preprocessing.ipynb
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(rows)) if shuffle else np.arange(len(rows))
    for first in range(0, len(order), batch_size):
        pieces = [_crop(np.asarray(rows[i]), rng, seq_len, shuffle) for i in order[first:first + batch_size]]
        yield pad_batch(pieces, seq_len + 1 if seq_len is not None else None)


def batches(mels: MelodySet, *, batch_size: int, seq_len: int | None = None, seed: int = 0,
            epoch: int = 0, shuffle: bool = True, augment_semitones: int = 0,
            encoding: MelodyEncoding | None = None, drop_remainder: bool = False) -> Iterator[dict]:
    """Padded, masked token batches from a :class:`MelodySet`.

    Args:
        mels: the melodies (usually one split).
        batch_size: melodies per batch (the last batch may be smaller unless ``drop_remainder``).
        seq_len: crop each melody to a window of ``seq_len + 1`` events, at a random
            position when ``shuffle`` (training), else from its start; ``None`` keeps
            whole melodies, padded to the longest in the batch (evaluation).
        seed, epoch: the order, crops and transpositions come from
            ``numpy.random.default_rng([seed, epoch])``: the same pair gives the same batches.
        augment_semitones: transpose each melody by a random shift in
            ``[-n, n]`` that keeps it in range. Use it for the training split only.
        encoding: token encoding (default :class:`MelodyEncoding`).

    Yields ``{"tokens": int32 [B, L], "mask": float32 [B, L]}``.

    Example:
        >>> mels = MelodySet.from_melodies([Melody.from_notes([60, 62], [0, 2], [2, 4])])
        >>> b = next(batches(mels, batch_size=4, shuffle=False))
        >>> b["tokens"].shape, float(b["mask"].sum())
        ((1, 5), 5.0)

    Notebook: 02_preprocessing.ipynb
    """
    encoding = encoding or MelodyEncoding()
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(mels)) if shuffle else np.arange(len(mels))
    for first in range(0, len(order), batch_size):
        chosen = order[first:first + batch_size]
        if drop_remainder and len(chosen) < batch_size:
            return
        pieces = []
        for i in chosen:
            events = _crop(mels.events_of(i), rng, seq_len, shuffle)
            if augment_semitones:
                events = transpose_events(events, _random_shift(events, rng, augment_semitones, encoding))
            pieces.append(encoding.encode(events))
        yield pad_batch(pieces, seq_len + 1 if seq_len is not None else None)
