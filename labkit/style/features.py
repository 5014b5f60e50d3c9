"""Style features of a melody: what a logistic-regression style classifier sees.

A melody (:class:`labkit.melody.Melody`) becomes one fixed-length vector of
numbers, built from *feature groups*. Each group answers one musical question:

=================  =====  ==========================================================
group              dims   what it measures (one row of the feature matrix per tune)
=================  =====  ==========================================================
``pitch_class``    12     how often each pitch class C, C#, ..., B is played (notes)
``scale_degree``   24     12: time spent on each degree above the tonic (in quarters);
                          12: one-hot of the final note's degree (the cadence)
``interval``       25     steps between successive notes, -12..+12 semitones
                          (larger leaps are clipped to +-12)
``register``       5      lowest, highest, mean and std pitch, and range (semitones)
``contour``        6      up / down / repeated moves, mean and largest |interval|
                          (semitones), changes of melodic direction
``duration``       13     note lengths on a log scale: bins centred on 2**(k/2)
                          quarters, k = -6..6 (1/8 ... 8 quarters; dotted notes and
                          triplets fall in the in-between bins)
``density``        4      notes per quarter, rest fraction, rests per note, length
``onset_position`` 24     where notes start within the bar: the bar cut in 24 equal
                          slots (24 divides into 2, 3, 4, 6, 8 and 12 beats)
``metre``          11     the time signature, one-hot: numerator 2, 3, 4, 6, 9, 12,
                          other; denominator 2, 4, 8, other
``interval_ngram`` 2048   hashed counts of 2- and 3-grams of intervals (+-24)
``duration_ngram`` 2048   hashed counts of 2- and 3-grams of (duration bin, rest
                          before?) tokens
``interval_duration_ngram``  hashed counts of 1-, 2- and 3-grams of joint (interval,
                   2048   duration bin of the note it leads to) tokens: melody and
                          rhythm together ("up a fourth to a dotted quarter")
``metric_ngram``   2048   hashed counts of 1- and 2-grams of (onset slot in the bar,
                          duration bin, rest before?) tokens, 16 slots per bar:
                          which note lengths fall where in the bar
``bar_rhythm``     2048   hashed counts of whole-bar onset patterns: each bar's
                          onsets as a 16-bit mask of its 16 slots (a jig bar
                          ``x.x.x.x.x.x.....`` against a hornpipe's dotted pairs)
``form``           48     the tune's form, bar by bar: how many bars, the pickup,
                          how many bars repeat an earlier bar (exactly, in rhythm,
                          in intervals), how alike bars 1, 2, ... 32 bars apart are,
                          whether the last two bars "rhyme" with earlier ones, where
                          the tune is high and low, how it ends
``form_by_metre``  240    the ``form`` columns again, in one block of 48 per time
                          signature numerator 2, 3, 4, 6 or 9 (zeros elsewhere): a
                          reel and a jig may repeat themselves differently
=================  =====  ==========================================================

(The hashed groups have ``ngram_dims`` columns each, 2048 by default.) Step 0 of a
melody is taken to be the start of a bar, as in a quantized NoteSequence.

Two *variants*, after the source paper's "raw" and "processed" features:

* ``"raw"``: absolute pitches, histograms and counters left as counts, no key
  normalisation. Long tunes have large values; the key shifts the pitch classes.
* ``"processed"``: the melody is first transposed to a common key
  (:func:`labkit.melody.normalize_key`), and a tune notated in long note
  values (halves and wholes, as in old sources) is re-read in short ones
  (:func:`labkit.melody.normalize_note_values`); histograms and counters become
  frequencies (each histogram sums to 1), lengths go on a log scale. Before a
  model sees them, columns are standardised with the *training* split's mean
  and standard deviation (:class:`Standardizer`).

Hashed n-gram columns are many and sparse: most buckets are empty in most
tunes. Standardising each such column by its own standard deviation blows a
rare n-gram up to the weight of a common one, and the model overfits to rare
n-grams (so that 2,048 buckets per family scored *below* 256). Given the
column names, :meth:`Standardizer.fit` therefore square-roots the hashed
groups (the Hellinger transform of a frequency vector) and gives each hashed
group one shared scale, the mean standard deviation of its columns.

The two form groups are the same in both variants (they compare bars and
positions, which neither the key nor counting changes; only the last note's
length, in quarters, follows a re-read notation), and are computed tune by tune
from the melody's step grid rather than batched.

*Segment* ("paragraph") features: the melody is cut into phrases
(:func:`labkit.melody.split_phrases`); every dense group is computed per phrase
and summarised over the tune by its mean and standard deviation over phrases,
next to the tune-level features and four phrase statistics (phrase count, mean
and std phrase length in quarters, mean notes per phrase). The n-gram and form
groups stay tune-level (an n-gram group's phrase mean is nearly the tune's own
histogram; form is a property of the whole tune). The phrase
mean of ``scale_degree``'s final-note part is the distribution of phrase
cadences, a property of style that no tune-level histogram shows.

Everything is computed for a whole batch at once: the notes of all melodies
(or phrases) are laid end to end in flat arrays with a segment id per note,
and every histogram is one ``np.bincount`` over ``segment * bins + bin``.

Beside the groups, :func:`melody_model_features` gives what a trained melody
LSTM hears in a tune: the mean and standard deviation of its hidden state over
the tune. They are no group of the feature matrix, because they depend on a
trained model and not on the melody alone (notebook 07, ``python -m labkit
style experiment --with-lstm``).

Choosing among the columns (mutual information, L1) is :mod:`labkit.style.selection`.

Notebook: 06_style_features.ipynb
"""
from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from labkit._common import KEY_TONIC_NAMES
from labkit.errors import ConfigError, EncodingError

# ----------------------------------------------------------------------------------
# Groups, their sizes and the column names
# ----------------------------------------------------------------------------------

#: Every feature group, in the order their columns appear in a feature matrix.
FEATURE_GROUPS: tuple[str, ...] = (
    "pitch_class", "scale_degree", "interval", "register", "contour", "duration",
    "density", "onset_position", "metre", "interval_ngram", "duration_ngram",
    "interval_duration_ngram", "metric_ngram", "bar_rhythm", "form", "form_by_metre",
)

