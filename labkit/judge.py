"""Objective evaluation of generated music: per-tune features and the comparison of two sets of tunes.

How far is a set of generated melodies from real music? Yang and Lerch (2018) answer with
distributions, not single numbers: compute features of every tune, then for each feature

1. the **intra-set** distances: between every pair of tunes of one set (how varied the set is);
2. the **inter-set** distances: between every tune of one set and every tune of the other;
3. a Gaussian kernel density estimate (KDE) of each list of distances;
4. the **overlap area** of the real set's intra-set density with the inter-set density,
   ``OA = integral of min(p_intra_real, p_inter)``: near 1 when a generated tune is as far from the
   real tunes as real tunes are from each other, near 0 when the sets are told apart at once;
5. the **KL divergence** ``D_KL(p_intra_real || p_inter) = integral of p_intra_real log(p_intra_real / p_inter)``
   (in nats; the direction of the toolbox's ``kl_dist(intra, inter)``): 0 for the same distribution.

Both integrals are taken by the trapezoid rule on one uniform grid of :data:`GRID_POINTS` points that
covers both lists of distances and five bandwidths beyond them; each density is normalised on that grid
first (so the overlap of a density with itself is exactly 1 and the KL divergence is never negative).
The KDE is scipy's ``gaussian_kde`` rule (Scott's bandwidth ``std * n ** -0.2``), written here in log space
so that a set whose distances are all equal (a zero bandwidth, which scipy refuses) still gets a density
(its bandwidth is then 1% of the span of all distances), and with large lists binned onto the grid first.
Distances are Euclidean: ``|a - b|`` for a number, the norm of the difference of the flattened arrays for
a histogram or a transition matrix. A feature a tune does not have (groove consistency of a tune shorter
than a bar) leaves that tune out of that feature's distances.

**Features** of a monophonic melody (:func:`tune_features`), those of Yang and Lerch's ``mgeval`` toolbox:
pitch count (distinct pitches), pitch-class histogram (share of notes per pitch class, 12), pitch-class
transition matrix (share of each pair of consecutive notes' pitch classes, 12 x 12, summing to 1),
pitch range (highest - lowest, semitones), average pitch interval (mean absolute interval between
consecutive notes, semitones), note count, average inter-onset interval, note-length histogram (share of
notes per length class, :data:`NOTE_LENGTH_CLASSES`: each note goes to the nearest class, the first of
equals, as ``mgeval`` does) and note-length transition matrix (12 x 12); and those of MusPy (Dong et al.
2020): scale consistency (the largest share of notes in one major or minor scale), pitch entropy and
pitch-class entropy (bits) and groove consistency (1 - the mean Hamming distance of consecutive bars'
onset patterns, per grid position). Times are in quarter notes, not seconds as in ``mgeval``, so a file's
tempo (arbitrary for generated music) does not move them; melodies are quantized at
:data:`JUDGE_STEPS_PER_QUARTER` steps per quarter, a grid that holds sixteenths and triplets alike.

**MusPy.** ``muspy`` 0.5.0 installs and imports with numpy 2 on Python 3.11 and 3.12 (it adds only
``bidict``, ``miditoolkit`` and ``pypianoroll``), so its functions compute pitch count
(``n_pitches_used``), pitch range, scale consistency, both entropies and groove consistency. It has no
histograms, transition matrices, intervals or inter-onset intervals: those are written here. Note that
MusPy counts a tune's bars as ``end // bar + 1``, so a tune that ends exactly on a bar line gets an
empty last bar in its groove consistency; both sets are measured the same way.

**Reading files.** A MIDI file becomes one melody (:func:`judged_melody`): the skyline of all its
pitched instruments (the highest sounding pitch; a chorale's soprano), unsplit, from the bar line before
its first note, as :mod:`labkit.style.scoring` finds melodies in multi-voice files. A file with fewer
than :data:`labkit.style.scoring.MIN_NOTES` notes cannot be judged.

References:
    Li-Chia Yang and Alexander Lerch, "On the evaluation of generative models in music", Neural
    Computing and Applications 32, 4773-4784 (2020; online 2018); the toolbox github.com/RichardYang40148/mgeval.
    Hao-Wen Dong, Ke Chen, Julian McAuley and Taylor Berg-Kirkpatrick, "MusPy: A toolkit for symbolic
    music generation", ISMIR 2020.

Notebook: 09_judging_generated_music.ipynb
"""
from __future__ import annotations

