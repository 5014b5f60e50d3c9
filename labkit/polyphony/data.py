"""Piano-roll data: Boulanger-Lewandowski pickles read safely, the corpus's chorales, transposition, batches.

The layout of the polyphonic benchmarks of Boulanger-Lewandowski, Bengio and Vincent (ICML 2012)
(JSB Chorales, Nottingham, MuseData, Piano-midi.de)::

    {"train": [tune, ...], "valid": [...], "test": [...]}
    tune  = [frame, frame, ...]          one frame per time step
    frame = (60, 64, 67)                 the MIDI pitches sounding in it, 21..108 (an empty tuple: silence)

Read with :func:`load_pianoroll_pickle`, each tune becomes a piano roll, float32 ``[T, 88]`` with
``roll[t, p - 21] = 1`` while pitch ``p`` sounds in frame ``t`` (:data:`NUM_KEYS` keys, A0..C8).

A pickle can run code when it is loaded (its ``__reduce__`` may name ``os.system``). This module never
calls ``pickle.load``: :class:`_SafeUnpickler` resolves no global but the plain builtins a data set
needs (``set``, ``frozenset``, ``list``, ``dict``, ``tuple``, ``int``, ``float``), so a pickle that
names anything else is refused, before anything runs, with :class:`PianoRollFormatError`.

Errors name the file and the place: :class:`PianoRollFormatError` (not a pickle, wrong layout),
:class:`PianoRollPitchError` (a pitch outside 21..108), :class:`EmptySplitError` (a split without
frames); all are :class:`PianoRollDataError`, a :class:`~labkit.errors.CorpusError`.

Notebook: 08_polyphony.ipynb
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np

from labkit._common import atomic_write, display_name
from labkit.encoding import PIANO_MAX_PITCH, PIANO_MIN_PITCH
from labkit.errors import ConfigError, CorpusError

#: Keys of a piano roll: MIDI pitches 21 (A0) to 108 (C8).
NUM_KEYS = PIANO_MAX_PITCH - PIANO_MIN_PITCH + 1
#: The splits a pickle must hold, in the order they are read.
PICKLE_SPLITS: tuple[str, ...] = ("train", "valid", "test")
#: Frame of the corpus's chorales: steps per quarter note (2: one eighth note per frame).
CHORALE_STEPS_PER_QUARTER = 2
#: Largest pickle read, in bytes (Piano-midi.de, the largest benchmark, is about 10 MB).
MAX_PICKLE_BYTES = 512 * 2**20

#: Most frames a data set may hold, all splits together (Nottingham holds 266,537): a pickle can share one list
#: many times, so a small file could otherwise describe more frames than memory holds.
MAX_TOTAL_FRAMES = 5_000_000

#: The only globals a data pickle may name: ``(module, name)`` of plain builtin containers and numbers.
_ALLOWED_GLOBALS = {("builtins", n) for n in ("set", "frozenset", "list", "dict", "tuple", "int", "float")} | {
    ("__builtin__", n) for n in ("set", "frozenset", "list", "dict", "tuple", "int", "float")}


class PianoRollDataError(CorpusError):
    """A piano-roll data set cannot be used: the family of the three errors below."""


class PianoRollFormatError(PianoRollDataError):
    """Not a pickle, a pickle that names code, or not the ``{"train", "valid", "test"}`` layout."""


class PianoRollPitchError(PianoRollDataError):
    """A frame holds a pitch outside 21..108 (the 88 keys of a piano)."""


class EmptySplitError(PianoRollDataError):
    """A split holds no tunes, or only tunes without frames."""


class _SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`_ALLOWED_GLOBALS`: a pickle naming code is refused, not run."""

    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            import builtins

            return getattr(builtins, name)
        raise pickle.UnpicklingError(f"it names the global {module}.{name}, and a pickle that names code could "
                                     "run it: refused (a data set holds only lists, tuples and numbers)")

    def persistent_load(self, pid):  # pragma: no cover - protocol 0 persistent ids
        raise pickle.UnpicklingError("it uses persistent ids: refused")


