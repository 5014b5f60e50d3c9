"""Honest evaluation of melody models: cross-entropy under cross-validation by tune.

The measure is the **cross-entropy** of held-out melodies, in bits: the mean of
``-log2 p(x_i | x_<i)`` over every predicted symbol. Lower is better; a model that
spreads its bets evenly over ``V`` symbols scores ``log2 V``.

* **Pitch-only** (:func:`pitch_view`): the symbols are the notes' MIDI pitches and
  each pitch is predicted from the previous pitches. Comparable to IDyOM's ``cpitch``
  figures (Pearce 2005): bits per note.
* **Full events** (:func:`event_view`): the symbols are the
  :class:`~labkit.encoding.MelodyEncoding` tokens (note-on, note-off, hold at every
  step), so rhythm is predicted too. Reported as bits per event and as
  **bits per note** = total bits / number of notes, which compares with the pitch-only
  figure (it pays for pitch *and* timing).

**Protocol.** :func:`cross_entropy_cv` splits the tunes into ``k`` folds
(:func:`kfold_by_tune`): each tune is tested exactly once, by a model trained on the
other folds, never on a window of itself. Optional *pretraining* tunes (other
collections) are added to every fold's training data only after removing each one
that duplicates or nearly duplicates an evaluated tune (:func:`near_duplicates`):
folk collections share songs, and a test tune hidden in the pretraining data would
flatter any model.

**Models** follow a two-method protocol: ``fit(train, pretrain=None)`` with lists of
int arrays, and ``score(tests) -> list of per-symbol bits``. :class:`NgramModel`
wraps IDyOM-style PPM models (:mod:`labkit.ngram`); :class:`LSTMModel` trains the
course's LSTM (:mod:`labkit.models`, :func:`labkit.train.fit`) on each fold;
:class:`HybridModel` combines the LSTM's prediction with the n-gram models' note by note
(IDyOM's entropy-weighted combination), so the short-term model can supply what the
tune being read has repeated so far.

Reference figures, pitch-only, 10-fold CV on the Essen ``kinder`` set (213 tunes,
8,393 notes; Pearce 2005, Tables 6.6-6.7): IDyOM LTM 2.428, LTM+ 2.237, BOTH+ 2.106
bits/note. Ours are in ``benchmarks/README.md`` (melody model quality).

Notebook: 04_lstm_melody_model.ipynb
"""
from __future__ import annotations

import functools
import inspect
import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from labkit._common import display_name, find_midi_files
from labkit.encoding import MelodyEncoding
from labkit.errors import ConfigError, CorpusError, LabkitError
from labkit.melody import Melody

#: Symbols of the pitch view: MIDI pitches 0..127.
PITCH_ALPHABET = 128
MAX_PITCH = 127
#: Default near-duplicate test: interval n-grams of this length ...
DUPLICATE_NGRAM = 8
#: ... shared in at least this fraction of the shorter tune's distinct n-grams.
DUPLICATE_OVERLAP = 0.5


# =====================================================================================
# Views: a melody as a sequence of integer symbols
# =====================================================================================

def pitch_view(melody: Melody) -> np.ndarray:
    """The pitch of each note (int64 ``[notes]``, MIDI 0..127): the symbols of pitch-only models.

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> pitch_view(Melody.from_notes([60, 62], [0, 2], [2, 4])).tolist()
        [60, 62]
    """
    return np.asarray(melody.pitches, dtype=np.int64)


def event_view(melody: Melody, encoding: MelodyEncoding | None = None) -> np.ndarray:
    """The melody's event tokens (int64 ``[steps]``, :class:`MelodyEncoding`): full-event symbols.

    Raises :class:`~labkit.errors.EncodingError` (naming the melody) for a pitch
    outside the encoding's range.

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> event_view(Melody.from_notes([60], [0], [2])).tolist()
        [41, 0, 1]
    """
    return (encoding or MelodyEncoding()).encode(melody).astype(np.int64)


def corpus_pitch_view(*melody_lists: Sequence[Melody]) -> tuple[Callable[[Melody], np.ndarray], int]:
    """A pitch view over only the pitches that occur in the given melodies (IDyOM's convention).

    IDyOM's alphabet is the set of pitches in the whole dataset, which matters only
    when a model falls back to "any pitch" (order -1): it then spreads its bet over,
    say, 27 pitches instead of 128. Pass every melody the view will see (evaluated
    and pretraining tunes). Returns ``(view, alphabet size)`` for :func:`cross_entropy_cv`.

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> view, size = corpus_pitch_view([Melody.from_notes([60, 67, 64], [0, 1, 2], [1, 2, 3])])
        >>> size, view(Melody.from_notes([67, 60], [0, 1], [1, 2])).tolist()
        (3, [2, 0])
    """
    used = sorted({int(p) for melodies in melody_lists for m in melodies for p in m.pitches})
    table = np.full(MAX_PITCH + 1, -1, dtype=np.int64)
    table[used] = np.arange(len(used))

    def view(melody: Melody) -> np.ndarray:
        symbols = table[np.asarray(melody.pitches, dtype=np.int64)]
        if (symbols < 0).any():
            raise ConfigError("the melody has a pitch the corpus pitch view was not built with",
                              melody.source or None)
        return symbols

    return view, len(used)