import math
import os
from typing import Iterable, Sequence

import numpy as np

from labkit._common import display_name, find_midi_files
from labkit.errors import ConfigError, LabkitError, NoMelodyError
from labkit.melody import Melody

#: Grid of the judged melodies: 12 steps per quarter hold sixteenths (3 steps) and eighth triplets (4).
JUDGE_STEPS_PER_QUARTER = 12

#: Note-length classes of ``mgeval`` in quarter notes: whole, half, quarter, 8th, 16th, the dotted
#: half/quarter/8th/16th, and the half, quarter and 8th triplets.
NOTE_LENGTH_CLASSES: tuple[float, ...] = (4.0, 2.0, 1.0, 0.5, 0.25, 3.0, 1.5, 0.75, 0.375, 4 / 3, 2 / 3, 1 / 3)
NOTE_LENGTH_NAMES: tuple[str, ...] = ("whole", "half", "quarter", "8th", "16th", "dotted half", "dotted quarter",
                                      "dotted 8th", "dotted 16th", "half triplet", "quarter triplet", "8th triplet")

#: The features, in the order of the tables. Histograms and matrices are arrays, the others numbers.
FEATURES: tuple[str, ...] = (
    "pitch_count", "pitch_class_histogram", "pitch_class_transition_matrix", "pitch_range",
    "average_pitch_interval", "note_count", "average_inter_onset_interval", "note_length_histogram",
    "note_length_transition_matrix", "scale_consistency", "pitch_entropy", "pitch_class_entropy",
    "groove_consistency",
)

_trapezoid = getattr(np, "trapezoid", None) or np.trapz   # numpy 1.26 has only trapz

#: Points of the grid on which densities are evaluated and integrated.
GRID_POINTS = 1024

#: Above this many distances, a KDE is evaluated from the distances binned onto the grid (linear binning).
EXACT_KDE_LIMIT = 4096


# ----------------------------------------------------------------------------------
# Melodies and features
# ----------------------------------------------------------------------------------

def judged_melody(sequence, *, min_notes: int | None = None) -> Melody:
    """The melody judged in a ``NoteSequence``: the skyline of all pitched instruments, unsplit.

    Quantized at :data:`JUDGE_STEPS_PER_QUARTER`; starts at the bar line before the first note.

    Raises:
        NoNotesError: no pitched notes. NoMelodyError: fewer than ``min_notes`` notes
        (default :data:`labkit.style.scoring.MIN_NOTES`). Both name ``sequence.filename``.

    Example:
        >>> from labkit.melody import melody_to_sequence
        >>> seq = melody_to_sequence(Melody.from_notes([60, 62, 64, 65], [0, 4, 8, 12], [4, 8, 12, 16]))
        >>> m = judged_melody(seq)
        >>> m.pitches.tolist(), m.steps_per_quarter
        ([60, 62, 64, 65], 12)

    Notebook: 09_judging_generated_music.ipynb
    """
    from labkit.melody import extract_melodies
    from labkit.style.scoring import MIN_NOTES

    min_notes = MIN_NOTES if min_notes is None else int(min_notes)
    melodies = extract_melodies(sequence, steps_per_quarter=JUDGE_STEPS_PER_QUARTER, min_notes=min_notes,
                                max_gap_quarters=math.inf, strategy="skyline")
    return melodies[0]


def _note_length_classes(lengths_quarters: np.ndarray) -> np.ndarray:
    """Index of the nearest :data:`NOTE_LENGTH_CLASSES` entry of each length (the first of equals)."""
    classes = np.asarray(NOTE_LENGTH_CLASSES)
    return np.argmin(np.abs(lengths_quarters[:, None] - classes[None, :]), axis=1)


def _transitions(labels: np.ndarray, size: int) -> np.ndarray:
    """Share of each (label, next label) pair of consecutive items, ``[size, size]`` summing to 1 (zeros if none)."""
    matrix = np.zeros((size, size))
    if len(labels) > 1:
        np.add.at(matrix, (labels[:-1], labels[1:]), 1.0)
        matrix /= matrix.sum()
    return matrix