def frames_to_roll(frames, *, where: str = "", path=None) -> np.ndarray:
    """One tune in the pickle layout (a list of frames, each a collection of MIDI pitches) as float32 ``[T, 88]``.

    Raises :class:`PianoRollPitchError` (naming ``path`` and ``where``) for a pitch outside 21..108 or a
    value that is no whole number, :class:`PianoRollFormatError` for a frame that is no tuple, list or set.

    Example:
        >>> roll = frames_to_roll([(60, 64), (), [21]])
        >>> roll.shape, roll.dtype.name, float(roll[0, 60 - 21]), float(roll[1].sum()), float(roll[2, 0])
        ((3, 88), 'float32', 1.0, 0.0, 1.0)

    Notebook: 08_polyphony.ipynb
    """
    if not isinstance(frames, (list, tuple)):
        raise PianoRollFormatError(f"{where}is a {type(frames).__name__}, not a list of frames", path)
    roll = np.zeros((len(frames), NUM_KEYS), dtype=np.float32)
    for t, frame in enumerate(frames):
        if not isinstance(frame, (tuple, list, set, frozenset)):
            raise PianoRollFormatError(f"{where}frame {t} is a {type(frame).__name__}, not a tuple of MIDI pitches",
                                       path)
        if len(frame) > NUM_KEYS:
            raise PianoRollFormatError(f"{where}frame {t} holds {len(frame)} pitches, more than a piano's "
                                       f"{NUM_KEYS} keys", path)
        for pitch in frame:
            ok = isinstance(pitch, (int, float)) and not isinstance(pitch, bool) and float(pitch).is_integer()
            if not ok or not PIANO_MIN_PITCH <= pitch <= PIANO_MAX_PITCH:
                shown = repr(pitch) if len(repr(pitch)) < 30 else repr(pitch)[:27] + "..."
                raise PianoRollPitchError(f"{where}frame {t} holds {shown}, not a MIDI pitch in "
                                          f"{PIANO_MIN_PITCH}..{PIANO_MAX_PITCH} (the 88 piano keys)", path)
            roll[t, int(pitch) - PIANO_MIN_PITCH] = 1.0
    return roll


def roll_to_frames(roll) -> list[tuple[int, ...]]:
    """A piano roll ``[T, 88]`` (any values; > 0.5 is on) back to the pickle layout: one tuple of pitches per frame.

    Example:
        >>> roll_to_frames(frames_to_roll([(64, 60), ()]))
        [(60, 64), ()]

    Notebook: 08_polyphony.ipynb
    """
    roll = np.asarray(roll)
    if roll.ndim != 2 or roll.shape[1] != NUM_KEYS:
        raise ConfigError(f"a piano roll is [frames, {NUM_KEYS}], got shape {roll.shape}")
    return [tuple(int(k) + PIANO_MIN_PITCH for k in np.flatnonzero(frame > 0.5)) for frame in roll]


