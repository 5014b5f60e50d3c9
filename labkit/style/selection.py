"""Feature selection and robustness: which columns matter, what dimensions cost, perturbed inputs.

* by mutual information between each column and the style (:func:`mutual_information`,
  :func:`select_mutual_information`; notebook 06);
* by an L1 penalty (:func:`l1_path`: sparsity against accuracy);
* the cost of dimensions (:func:`dimensionality_cost`: fit time and accuracy as
  columns are added) and of training data (:func:`learning_curve`);
* perturbations of melodies (:func:`perturb`: transposition, rhythm and pitch
  jitter) and of feature matrices (:func:`perturb_features`), to see how robust
  a style index is.

Notebooks: 06_style_features.ipynb, 07_style_index.ipynb
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from labkit.errors import ConfigError, EncodingError
from labkit.style.features import Standardizer
from labkit.style.logreg import (_as_xy, _fit_predict_logreg, balanced_accuracy, fit_logreg, predict_logits,
                                 stratified_split)

# ----------------------------------------------------------------------------------
# Feature selection by mutual information
# ----------------------------------------------------------------------------------

def mutual_information(X, y, bins: int = 8) -> np.ndarray:
    """Mutual information (nats) between each column of ``X`` and the labels ``y``.

    Each column is cut into up to ``bins`` quantile bins (computed on ``X``
    itself; equal values share a bin, so a mostly-zero column has few bins), and
    ``I(x; y) = sum p(b, c) log(p(b, c) / (p(b) p(c)))`` is taken over bins ``b``
    and classes ``c``.

    Args:
        X: ``[n, d]`` features; y: ``[n]`` integer labels 0..C-1.

    Returns:
        float64 ``[d]``, each >= 0.

    Notebook: 06_style_features.ipynb
    """
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y).astype(np.int64).reshape(-1)
    if X.ndim != 2 or X.shape[0] != y.shape[0] or X.shape[0] == 0:
        raise ConfigError(f"X [n, d] and y [n] do not match: {X.shape} and {y.shape}")
    n, d = X.shape
    edges = np.quantile(X, np.linspace(0, 1, bins + 1)[1:-1], axis=0)     # [bins-1, d]
    codes = np.zeros((n, d), dtype=np.int8)
    for e in edges:
        codes += X > e
    classes = int(y.max()) + 1
    onehot = np.eye(classes, dtype=np.float32)[y]                          # [n, C]
    joint = np.stack([(codes == b).astype(np.float32).T @ onehot for b in range(bins)], axis=1) / n  # [d, bins, C]
    p_b = joint.sum(axis=2, keepdims=True)
    p_c = joint.sum(axis=1, keepdims=True)
    ratio = np.divide(joint, p_b * p_c, out=np.ones_like(joint), where=joint > 0)
    return np.maximum((joint * np.log(ratio)).sum(axis=(1, 2)), 0.0).astype(np.float64)


def select_mutual_information(X, y, k: int, bins: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` columns of ``X`` that tell most about ``y``: ``(indices [k], scores [d])``.

    Indices are sorted from most to least informative (ties: lower index first);
    ``scores`` is :func:`mutual_information` of every column. Fit it on the
    training split only, then use ``X[:, indices]`` for both splits.

    Example:
        >>> X = np.array([[0, 5], [0, 3], [1, 5], [1, 3]], float); y = np.array([0, 0, 1, 1])
        >>> select_mutual_information(X, y, 1)[0].tolist()
        [0]

    Notebook: 06_style_features.ipynb
    """
    scores = mutual_information(X, y, bins)
    k = int(k)
    if not 1 <= k <= len(scores):
        raise ConfigError(f"k must be in 1..{len(scores)}, got {k}")
    order = np.lexsort((np.arange(len(scores)), -scores))
    return order[:k].astype(np.int64), scores


# ----------------------------------------------------------------------------------
# Feature selection and cost of dimensions
# ----------------------------------------------------------------------------------