def _to_muspy(melody: Melody):
    import muspy

    pitches, starts, ends = melody.notes()
    notes = [muspy.Note(time=int(s), pitch=int(p), duration=int(e - s), velocity=64)
             for p, s, e in zip(pitches, starts, ends)]
    return muspy.Music(resolution=int(melody.steps_per_quarter), tracks=[muspy.Track(notes=notes)])


def steps_per_bar(melody: Melody) -> int:
    """Steps in one bar of the melody's time signature (at least 1).

    >>> steps_per_bar(Melody.from_notes([60], [0], [4], numerator=6, denominator=8))
    12

    Notebook: 09_judging_generated_music.ipynb
    """
    return max(1, int(round(melody.steps_per_quarter * 4 * melody.numerator / melody.denominator)))


def tune_features(melody: Melody) -> dict:
    """The features of one monophonic melody (see the module text): ``{name: float or array}``.

    Shapes: the two histograms ``[12]`` (each sums to 1), the two transition matrices ``[12, 12]``
    (each sums to 1, zeros for a single note); the rest floats. Pitches in semitones, times in quarter
    notes, entropies in bits. ``average_pitch_interval`` and ``average_inter_onset_interval`` are NaN
    for a single note, and so is ``groove_consistency`` for a melody shorter than two bars (MusPy).

    Example:
        >>> m = Melody.from_notes([60, 64, 67, 64], [0, 4, 8, 12], [4, 8, 12, 20])   # 4 steps per quarter
        >>> f = tune_features(m)
        >>> f["pitch_count"], f["pitch_range"], f["average_pitch_interval"], f["average_inter_onset_interval"]
        (3.0, 7.0, 3.3333333333333335, 1.0)
        >>> f["note_length_histogram"][[1, 2]].tolist()      # one half note, three quarter notes
        [0.25, 0.75]

    Notebook: 09_judging_generated_music.ipynb
    """
    import muspy

    if not isinstance(melody, Melody):
        raise ConfigError(f"expected a labkit.melody.Melody, got {type(melody).__name__}")
    pitches, starts, ends = melody.notes()
    if not len(pitches):
        raise NoMelodyError("the melody has no notes to judge", melody.source or None)
    spq = float(melody.steps_per_quarter)
    pitch_classes = pitches.astype(np.int64) % 12
    lengths = (ends - starts) / spq
    length_classes = _note_length_classes(lengths)
    music = _to_muspy(melody)
    out = {
        "pitch_count": float(muspy.n_pitches_used(music)),
        "pitch_class_histogram": np.bincount(pitch_classes, minlength=12) / len(pitches),
        "pitch_class_transition_matrix": _transitions(pitch_classes, 12),
        "pitch_range": float(muspy.pitch_range(music)),
        "average_pitch_interval": (float(np.mean(np.abs(np.diff(pitches.astype(np.int64)))))
                                   if len(pitches) > 1 else math.nan),
        "note_count": float(len(pitches)),
        "average_inter_onset_interval": float(np.mean(np.diff(starts)) / spq) if len(pitches) > 1 else math.nan,
        "note_length_histogram": np.bincount(length_classes, minlength=12) / len(pitches),
        "note_length_transition_matrix": _transitions(length_classes, 12),
        "scale_consistency": float(muspy.scale_consistency(music)),
        "pitch_entropy": float(muspy.pitch_entropy(music)),
        "pitch_class_entropy": float(muspy.pitch_class_entropy(music)),
        "groove_consistency": float(muspy.groove_consistency(music, steps_per_bar(melody))),
    }
    return out