#: ``name -> (function melody -> symbols, alphabet size)``.
VIEWS: dict[str, tuple[Callable[[Melody], np.ndarray], int]] = {
    "pitch": (pitch_view, PITCH_ALPHABET),
    "event": (event_view, MelodyEncoding().vocab_size),
}


def _view(view) -> tuple[Callable, int]:
    if isinstance(view, str):
        if view not in VIEWS:
            raise ConfigError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
        return VIEWS[view]
    if isinstance(view, tuple) and len(view) == 2 and callable(view[0]):
        return view
    raise ConfigError("view must be 'pitch', 'event' or a pair (function melody -> symbols, alphabet size)")


# =====================================================================================
# Folds and near-duplicates
# =====================================================================================

def kfold_by_tune(n_tunes: int, k: int = 10, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split tunes ``0..n_tunes-1`` into ``k`` folds of (almost) equal size, at random.

    Returns ``k`` pairs ``(train_idx, test_idx)`` of sorted int64 arrays: every tune
    is in exactly one test set, and in the training set of every other fold. The
    shuffle comes from ``numpy.random.default_rng(seed)``: same seed, same folds.

    Raises :class:`ConfigError` unless ``2 <= k <= n_tunes``.

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> [test.tolist() for _, test in kfold_by_tune(5, k=2, seed=1)]
        [[0, 1, 4], [2, 3]]
    """
    n_tunes, k = int(n_tunes), int(k)
    if k < 2:
        raise ConfigError(f"cross-validation needs at least 2 folds, got {k}")
    if n_tunes < k:
        raise ConfigError(f"{k}-fold cross-validation needs at least {k} tunes, got {n_tunes}")
    order = np.random.default_rng(seed).permutation(n_tunes)
    folds = []
    for test in np.array_split(order, k):
        test = np.sort(test).astype(np.int64)
        train = np.setdiff1d(np.arange(n_tunes, dtype=np.int64), test)
        folds.append((train, test))
    return folds


def _intervals(pitches) -> np.ndarray:
    p = np.asarray(pitches, dtype=np.int64).reshape(-1)
    return np.diff(p).astype(np.int16)


def interval_ngrams(pitches, n: int = DUPLICATE_NGRAM) -> set[bytes]:
    """The distinct ``n``-grams of pitch intervals of a melody (each as bytes).

    Intervals do not change under transposition, so a melody and its transposed copy
    have the same n-grams. A melody of ``n`` notes or fewer has none.

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> len(interval_ngrams([60, 62, 64, 62, 60], n=2))   # (+2 +2) (+2 -2) (-2 -2)
        3
    """
    iv = _intervals(pitches)
    return {iv[i:i + n].tobytes() for i in range(len(iv) - n + 1)}


def near_duplicates(candidates: Sequence, references: Sequence, *, n: int = DUPLICATE_NGRAM,
                    overlap: float = DUPLICATE_OVERLAP) -> np.ndarray:
    """Which candidate melodies duplicate or nearly duplicate any reference melody.

    Melodies are given as pitch sequences. A candidate ``c`` is a near-duplicate of a
    reference ``r`` when either

    1. both have the same sequence of pitch intervals: ``c`` is ``r`` transposed
       (to a common tonic or anywhere else), note for note; or
    2. they share many interval ``n``-grams (default 8 intervals = 9 notes):
       ``|G(c) & G(r)| / min(|G(c)|, |G(r)|) >= overlap`` (default 0.5), where
       ``G`` is the set of distinct interval n-grams. This catches variants
       (a changed note or two, an added verse or refrain, an excerpt) and
       transposed variants. Melodies of ``n`` notes or fewer can only match by rule 1.

    Rhythm is ignored: two tunes with the same pitches in another rhythm count as duplicates.

    Args:
        candidates, references: sequences of pitch arrays (or :class:`Melody`).
        n: n-gram length in intervals.
        overlap: the fraction of shared n-grams that makes a near-duplicate.

    Returns:
        bool array ``[len(candidates)]``.

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> song = [60, 62, 64, 65, 67, 67, 69, 69, 67, 65, 64]
        >>> other = [72, 71, 69, 67, 65, 64, 62, 60, 62, 64, 60]
        >>> near_duplicates([[p + 5 for p in song], other], [song]).tolist()
        [True, False]
    """
    if int(n) < 1 or not (0 < overlap <= 1):
        raise ConfigError(f"near_duplicates needs n >= 1 and 0 < overlap <= 1, got n={n}, overlap={overlap}")

    def pitches(x):
        return x.pitches if isinstance(x, Melody) else x

    exact = {_intervals(pitches(r)).tobytes() for r in references if len(pitches(r)) >= 2}
    ref_grams = [interval_ngrams(pitches(r), n) for r in references]
    index: dict[bytes, list[int]] = {}
    for j, grams in enumerate(ref_grams):
        for g in grams:
            index.setdefault(g, []).append(j)
    out = np.zeros(len(candidates), dtype=bool)
    for i, c in enumerate(candidates):
        p = pitches(c)
        if len(p) >= 2 and _intervals(p).tobytes() in exact:
            out[i] = True
            continue
        grams = interval_ngrams(p, n)
        if not grams:
            continue
        shared = Counter(j for g in grams for j in index.get(g, ()))
        out[i] = any(count / min(len(grams), len(ref_grams[j])) >= overlap for j, count in shared.items())
    return out


# =====================================================================================
# Cross-validation
# =====================================================================================

@dataclass
class CVResult:
    """The outcome of :func:`cross_entropy_cv`.

    Attributes:
        folds: bits per note of each fold (its total bits / its notes).
        mean_bits_per_note: total bits / total notes over all tunes.
        notes: notes in all evaluated tunes.
        symbols: symbols predicted (notes for the pitch view, events for the event view).
        mean_bits_per_symbol: total bits / ``symbols`` (bits per event for the event view).
        fold_bits_per_symbol: bits per symbol of each fold.
        fold_tunes: tunes tested in each fold.
        pretrain_used, pretrain_removed: pretraining tunes kept / removed as near-duplicates.
        seconds: wall time of the whole run.
        tune_bits: total bits of each tune, in input order.

    Notebook: 04_lstm_melody_model.ipynb
    """

    folds: list[float]
    mean_bits_per_note: float
    notes: int
    symbols: int = 0
    mean_bits_per_symbol: float = float("nan")
    fold_bits_per_symbol: list[float] = field(default_factory=list)
    fold_tunes: list[int] = field(default_factory=list)
    pretrain_used: int = 0
    pretrain_removed: int = 0
    seconds: float = 0.0
    tune_bits: list[float] = field(default_factory=list)

    def to_json(self) -> dict:
        """``{"folds": [...], "mean_bits_per_note": x, "notes": n}``: what ``--json`` prints."""
        return {"folds": [float(f) for f in self.folds], "mean_bits_per_note": float(self.mean_bits_per_note),
                "notes": int(self.notes)}


def _symbols_and_pitches(items, view_fn, what: str):
    """(symbols, pitches, notes) of melodies or raw symbol arrays."""
    symbols, pitches, notes = [], [], []
    for i, item in enumerate(items):
        if isinstance(item, Melody):
            symbols.append(np.asarray(view_fn(item), dtype=np.int64))
            p = np.asarray(item.pitches, dtype=np.int64)
        else:
            p = np.asarray(item)
            if p.ndim != 1 or not (p.size == 0 or np.issubdtype(p.dtype, np.integer)):
                raise ConfigError(f"{what} {i}: expected a Melody or a 1-D integer array, got shape {p.shape}")
            p = p.astype(np.int64)
            symbols.append(p)
        pitches.append(p)
        notes.append(len(p))
    return symbols, pitches, notes


def _accepts_pretrain(model) -> bool:
    try:
        return "pretrain" in inspect.signature(model.fit).parameters
    except (TypeError, ValueError):
        return False


def cross_entropy_cv(sequences: Sequence, model_factory: Callable[[], object], k: int = 10, seed: int = 0,
                   pretrain: Sequence | None = None, *, view="pitch", notes: Sequence[int] | None = None,
                   progress: Callable[[int, int, float, float], None] | None = None) -> CVResult:
    """Cross-entropy of a model under ``k``-fold cross-validation by tune.

    For each fold of :func:`kfold_by_tune`, a fresh model from ``model_factory()`` is
    fitted on the other folds' tunes (plus the pretraining tunes) and scores every
    tune of the fold, each symbol predicted from the symbols before it.

    Args:
        sequences: the tunes: :class:`Melody` objects (turned into symbols by ``view``)
            or int arrays of symbols (taken as they are; their length counts as notes
            unless ``notes`` is given, and they are used as pitches by the duplicate test).
        model_factory: called once per fold; returns an object with
            ``fit(train: list[np.ndarray], pretrain: list[np.ndarray] | None = None)``
            and ``score(tests: list[np.ndarray]) -> list[np.ndarray]`` (bits of each
            symbol, >= 0). A model whose ``fit`` has no ``pretrain`` parameter gets the
            pretraining tunes appended to ``train``.
        k, seed: folds and their shuffle.
        pretrain: extra training tunes (same kinds as ``sequences``). Every one that
            :func:`near_duplicates` any tune in ``sequences`` is removed first. The test
            is against *all* evaluated tunes, not only the fold's test tunes (stricter,
            and it gives every fold the same pretraining set, so a model can pretrain once).
        view: ``"pitch"``, ``"event"``, or ``(function melody -> symbols, alphabet size)``.
        notes: notes of each tune when ``sequences`` are symbol arrays of another kind.
        progress: called after each fold as ``progress(fold, k, bits_per_note, seconds)``.

    Returns:
        A :class:`CVResult`.

    Raises:
        ConfigError: too few tunes for ``k`` folds, a tune with no notes, a bad score.

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> tunes = [np.array([60, 62, 64, 65, 67] * 3) + i % 3 for i in range(12)]
        >>> r = cross_entropy_cv(tunes, lambda: NgramModel(128, "ltm", max_order=2), k=3)
        >>> len(r.folds), r.notes, bool(r.mean_bits_per_note < 2)
        (3, 180, True)
    """
    started = time.perf_counter()
    view_fn, _ = _view(view)
    symbols, pitches, tune_notes = _symbols_and_pitches(sequences, view_fn, "tune")
    if notes is not None:
        if len(notes) != len(symbols):
            raise ConfigError(f"notes has {len(notes)} entries for {len(symbols)} tunes")
        tune_notes = [int(x) for x in notes]
    empty = [i for i, n in enumerate(tune_notes) if n == 0]
    if empty:
        raise ConfigError(f"tune {empty[0]} has no notes; bits per note needs notes in every tune")
    pre_symbols, removed = None, 0
    if pretrain is not None:
        pre_symbols, pre_pitches, _ = _symbols_and_pitches(pretrain, view_fn, "pretraining tune")
        dup = near_duplicates(pre_pitches, pitches)
        removed = int(dup.sum())
        pre_symbols = [s for s, d in zip(pre_symbols, dup) if not d]

    tune_bits = np.zeros(len(symbols))
    fold_bpn, fold_bps, fold_tunes = [], [], []
    for f, (train_idx, test_idx) in enumerate(kfold_by_tune(len(symbols), k, seed)):
        t0 = time.perf_counter()
        model = model_factory()
        train = [symbols[i] for i in train_idx]
        if pre_symbols is not None and not _accepts_pretrain(model):
            model.fit(train + pre_symbols)
        elif pre_symbols is not None:
            model.fit(train, pretrain=pre_symbols)
        else:
            model.fit(train)
        tests = [symbols[i] for i in test_idx]
        scores = model.score(tests)
        if len(scores) != len(tests):
            raise ConfigError(f"the model scored {len(scores)} tunes of {len(tests)}")
        for i, test, bits in zip(test_idx, tests, scores):
            bits = np.asarray(bits, dtype=np.float64)
            if bits.shape != test.shape or not np.all(np.isfinite(bits)) or (bits < -1e-9).any():
                raise ConfigError(f"the model's bits for tune {i} are not one finite value >= 0 per symbol")
            tune_bits[i] = bits.sum()
        total = tune_bits[test_idx].sum()
        fold_notes = sum(tune_notes[i] for i in test_idx)
        fold_symbols = sum(len(symbols[i]) for i in test_idx)
        fold_bpn.append(float(total / fold_notes))
        fold_bps.append(float(total / max(fold_symbols, 1)))
        fold_tunes.append(len(test_idx))
        if progress is not None:
            progress(f, k, fold_bpn[-1], time.perf_counter() - t0)
    total_notes = int(sum(tune_notes))
    total_symbols = int(sum(len(s) for s in symbols))
    return CVResult(
        folds=fold_bpn, mean_bits_per_note=float(tune_bits.sum() / total_notes), notes=total_notes,
        symbols=total_symbols, mean_bits_per_symbol=float(tune_bits.sum() / max(total_symbols, 1)),
        fold_bits_per_symbol=fold_bps, fold_tunes=fold_tunes,
        pretrain_used=0 if pre_symbols is None else len(pre_symbols), pretrain_removed=removed,
        seconds=time.perf_counter() - started, tune_bits=tune_bits.tolist())


# =====================================================================================
# Models for cross_entropy_cv
# =====================================================================================

class NgramModel:
    """IDyOM-style PPM model (:class:`labkit.ngram.IdyomModel`) with the cross-validation protocol.

    Args:
        alphabet_size: symbols ``0..alphabet_size-1`` (128 pitches, or the encoding's vocab_size).
        models: ``"ltm"``, ``"ltm+"``, ``"stm"``, ``"both"`` or ``"both+"`` (default, IDyOM's best).
        max_order: order bound of the long-term model; ``None`` for PPM* (default).
        **options: passed to :class:`~labkit.ngram.IdyomModel` (escapes, bias, ...).

    ``fit`` trains the long-term model on the pretraining and training tunes; ``score``
    reads the test tunes in order (``"ltm+"``/``"both+"`` keep learning them).

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> m = NgramModel(128, "ltm", max_order=1)
        >>> m.fit([np.array([60, 62] * 5)])
        >>> bool(m.score([np.array([60, 62, 60])])[0][-1] < 0.5)
        True
    """

    def __init__(self, alphabet_size: int, models: str = "both+", max_order: int | None = None, **options):
        from labkit.ngram import IdyomModel

        self.model = IdyomModel(alphabet_size, models, max_order=max_order, **options)

    def fit(self, train: Sequence[np.ndarray], pretrain: Sequence[np.ndarray] | None = None) -> None:
        """Train the long-term model from scratch on ``pretrain + train`` (lists of int arrays)."""
        self.model.fit(list(pretrain or []) + list(train))

    def score(self, tests: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Bits (float64 ``[T]``, >= 0) of every symbol of each test tune, read in order."""
        return [self.model.bits(t) for t in tests]


@dataclass(frozen=True)
class LSTMSettings:
    """Sizes and training schedule of :class:`LSTMModel` (one fold).

    The defaults (a 1x128 LSTM, at most 1,200 steps of 32 windows with early
    stopping on a validation tenth of the fold's training tunes) keep a 10-fold run on
    a few hundred tunes within about half an hour on a 2-core CPU.

    Attributes:
        hidden_size, num_layers, embed_dim, dropout: the :class:`~labkit.models.ModelConfig`.
        batch_size, seq_len: training windows (``seq_len + 1`` tokens, at random positions).
        num_steps, learning_rate, eval_every, patience: training from scratch (:func:`labkit.train.fit`).
        valid_fraction: tunes of the fold's training set held out for early stopping.
        pretrain_steps: steps on the pretraining tunes (done once per run and cached).
        finetune_steps, finetune_learning_rate: steps on the fold's tunes after pretraining.
        augment_semitones: transpose each training window by a random shift in
            ``[-n, n]`` that keeps it inside the alphabet (0 = off). Only meaningful
            when the symbols are pitches (the 128-pitch view).
        seed: parameters, dropout, data order and the validation split.

    Notebook: 04_lstm_melody_model.ipynb
    """

    hidden_size: int = 128
    num_layers: int = 1
    embed_dim: int = 32
    dropout: float = 0.1
    batch_size: int = 32
    seq_len: int = 64
    num_steps: int = 1200
    learning_rate: float = 3e-3
    eval_every: int = 100
    patience: int = 3
    valid_fraction: float = 0.1
    pretrain_steps: int = 4000
    finetune_steps: int = 600
    finetune_learning_rate: float = 1e-3
    augment_semitones: int = 0
    seed: int = 0


def _digest(seqs: Sequence[np.ndarray]) -> str:
    """A content hash of a list of symbol arrays (the key of a pretrained model)."""
    import hashlib

    h = hashlib.sha1(np.array([len(x) for x in seqs], dtype=np.int64).tobytes())
    for x in seqs:
        h.update(np.asarray(x, dtype=np.int64).tobytes())
    return h.hexdigest()


def _token_rows(seqs: Sequence[np.ndarray], bos: int) -> list[np.ndarray]:
    return [np.concatenate([[bos], np.asarray(s, dtype=np.int64)]).astype(np.int32) for s in seqs]


def _windows(rows: list[np.ndarray], *, batch_size: int, seq_len: int | None, seed: int, epoch: int,
             shuffle: bool):
    """Batches ``{"tokens", "mask"}`` of token rows; crops to ``seq_len + 1`` when given."""
    from labkit.data import token_batches

    return token_batches(rows, batch_size=batch_size, seq_len=seq_len, seed=seed, epoch=epoch, shuffle=shuffle)


def transpose_rows(rows: Sequence[np.ndarray], semitones: int, alphabet_size: int,
                   rng: np.random.Generator) -> list[np.ndarray]:
    """Shift the pitch symbols of each token row (after its start token) by a random amount.

    Each row gets its own shift, drawn uniformly from the shifts in ``[-semitones, semitones]``
    that keep all its symbols inside ``0..alphabet_size-1``; the start token (``row[0]``)
    is kept. This is transposition augmentation for the pitch view.

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> rows = transpose_rows([np.array([128, 0, 2])], 3, 128, np.random.default_rng(0))
        >>> int(rows[0][0]), int(rows[0][1]) in (0, 1, 2, 3), int(rows[0][2] - rows[0][1])
        (128, True, 2)
    """
    out = []
    for row in rows:
        row = np.asarray(row)
        body = row[1:]
        if not len(body) or semitones <= 0:
            out.append(row)
            continue
        low = -min(int(semitones), int(body.min()))
        high = min(int(semitones), alphabet_size - 1 - int(body.max()))
        shift = int(rng.integers(low, high + 1)) if high >= low else 0
        out.append(np.concatenate([row[:1], body + shift]).astype(row.dtype))
    return out


class LSTMModel:
    """The course's LSTM (:mod:`labkit.models`) with the cross-validation protocol.

    Symbols ``0..alphabet_size-1`` are the model's tokens and ``alphabet_size`` is a
    start token, so the first symbol of a tune is predicted too (from the start
    token alone), as the n-gram models predict it from their order-0 statistics.

    ``fit(train)``: a tenth of the tunes (by tune, from ``settings.seed``) is held out for
    early stopping, and :func:`labkit.train.fit` trains from scratch on the rest.
    ``fit(train, pretrain)``: the model is first trained on the pretraining tunes
    (once per ``cache``: every fold of :func:`cross_entropy_cv` gets the same
    pretraining set), then fine-tuned on the fold's tunes with early stopping.
    The model does not adapt while it reads a test tune.

    Args:
        alphabet_size: symbols (128 pitches, or the encoding's vocab_size).
        settings: :class:`LSTMSettings`.
        cache: a dict shared by the models of one run, holding the pretrained parameters.

    Notebook: 04_lstm_melody_model.ipynb
    """

    def __init__(self, alphabet_size: int, settings: LSTMSettings | None = None, cache: dict | None = None):
        self.alphabet_size = int(alphabet_size)
        self.settings = settings or LSTMSettings()
        self.cache = cache if cache is not None else {}
        self.model = None
        self.history: list[dict] = []

    # --- configs ---------------------------------------------------------------------------------
    def _configs(self, num_steps: int, learning_rate: float):
        from labkit.models import ModelConfig
        from labkit.train import TrainConfig

        s = self.settings
        model_config = ModelConfig(vocab_size=self.alphabet_size + 1, embed_dim=s.embed_dim,
                                   hidden_size=s.hidden_size, num_layers=s.num_layers, dropout=s.dropout)
        train_config = TrainConfig(seed=s.seed, num_steps=num_steps, batch_size=s.batch_size, seq_len=s.seq_len,
                                   learning_rate=learning_rate, warmup_steps=min(100, max(num_steps // 10, 1)),
                                   eval_every=s.eval_every, patience=s.patience, progress=False, log_every=50)
        return model_config, train_config

    def _split(self, seqs: Sequence[np.ndarray]):
        rows = _token_rows(seqs, self.alphabet_size)
        n_valid = max(1, int(round(len(rows) * self.settings.valid_fraction))) if len(rows) > 1 else 0
        order = np.random.default_rng([self.settings.seed, 1]).permutation(len(rows))
        valid = [rows[i] for i in np.sort(order[:n_valid])]
        train = [rows[i] for i in np.sort(order[n_valid:])]
        return train, valid or train

    def _batches(self, rows, seed_offset: int = 0):
        s = self.settings

        def train_batches(epoch):
            shifted = rows
            if s.augment_semitones:
                rng = np.random.default_rng([s.seed + seed_offset, epoch, 2])
                shifted = transpose_rows(rows, s.augment_semitones, self.alphabet_size, rng)
            return _windows(shifted, batch_size=s.batch_size, seq_len=s.seq_len, seed=s.seed + seed_offset,
                            epoch=epoch, shuffle=True)
        return train_batches

    def _valid(self, rows):
        return list(_windows(rows, batch_size=64, seq_len=None, seed=0, epoch=0, shuffle=False))

    # --- training --------------------------------------------------------------------------------
    def fit(self, train: Sequence[np.ndarray], pretrain: Sequence[np.ndarray] | None = None) -> None:
        """Train on ``train`` (int arrays), after pretraining on ``pretrain`` when given (see the class)."""
        from labkit.train import fit

        self._check(train)
        s = self.settings
        train_rows, valid_rows = self._split(train)
        if not pretrain:
            model_config, train_config = self._configs(s.num_steps, s.learning_rate)
            self.model, self.history = fit(model_config, train_config, self._batches(train_rows),
                                           self._valid(valid_rows))
            return
        from flax import nnx

        from labkit.models import make_model
        from labkit.train import finetune

        self._check(pretrain)
        key = (_digest(pretrain), self.alphabet_size, s)
        if key not in self.cache:
            pre_train, pre_valid = self._split(pretrain)
            model_config, train_config = self._configs(s.pretrain_steps, s.learning_rate)
            model, history = fit(model_config, train_config, self._batches(pre_train, 7919),
                                 self._valid(pre_valid))
            for old in [k for k in self.cache if k[:2] != key[:2]]:
                del self.cache[old]      # keep only the pretrained models of this pretraining set
            self.cache[key] = (nnx.state(model, nnx.Param), history)
        pretrained, pre_history = self.cache[key]
        model_config, train_config = self._configs(s.finetune_steps, s.finetune_learning_rate)
        model = make_model(model_config, 0)      # its parameters are replaced by the pretrained ones
        nnx.update(model, pretrained)
        self.model, history = finetune(model, model_config, train_config, self._batches(train_rows),
                                       self._valid(valid_rows))
        self.history = [dict(r, phase="pretrain") for r in pre_history] + [dict(r, phase="finetune")
                                                                           for r in history]

    def _check(self, seqs):
        for s in seqs:
            if len(s) and (np.min(s) < 0 or np.max(s) >= self.alphabet_size):
                raise ConfigError(f"a tune holds symbol {int(np.max(s))} outside 0..{self.alphabet_size - 1}")

    # --- scoring ---------------------------------------------------------------------------------
    def distributions(self, tests: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The model's predictive distribution before each symbol: float64 ``[T, alphabet_size]`` per tune.

        Row ``t`` is ``p(x_t | x_<t)`` over the symbols (the start token, which never
        follows, is left out and the rest renormalised). Tunes are run in batches of
        similar length.
        """
        if self.model is None:
            raise ConfigError("LSTMModel used before fit")
        log_softmax = _log_softmax_fn()
        rows = _token_rows(tests, self.alphabet_size)
        out: list[np.ndarray] = [np.zeros((0, self.alphabet_size))] * len(rows)
        order = np.argsort([len(r) for r in rows], kind="stable")
        for first in range(0, len(order), 32):
            chosen = order[first:first + 32]
            width = max(len(rows[i]) for i in chosen)
            width = 1 + 32 * math.ceil((width - 1) / 32)          # few shapes, few compilations
            tokens = np.zeros((len(chosen), width), dtype=np.int32)
            for r, i in enumerate(chosen):
                tokens[r, :len(rows[i])] = rows[i]
            lp = np.asarray(log_softmax(self.model, tokens), dtype=np.float64)   # [B, width - 1, V + 1]
            for r, i in enumerate(chosen):
                p = np.exp(lp[r, :len(rows[i]) - 1, :self.alphabet_size])
                out[i] = p / p.sum(axis=-1, keepdims=True)
        return out

    def score(self, tests: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Bits (float64 ``[T]``, >= 0) of every symbol of each test tune, the first one included."""
        if self.model is None:
            raise ConfigError("LSTMModel.score before fit")
        return _bits(self.distributions(tests), tests)


def _bits(distributions: Sequence[np.ndarray], tests: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``-log2 p`` of each symbol that happened, from the distributions ``[T, A]`` before it."""
    return [-np.log2(np.maximum(d[np.arange(len(t)), np.asarray(t, dtype=np.int64)], 1e-300))
            for d, t in zip(distributions, tests)]


class LSTMEnsemble:
    """Several :class:`LSTMModel`, their predictions averaged.

    Member ``m`` uses ``settings.seed + m`` (its initial weights, dropout, window order and
    validation tunes) and, when ``transposes`` is given, the transposition augmentation
    ``transposes[m % len(transposes)]`` (so ``(0, 5)`` alternates plain members and members
    trained on tunes transposed by up to 5 semitones). The ensemble's distribution is the
    mean of the members'. Averaging models that make different mistakes lowers the
    cross-entropy, the more so the more they differ; it costs ``members`` times the
    training. With ``members=1`` it is the single model.

    Notebook: 04_lstm_melody_model.ipynb
    """

    def __init__(self, alphabet_size: int, settings: LSTMSettings | None = None, cache: dict | None = None,
                 members: int = 3, transposes: Sequence[int] | None = None):
        import dataclasses

        if int(members) < 1:
            raise ConfigError(f"an ensemble needs at least 1 member, got {members}")
        settings = settings or LSTMSettings()
        transposes = [settings.augment_semitones] if not transposes else [int(t) for t in transposes]
        cache = cache if cache is not None else {}
        self.alphabet_size = int(alphabet_size)
        self.members = [LSTMModel(alphabet_size, dataclasses.replace(
                            settings, seed=settings.seed + m, augment_semitones=transposes[m % len(transposes)]),
                            cache)
                        for m in range(int(members))]

    def fit(self, train: Sequence[np.ndarray], pretrain: Sequence[np.ndarray] | None = None) -> None:
        """Fit every member (:meth:`LSTMModel.fit`) on the same tunes."""
        for member in self.members:
            member.fit(train, pretrain=pretrain)

    def distributions(self, tests: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The members' mean distribution before each symbol: float64 ``[T, alphabet_size]`` per tune."""
        per_member = [member.distributions(tests) for member in self.members]
        return [np.mean(dists, axis=0) for dists in zip(*per_member)]

    def score(self, tests: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Bits (float64 ``[T]``, >= 0) of every symbol of each test tune under the mean distribution."""
        return _bits(self.distributions(tests), tests)


class HybridModel:
    """The LSTM and IDyOM's n-gram models, their predictions combined note by note.

    ``ngram_models`` picks the n-gram side (:data:`labkit.ngram.IDYOM_MODELS`): ``"stm"``
    adds a short-term model that learns the test tune as it is read (the LSTM's
    weights stay fixed; the short-term model supplies what the tune itself has
    repeated so far); ``"both+"`` (the default) adds the long-term model too, which
    learns each test tune as it predicts it. The distributions are combined by
    :func:`labkit.ngram.combine` (IDyOM's entropy-weighted geometric mean, ``bias``).
    ``members > 1`` uses an :class:`LSTMEnsemble` (with ``transposes``) for the LSTM side.
    Every model is trained on the same fold (and pretraining) tunes only. The default
    bias, 2, was chosen on the Bach chorales and another Essen set, not on ``kinder``
    (IDyOM uses 7 for its two n-gram models).

    Notebook: 04_lstm_melody_model.ipynb
    """

    def __init__(self, alphabet_size: int, settings: LSTMSettings | None = None, cache: dict | None = None, *,
                 ngram_models: str = "both+", bias: float = 2.0, combination: str = "geometric",
                 max_order: int | None = None, members: int = 1, transposes: Sequence[int] | None = None):
        from labkit.ngram import IdyomModel

        self.lstm = (LSTMModel(alphabet_size, settings, cache) if members == 1
                     else LSTMEnsemble(alphabet_size, settings, cache, members, transposes))
        self.ngram = IdyomModel(alphabet_size, ngram_models, max_order=max_order)
        self.bias, self.combination = float(bias), combination

    def fit(self, train: Sequence[np.ndarray], pretrain: Sequence[np.ndarray] | None = None) -> None:
        """Train the LSTM (:meth:`LSTMModel.fit`) and the n-gram long-term model (on ``pretrain + train``)."""
        self.lstm.fit(train, pretrain=pretrain)
        if self.ngram.models != "stm":
            self.ngram.fit(list(pretrain or []) + list(train))

    def score(self, tests: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Bits of every symbol of each test tune under the combined prediction, tunes read in order."""
        from labkit.ngram import combine

        out = []
        for dist, test in zip(self.lstm.distributions(tests), tests):
            parts = [dist] + self.ngram.component_distributions(test)
            out.extend(_bits([combine(parts, self.combination, self.bias)], [test]))
        return out


@functools.cache
def _log_softmax_fn():
    """A jitted ``(model, tokens [B, T+1]) -> log p(. | tokens[:, :t])`` ``[B, T, V]`` (built on first use)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    @nnx.jit
    def log_softmax(model, tokens):
        logits = model(tokens[:, :-1]).astype(jnp.float32)
        return jax.nn.log_softmax(logits, axis=-1)

    return log_softmax


# =====================================================================================
# Reading melodies for an evaluation
# =====================================================================================

def read_melody(path: str | os.PathLike, steps_per_quarter: int = 4) -> Melody:
    """The melody of one MIDI file: :func:`labkit.midi_io.read_midi`, then :func:`labkit.melody.tune_melody`.

    Raises a :class:`LabkitError` naming the file when it cannot be read or holds no notes.

    Notebook: 04_lstm_melody_model.ipynb
    """
    from labkit.melody import tune_melody
    from labkit.midi_io import read_midi

    melody = tune_melody(read_midi(path), steps_per_quarter=steps_per_quarter)
    return melody.replace(source=os.fspath(path))


def load_midi_dir(midi_dir: str | os.PathLike, steps_per_quarter: int = 4
                  ) -> tuple[list[Melody], list[tuple[str, str]]]:
    """Melodies of every MIDI file under a folder (recursively, sorted by path).

    Returns ``(melodies, skipped)``: one :class:`Melody` per readable file (its
    ``source`` is the path), and ``(path, problem)`` for each entry that could not be
    read or holds no notes (see :func:`labkit._common.find_midi_files`); the good files
    are all kept. Paths are printable text (:func:`labkit._common.display_name`).

    Raises :class:`CorpusError` if the folder does not exist.

    Notebook: 04_lstm_melody_model.ipynb
    """
    root = Path(midi_dir)
    if not root.is_dir():
        raise CorpusError("not a folder", root)
    melodies, skipped = [], []
    for path, problem in find_midi_files(root):
        if problem:                   # no MIDI file in the folder, a broken or looping link, a folder x.mid
            skipped.append((display_name(path), problem))
            continue
        try:
            melodies.append(read_melody(path, steps_per_quarter).replace(source=display_name(path)))
        except LabkitError as exc:
            skipped.append((display_name(path), display_name(exc.problem)))
    return melodies, skipped


def load_corpus_melodies(*, subsets=None, styles=None, collections=None, ids=None, root=None,
                         steps_per_quarter: int = 4) -> tuple[list[Melody], list[tuple[str, str]]]:
    """Melodies of the shipped corpus tunes that match the filters (see :func:`labkit.corpus.select`).

    ``ids``: tune ids or shell-style patterns (``"bach-bwv3[0-9][0-9]"``); a tune is kept when its id
    matches one of them. Raises :class:`ConfigError` when a pattern matches no tune.

    Each melody is the whole tune (a chorale's soprano), read with
    :func:`labkit.corpus.read_tune` and :func:`labkit.melody.tune_melody`; its ``source``
    is the tune id. Returns ``(melodies, skipped)`` like :func:`load_midi_dir`.

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> kinder, _ = load_corpus_melodies(subsets="kinder0")     # doctest: +SKIP
        >>> len(kinder), sum(len(m.pitches) for m in kinder)        # doctest: +SKIP
        (213, 8393)
    """
    from labkit.corpus import load_manifest, read_tune, select
    from labkit.melody import tune_melody

    rows = select(load_manifest(root), styles=styles, collections=collections, subsets=subsets)
    if ids is not None:
        import fnmatch

        patterns = [ids] if isinstance(ids, str) else list(ids)
        hits = [rows["id"].map(lambda i, p=p: fnmatch.fnmatchcase(i, p)) for p in patterns]
        for pattern, hit in zip(patterns, hits):
            if not hit.any():
                raise ConfigError(f"no corpus tune (of those selected) matches the id {pattern!r}")
        rows = rows[np.logical_or.reduce([h.to_numpy() for h in hits])]
    melodies, skipped = [], []
    for row in rows.to_dict("records"):
        try:
            melody = tune_melody(read_tune(row, root), steps_per_quarter=steps_per_quarter)
            melodies.append(melody.replace(source=row["id"]))
        except LabkitError as exc:
            skipped.append((row["id"], exc.problem))
    return melodies, skipped


def usable_for_view(melodies: Sequence[Melody], view="pitch") -> tuple[list[Melody], list[tuple[str, str]]]:
    """Split melodies into those the view can turn into symbols (with at least one note) and the rest.

    Returns ``(kept, skipped)`` with ``(source, problem)`` for each skipped melody.

    Notebook: 04_lstm_melody_model.ipynb
    """
    view_fn, alphabet = _view(view)
    kept, skipped = [], []
    for m in melodies:
        if not len(m.pitches):
            skipped.append((m.source, "no notes"))
            continue
        try:
            symbols = view_fn(m)
        except LabkitError as exc:
            skipped.append((m.source, exc.problem))
            continue
        if len(symbols) and (symbols.min() < 0 or symbols.max() >= alphabet):
            skipped.append((m.source, f"symbol outside 0..{alphabet - 1}"))
            continue
        kept.append(m)
    return kept, skipped