def l1_path(X, y, lambdas: Sequence[float], *, X_val=None, y_val=None, l2: float = 0.0, steps: int = 500,
            val_fraction: float = 0.25, seed: int = 0, class_weight: str | None = "balanced") -> dict:
    """Sparsity against accuracy along a path of L1 strengths.

    For each ``lambda`` an L1-penalised logistic regression is fitted
    (:func:`fit_logreg` with ``l1=lambda``: FISTA, soft-thresholding) on
    standardised features; we count the features whose weight is non-zero for
    at least one style and measure balanced accuracy on the validation data
    (``X_val, y_val``, or a stratified ``val_fraction`` split of ``X, y``).

    Returns:
        dict of arrays: ``lambdas`` [L], ``nonzero`` [L] (features in use),
        ``balanced_accuracy`` [L], ``accuracy`` [L], ``seconds`` [L], and
        ``selected``: list of L index arrays (the features kept).

    Example (stronger L1, fewer features):
        >>> rng = np.random.default_rng(0); X = rng.normal(size=(200, 20)); y = (X[:, 0] > 0).astype(int)
        >>> r = l1_path(X, y, [0.001, 0.1], steps=200)
        >>> bool(r["nonzero"][0] > r["nonzero"][1])
        True

    Notebook: 06_style_features.ipynb
    """
    X, y = _as_xy(X, y)
    if X_val is None:
        tr, va = stratified_split(y, val_fraction, seed)
        X, X_val, y, y_val = X[tr], X[va], y[tr], y[va]
    X_val, y_val = _as_xy(X_val, y_val)
    C = int(max(y.max(), y_val.max())) + 1
    scaler = Standardizer.fit(X)
    Xs, Vs = scaler.transform(X), scaler.transform(X_val)
    out = {"lambdas": np.asarray(lambdas, float), "nonzero": [], "balanced_accuracy": [], "accuracy": [],
           "seconds": [], "selected": []}
    for lam in lambdas:
        t0 = time.perf_counter()
        params = fit_logreg(Xs, y, C, l1=float(lam), l2=l2, steps=steps, class_weight=class_weight)
        out["seconds"].append(time.perf_counter() - t0)
        used = np.flatnonzero(np.any(params["w"] != 0, axis=1))
        pred = predict_logits(params, Vs).argmax(1)
        out["nonzero"].append(len(used))
        out["selected"].append(used)
        out["balanced_accuracy"].append(balanced_accuracy(y_val, pred, C))
        out["accuracy"].append(float(np.mean(pred == y_val)))
    for key in ("nonzero", "balanced_accuracy", "accuracy", "seconds"):
        out[key] = np.asarray(out[key])
    return out


def dimensionality_cost(X, y, dims: Sequence[int], *, selection: str = "mi", test_fraction: float = 0.25,
                        seed: int = 0, l2: float = 1e-3, steps: int = 300, groups=None,
                        class_weight: str | None = "balanced") -> list[dict]:
    """Training time and accuracy as the number of feature dimensions grows.

    For each ``d`` in ``dims``: keep ``d`` columns (``selection="mi"``: the most
    informative by :func:`select_mutual_information` on the
    training split; ``"first"``: the first ``d``; ``"random"``: ``d`` random ones),
    standardise, fit :func:`fit_logreg`, and time the fit. Each fit is timed
    after a 1-step warm-up with the same shapes, so JIT compilation is not counted.
    Dimensions larger than ``X.shape[1]`` are skipped.

    Returns:
        list of dicts ``{"dims", "fit_seconds", "iterations", "balanced_accuracy", "accuracy"}``.

    Notebook: 06_style_features.ipynb
    """
    X, y = _as_xy(X, y)
    tr, te = stratified_split(y, test_fraction, seed, groups)
    C = int(y.max()) + 1
    if selection == "mi":
        ranking, _ = select_mutual_information(X[tr], y[tr], X.shape[1])
    elif selection == "first":
        ranking = np.arange(X.shape[1])
    elif selection == "random":
        ranking = np.random.default_rng(seed).permutation(X.shape[1])
    else:
        raise ConfigError(f"selection must be 'mi', 'first' or 'random', got {selection!r}")
    rows = []
    for d in dims:
        if d > X.shape[1] or d < 1:
            continue
        cols = np.sort(ranking[:d])
        scaler = Standardizer.fit(X[tr][:, cols])
        Xtr, Xte = scaler.transform(X[tr][:, cols]), scaler.transform(X[te][:, cols])
        fit_logreg(Xtr, y[tr], C, l2=l2, steps=1, class_weight=class_weight)  # compile
        t0 = time.perf_counter()
        params, info = fit_logreg(Xtr, y[tr], C, l2=l2, steps=steps, class_weight=class_weight, return_info=True)
        seconds = time.perf_counter() - t0
        pred = predict_logits(params, Xte).argmax(1)
        rows.append({"dims": int(d), "fit_seconds": seconds, "iterations": info["iterations"],
                     "balanced_accuracy": balanced_accuracy(y[te], pred, C),
                     "accuracy": float(np.mean(pred == y[te]))})
    return rows


def learning_curve(X, y, fractions: Sequence[float], *, seed: int = 0, groups=None, l2: float = 1e-3,
                   steps: int = 300, class_weight: str | None = "balanced") -> list[dict]:
    """Balanced accuracy when only a fraction of the tunes is used for training.

    For each fraction, a stratified part of that size (groups kept whole) trains
    the model; all the remaining tunes test it (the source paper's 1%..10% study).

    Returns:
        list of dicts ``{"fraction", "train_size", "balanced_accuracy", "accuracy"}``.

    Notebook: 07_style_index.ipynb
    """
    X, y = _as_xy(X, y)
    C = int(y.max()) + 1
    rows = []
    for frac in fractions:
        rest, part = stratified_split(y, frac, seed, groups)
        proba = _fit_predict_logreg(X[part], y[part], X[rest], C, l2=l2, steps=steps,
                                    class_weight=class_weight, standardize=True)
        pred = proba.argmax(1)
        rows.append({"fraction": float(frac), "train_size": int(len(part)),
                     "balanced_accuracy": balanced_accuracy(y[rest], pred, C),
                     "accuracy": float(np.mean(pred == y[rest]))})
    return rows