def read_tunes(paths: str | os.PathLike | Iterable[str | os.PathLike], *, with_sequences: bool = False):
    """Read MIDI files and folders into melodies to judge: ``(melodies, problems)``.

    ``melodies``: one :class:`~labkit.melody.Melody` per usable file (``source`` = its printable path), in
    the order of :func:`labkit._common.find_midi_files`; ``problems``: ``[(path, problem)]`` for each entry
    that could not be used (not MIDI, no notes, too few notes, a broken link, ...). A bad file never stops
    the others. With ``with_sequences=True`` a third list holds each melody's ``NoteSequence``.

    Notebook: 09_judging_generated_music.ipynb
    """
    from labkit.midi_io import read_midi

    melodies, sequences, problems = [], [], []
    for path, problem in find_midi_files(paths):
        if problem is None:
            try:
                sequence = read_midi(path)
                melodies.append(judged_melody(sequence).replace(source=display_name(path)))
                sequences.append(sequence)
                continue
            except LabkitError as exc:
                problem = exc.problem
        problems.append((display_name(path), display_name(problem)))
    return (melodies, problems, sequences) if with_sequences else (melodies, problems)


# ----------------------------------------------------------------------------------
# Distances and densities
# ----------------------------------------------------------------------------------

def _feature_matrix(features: Sequence[dict], name: str) -> np.ndarray:
    """``[n, d]``: the feature of every tune that has it (finite values), flattened."""
    rows = [np.asarray(f[name], dtype=np.float64).reshape(-1) for f in features]
    rows = [r for r in rows if np.all(np.isfinite(r))]
    return np.stack(rows) if rows else np.zeros((0, 1))


def _rows(values) -> np.ndarray:
    """``values`` as float rows ``[n, d]`` (a list of numbers: ``d = 1``; no rows: ``[0, 1]``)."""
    x = np.asarray(values, dtype=np.float64)
    return x.reshape(len(x), -1) if x.size else np.zeros((len(x), 1))


def intra_set_distances(values: np.ndarray) -> np.ndarray:
    """Euclidean distances between every pair of rows of ``values`` ``[n, d]`` (or ``[n]``): ``[n (n - 1) / 2]``.

    >>> intra_set_distances(np.array([0.0, 1.0, 3.0])).tolist()
    [1.0, 3.0, 2.0]

    Notebook: 09_judging_generated_music.ipynb
    """
    x = _rows(values)
    i, j = np.triu_indices(len(x), k=1)
    return np.sqrt(((x[i] - x[j]) ** 2).sum(axis=1))