#: The groups whose columns are few and dense, summarised over phrases in paragraph mode.
DENSE_GROUPS: tuple[str, ...] = FEATURE_GROUPS[:9]
#: The hashed groups (``ngram_dims`` columns each).
NGRAM_GROUPS: tuple[str, ...] = FEATURE_GROUPS[9:14]
#: The groups that describe the whole tune's form (tune-level only, nearly the same in both variants).
FORM_GROUPS: tuple[str, ...] = FEATURE_GROUPS[14:]
#: The feature set of the first course version (before the joint and metrical n-grams).
BASIC_GROUPS: tuple[str, ...] = FEATURE_GROUPS[:11]

#: The paper's five feature groups ("each with its own model"), as unions of our groups.
PAPER_GROUPS: dict[str, tuple[str, ...]] = {
    "pitch": ("pitch_class", "scale_degree", "register"),
    "interval": ("interval",),
    "rhythm": ("duration", "density", "onset_position", "metre", "metric_ngram", "bar_rhythm"),
    "contour": ("contour", "form", "form_by_metre"),
    "ngram": ("interval_ngram", "duration_ngram", "interval_duration_ngram"),
}

VARIANTS = ("raw", "processed")
NGRAM_DIMS = 2048          # default columns of each hashed n-gram group
NGRAM_ORDERS = (2, 3)      # n of the interval and duration n-grams
#: n of the n-grams of each hashed group.
GROUP_NGRAM_ORDERS: dict[str, tuple[int, ...]] = {
    "interval_ngram": NGRAM_ORDERS, "duration_ngram": NGRAM_ORDERS,
    "interval_duration_ngram": (1, 2, 3), "metric_ngram": (1, 2), "bar_rhythm": (1,),
}
METRIC_SLOTS = 16          # slots per bar of the metric n-grams and bar patterns
MAX_INTERVAL = 12          # interval histogram range +-12 semitones
NGRAM_MAX_INTERVAL = 24    # interval n-gram tokens are clipped to +-24
DURATION_BINS = 13         # k = -6..6, bin centre 2**(k/2) quarters
ONSET_SLOTS = 24           # slots per bar in the onset-position histogram
METRE_NUMERATORS = (2, 3, 4, 6, 9, 12)
METRE_DENOMINATORS = (2, 4, 8)
PHRASE_STATS = ("count", "length_mean", "length_std", "notes_mean")
FORM_LAGS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)   # bar distances whose likeness ``form`` measures
FORM_RHYME_LAGS = (2, 4, 8, 16)                  # the last two bars against those this many bars earlier
FORM_METRE_NUMERATORS = (2, 3, 4, 6, 9)          # the blocks of ``form_by_metre``

def group_dims(group: str, ngram_dims: int = NGRAM_DIMS) -> int:
    """Number of columns of one feature group.

    >>> group_dims("interval"), group_dims("interval_ngram", 512)
    (25, 512)

    Notebook: 06_style_features.ipynb
    """
    return len(_group_names(group, ngram_dims))


def _group_names(group: str, ngram_dims: int) -> list[str]:
    if group == "pitch_class":
        labels = list(KEY_TONIC_NAMES)
    elif group == "scale_degree":
        labels = [f"time_{d}" for d in range(12)] + [f"final_{d}" for d in range(12)]
    elif group == "interval":
        labels = [f"{i:+d}" for i in range(-MAX_INTERVAL, MAX_INTERVAL + 1)]
    elif group == "register":
        labels = ["min", "max", "mean", "std", "range"]
    elif group == "contour":
        labels = ["up", "down", "same", "mean_abs_interval", "max_abs_interval", "direction_changes"]
    elif group == "duration":
        labels = [f"{2 ** (k / 2):.3g}q" for k in range(-6, 7)]
    elif group == "density":
        labels = ["notes_per_quarter", "rest_fraction", "rests_per_note", "length"]
    elif group == "onset_position":
        labels = [f"slot_{s:02d}" for s in range(ONSET_SLOTS)]
    elif group == "metre":
        labels = ([f"num_{n}" for n in METRE_NUMERATORS] + ["num_other"]
                  + [f"den_{d}" for d in METRE_DENOMINATORS] + ["den_other"])
    elif group in NGRAM_GROUPS:
        labels = [f"{b:04d}" for b in range(ngram_dims)]
    elif group == "form":
        labels = _FORM_LABELS
    elif group == "form_by_metre":
        labels = [f"num_{n}:{label}" for n in FORM_METRE_NUMERATORS for label in _FORM_LABELS]
    else:
        raise ConfigError(f"unknown feature group {group!r}; choose from {', '.join(FEATURE_GROUPS)}")
    return [f"{group}:{label}" for label in labels]


_FORM_LABELS = (
    ["bars_log", "pickup", "repeated_bars", "repeated_bar_rhythms", "repeated_bar_intervals",
     "bars_multiple_of_8", "bars_multiple_of_4", "bars_8k_plus_1"]
    + [f"{kind}_bar_lag_{lag}" for lag in FORM_LAGS for kind in ("same", "alike")]
    + [f"{kind}_bar_lag_{part}_tune" for part in ("quarter", "half") for kind in ("same", "alike")]
    + [f"ending_rhyme_{lag}" for lag in FORM_RHYME_LAGS] + ["ending_rhyme_max"]
    + [f"pitch_quarter_{q}" for q in range(1, 5)]
    + ["highest_at", "lowest_at", "range_first_half", "range_second_half", "repeated_4_bars",
       "last_onset_in_bar", "last_note_quarters"])

#: Columns of each group at the default ``ngram_dims``.
GROUP_DIMS: dict[str, int] = {g: len(_group_names(g, NGRAM_DIMS)) for g in FEATURE_GROUPS}


def _check_groups(groups) -> tuple[str, ...]:
    if groups is None:
        return FEATURE_GROUPS
    if isinstance(groups, str):
        groups = (groups,)
    groups = tuple(groups)
    for g in groups:
        if g not in FEATURE_GROUPS:
            raise ConfigError(f"unknown feature group {g!r}; choose from {', '.join(FEATURE_GROUPS)}")
    if len(set(groups)) != len(groups):
        raise ConfigError(f"feature groups listed twice: {groups}")
    # Keep the canonical order so that names do not depend on how groups were listed.
    return tuple(g for g in FEATURE_GROUPS if g in groups)