# ----------------------------------------------------------------------------------
# Perturbations (robustness)
# ----------------------------------------------------------------------------------

PERTURBATIONS = ("transpose", "rhythm", "pitch")


def _rng_from_key(key) -> np.random.Generator:
    """A numpy Generator seeded from a JAX PRNG key (typed or raw uint32), or from an int."""
    if isinstance(key, (int, np.integer)):
        return np.random.default_rng(int(key))
    import jax

    data = np.asarray(jax.random.key_data(key)).astype(np.uint64).ravel()
    return np.random.default_rng(data.tolist())


def perturb(melody, kind: str, amount, key=None):
    """A perturbed copy of a melody, to test how robust a style index is.

    Kinds:

    * ``"transpose"``: move every pitch by ``amount`` semitones (an int; no
      randomness, ``key`` unused), with :func:`labkit.melody.transpose`.
    * ``"rhythm"``: each note's onset moves one step earlier or later with
      probability ``amount`` (0..1); the order of notes never changes and no two
      onsets merge (a move that would collide is dropped). Notes that were
      joined (legato) stay joined; other note ends stay where they were unless
      the note would vanish.
    * ``"pitch"``: a fraction ``amount`` (0..1) of the notes, chosen at random,
      moves up or down one semitone (kept within 0..127).

    Args:
        melody: a :class:`labkit.melody.Melody`.
        kind: one of :data:`PERTURBATIONS`.
        amount: semitones (transpose) or probability/fraction (rhythm, pitch).
        key: a JAX PRNG key (or an int seed) for the random kinds.

    Example:
        >>> from labkit.melody import Melody
        >>> m = Melody.from_notes([60, 62, 64], [0, 4, 8], [4, 8, 12])
        >>> perturb(m, "pitch", 1.0, key=0).pitches.tolist() != [60, 62, 64]
        True

    Notebook: 07_style_index.ipynb
    """
    from labkit.melody import Melody

    if not isinstance(melody, Melody):
        raise EncodingError(f"perturb expects a labkit.melody.Melody, got {type(melody).__name__}")
    if kind == "transpose":
        from labkit.melody import transpose

        return transpose(melody, int(amount))
    if kind not in PERTURBATIONS:
        raise ConfigError(f"unknown perturbation {kind!r}; choose from {', '.join(PERTURBATIONS)}")
    if not 0 <= float(amount) <= 1:
        raise ConfigError(f"amount for {kind!r} must be a fraction in 0..1, got {amount}")
    if key is None:
        raise ConfigError(f"perturbation {kind!r} is random: pass a JAX key (or an int seed)")
    rng = _rng_from_key(key)
    pitches, starts, ends = melody.notes()
    n = len(pitches)
    if n == 0:
        return melody
    if kind == "pitch":
        events = melody.events.copy()
        chosen = rng.permutation(n)[: int(round(float(amount) * n))]
        moved = pitches[chosen] + rng.choice(np.array([-1, 1]), size=len(chosen))
        moved = np.where((moved < 0) | (moved > 127), pitches[chosen] - (moved - pitches[chosen]), moved)
        events[starts[chosen]] = moved
        return melody.replace(events=events)
    # rhythm: even-numbered notes move first, then odd ones, each against its (fixed) neighbours
    new_starts = starts.astype(np.int64).copy()
    wants = rng.random(n) < float(amount)
    shift = rng.choice(np.array([-1, 1]), size=n)
    for parity in (0, 1):
        idx = np.flatnonzero(wants & (np.arange(n) % 2 == parity))
        target = new_starts[idx] + shift[idx]
        prev = np.where(idx > 0, new_starts[np.maximum(idx - 1, 0)], -1)
        nxt = np.where(idx < n - 1, new_starts[np.minimum(idx + 1, n - 1)], np.iinfo(np.int64).max)
        ok = (target > prev) & (target < nxt) & (target >= 0)
        new_starts[idx[ok]] = target[ok]
    new_ends = ends.astype(np.int64).copy()
    legato = ends[:-1] == starts[1:]
    new_ends[:-1][legato] = new_starts[1:][legato]
    new_ends = np.maximum(new_ends, new_starts + 1)
    new_ends[:-1] = np.minimum(new_ends[:-1], new_starts[1:])
    num_steps = max(melody.num_steps, int(new_ends[-1]) + 1)
    return Melody.from_notes(pitches, new_starts, new_ends, num_steps=num_steps,
                             steps_per_quarter=melody.steps_per_quarter, qpm=melody.qpm, key=melody.key,
                             mode=melody.mode, numerator=melody.numerator, denominator=melody.denominator,
                             source=melody.source)


def perturb_features(X, amount: float, key) -> np.ndarray:
    """Feature matrix plus Gaussian noise: ``X + amount * N(0, 1)`` (float32, same shape).

    Apply it to *standardised* features, so that ``amount`` is in units of each
    column's standard deviation.

    Notebook: 07_style_index.ipynb
    """
    X = np.asarray(X, dtype=np.float32)
    return (X + float(amount) * _rng_from_key(key).standard_normal(X.shape)).astype(np.float32)