def inter_set_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between every row of ``a`` ``[n, d]`` and every row of ``b`` ``[m, d]``: ``[n * m]``.

    >>> inter_set_distances(np.array([0.0, 1.0]), np.array([3.0])).tolist()
    [3.0, 2.0]

    Notebook: 09_judging_generated_music.ipynb
    """
    a, b = _rows(a), _rows(b)
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)).reshape(-1)


def scott_bandwidth(samples: np.ndarray) -> float:
    """Scott's rule, scipy's ``gaussian_kde`` default in one dimension: ``std(ddof=1) * n ** -0.2`` (0 if n < 2).

    >>> round(scott_bandwidth(np.array([0.0, 1.0, 2.0, 3.0])), 6)
    0.978391

    Notebook: 09_judging_generated_music.ipynb
    """
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    if len(x) < 2:
        return 0.0
    return float(np.std(x, ddof=1) * len(x) ** -0.2)


def kde_logpdf(samples: np.ndarray, points: np.ndarray, bandwidth: float) -> np.ndarray:
    """Log density of a Gaussian KDE of ``samples`` ``[n]`` at ``points`` ``[g]`` (bandwidth > 0).

    Exact for up to :data:`EXACT_KDE_LIMIT` samples; above, the samples are first binned linearly
    onto ``points`` (which must then be a uniform grid covering them), the usual fast KDE.

    >>> from scipy.stats import gaussian_kde
    >>> s = np.array([0.0, 1.0, 1.5, 4.0]); x = np.linspace(-2, 6, 5)
    >>> bool(np.allclose(np.exp(kde_logpdf(s, x, scott_bandwidth(s))), gaussian_kde(s)(x)))
    True

    Notebook: 09_judging_generated_music.ipynb
    """
    from scipy.special import logsumexp

    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    g = np.asarray(points, dtype=np.float64).reshape(-1)
    h = float(bandwidth)
    if not h > 0:
        raise ConfigError(f"a KDE bandwidth must be > 0, got {bandwidth}")
    n = len(x)
    if n > EXACT_KDE_LIMIT:
        step = (g[-1] - g[0]) / (len(g) - 1)
        where = np.clip((x - g[0]) / step, 0, len(g) - 1)
        low = np.minimum(np.floor(where).astype(np.int64), len(g) - 2)
        frac = where - low
        weights = np.bincount(low, 1 - frac, minlength=len(g)) + np.bincount(low + 1, frac, minlength=len(g))
        keep = weights > 0
        centres, log_w = g[keep], np.log(weights[keep])
    else:
        centres, log_w = x, np.zeros(n)
    z = (g[:, None] - centres[None, :]) / h
    return logsumexp(log_w[None, :] - 0.5 * z * z, axis=1) - math.log(n * h * math.sqrt(2 * math.pi))


def compare_distributions(intra: np.ndarray, inter: np.ndarray) -> dict:
    """Overlap area and KL divergence of two distance distributions (Yang and Lerch's comparison).

    Returns ``{"overlap": OA, "kl": D_KL(intra || inter)}`` (KL in nats), from KDEs of both lists
    evaluated on one grid (see the module text); NaN for an empty list.

    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(0, 1, 300)
    >>> same = compare_distributions(a, a)
    >>> round(same["overlap"], 6), round(same["kl"], 6)
    (1.0, 0.0)
    >>> compare_distributions(a, a + 10)["overlap"] < 0.01
    True

    Notebook: 09_judging_generated_music.ipynb
    """
    p_x = np.asarray(intra, dtype=np.float64).reshape(-1)
    q_x = np.asarray(inter, dtype=np.float64).reshape(-1)
    if not len(p_x) or not len(q_x):
        return {"overlap": math.nan, "kl": math.nan}
    both = np.concatenate([p_x, q_x])
    span = float(both.max() - both.min())
    floor = 0.01 * span if span > 0 else 1e-3 * max(1.0, float(abs(both[0])))
    h_p = scott_bandwidth(p_x) or floor
    h_q = scott_bandwidth(q_x) or floor
    widest = max(h_p, h_q)
    grid = np.linspace(both.min() - 5 * widest, both.max() + 5 * widest, GRID_POINTS)
    step = grid[1] - grid[0]
    h_p, h_q = max(h_p, 2 * step), max(h_q, 2 * step)   # never narrower than two grid steps
    log_p = kde_logpdf(p_x, grid, h_p)
    log_q = kde_logpdf(q_x, grid, h_q)
    log_p -= math.log(_trapezoid(np.exp(log_p), grid))
    log_q -= math.log(_trapezoid(np.exp(log_q), grid))
    p, q = np.exp(log_p), np.exp(log_q)
    overlap = float(_trapezoid(np.minimum(p, q), grid))
    kl = float(_trapezoid(p * (log_p - log_q), grid))
    return {"overlap": min(1.0, overlap), "kl": max(0.0, kl)}


def _mean(rows: np.ndarray):
    if not len(rows):
        return None
    mean = rows.mean(axis=0)
    return float(mean[0]) if mean.size == 1 else mean.tolist()


def _stats(values: np.ndarray) -> tuple[float | None, float | None]:
    return (float(values.mean()), float(values.std())) if len(values) else (None, None)


def compare_sets(generated: Sequence[dict], real: Sequence[dict], features: Sequence[str] = FEATURES) -> dict:
    """Yang and Lerch's comparison of two sets of :func:`tune_features` results, feature by feature.

    Returns ``{feature: {...}}`` with ``overlap`` and ``kl`` (the real set's intra-set distances
    against the inter-set distances, :func:`compare_distributions`), ``overlap_generated`` and
    ``kl_generated`` (the same for the generated set's intra-set distances), ``generated_mean`` and
    ``real_mean`` (the feature's mean: a number, or a nested list for a histogram or matrix),
    ``intra_real_mean``/``_std``, ``intra_generated_mean``/``_std`` and ``inter_mean``/``_std`` (of the
    distances), and ``generated``/``real``: how many tunes had the feature. A figure that cannot be
    computed (fewer than two tunes with the feature) is None.

    Notebook: 09_judging_generated_music.ipynb
    """
    out = {}
    for name in features:
        g = _feature_matrix(generated, name)
        r = _feature_matrix(real, name)
        intra_r, intra_g = intra_set_distances(r), intra_set_distances(g)
        inter = inter_set_distances(g, r) if len(g) and len(r) else np.zeros(0)
        real_cmp = compare_distributions(intra_r, inter)
        gen_cmp = compare_distributions(intra_g, inter)
        shape = np.shape(next((f[name] for f in real), 0.0))
        entry = {
            "overlap": real_cmp["overlap"], "kl": real_cmp["kl"],
            "overlap_generated": gen_cmp["overlap"], "kl_generated": gen_cmp["kl"],
            "generated_mean": _mean(g), "real_mean": _mean(r),
        }
        for key, values in (("intra_real", intra_r), ("intra_generated", intra_g), ("inter", inter)):
            entry[f"{key}_mean"], entry[f"{key}_std"] = _stats(values)
        entry["generated"], entry["real"] = int(len(g)), int(len(r))
        if shape and entry["generated_mean"] is not None:
            entry["generated_mean"] = np.reshape(entry["generated_mean"], shape).tolist()
        if shape and entry["real_mean"] is not None:
            entry["real_mean"] = np.reshape(entry["real_mean"], shape).tolist()
        out[name] = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in entry.items()}
    return out


# ----------------------------------------------------------------------------------
# Sets of files, the corpus and the style model
# ----------------------------------------------------------------------------------

def corpus_paths(style: str, split: str = "test", root=None) -> list:
    """MIDI files of the shipped corpus's tunes of one style and split (the real set of ``judge --style``).

    Raises ConfigError for a style (or split) the manifest does not have.

    >>> len(corpus_paths("irish")) > 100
    True

    Notebook: 09_judging_generated_music.ipynb
    """
    from labkit.corpus import load_manifest, select, tune_path

    rows = select(load_manifest(root), styles=[style], split=split)
    return [tune_path(row, root) for row in rows.to_dict("records")]


def style_verdicts(sequences: Sequence, model=None, target: str | None = None) -> dict:
    """The style model's verdicts on a set of ``NoteSequence``\\ s (as ``style score`` reads files).

    Returns ``{"scored", "unscored", "shares": {style: share of the scored files it is the verdict
    on}, "target", "mean_index" (mean probability of ``target``; None without a target),
    "median_typicality" (None for a model without typicality figures)}``. ``model``: a style model,
    a folder holding one, or None for the shipped one; ``target`` must be one of its styles, or None.

    Notebook: 09_judging_generated_music.ipynb
    """
    from labkit.style.model import load_style_model
    from labkit.style.scoring import melody_from_sequence as style_melody, score_melodies

    if model is None or isinstance(model, (str, os.PathLike)):
        model = load_style_model(model)
    if target is not None and target not in model.styles:
        raise ConfigError(f"target style {target!r} is not one of the style model's: {', '.join(model.styles)}")
    melodies = []
    for sequence in sequences:
        try:
            melodies.append(style_melody(sequence))
        except LabkitError:
            continue
    records = score_melodies(model, melodies, target if target is not None else model.styles[0])
    n = len(records)
    shares = {s: (sum(r["style"] == s for r in records) / n if n else 0.0) for s in model.styles}
    typical = [r["typicality"] for r in records if "typicality" in r]
    return {"scored": n, "unscored": len(sequences) - n, "shares": shares, "target": target,
            "mean_index": float(np.mean([r["index"] for r in records])) if (target and n) else None,
            "median_typicality": float(np.median(typical)) if typical else None}


def judge_paths(generated, real=None, *, style: str | None = None, model=None, root=None) -> dict:
    """Judge a set of generated MIDI files against real ones: the report of ``python -m labkit judge``.

    Args:
        generated: MIDI files or folders of the generated music.
        real: MIDI files or folders of the real music; or None with ``style``.
        style: take the real set from the shipped corpus's test split of this style (and make it the
            target style of the style model's verdicts, if the model knows it).
        model, root: the style model (None: shipped) and the corpus folder (None: shipped).

    Returns:
        ``{"features": compare_sets(...), "style_verdicts": style_verdicts(...), "generated": n,
        "real": m, "problems": [{"path", "problem"}], "style": style or None}``.

    Raises:
        ConfigError: neither or both of ``real`` and ``style``; no readable tune among the generated
        files, or fewer than two among the real ones (the message names the folder).

    Notebook: 09_judging_generated_music.ipynb
    """
    from labkit.style.model import load_style_model

    if (real is None) == (style is None):
        raise ConfigError("give the real set as files/folders or as a corpus style, not both or neither")
    real_paths = corpus_paths(style, root=root) if style is not None else real
    gen_melodies, gen_problems, gen_sequences = read_tunes(generated, with_sequences=True)
    real_melodies, real_problems = read_tunes(real_paths)
    where = _names(generated)
    if not gen_melodies:
        if len(gen_problems) == 1:          # one entry: its own problem says it all
            raise ConfigError(f"no tune to judge: {gen_problems[0][1]}", gen_problems[0][0])
        first = f" (first: {gen_problems[0][0]}: {gen_problems[0][1]})" if gen_problems else ""
        raise ConfigError(f"no readable tune to judge among {len(gen_problems)} entries{first}", where)
    if len(real_melodies) < 2:
        raise ConfigError(f"the real set needs at least 2 readable tunes, found {len(real_melodies)}",
                          f"corpus style {style!r}" if style is not None else _names(real))
    model = load_style_model(model) if model is None or isinstance(model, (str, os.PathLike)) else model
    target = style if style in model.styles else None
    return {
        "features": compare_sets([tune_features(m) for m in gen_melodies], [tune_features(m) for m in real_melodies]),
        "style_verdicts": style_verdicts(gen_sequences, model, target),
        "generated": len(gen_melodies), "real": len(real_melodies), "style": style,
        "problems": [{"path": p, "problem": q} for p, q in gen_problems + real_problems],
    }


def _names(paths) -> str:
    if isinstance(paths, (str, os.PathLike)):
        return display_name(paths)
    return ", ".join(display_name(p) for p in paths)


def format_judgement(report: dict) -> str:
    """The table of ``python -m labkit judge``: one line per feature, then the style model's verdicts.

    >>> r = {"features": {"pitch_range": {"overlap": 0.8, "kl": 0.05, "generated_mean": 12.0, "real_mean": 11.5,
    ...      "intra_real_mean": 4.0, "inter_mean": 4.5}}, "generated": 3, "real": 9, "style": None,
    ...      "style_verdicts": {"scored": 3, "shares": {"german": 1.0, "irish": 0.0}, "target": None,
    ...      "mean_index": None, "median_typicality": None}}
    >>> print(format_judgement(r))
    feature                          overlap      kl  generated       real  intra real       inter
    pitch_range                        0.800   0.050     12.000     11.500       4.000       4.500
    3 generated tunes against 9 real ones (overlap and KL: the real set's intra-set distances against the inter-set ones)
    style model's verdicts on 3 generated tunes: german 100%, irish 0%

    Notebook: 09_judging_generated_music.ipynb
    """
    def num(value, width):
        return f"{value:{width}.3f}" if isinstance(value, (int, float)) else f"{'-':>{width}}"

    lines = [f"{'feature':<30} {'overlap':>9} {'kl':>7} {'generated':>10} {'real':>10} {'intra real':>11} "
             f"{'inter':>11}"]
    for name, f in report["features"].items():
        lines.append(f"{name:<30} {num(f['overlap'], 9)} {num(f['kl'], 7)} {num(f['generated_mean'], 10)} "
                     f"{num(f['real_mean'], 10)} {num(f['intra_real_mean'], 11)} {num(f['inter_mean'], 11)}")
    real = f"{report['style']} test tunes" if report.get("style") else "real ones"
    lines.append(f"{report['generated']} generated tunes against {report['real']} {real} (overlap and KL: the "
                 f"real set's intra-set distances against the inter-set ones)")
    v = report["style_verdicts"]
    shares = ", ".join(f"{s} {p:.0%}" for s, p in v["shares"].items())
    line = f"style model's verdicts on {v['scored']} generated tunes: {shares}"
    if v.get("mean_index") is not None:
        line += f"; mean style index P({v['target']}) {v['mean_index']:.3f}"
    if v.get("median_typicality") is not None:
        line += f"; median typicality {v['median_typicality']:.3f}"
    lines.append(line)
    return "\n".join(lines)