def _check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ConfigError(f"unknown feature variant {variant!r}; choose 'raw' or 'processed'")
    return variant


def feature_names(groups=None, paragraph: bool = False, ngram_dims: int = NGRAM_DIMS) -> list[str]:
    """Column names of :func:`feature_matrix` for these settings, ``"group:label"`` each.

    In paragraph mode the phrase summaries are named ``"phrase_mean:group:label"``,
    ``"phrase_std:group:label"`` and ``"phrase:count"`` etc.

    >>> feature_names(["interval"])[:2]
    ['interval:-12', 'interval:-11']

    Notebook: 06_style_features.ipynb
    """
    groups = _check_groups(groups)
    names = [n for g in groups for n in _group_names(g, ngram_dims)]
    if paragraph:
        dense = [n for g in groups if g in DENSE_GROUPS for n in _group_names(g, ngram_dims)]
        names += [f"phrase_mean:{n}" for n in dense] + [f"phrase_std:{n}" for n in dense]
        names += [f"phrase:{s}" for s in PHRASE_STATS]
    return names


# ----------------------------------------------------------------------------------
# A stable hash for n-grams (Python's hash() changes with every process)
# ----------------------------------------------------------------------------------

_M64 = (1 << 64) - 1


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: mixes every bit of a uint64 into every other bit."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def hash_ngrams(tokens, family: str, dims: int) -> np.ndarray:
    """Stable bucket index of each n-gram: the same in every process, machine and run.

    Args:
        tokens: int array ``[m, n]``, one n-gram per row, every token in 0..2**16-1.
        family: a name that separates vocabularies (``"interval"``, ``"duration"``),
            so that equal token numbers from two families land in unrelated buckets.
        dims: number of buckets.

    Returns:
        int64 array ``[m]`` of bucket indices in ``0..dims-1``.

    The n-gram ``(t_1, ..., t_n)`` is folded into one 64-bit number
    (``h = h * 2**16 + t`` over the tokens, starting from the CRC-32 of
    ``family`` and ``n``) and mixed with SplitMix64; the bucket is that number
    modulo ``dims``. All arithmetic is unsigned 64-bit and wraps around.

    >>> int(hash_ngrams([[12, 14]], "interval", 2048)[0]) == int(hash_ngrams([[12, 14]], "interval", 2048)[0])
    True

    Notebook: 06_style_features.ipynb
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 2:
        raise ConfigError(f"n-gram tokens must be a 2-d array [m, n], got shape {tokens.shape}")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= 1 << 16):
        raise ConfigError("n-gram tokens must lie in 0..65535")
    if dims < 1:
        raise ConfigError(f"dims must be >= 1, got {dims}")
    n = tokens.shape[1]
    seed = zlib.crc32(f"{family}/{n}".encode("utf-8")) & 0xFFFFFFFF
    h = np.full(tokens.shape[0], seed, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            h = _splitmix64((h << np.uint64(16)) | tokens[:, j].astype(np.uint64))
    return (h % np.uint64(dims)).astype(np.int64)


# ----------------------------------------------------------------------------------
# Notes of a batch of segments, laid end to end
# ----------------------------------------------------------------------------------

@dataclass
class _Batch:
    """The notes of S segments (tunes or phrases) in flat arrays, segment after segment."""

    seg: np.ndarray        # [N] segment id of each note (sorted: segments are contiguous)
    pitch: np.ndarray      # [N] MIDI pitch
    start: np.ndarray      # [N] onset step, counted from the melody's step 0 (bar origin)
    end: np.ndarray        # [N] end step (exclusive)
    spq: np.ndarray        # [S] steps per quarter
    tonic: np.ndarray      # [S] pitch class of the key's tonic
    numerator: np.ndarray  # [S]
    denominator: np.ndarray  # [S]

    @property
    def size(self) -> int:
        return len(self.spq)


def _batch(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], meta: list[tuple[int, int, int, int]]) -> _Batch:
    counts = np.array([len(p[0]) for p in parts], dtype=np.int64)
    seg = np.repeat(np.arange(len(parts)), counts)
    cat = (lambda i: np.concatenate([p[i] for p in parts]).astype(np.int64)) if parts else (lambda i: np.zeros(0, np.int64))
    meta_arr = np.asarray(meta, dtype=np.int64).reshape(-1, 4)
    return _Batch(seg, cat(0), cat(1), cat(2), np.maximum(meta_arr[:, 0], 1), meta_arr[:, 1] % 12,
                  meta_arr[:, 2], meta_arr[:, 3])


def _hist(seg: np.ndarray, bins: np.ndarray, nbins: int, size: int, weights=None) -> np.ndarray:
    """[size, nbins] histogram of ``bins`` per segment (optionally weighted)."""
    flat = np.bincount(seg * nbins + bins, weights=weights, minlength=size * nbins)
    return flat.reshape(size, nbins).astype(np.float64)


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, dtype=np.float64)
    if a.ndim == 2 and b.ndim == 1:
        b = b[:, None]
    return np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b > 0)


def _segment_reduce(ufunc, values: np.ndarray, seg: np.ndarray, size: int) -> np.ndarray:
    """Per-segment min/max of values sorted by segment; 0 for empty segments."""
    out = np.zeros(size)
    if len(values):
        first = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
        out[seg[first]] = ufunc.reduceat(values, first)
    return out


def _duration_bin(quarters: np.ndarray) -> np.ndarray:
    k = np.rint(2 * np.log2(np.maximum(quarters, 1e-9)))
    return (np.clip(k, -6, 6) + 6).astype(np.int64)


def _dense_features(b: _Batch, groups: Sequence[str], variant: str) -> dict[str, np.ndarray]:
    """Every requested dense group for every segment: {group: float64 [S, dims]}."""
    S, seg, pitch = b.size, b.seg, b.pitch
    processed = variant == "processed"
    count = np.bincount(seg, minlength=S).astype(np.float64)          # notes per segment
    dur_q = (b.end - b.start) / b.spq[seg]                            # note lengths, quarters
    same = seg[1:] == seg[:-1]                                        # consecutive notes share a segment
    iv = (pitch[1:] - pitch[:-1])[same]
    iv_seg = seg[1:][same]
    n_iv = np.bincount(iv_seg, minlength=S).astype(np.float64)
    out: dict[str, np.ndarray] = {}
    norm = (lambda h, total: _safe_div(h, total)) if processed else (lambda h, total: h)

    for g in groups:
        if g == "pitch_class":
            out[g] = norm(_hist(seg, pitch % 12, 12, S), count)
        elif g == "scale_degree":
            degree = (pitch - b.tonic[seg]) % 12
            time = _hist(seg, degree, 12, S, weights=dur_q)
            final = np.zeros((S, 12))
            has = count > 0
            last = np.cumsum(count.astype(np.int64))[has] - 1
            final[np.flatnonzero(has), degree[last]] = 1.0
            out[g] = np.concatenate([norm(time, time.sum(1)), final], axis=1)
        elif g == "interval":
            clipped = np.clip(iv, -MAX_INTERVAL, MAX_INTERVAL) + MAX_INTERVAL
            out[g] = norm(_hist(iv_seg, clipped, 2 * MAX_INTERVAL + 1, S), n_iv)
        elif g == "register":
            mean = _safe_div(np.bincount(seg, weights=pitch, minlength=S), count)
            sq = _safe_div(np.bincount(seg, weights=pitch.astype(np.float64) ** 2, minlength=S), count)
            lo = _segment_reduce(np.minimum, pitch, seg, S)
            hi = _segment_reduce(np.maximum, pitch, seg, S)
            out[g] = np.stack([lo, hi, mean, np.sqrt(np.maximum(sq - mean ** 2, 0)), hi - lo], axis=1)
        elif g == "contour":
            sign = np.sign(iv)
            moves = _hist(iv_seg, sign + 1, 3, S)[:, [2, 0, 1]]       # up, down, same
            mean_abs = _safe_div(np.bincount(iv_seg, weights=np.abs(iv), minlength=S), n_iv)
            max_abs = _segment_reduce(np.maximum, np.abs(iv), iv_seg, S)
            moving = sign != 0
            s, s_seg = sign[moving], iv_seg[moving]
            turns = (s[1:] != s[:-1]) & (s_seg[1:] == s_seg[:-1])
            changes = np.bincount(s_seg[1:][turns], minlength=S).astype(np.float64)
            n_moving = np.bincount(s_seg, minlength=S).astype(np.float64)
            if processed:
                moves, changes = _safe_div(moves, n_iv), _safe_div(changes, np.maximum(n_moving - 1, 0))
            out[g] = np.concatenate([moves, mean_abs[:, None], max_abs[:, None], changes[:, None]], axis=1)
        elif g == "duration":
            out[g] = norm(_hist(seg, _duration_bin(dur_q), DURATION_BINS, S), count)
        elif g == "density":
            has = count > 0
            first = np.zeros(S, np.int64)
            last_end = np.zeros(S, np.int64)
            starts_at = np.r_[0, np.cumsum(count.astype(np.int64))[:-1]]
            first[has] = b.start[starts_at[has]]
            last_end[has] = b.end[np.cumsum(count.astype(np.int64))[has] - 1]
            span_q = (last_end - first) / b.spq
            sound_q = np.bincount(seg, weights=dur_q, minlength=S)
            silent_q = np.maximum(span_q - sound_q, 0.0)
            rest_before = (b.start[1:] > b.end[:-1]) & same
            rests = np.bincount(seg[1:][rest_before], minlength=S).astype(np.float64)
            if processed:
                cols = [_safe_div(count, span_q), _safe_div(silent_q, span_q), _safe_div(rests, count),
                        np.log2(1.0 + span_q)]
            else:
                cols = [count, silent_q, rests, span_q]
            out[g] = np.stack(cols, axis=1)
        elif g == "onset_position":
            bar = _bar_steps(b)
            pos = b.start % bar[seg]
            slot = (pos * ONSET_SLOTS) // bar[seg]
            out[g] = norm(_hist(seg, slot, ONSET_SLOTS, S), count)
        elif g == "metre":
            num = np.full(S, len(METRE_NUMERATORS))
            for i, v in enumerate(METRE_NUMERATORS):
                num[b.numerator == v] = i
            den = np.full(S, len(METRE_DENOMINATORS))
            for i, v in enumerate(METRE_DENOMINATORS):
                den[b.denominator == v] = i
            onehot = np.zeros((S, 11))
            onehot[np.arange(S), num] = 1.0
            onehot[np.arange(S), len(METRE_NUMERATORS) + 1 + den] = 1.0
            out[g] = onehot
    return out


def _ngram_tokens(b: _Batch, group: str):
    """Tokens of one hashed group: ``(tokens [m], segment of each token [m], family)``.

    Tokens of a segment are contiguous and in time order; an n-gram is ``n``
    consecutive tokens of one segment.
    """
    seg = b.seg
    same = seg[1:] == seg[:-1]
    dur_bin = _duration_bin((b.end - b.start) / b.spq[seg])
    rest_before = np.r_[False, (b.start[1:] > b.end[:-1]) & same]
    if group == "interval_ngram":
        iv = (b.pitch[1:] - b.pitch[:-1])[same]
        return np.clip(iv, -NGRAM_MAX_INTERVAL, NGRAM_MAX_INTERVAL) + NGRAM_MAX_INTERVAL, seg[1:][same], "interval"
    if group == "duration_ngram":
        return dur_bin + DURATION_BINS * rest_before, seg, "duration"
    if group == "interval_duration_ngram":
        iv = np.clip((b.pitch[1:] - b.pitch[:-1])[same], -NGRAM_MAX_INTERVAL, NGRAM_MAX_INTERVAL) + NGRAM_MAX_INTERVAL
        return iv * DURATION_BINS + dur_bin[1:][same], seg[1:][same], "interval_duration"
    bar = _bar_steps(b)[seg]
    slot = ((b.start % bar) * METRIC_SLOTS) // bar
    if group == "metric_ngram":
        return (slot * DURATION_BINS + dur_bin) * 2 + rest_before, seg, "metric"
    if group == "bar_rhythm":
        # One token per (segment, bar): the OR of 2**slot over the bar's onsets.
        bar_no = b.start // bar
        new_bar = np.r_[True, (bar_no[1:] != bar_no[:-1]) | ~same][:len(bar_no)]   # no notes: no bars
        which = np.cumsum(new_bar) - 1
        masks = np.zeros(int(new_bar.sum()), np.int64)
        np.bitwise_or.at(masks, which, np.left_shift(1, slot))
        return masks, seg[new_bar], "bar_rhythm"
    raise ConfigError(f"{group!r} is not a hashed feature group")


def _bar_steps(b: _Batch) -> np.ndarray:
    """Steps per bar of each segment (4 quarters where the time signature is unusable)."""
    bar = np.rint(b.spq * 4 * b.numerator / np.maximum(b.denominator, 1)).astype(np.int64)
    return np.where(bar >= 1, bar, 4 * b.spq)


def _ngram_triplets(b: _Batch, group: str, variant: str, dims: int):
    """Sparse n-gram counts: (segment ids, bucket ids, values), one entry per n-gram."""
    tokens, tok_seg, family = _ngram_tokens(b, group)
    segs, buckets = [], []
    for n in GROUP_NGRAM_ORDERS[group]:
        if len(tokens) < n:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(tokens, n)
        valid = tok_seg[: len(windows)] == tok_seg[n - 1:]
        segs.append(tok_seg[: len(windows)][valid])
        buckets.append(hash_ngrams(windows[valid], family, dims))
    segs = np.concatenate(segs) if segs else np.zeros(0, np.int64)
    buckets = np.concatenate(buckets) if buckets else np.zeros(0, np.int64)
    values = np.ones(len(segs))
    if variant == "processed":
        total = np.bincount(segs, minlength=b.size).astype(np.float64)
        values = values / total[segs]
    return segs, buckets, values


def _densify(segs, buckets, values, size: int, dims: int) -> np.ndarray:
    out = np.bincount(segs * dims + buckets, weights=values, minlength=size * dims)
    return out.reshape(size, dims)


# ----------------------------------------------------------------------------------
# Form: the tune cut into bars and compared with itself
# ----------------------------------------------------------------------------------

def _repeated_fraction(keys) -> float:
    """The fraction of ``keys`` (one per bar or section) equal to an earlier one."""
    keys = list(keys)
    seen: set = set()
    repeats = 0
    for key in keys:
        repeats += key in seen
        seen.add(key)
    return repeats / max(len(keys), 1)


def _form_row(melody, end: int) -> np.ndarray:
    """The ``form`` columns of one melody whose last note ends at step ``end`` (see ``_FORM_LABELS``).

    The step grid, up to the end of the last note, is cut into bars of the time
    signature's length, step 0 being the start of a bar. Two bars are the *same*
    when their events are equal (pitches, rhythm and rests); how *alike* they
    are is the fraction of steps at which the same pitch sounds (or both rest).
    The last bar may be partial; note-offs pad it.
    """
    from labkit.melody import NO_EVENT, NOTE_OFF

    ev = melody.events
    spq = max(int(melody.steps_per_quarter), 1)
    onsets = np.flatnonzero(ev >= 0)
    row = np.zeros(len(_FORM_LABELS))
    if not len(onsets):
        return row
    bar = int(round(spq * 4 * melody.numerator / max(melody.denominator, 1)))
    bar = bar if bar >= 1 else 4 * spq
    n = int(end)                                        # the tune ends where its last note ends
    nb = -(-n // bar)
    grid = np.full(nb * bar, NOTE_OFF, dtype=np.int64)
    grid[:n] = ev[:n]
    # The pitch sounding at each step (-1 in a rest): carry each event forward over NO_EVENT steps.
    last_event = np.maximum.accumulate(np.where(grid != NO_EVENT, np.arange(len(grid)), 0))
    sounding = np.where(grid[last_event] >= 0, grid[last_event], -1)
    bars, heard = grid.reshape(nb, bar), sounding.reshape(nb, bar)

    values = [np.log1p(nb), (onsets[0] % bar) / bar,
              _repeated_fraction(tuple(b) for b in bars),
              _repeated_fraction(tuple(b >= 0) for b in bars),
              _repeated_fraction(tuple(np.diff(b[b >= 0])) for b in bars),
              nb % 8 == 0, nb % 4 == 0, (nb - 1) % 8 == 0]
    for lag in FORM_LAGS + (nb // 4, nb // 2):
        if 0 < lag < nb:
            values += [np.mean(np.all(bars[lag:] == bars[:-lag], axis=1)), np.mean(heard[lag:] == heard[:-lag])]
        else:
            values += [0.0, 0.0]
    rhymes = [np.mean(heard[nb - 2:] == heard[nb - 2 - lag: nb - lag]) if nb >= lag + 2 else 0.0
              for lag in FORM_RHYME_LAGS]
    values += rhymes + [max(rhymes)]
    pitch = ev[onsets].astype(np.float64)
    where = onsets / n                                   # position of each note in the tune, 0..1
    for q in range(4):
        inside = (where >= q / 4) & (where < (q + 1) / 4)
        values.append(pitch[inside].mean() - pitch.mean() if inside.any() else 0.0)
    first, second = pitch[where < 0.5], pitch[where >= 0.5]
    values += [where[np.argmax(pitch)], where[np.argmin(pitch)],
               np.ptp(first) if len(first) else 0.0, np.ptp(second) if len(second) else 0.0]
    values.append(_repeated_fraction(tuple(grid[i: i + 4 * bar]) for i in range(0, (nb - 3) * bar, 4 * bar)))
    values += [(onsets[-1] % bar) / bar, (n - onsets[-1]) / spq]
    row[:] = values
    return row


def _form_features(melodies, notes, groups) -> dict[str, np.ndarray]:
    """The requested form groups of each melody (``notes``: their ``Melody.notes()``): {group: float64 [n, dims]}."""
    if not groups:
        return {}
    rows = [_form_row(m, e[-1] if len(e) else 0) for m, (_, _, e) in zip(melodies, notes)]
    form = np.array(rows).reshape(len(melodies), len(_FORM_LABELS))
    out = {}
    if "form" in groups:
        out["form"] = form
    if "form_by_metre" in groups:
        numerator = np.array([m.numerator for m in melodies])
        block = np.stack([numerator == k for k in FORM_METRE_NUMERATORS], axis=1).astype(np.float64)
        out["form_by_metre"] = (block[:, :, None] * form[:, None, :]).reshape(len(melodies), -1)
    return out


# ----------------------------------------------------------------------------------
# From melodies to batches
# ----------------------------------------------------------------------------------

def _prepare(melody, variant: str):
    """The melody the features are computed on: key- and note-value-normalised for ``processed``."""
    from labkit.melody import Melody

    if not isinstance(melody, Melody):
        raise EncodingError(f"expected a labkit.melody.Melody, got {type(melody).__name__}")
    if variant == "processed":
        from labkit.melody import normalize_key, normalize_note_values  # lazy: melody.py grows in parallel

        melody = normalize_note_values(normalize_key(melody))
    return melody


def _meta(m) -> tuple[int, int, int, int]:
    return (int(m.steps_per_quarter), int(m.key), int(m.numerator), int(m.denominator))


def _phrase_ranges(melody) -> list[tuple[int, int]]:
    """[start, end) step ranges of the phrases of ``melody`` (:func:`labkit.melody.split_phrases`).

    The phrases partition the melody's steps, so their offsets are the running
    sum of their lengths. A melody that yields no phrases is one phrase.
    """
    from labkit.melody import split_phrases  # lazy: melody.py grows in parallel

    lengths = [p.num_steps for p in split_phrases(melody)]
    if not lengths:
        return [(0, melody.num_steps)]
    edges = np.concatenate([[0], np.cumsum(lengths)])
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _features_chunk(melodies, variant: str, groups: tuple[str, ...], paragraph: bool,
                    ngram_dims: int) -> np.ndarray:
    """Feature rows of a list of melodies (the work of one process)."""
    prepared = [_prepare(m, variant) for m in melodies]
    notes = [m.notes() for m in prepared]
    meta = [_meta(m) for m in prepared]
    tunes = _batch(notes, meta)
    blocks = []
    dense = [g for g in groups if g in DENSE_GROUPS]
    feats = _dense_features(tunes, dense, variant)
    feats.update(_form_features(prepared, notes, [g for g in groups if g in FORM_GROUPS]))
    for g in groups:
        if g in DENSE_GROUPS or g in FORM_GROUPS:
            blocks.append(feats[g])
        else:
            blocks.append(_densify(*_ngram_triplets(tunes, g, variant, ngram_dims), tunes.size, ngram_dims))
    if paragraph:
        blocks.extend(_paragraph_blocks(prepared, notes, meta, dense, variant))
    width = sum(bl.shape[1] for bl in blocks)
    return (np.concatenate(blocks, axis=1) if blocks else np.zeros((len(melodies), width))).astype(np.float32)


def _paragraph_blocks(prepared, notes, meta, dense, variant):
    """Phrase mean, phrase std (of every dense group) and phrase statistics, per tune."""
    parts, phrase_meta, tune_of, lengths = [], [], [], []
    for t, (m, (p, s, e)) in enumerate(zip(prepared, notes)):
        for lo, hi in _phrase_ranges(m):
            inside = (s >= lo) & (s < hi)
            parts.append((p[inside], s[inside], np.minimum(e[inside], hi)))
            phrase_meta.append(meta[t])
            tune_of.append(t)
            lengths.append((hi - lo) / max(m.steps_per_quarter, 1))
    phrases = _batch(parts, phrase_meta)
    tune_of = np.asarray(tune_of, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.float64)
    T = len(prepared)
    k = np.bincount(tune_of, minlength=T).astype(np.float64)
    if dense:
        per_phrase = np.concatenate(list(_dense_features(phrases, dense, variant).values()), axis=1)
        d = per_phrase.shape[1]
        sums = np.zeros((T, d))
        sq = np.zeros((T, d))
        np.add.at(sums, tune_of, per_phrase)
        np.add.at(sq, tune_of, per_phrase ** 2)
        mean = _safe_div(sums, k)
        std = np.sqrt(np.maximum(_safe_div(sq, k) - mean ** 2, 0.0))
    else:
        mean = std = np.zeros((T, 0))
    notes_per = np.bincount(phrases.seg, minlength=phrases.size).astype(np.float64)
    len_mean = _safe_div(np.bincount(tune_of, weights=lengths, minlength=T), k)
    len_sq = _safe_div(np.bincount(tune_of, weights=lengths ** 2, minlength=T), k)
    stats = np.stack([k, len_mean, np.sqrt(np.maximum(len_sq - len_mean ** 2, 0)),
                      _safe_div(np.bincount(tune_of, weights=notes_per, minlength=T), k)], axis=1)
    return [mean, std, stats]


# ----------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------

def melody_features(melody, variant: str = "processed", groups=None,
                    ngram_dims: int = NGRAM_DIMS) -> dict[str, np.ndarray]:
    """The feature groups of one melody, as ``{group: float32 array [dims]}``.

    Args:
        melody: a :class:`labkit.melody.Melody`.
        variant: ``"processed"`` (key-normalised, histograms as frequencies) or
            ``"raw"`` (absolute pitch, counts).
        groups: names from :data:`FEATURE_GROUPS` (default: all of them).
        ngram_dims: columns of each hashed n-gram group.

    Example:
        >>> from labkit.melody import Melody
        >>> scale = Melody.from_notes([60, 62, 64, 65, 67, 69, 71, 72], range(0, 32, 4), range(4, 36, 4))
        >>> melody_features(scale, "raw", ["pitch_class"])["pitch_class"].tolist()
        [2.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0]

    Notebook: 06_style_features.ipynb
    """
    groups = _check_groups(groups)
    row = _features_chunk([melody], _check_variant(variant), groups, False, ngram_dims)[0]
    out, at = {}, 0
    for g in groups:
        d = group_dims(g, ngram_dims)
        out[g] = row[at: at + d]
        at += d
    return out


def feature_matrix(melodies: Iterable, variant: str = "processed", groups=None, paragraph: bool = False,
                   jobs: int = 1, ngram_dims: int = NGRAM_DIMS, chunk_size: int = 1024) -> tuple[np.ndarray, list[str]]:
    """Features of many melodies: ``(X float32 [n, d], names list of d "group:label")``.

    Args:
        melodies: :class:`labkit.melody.Melody` objects (a list or any iterable).
        variant: ``"processed"`` or ``"raw"`` (see the module docstring).
        groups: feature groups (default all; see :data:`FEATURE_GROUPS`, :data:`PAPER_GROUPS`).
        paragraph: add segment ("paragraph") features: per-phrase mean and std of
            the dense groups and phrase statistics (see the module docstring).
        jobs: worker processes (1 = this process). Each worker handles chunks of
            ``chunk_size`` melodies; the rows come back in input order.
        ngram_dims: columns of each hashed n-gram group.

    Every melody yields a row, however short: a melody with no notes gives zeros.

    Example:
        >>> from labkit.melody import Melody
        >>> X, names = feature_matrix([Melody.from_notes([60, 64], [0, 4], [4, 8])], "raw", ["interval"])
        >>> X.shape, names[16], float(X[0, 16])
        ((1, 25), 'interval:+4', 1.0)

    Notebook: 06_style_features.ipynb
    """
    variant = _check_variant(variant)
    groups = _check_groups(groups)
    if int(ngram_dims) < 1:
        raise ConfigError(f"ngram_dims must be >= 1, got {ngram_dims}")
    melodies = list(melodies)
    names = feature_names(groups, paragraph, ngram_dims)
    if not melodies:
        return np.zeros((0, len(names)), np.float32), names
    chunks = [melodies[i: i + chunk_size] for i in range(0, len(melodies), max(1, int(chunk_size)))]
    if jobs > 1 and len(chunks) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # "spawn": a forked child of a process that already runs JAX threads can deadlock.
        with ProcessPoolExecutor(max_workers=int(jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
            rows = list(pool.map(_features_chunk, chunks, *zip(*[(variant, groups, paragraph, ngram_dims)] * len(chunks))))
    else:
        rows = [_features_chunk(c, variant, groups, paragraph, ngram_dims) for c in chunks]
    X = np.concatenate(rows, axis=0)
    assert X.shape[1] == len(names), (X.shape, len(names))
    return X, names


def group_columns(names: Sequence[str], groups) -> np.ndarray:
    """Indices of the columns that belong to ``groups`` (phrase summaries included).

    >>> group_columns(["interval:+1", "contour:up", "phrase_mean:contour:up"], ["contour"]).tolist()
    [1, 2]

    Notebook: 06_style_features.ipynb
    """
    groups = set(_check_groups(groups))
    keep = []
    for i, name in enumerate(names):
        parts = name.split(":")
        group = parts[1] if parts[0] in ("phrase_mean", "phrase_std") else parts[0]
        if group in groups:
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def hashed_columns(names: Sequence[str]) -> dict[str, np.ndarray]:
    """The columns of each hashed n-gram group among ``names``: ``{group: indices}``.

    Columns of a second variant set beside the first carry its name in front
    (``"raw:interval_ngram:17"``, see :func:`labkit.style_experiment.run_experiment`);
    they form groups of their own (``"raw:interval_ngram"``).

    >>> hashed_columns(["interval:+1", "bar_rhythm:0000", "bar_rhythm:0001", "raw:bar_rhythm:0000"])
    {'bar_rhythm': array([1, 2]), 'raw:bar_rhythm': array([3])}

    Notebook: 06_style_features.ipynb
    """
    out: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        group, _, rest = name.partition(":")
        if group in VARIANTS:
            group = f"{group}:{rest.partition(':')[0]}"
        if group.rpartition(":")[2] in NGRAM_GROUPS:
            out.setdefault(group, []).append(i)
    return {g: np.asarray(v, dtype=np.int64) for g, v in out.items()}


# ----------------------------------------------------------------------------------
# What the melody model hears
# ----------------------------------------------------------------------------------

#: Steps of a tune (4 per quarter) that :func:`melody_model_features` lets the model read: 32 bars of 4/4.
MODEL_STATE_STEPS = 512

@functools.cache
def _model_state_fn():
    """A jitted ``(model, tokens [B, T], mask [B, T]) -> (mean, std) [B, H]`` of the hidden state (built on first use)."""
    import jax.numpy as jnp
    from flax import nnx

    @nnx.jit
    def model_state(model, tokens, mask):
        h = model.hidden_states(tokens)
        w = mask[..., None] / jnp.maximum(mask.sum(1), 1.0)[:, None, None]
        mean = (h * w).sum(1)
        var = (jnp.square(h - mean[:, None]) * w).sum(1)
        return mean, jnp.sqrt(var)

    return model_state


def _model_tokens(melody, encoding, max_steps: int) -> np.ndarray:
    """A melody as the melody model reads it: key-normalised, 4 steps per quarter, pitches in range, tokens."""
    from labkit.melody import Melody, normalize_key

    melody = normalize_key(melody)
    pitches, starts, ends = melody.notes()
    if len(pitches) == 0:
        return np.zeros(0, np.int32)
    if melody.steps_per_quarter != 4:     # the model's grid: sixteenth notes
        scale = 4.0 / melody.steps_per_quarter
        starts, ends = np.rint(starts * scale).astype(np.int64), np.rint(ends * scale).astype(np.int64)
        keep = np.r_[True, starts[1:] > starts[:-1]]        # notes that rounding merged: the first stays
        pitches, starts, ends = pitches[keep], starts[keep], ends[keep]
        ends = np.maximum(np.minimum(ends, np.r_[starts[1:], np.iinfo(np.int64).max]), starts + 1)
    low, high = encoding.min_pitch, encoding.max_pitch
    pitches = np.where(pitches < low, low + (pitches - low) % 12, pitches)      # by octaves into range
    pitches = np.where(pitches > high, high - (high - pitches) % 12, pitches)
    return encoding.encode(Melody.from_notes(pitches, starts, ends))[:max_steps]


def melody_model_features(melodies: Iterable, model=None, *, max_steps: int = MODEL_STATE_STEPS,
                          batch_size: int = 64) -> tuple[np.ndarray, list[str]]:
    """What a trained melody LSTM hears in each tune: ``(X float32 [n, 2H], names)``.

    The model (default: the shipped one, :func:`labkit.checkpoint.load_melody_model`)
    learned to predict the next note of folk tunes; nobody told it their
    styles. Each melody is key-normalised (as the processed features),
    put on the model's grid of four steps per quarter, encoded
    (:class:`labkit.encoding.MelodyEncoding`; a pitch outside its range moves by
    octaves into it) and read from the zero state. The top layer's output
    ``h_t`` (:meth:`labkit.models.MelodyLSTM.hidden_states`) over the first
    ``max_steps`` steps is summarised per unit by its mean (``lstm_mean:k``)
    and standard deviation (``lstm_std:k``). A melody with no notes gives zeros.

    Columns of their own, not a group of :data:`FEATURE_GROUPS`: they depend on
    a trained model, not on the melody alone. How well they tell styles apart,
    alone and beside the hand-made groups, is measured in notebook 07
    (``python -m labkit style experiment --with-lstm``).

    Raises :class:`ConfigError` for a model without ``hidden_states`` (the
    attention model) or with another vocabulary than the default encoding's.

    Example:
        >>> from labkit.melody import Melody
        >>> X, names = melody_model_features([Melody.from_notes([60, 62, 64], [0, 4, 8], [4, 8, 12])])
        >>> X.shape, names[0], names[-1]
        ((1, 512), 'lstm_mean:000', 'lstm_std:255')

    Notebook: 12_style_research_appendix.ipynb
    """
    import jax.numpy as jnp

    from labkit.encoding import MelodyEncoding

    if model is None:
        from labkit.checkpoint import load_melody_model

        model, _ = load_melody_model()
    encoding = MelodyEncoding()
    if not hasattr(model, "hidden_states"):
        raise ConfigError(f"{type(model).__name__} has no hidden_states(); use a MelodyLSTM")
    if model.vocab_size != encoding.vocab_size:
        raise ConfigError(f"the model reads {model.vocab_size} tokens, the default encoding has {encoding.vocab_size}")
    if int(max_steps) < 1 or int(batch_size) < 1:
        raise ConfigError(f"max_steps and batch_size must be >= 1, got {max_steps} and {batch_size}")
    hidden = model.hidden_size
    names = [f"lstm_mean:{k:03d}" for k in range(hidden)] + [f"lstm_std:{k:03d}" for k in range(hidden)]
    seqs = [_model_tokens(m, encoding, int(max_steps)) for m in melodies]
    X = np.zeros((len(seqs), 2 * hidden), np.float32)
    state = _model_state_fn()
    for at in range(0, len(seqs), batch_size):
        chunk = seqs[at: at + batch_size]
        width = max(64, -(-max(len(q) for q in chunk) // 64) * 64)     # lengths in 64s: few shapes to compile
        tokens = np.zeros((batch_size, width), np.int32)
        mask = np.zeros((batch_size, width), np.float32)
        for i, q in enumerate(chunk):
            tokens[i, :len(q)], mask[i, :len(q)] = q, 1.0
        mean, std = state(model, jnp.asarray(tokens), jnp.asarray(mask))
        X[at: at + len(chunk)] = np.hstack([np.asarray(mean), np.asarray(std)])[:len(chunk)]
    return X, names


@dataclass
class Standardizer:
    """Column-wise standardisation fitted on the training split: ``(f(X) - mean) / scale``.

    ``f`` is the identity, except on the columns marked in ``root``, where it is
    the square root (of a non-negative count or frequency; negative inputs are
    clipped to 0).

    Columns that do not vary in the training split (scale below ``1e-8``) get
    scale 1, so they stay constant instead of blowing up.

    Attributes:
        mean: float32 ``[d]``; scale: float32 ``[d]``;
        root: bool ``[d]`` (``None``: no column is square-rooted).

    Example:
        >>> s = Standardizer.fit(np.array([[0.0, 1.0], [2.0, 1.0]]))
        >>> s.transform(np.array([[1.0, 5.0]])).tolist()
        [[0.0, 4.0]]

    Notebook: 06_style_features.ipynb
    """

    mean: np.ndarray
    scale: np.ndarray
    root: np.ndarray | None = None

    @classmethod
    def fit(cls, X, names: Sequence[str] | None = None) -> "Standardizer":
        """Column means and standard deviations of the training matrix ``X [n, d]``.

        Args:
            X: the training features.
            names: their column names (:func:`feature_names`). When given, the
                hashed n-gram groups (:func:`hashed_columns`) are square-rooted
                and each such group gets one shared scale, the mean standard
                deviation of its (rooted) columns, instead of one per column:
                a rare n-gram then keeps a small value instead of being blown
                up to unit variance. Without names every column is standardised
                on its own.

        Example (a rare column keeps its small spread):
            >>> X = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 0.01]])
            >>> s = Standardizer.fit(X, names=["bar_rhythm:0000", "bar_rhythm:0001"])
            >>> bool(s.scale[0] == s.scale[1]), s.root.tolist()
            (True, [True, True])
        """
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] == 0:
            raise ConfigError(f"Standardizer.fit needs a non-empty matrix [n, d], got shape {X.shape}")
        root = None
        blocks: dict[str, np.ndarray] = {}
        if names is not None:
            if len(names) != X.shape[1]:
                raise ConfigError(f"Standardizer.fit: {len(names)} names for {X.shape[1]} columns")
            blocks = hashed_columns(names)
            if blocks:
                root = np.zeros(X.shape[1], dtype=bool)
                for cols in blocks.values():
                    root[cols] = True
                X = np.where(root, np.sqrt(np.maximum(X, 0.0)), X)
        scale = X.std(axis=0)
        for cols in blocks.values():
            scale[cols] = scale[cols].mean()
        scale = np.where(scale > 1e-8, scale, 1.0)
        return cls(X.mean(axis=0).astype(np.float32), scale.astype(np.float32), root)

    def transform(self, X) -> np.ndarray:
        """``(f(X) - mean) / scale`` as float32 ``[n, d]`` (any split: train, validation, test)."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.mean.shape[0]:
            raise ConfigError(f"Standardizer was fitted on {self.mean.shape[0]} columns, got shape {X.shape}")
        if self.root is not None and self.root.any():
            X = np.where(self.root, np.sqrt(np.maximum(X, 0.0)), X)
        return (X - self.mean) / self.scale

    @classmethod
    def identity(cls, d: int) -> "Standardizer":
        """A standardizer that changes nothing (mean 0, scale 1)."""
        return cls(np.zeros(d, np.float32), np.ones(d, np.float32))