def load_pianoroll_pickle(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """Read a data set in the Boulanger-Lewandowski layout: ``{"train", "valid", "test"}`` -> lists of rolls.

    Each tune becomes a float32 piano roll ``[T, 88]`` (:func:`frames_to_roll`); tunes without frames are
    dropped; other keys of the dictionary are ignored. Nothing in the file is run (see the module docstring).

    Raises (each message names the file, and the split, tune and frame where it applies):
        PianoRollFormatError: no such file, not a pickle, a pickle that names code, not the layout.
        PianoRollPitchError: a pitch outside 21..108.
        EmptySplitError: a split with no frames.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "tiny.pickle"
        >>> _ = save_pianoroll_pickle({s: [[(60,), (60, 64)]] for s in PICKLE_SPLITS}, p)
        >>> data = load_pianoroll_pickle(p)
        >>> sorted(data), data["test"][0].shape
        (['test', 'train', 'valid'], (2, 88))

    Notebook: 08_polyphony.ipynb
    """
    path = Path(path)
    if path.is_dir():
        raise PianoRollFormatError("is a folder, not a pickle of piano rolls", path)
    try:
        size = path.stat().st_size
        if size > MAX_PICKLE_BYTES:
            raise PianoRollFormatError(f"holds {size} bytes, more than the {MAX_PICKLE_BYTES} a piano-roll "
                                       "pickle is read up to", path)
        data = path.read_bytes()
    except FileNotFoundError:
        raise PianoRollFormatError("no such file", path) from None
    except OSError as exc:
        raise PianoRollFormatError(f"cannot be read ({exc.strerror or exc})", path) from None
    if not data:
        raise PianoRollFormatError("is empty, not a pickle", path)
    try:
        document = _SafeUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise PianoRollFormatError(f"not a readable pickle: {exc}", path) from None
    except (EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError,
            MemoryError, RecursionError, UnicodeDecodeError) as exc:
        raise PianoRollFormatError(f"not a pickle ({type(exc).__name__}: {str(exc)[:80]})", path) from None
    if not isinstance(document, dict):
        raise PianoRollFormatError(f"holds a {type(document).__name__}, not a dict with the splits "
                                   f"{', '.join(PICKLE_SPLITS)} (the Boulanger-Lewandowski layout)", path)
    missing = [s for s in PICKLE_SPLITS if s not in document]
    if missing:
        found = ", ".join(repr(k)[:30] for k in list(document)[:6]) or "nothing"
        raise PianoRollFormatError(f"lacks the split(s) {', '.join(missing)} (it holds {found}); the layout is "
                                   f"{{'train': [...], 'valid': [...], 'test': [...]}}", path)
    total = 0
    for split in PICKLE_SPLITS:
        tunes = document[split]
        if not isinstance(tunes, (list, tuple)):
            raise PianoRollFormatError(f"split {split!r} is a {type(tunes).__name__}, not a list of tunes", path)
        total += sum(len(t) for t in tunes if isinstance(t, (list, tuple)))
        if total > MAX_TOTAL_FRAMES:
            raise PianoRollFormatError(f"holds more than {MAX_TOTAL_FRAMES} frames, more than labkit reads", path)
    splits = {}
    for split in PICKLE_SPLITS:
        tunes = document[split]
        rolls = [frames_to_roll(tune, where=f"split {split!r}, tune {i}: ", path=path) for i, tune in enumerate(tunes)]
        rolls = [r for r in rolls if len(r)]
        if not rolls:
            raise EmptySplitError(f"split {split!r} holds no frames ({len(tunes)} tunes, all empty)"
                                  if tunes else f"split {split!r} holds no tunes", path)
        splits[split] = rolls
    return splits


def save_pianoroll_pickle(splits: dict, path: str | os.PathLike) -> Path:
    """Write ``{"train", "valid", "test"}`` (each a list of rolls ``[T, 88]`` or of tunes of frames) as a pickle
    in the Boulanger-Lewandowski layout, atomically; returns the path. Frames are tuples of ``int`` pitches.

    Notebook: 08_polyphony.ipynb
    """
    out = {}
    for split in PICKLE_SPLITS:
        if split not in splits:
            raise ConfigError(f"save_pianoroll_pickle needs the split {split!r}")
        out[split] = [roll_to_frames(t) if isinstance(t, np.ndarray) else [tuple(int(p) for p in f) for f in t]
                      for t in splits[split]]
    return atomic_write(path, pickle.dumps(out, protocol=4))


def chorale_piano_rolls(steps_per_quarter: int = CHORALE_STEPS_PER_QUARTER, *, max_tunes: int | None = None,
                        root=None) -> dict[str, list[np.ndarray]]:
    """The shipped corpus's Bach chorales (all four voices) as piano rolls, split as the corpus splits them.

    A frame is ``1 / steps_per_quarter`` of a quarter note (default: an eighth note, as in the JSB
    Chorales benchmark); notes are quantized as :func:`labkit.encoding.piano_roll` does (so two short notes
    of one voice may share a frame), and the silence before the first chord (a pickup's rest) is dropped. Returns
    ``{"train", "valid", "test"}`` -> lists of float32 ``[T, 88]`` (the manifest's ``split`` column).
    ``max_tunes``: at most this many chorales per split (for quick checks).

    Example:
        >>> rolls = chorale_piano_rolls(max_tunes=1)            # doctest: +SKIP
        >>> rolls["train"][0].shape[1]                          # doctest: +SKIP
        88

    Notebook: 08_polyphony.ipynb
    """
    from labkit import corpus
    from labkit.encoding import piano_roll

    manifest = corpus.load_manifest(root)
    chorales = corpus.select(manifest, collections="bach")
    out = {}
    for split in PICKLE_SPLITS:
        rows = chorales[chorales["split"] == split]
        if max_tunes is not None:
            rows = rows.iloc[:max_tunes]
        rolls = []
        for _, row in rows.iterrows():
            roll = piano_roll(corpus.read_tune(row, root), steps_per_quarter=steps_per_quarter)
            sounding = np.flatnonzero(roll.any(axis=1))
            roll = roll[sounding[0]:] if len(sounding) else roll[:0]     # from the first chord (no pickup rest)
            if len(roll):
                rolls.append(roll.astype(np.float32))
        if not rolls:
            raise EmptySplitError(f"the corpus holds no chorales in split {split!r}")
        out[split] = rolls
    return out


def transpose_roll(roll: np.ndarray, semitones: int) -> np.ndarray:
    """A piano roll shifted by ``semitones`` along the keys; notes pushed past A0 or C8 are dropped.

    Example:
        >>> roll_to_frames(transpose_roll(frames_to_roll([(60, 108)]), 2))
        [(62,)]

    Notebook: 08_polyphony.ipynb
    """
    roll = np.asarray(roll)
    out = np.zeros_like(roll)
    s = int(semitones)
    if s >= 0:
        out[..., s:] = roll[..., :roll.shape[-1] - s]
    else:
        out[..., :s] = roll[..., -s:]
    return out


def transposition_range(roll: np.ndarray, limit: int) -> tuple[int, int]:
    """``(lowest, highest)`` shift in ``-limit..limit`` that keeps every note of ``roll`` within 21..108.

    Example:
        >>> transposition_range(frames_to_roll([(22, 100)]), 12)
        (-1, 8)

    Notebook: 08_polyphony.ipynb
    """
    roll = np.asarray(roll)
    keys = np.flatnonzero(roll.reshape(-1, roll.shape[-1]).max(axis=0) > 0) if roll.size else []
    if not len(keys):
        return -limit, limit
    return max(-limit, -int(keys[0])), min(limit, roll.shape[-1] - 1 - int(keys[-1]))


def pianoroll_batches(rolls: list[np.ndarray], *, batch_size: int, seq_len: int, seed: int = 0, epoch: int = 0,
                      shuffle: bool = True, augment_semitones: int = 0):
    """Fixed-shape padded batches of windows of the tunes ``rolls``: every frame once per epoch.

    Each tune is cut into windows of ``seq_len`` frames; with ``shuffle`` the cuts start at a random offset
    (so window edges move from epoch to epoch), the windows are shuffled, and each window is transposed by a
    random shift in ``-augment_semitones..augment_semitones`` that keeps its notes on the keyboard
    (:func:`transposition_range`). All draws come from ``numpy.random.default_rng([seed, epoch])``.

    Yields ``{"frames": float32 [B, L, K], "previous": float32 [B, K], "start": int32 [B], "mask": float32
    [B, L]}`` with ``B = batch_size``, ``L = seq_len`` and ``K`` the rolls' keys (88): ``previous`` is the
    frame before the window (zeros at a tune's start), ``start`` the index of the window's first frame in its
    tune, ``mask`` is 1 on real frames; short windows and the last batch's missing rows are zero padding.

    Example:
        >>> rolls = [np.ones((5, 88), np.float32), np.ones((3, 88), np.float32)]
        >>> b = list(pianoroll_batches(rolls, batch_size=4, seq_len=4, shuffle=False))
        >>> len(b), b[0]["frames"].shape, b[0]["mask"].sum(axis=1).tolist(), float(b[0]["previous"][1].sum())
        (1, (4, 4, 88), [4.0, 1.0, 3.0, 0.0], 88.0)
        >>> b[0]["start"].tolist()
        [0, 4, 0, 0]

    Notebook: 08_polyphony.ipynb
    """
    if batch_size < 1 or seq_len < 1:
        raise ConfigError(f"batch_size and seq_len must be >= 1, got {batch_size} and {seq_len}")
    rng = np.random.default_rng([int(seed), int(epoch)])
    keys = np.shape(rolls[0])[1] if len(rolls) else NUM_KEYS
    windows = []   # (tune, start, end)
    for i, roll in enumerate(rolls):
        offset = int(rng.integers(seq_len)) if shuffle else 0
        starts = ([0] if offset else []) + list(range(offset, len(roll), seq_len))
        for start in starts:
            end = min(len(roll), offset if (offset and start == 0) else start + seq_len)
            if end > start:
                windows.append((i, start, end))
    if shuffle:
        windows = [windows[j] for j in rng.permutation(len(windows))]
    for first in range(0, len(windows), batch_size):
        frames = np.zeros((batch_size, seq_len, keys), np.float32)
        previous = np.zeros((batch_size, keys), np.float32)
        mask = np.zeros((batch_size, seq_len), np.float32)
        starts = np.zeros(batch_size, np.int32)
        for row, (i, start, end) in enumerate(windows[first:first + batch_size]):
            starts[row] = start
            piece = rolls[i][max(start - 1, 0):end]
            if augment_semitones:
                low, high = transposition_range(piece, augment_semitones)
                piece = transpose_roll(piece, int(rng.integers(low, high + 1)))
            if start > 0:
                previous[row], piece = piece[0], piece[1:]
            frames[row, :end - start] = piece
            mask[row, :end - start] = 1.0
        yield {"frames": frames, "previous": previous, "start": starts, "mask": mask}


def count_frames(rolls: list[np.ndarray]) -> int:
    """Frames in a list of piano rolls (the ``N`` a score per frame is averaged over).

    Example:
        >>> count_frames([np.zeros((3, 88)), np.zeros((5, 88))])
        8

    Notebook: 08_polyphony.ipynb
    """
    return int(sum(len(r) for r in rolls))


def describe_rolls(splits: dict, path=None) -> str:
    """One line about a data set: tunes and frames per split, and the pitches used.

    Example:
        >>> describe_rolls({"train": [frames_to_roll([(60,), (62,)])]})
        'train 1 tunes / 2 frames; pitches 60..62'

    Notebook: 08_polyphony.ipynb
    """
    parts = [f"{s} {len(r)} tunes / {count_frames(r)} frames" for s, r in splits.items()]
    used = np.flatnonzero(np.max([r.max(axis=0) for rs in splits.values() for r in rs], axis=0) > 0)
    span = f"pitches {used[0] + PIANO_MIN_PITCH}..{used[-1] + PIANO_MIN_PITCH}" if len(used) else "no notes"
    head = f"{display_name(path)}: " if path is not None else ""
    return head + "; ".join(parts) + f"; {span}"
