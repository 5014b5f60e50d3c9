"""The style index: a multinomial logistic regression on melody features, in JAX.

A tune's features ``x`` (a row of :func:`labkit.features.feature_matrix`,
standardised) give one score per style, ``z = x W + b``; the softmax of the
scores is the probability of each style. The *style index* of a tune is the
probability of one target style (``irish`` against ``german``, say): 0 means
"surely the other style", 1 "surely the target".

Training minimises the (class-weighted) mean cross-entropy plus an L2 penalty,

    L(W, b) = sum_i w_i CE(softmax(x_i W + b), y_i) / sum_i w_i  +  l2/2 * ||W||^2,

a smooth convex problem, solved full-batch with L-BFGS (``optax.lbfgs``).
With ``l1 > 0`` the penalty ``l1 * ||W||_1`` is added and the problem is
solved by proximal gradient descent (FISTA): a gradient step on the smooth part,
then soft-thresholding, which sets small weights exactly to zero.

Then: temperature scaling on a validation split (calibration), the expected
calibration error, cross-validation by tune, feature selection by L1 and by
dimension, perturbations for robustness tests, the bundled :class:`StyleModel`,
the paper's five-group :class:`GroupEnsemble`, and :func:`plot_style_axis`.

Notebook: 07_style_index.ipynb
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np

from labkit.errors import CheckpointError, ConfigError, EncodingError
from labkit.features import (NGRAM_DIMS, PAPER_GROUPS, Standardizer, _check_groups, _check_variant,
                             feature_matrix, feature_names, select_mutual_information)

FORMAT_VERSION = 1

# ----------------------------------------------------------------------------------
# Multinomial logistic regression in JAX
# ----------------------------------------------------------------------------------


def _as_xy(X, y, num_classes=None):
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y).reshape(-1)
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ConfigError(f"X must be [n, d] and y [n]; got shapes {X.shape} and {y.shape}")
    if X.shape[0] == 0:
        raise ConfigError("no training examples")
    if not np.issubdtype(y.dtype, np.integer):
        raise ConfigError(f"labels y must be integers 0..C-1, got dtype {y.dtype}")
    if not np.isfinite(X).all():
        raise ConfigError("X holds NaN or infinite values")
    if num_classes is not None and (y.min() < 0 or y.max() >= num_classes):
        raise ConfigError(f"labels must lie in 0..{num_classes - 1}, got {y.min()}..{y.max()}")
    return X, y.astype(np.int32)


def class_weights(y, num_classes: int, mode: str | None = "balanced") -> np.ndarray:
    """Per-example weights ``[n]``: ``"balanced"`` gives class c the weight ``n / (K * n_c)``.

    ``K`` is the number of classes present, so the weights sum to ``n`` and every
    class counts as much as every other (as scikit-learn's ``class_weight="balanced"``).
    ``None`` gives all ones.

    >>> class_weights(np.array([0, 0, 0, 1]), 2).tolist()
    [0.6666666666666666, 0.6666666666666666, 0.6666666666666666, 2.0]

    Notebook: 07_style_index.ipynb
    """
    y = np.asarray(y).reshape(-1)
    if mode is None:
        return np.ones(len(y))
    if mode != "balanced":
        raise ConfigError(f"class_weight must be 'balanced' or None, got {mode!r}")
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    present = int((counts > 0).sum())
    return len(y) / (present * counts[y])


def _loss(params, X, Y, weights, l2):
    """Weighted mean cross-entropy + l2/2 ||W||^2. X [n, d], Y one-hot [n, C], weights [n]."""
    import jax
    import jax.numpy as jnp

    logits = X @ params["w"] + params["b"]
    ce = -jnp.sum(Y * jax.nn.log_softmax(logits), axis=-1)
    return jnp.sum(weights * ce) / jnp.sum(weights) + 0.5 * l2 * jnp.sum(params["w"] ** 2)


def _lbfgs_impl(params, X, Y, weights, l2, steps, tol):
    """Full-batch L-BFGS with optax's zoom line search, ``steps`` iterations at most."""
    import jax
    import optax

    fun = partial(_loss, X=X, Y=Y, weights=weights, l2=l2)
    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(fun)

    def step(carry):
        p, state, i, _ = carry
        value, grad = value_and_grad(p, state=state)
        updates, state = solver.update(grad, state, p, value=value, grad=grad, value_fn=fun)
        gnorm = jax.numpy.sqrt(sum(jax.numpy.sum(g ** 2) for g in jax.tree.leaves(grad)))
        return optax.apply_updates(p, updates), state, i + 1, gnorm

    def keep_going(carry):
        _, _, i, gnorm = carry
        return (i < steps) & (gnorm > tol)

    carry = (params, solver.init(params), jax.numpy.int32(0), jax.numpy.float32(jax.numpy.inf))
    params, _, iters, _ = jax.lax.while_loop(keep_going, step, carry)
    return params, iters


def _fista_impl(params, X, Y, weights, l2, l1, steps, lr):
    """Proximal gradient descent with Nesterov momentum (FISTA) for the L1-penalised loss."""
    import jax
    import jax.numpy as jnp

    grad_fn = jax.grad(_loss)

    def soft_threshold(w, t):  # the proximal step of t * ||w||_1
        return jnp.sign(w) * jnp.maximum(jnp.abs(w) - t, 0.0)

    def step(i, carry):
        p, z, t = carry                                 # p: iterate, z: extrapolated point
        g = grad_fn(z, X, Y, weights, l2)
        new = {"w": soft_threshold(z["w"] - lr * g["w"], lr * l1), "b": z["b"] - lr * g["b"]}
        t_next = (1 + jnp.sqrt(1 + 4 * t * t)) / 2
        z = jax.tree.map(lambda a, b: a + (t - 1) / t_next * (a - b), new, p)
        return new, z, t_next

    params, _, _ = jax.lax.fori_loop(0, steps, step, (params, params, jnp.float32(1.0)))
    return params


_JITTED: dict = {}


def _jitted(name):
    """jit-compiled solvers, made on first use (importing this module compiles nothing)."""
    if name not in _JITTED:
        import jax

        _JITTED["lbfgs"] = jax.jit(_lbfgs_impl)
        _JITTED["fista"] = jax.jit(_fista_impl)
        _JITTED["loss"] = jax.jit(_loss)
    return _JITTED[name]


def _pad(X, Y, weights, row_multiple: int = 256, col_multiple: int = 128):
    """Pad rows with zero-weight examples and columns with zero features.

    Neither changes the solution (a zero-weight row adds nothing to the loss; a
    zero column's weight stays 0 under the L2/L1 penalty). The padding lets
    problems of slightly different sizes (cross-validation folds, the members
    of a :class:`GroupEnsemble`) share one compiled solver instead of paying
    JAX's compilation (about 2 s on a laptop CPU) for each.
    """
    n, d = X.shape
    rows, cols = (-n) % row_multiple, (-d) % col_multiple
    X = np.pad(X, ((0, rows), (0, cols)))
    return X, np.pad(Y, ((0, rows), (0, 0))), np.pad(weights, (0, rows))


def _lipschitz(X, weights, iters: int = 30) -> float:
    """Upper bound of the curvature of the mean cross-entropy: ``0.5 * lambda_max(X~^T D X~)``.

    ``X~`` is ``X`` with a column of ones (the bias) and ``D`` the normalised
    weights; the softmax Hessian is at most ``I/2``. ``lambda_max`` by power iteration.
    """
    Xb = np.concatenate([X, np.ones((X.shape[0], 1), X.dtype)], axis=1).astype(np.float64)
    d = weights / weights.sum()
    v = np.ones(Xb.shape[1]) / math.sqrt(Xb.shape[1])
    lam = 0.0
    for _ in range(iters):
        u = Xb.T @ (d * (Xb @ v))
        lam = float(np.linalg.norm(u))
        if lam == 0:
            break
        v = u / lam
    return 0.5 * lam * 1.05 + 1e-12  # 5% margin: power iteration approaches lambda_max from below


def fit_logreg(X, y, num_classes: int, *, l2: float = 1e-3, l1: float = 0.0, steps: int = 300,
               learning_rate: float | None = None, key=None, sample_weight=None,
               class_weight: str | None = None, tol: float = 1e-5, return_info: bool = False):
    """Fit a multinomial logistic regression: ``params = {"w": [d, C], "b": [C]}`` (float32 numpy).

    Minimises ``sum_i w_i CE_i / sum_i w_i + l2/2 ||W||^2 + l1 ||W||_1`` (the
    bias is not penalised).

    * ``l1 == 0``: full-batch L-BFGS (``optax.lbfgs`` with its zoom line search;
      present in optax 0.2.4 as in today's releases), at most ``steps``
      iterations, stopping early once the gradient norm is below ``tol``.
    * ``l1 > 0``: FISTA (proximal gradient with momentum), exactly ``steps``
      iterations with step size ``learning_rate`` (default ``1/L``, ``L`` the
      curvature bound of the smooth part).

    The start is ``W = 0, b = 0`` (the problem is convex: its minimum does not
    depend on the start); a JAX ``key`` starts from small random weights
    instead. Same inputs, same result.

    Relation to scikit-learn: ``LogisticRegression(C=C)`` minimises
    ``C * sum_i CE_i + ||W||^2 / 2`` with a softmax over all classes for three
    or more classes, which is our objective with ``l2 = 1 / (C * n)``
    (``n`` = number of examples, or the sum of the weights). For two classes
    scikit-learn fits one weight vector ``v = w_1 - w_0``; our symmetric optimum
    has ``w_1 = -w_0 = v/2``, so the same model needs ``C = 2 / (l2 * n)``.

    Args:
        X: float ``[n, d]`` features (standardise them first).
        y: int ``[n]`` labels in ``0..num_classes-1``.
        num_classes: ``C``.
        l2, l1: penalty strengths (per example: they do not grow with ``n``).
        steps: iteration budget.
        sample_weight: optional ``[n]`` weights; class_weight: ``"balanced"`` or None
            (multiplies ``sample_weight``).
        tol: L-BFGS stops when the gradient norm falls below it.
        return_info: also return ``{"iterations": int, "loss": float}``.

    Returns:
        ``params``, or ``(params, info)`` with ``return_info``.

    Example:
        >>> X = np.array([[-2.0], [-1.0], [1.0], [2.0]]); y = np.array([0, 0, 1, 1])
        >>> p = fit_logreg(X, y, 2, l2=0.1)
        >>> predict_proba(p, X).argmax(1).tolist()
        [0, 0, 1, 1]

    Notebook: 07_style_index.ipynb
    """
    import jax
    import jax.numpy as jnp

    X, y = _as_xy(X, y, num_classes)
    if l2 < 0 or l1 < 0 or steps < 1:
        raise ConfigError(f"need l2 >= 0, l1 >= 0, steps >= 1; got l2={l2}, l1={l1}, steps={steps}")
    n, d = X.shape
    weights = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64).reshape(-1)
    if weights.shape != (n,) or (weights < 0).any() or weights.sum() <= 0:
        raise ConfigError("sample_weight must be [n], non-negative, not all zero")
    if class_weight is not None:
        weights = weights * class_weights(y, num_classes, class_weight)
    Y = np.eye(num_classes, dtype=np.float32)[y]
    weights = weights.astype(np.float32)
    if key is None:
        params = {"w": jnp.zeros((d, num_classes), jnp.float32), "b": jnp.zeros(num_classes, jnp.float32)}
    else:
        params = {"w": 0.01 * jax.random.normal(key, (d, num_classes), jnp.float32),
                  "b": jnp.zeros(num_classes, jnp.float32)}
    Xp, Yp, wp = _pad(X, Y, weights)
    params["w"] = jnp.pad(params["w"], ((0, Xp.shape[1] - d), (0, 0)))
    if l1 > 0:
        lr = learning_rate if learning_rate is not None else 1.0 / (_lipschitz(X, weights) + l2)
        params = _jitted("fista")(params, Xp, Yp, wp, jnp.float32(l2), jnp.float32(l1), jnp.int32(steps),
                                  jnp.float32(lr))
        iterations = int(steps)
    else:
        params, iterations = _jitted("lbfgs")(params, Xp, Yp, wp, jnp.float32(l2), jnp.int32(steps),
                                              jnp.float32(tol))
    out = {"w": np.asarray(params["w"][:d], dtype=np.float32), "b": np.asarray(params["b"], dtype=np.float32)}
    if not all(np.isfinite(v).all() for v in out.values()):
        raise ConfigError("logistic regression diverged (NaN weights); standardise X or raise l2")
    if return_info:
        loss = float(_jitted("loss")(params, Xp, Yp, wp, jnp.float32(l2)))
        if l1 > 0:
            loss += float(l1 * np.abs(out["w"]).sum())
        return out, {"iterations": int(iterations), "loss": loss}
    return out


def predict_logits(params, X) -> np.ndarray:
    """Scores ``X @ W + b``: float32 ``[n, C]`` (numpy; the model is one matrix product).

    Notebook: 07_style_index.ipynb
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != params["w"].shape[0]:
        raise ConfigError(f"X must be [n, {params['w'].shape[0]}], got shape {X.shape}")
    return X @ params["w"] + params["b"]


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``: float64 ``[n, C]``, numerically stable.

    >>> softmax(np.array([[0.0, np.log(3.0)]])).round(2).tolist()
    [[0.25, 0.75]]

    Notebook: 07_style_index.ipynb
    """
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def predict_proba(params, X, temperature: float = 1.0) -> np.ndarray:
    """Probability of each style: float64 ``[n, C]``, rows sum to 1.

    Notebook: 07_style_index.ipynb
    """
    return softmax(predict_logits(params, X), temperature)


def log_loss(probs, y) -> float:
    """Mean negative log-likelihood (nats) of the true labels ``y [n]`` under ``probs [n, C]``.

    >>> round(log_loss(np.array([[0.5, 0.5]]), np.array([1])), 4)
    0.6931

    Notebook: 07_style_index.ipynb
    """
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y).reshape(-1)
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))))


# ----------------------------------------------------------------------------------
# Calibration
# ----------------------------------------------------------------------------------

def calibrate(logits_val, y_val, t_min: float = 0.25, t_max: float = 20.0) -> float:
    """Temperature scaling: the ``T`` that minimises the NLL of ``softmax(logits / T)``.

    A model that is too sure of itself (NLL high although accuracy is good) gets
    ``T > 1``, which softens its probabilities without changing any prediction.
    Fit ``T`` on a validation split that the weights were not trained on.
    The NLL is evaluated on a grid of ``log T`` in ``[log t_min, log t_max]``
    and then refined by golden-section search around the best grid point.
    When the validation split is perfectly separated, the NLL keeps falling as
    ``T`` shrinks; the bound ``t_min`` then decides (we do not let a small
    validation split make the model more than 4x as sure of itself).

    Args:
        logits_val: ``[n, C]`` scores; y_val: ``[n]`` integer labels.

    Returns:
        ``T`` (float, > 0).

    Example:
        >>> z = np.array([[8.0, 0.0], [0.0, 8.0], [8.0, 0.0], [0.0, 8.0]]); y = np.array([0, 1, 1, 0])
        >>> calibrate(z, y) > 20 - 1e-6   # always wrong when sure: softest allowed T
        True

    Notebook: 07_style_index.ipynb
    """
    z = np.asarray(logits_val, dtype=np.float64)
    y = np.asarray(y_val).reshape(-1)
    if z.ndim != 2 or z.shape[0] != y.shape[0] or len(y) == 0:
        raise ConfigError(f"logits [n, C] and labels [n] do not match: {z.shape} and {y.shape}")

    def nll(log_t):
        return log_loss(softmax(z, math.exp(log_t)), y)

    lo, hi = math.log(t_min), math.log(t_max)
    grid = np.linspace(lo, hi, 121)
    values = [nll(g) for g in grid]
    best = int(np.argmin(values))
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(c), nll(d)
    for _ in range(40):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(d)
    candidates = [(values[best], grid[best]), (fc, c), (fd, d)]
    return float(math.exp(min(candidates)[1]))


def ece(probs, y, bins: int = 15) -> float:
    """Expected calibration error: ``sum_b (n_b / n) |accuracy_b - confidence_b|``.

    Predictions are grouped by their confidence (the top probability) into
    ``bins`` equal-width bins on [0, 1]; a perfectly calibrated model is right
    80% of the time when it says 0.8. Result in [0, 1].

    >>> ece(np.array([[0.9, 0.1], [0.9, 0.1]]), np.array([0, 1]))
    0.4

    Notebook: 07_style_index.ipynb
    """
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y).reshape(-1)
    conf = probs.max(axis=1)
    right = (probs.argmax(axis=1) == y).astype(np.float64)
    which = np.minimum((conf * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(right[inside].mean() - conf[inside].mean())
    return float(round(total, 12))


# ----------------------------------------------------------------------------------
# Evaluation: folds by tune, metrics, cross-validation
# ----------------------------------------------------------------------------------

def _group_table(labels, groups):
    """(group id per item, label of each group = its most common label, group sizes)."""
    labels = np.asarray(labels).reshape(-1)
    if groups is None:
        gid = np.arange(len(labels))
    else:
        groups = np.asarray(groups).reshape(-1)
        if groups.shape != labels.shape:
            raise ConfigError(f"groups must have one entry per label: {groups.shape} vs {labels.shape}")
        _, gid = np.unique(groups, return_inverse=True)
    _, lab = np.unique(labels, return_inverse=True)
    n_groups = int(gid.max()) + 1 if len(gid) else 0
    table = np.zeros((n_groups, int(lab.max()) + 1 if len(lab) else 1), np.int64)
    np.add.at(table, (gid, lab), 1)
    return gid, table.argmax(axis=1), table.sum(axis=1), lab


def stratified_kfold(labels, k: int = 5, seed: int = 0, groups=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train indices, test indices) pairs; every item is in exactly one test fold.

    Each class is spread evenly over the folds. With ``groups`` (one id per item:
    a tune id whose variants must stay together, or a sub-collection), all
    items of a group land in the same fold, and groups are spread so that each
    class's item counts per fold are as equal as possible (a group counts for
    its most common label). Groups are shuffled by ``seed``, then placed largest
    first, each into the fold holding the fewest items of its class (ties: the
    fold with fewest items in all, then the lower fold).

    Args:
        labels: ``[n]`` labels (any hashable values: strings or ints).
        k: number of folds (2 or more).
        seed: shuffling seed (a numpy Generator is made from it).
        groups: optional ``[n]`` group ids.

    Example:
        >>> folds = stratified_kfold([0, 0, 0, 0, 1, 1, 1, 1], k=2, seed=0)
        >>> sorted(np.concatenate([test for _, test in folds]).tolist())
        [0, 1, 2, 3, 4, 5, 6, 7]

    Notebook: 07_style_index.ipynb
    """
    labels = np.asarray(labels).reshape(-1)
    k = int(k)
    if k < 2:
        raise ConfigError(f"k must be at least 2, got {k}")
    gid, glabel, gsize, _ = _group_table(labels, groups)
    if len(gsize) < k:
        raise ConfigError(f"{len(gsize)} groups cannot fill {k} folds")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(gsize))
    order = order[np.argsort(-gsize[order], kind="stable")]   # largest first, random among equals
    per_class = np.zeros((glabel.max() + 1, k), np.int64)
    total = np.zeros(k, np.int64)
    fold_of_group = np.empty(len(gsize), np.int64)
    for g in order:
        c = glabel[g]
        f = int(np.lexsort((np.arange(k), total, per_class[c]))[0])
        fold_of_group[g] = f
        per_class[c, f] += gsize[g]
        total[f] += gsize[g]
    fold = fold_of_group[gid]
    idx = np.arange(len(labels))
    return [(idx[fold != f], idx[fold == f]) for f in range(k)]


def stratified_split(labels, fraction: float, seed: int = 0, groups=None) -> tuple[np.ndarray, np.ndarray]:
    """Split off about ``fraction`` of each class: ``(rest indices, part indices)``.

    Groups (optional, as in :func:`stratified_kfold`) stay whole. Within each
    class, groups are taken in a random order (``seed``) while the part stays
    nearest to ``fraction`` of the class; every class keeps at least one group
    on each side when it has two or more.

    >>> rest, part = stratified_split(np.repeat([0, 1], 10), 0.2, seed=1)
    >>> len(part), len(rest)
    (4, 16)

    Notebook: 07_style_index.ipynb
    """
    labels = np.asarray(labels).reshape(-1)
    if not 0 < fraction < 1:
        raise ConfigError(f"fraction must be between 0 and 1, got {fraction}")
    gid, glabel, gsize, _ = _group_table(labels, groups)
    rng = np.random.default_rng(seed)
    chosen = np.zeros(len(gsize), bool)
    for c in np.unique(glabel):
        members = rng.permutation(np.flatnonzero(glabel == c))
        target = fraction * gsize[members].sum()
        taken = 0
        for i, g in enumerate(members):
            if i == len(members) - 1 and i > 0:
                break                                    # leave one group on the other side
            if abs(taken + gsize[g] - target) < abs(taken - target) or (i == 0 and len(members) > 1):
                chosen[g] = True
                taken += gsize[g]
    part = chosen[gid]
    idx = np.arange(len(labels))
    return idx[~part], idx[part]


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """Counts ``[C, C]``: row = true class, column = predicted class.

    >>> confusion_matrix([0, 0, 1], [0, 1, 1]).tolist()
    [[1, 1], [0, 1]]

    Notebook: 07_style_index.ipynb
    """
    y_true = np.asarray(y_true).reshape(-1).astype(np.int64)
    y_pred = np.asarray(y_pred).reshape(-1).astype(np.int64)
    if y_true.shape != y_pred.shape:
        raise ConfigError(f"y_true and y_pred differ in length: {y_true.shape} vs {y_pred.shape}")
    C = num_classes or int(max(y_true.max(initial=-1), y_pred.max(initial=-1)) + 1)
    return np.bincount(y_true * C + y_pred, minlength=C * C).reshape(C, C)


def balanced_accuracy(y_true, y_pred, num_classes: int | None = None) -> float:
    """Mean over the classes present in ``y_true`` of the fraction of that class predicted right.

    Unlike plain accuracy, a classifier that always answers the largest class
    gets ``1/C``, not the share of that class.

    >>> balanced_accuracy([0, 0, 0, 1], [0, 0, 0, 0])
    0.5

    Notebook: 07_style_index.ipynb
    """
    cm = confusion_matrix(y_true, y_pred, num_classes)
    support = cm.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present]))


def _fit_predict_logreg(Xtr, ytr, Xte, num_classes, *, l2, steps, class_weight, standardize, names=None):
    scaler = Standardizer.fit(Xtr, names) if standardize else Standardizer.identity(Xtr.shape[1])
    params = fit_logreg(scaler.transform(Xtr), ytr, num_classes, l2=l2, steps=steps, class_weight=class_weight)
    return predict_proba(params, scaler.transform(Xte))


#: The L2 strengths :func:`select_l2` tries by default (a factor of about 3 apart).
L2_GRID: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)


def select_l2(X, y, candidates: Sequence[float] = L2_GRID, k: int = 3, *, seed: int = 0, groups=None,
              steps: int = 300, class_weight: str | None = "balanced", names=None,
              num_classes: int | None = None) -> tuple[float, dict[float, float]]:
    """The L2 strength with the best ``k``-fold cross-validated balanced accuracy on ``X, y``.

    Call it on *training* tunes only: inside :func:`cross_validate` (``l2`` a
    sequence) it runs on each outer fold's training part, so the held-out fold
    never influences the choice (nested cross-validation). Ties go to the
    stronger penalty.

    Returns:
        ``(best l2, {l2: balanced accuracy})``.

    Example:
        >>> rng = np.random.default_rng(0); X = rng.normal(size=(120, 5)); y = (X[:, 0] > 0).astype(int)
        >>> best, scores = select_l2(X, y, [0.01, 100.0], k=3, steps=100)
        >>> best, scores[0.01] > scores[100.0]
        (0.01, True)

    Notebook: 07_style_index.ipynb
    """
    candidates = [float(c) for c in candidates]
    if not candidates or min(candidates) < 0:
        raise ConfigError(f"select_l2 needs non-negative candidates, got {candidates}")
    X, y = _as_xy(X, y, num_classes)
    C = num_classes or int(y.max()) + 1
    folds = stratified_kfold(y, k, seed, groups)
    scores = {}
    for l2 in candidates:
        per_fold = []
        for tr, te in folds:
            proba = _fit_predict_logreg(X[tr], y[tr], X[te], C, l2=l2, steps=steps, class_weight=class_weight,
                                        standardize=True, names=names)
            per_fold.append(balanced_accuracy(y[te], proba.argmax(1), C))
        scores[l2] = float(np.mean(per_fold))
    best = max(scores.items(), key=lambda kv: (round(kv[1], 6), kv[0]))[0]
    return best, scores


def cross_validate(X, y, k: int = 5, *, seed: int = 0, groups=None, l2: float | Sequence[float] = 1e-3,
                   steps: int = 300, class_weight: str | None = "balanced", standardize: bool = True,
                   num_classes: int | None = None, ensemble: dict[str, np.ndarray] | None = None,
                   combine: str = "stack", names: Sequence[str] | None = None, inner_k: int = 3) -> dict:
    """k-fold cross-validation of the style classifier on a feature matrix.

    Each fold: standardise with the training part's statistics, fit
    :func:`fit_logreg` (or, with ``ensemble``, one model per column group and a
    combiner, as :class:`GroupEnsemble`), predict the held-out tunes.

    Args:
        X: ``[n, d]`` features; y: ``[n]`` integer labels.
        k, seed, groups: the folds (:func:`stratified_kfold`; ``groups`` keep
            tunes or sub-collections together).
        ensemble: optional ``{name: column indices}`` (see
            :func:`labkit.features.group_columns`) for a per-group ensemble.
        l2: the L2 strength, or a sequence of candidates: then each fold picks
            its own by :func:`select_l2` (``inner_k``-fold CV on the fold's
            training part only: nested cross-validation, the held-out fold
            plays no part in the choice).
        names: the column names; given, hashed n-gram groups are square-rooted
            and scaled per group (:meth:`labkit.features.Standardizer.fit`).

    Returns:
        dict with ``balanced_accuracy`` (mean over folds), ``balanced_accuracy_std``,
        ``fold_balanced_accuracy`` [k], ``accuracy``, ``confusion`` [C, C] (all folds),
        ``proba`` [n, C] (out-of-fold probabilities), ``log_loss``, ``ece``,
        ``fold`` [n] (fold of each item), ``l2`` [k] (the strength each fold used)
        and ``seconds`` (fitting time, the inner selection included).

    Notebook: 07_style_index.ipynb
    """
    X, y = _as_xy(X, y, num_classes)
    C = num_classes or int(y.max()) + 1
    if names is not None and len(names) != X.shape[1]:
        raise ConfigError(f"{len(names)} names for {X.shape[1]} columns")
    candidates = [float(l2)] if np.isscalar(l2) else [float(v) for v in l2]
    if not candidates:
        raise ConfigError("l2: give a strength or a non-empty sequence of candidates")
    proba = np.zeros((len(y), C))
    fold_of = np.zeros(len(y), np.int64)
    scores, chosen = [], []
    t0 = time.perf_counter()
    for f, (tr, te) in enumerate(stratified_kfold(y, k, seed, groups)):
        fold_l2 = candidates[0]
        if len(candidates) > 1:
            inner_groups = None if groups is None else np.asarray(groups)[tr]
            fold_l2, _ = select_l2(X[tr], y[tr], candidates, inner_k, seed=seed + 1, groups=inner_groups,
                                   steps=steps, class_weight=class_weight, names=names, num_classes=C)
        chosen.append(fold_l2)
        if ensemble is None:
            proba[te] = _fit_predict_logreg(X[tr], y[tr], X[te], C, l2=fold_l2, steps=steps,
                                            class_weight=class_weight, standardize=standardize, names=names)
        else:
            members, combiner, temps = _fit_ensemble_arrays(X[tr], y[tr], C, ensemble, l2=fold_l2, steps=steps,
                                                            class_weight=class_weight, combine=combine,
                                                            seed=seed, val_fraction=0.0, names=names)
            proba[te] = _ensemble_proba(X[te], members, ensemble, combiner, combine, 1.0)
        fold_of[te] = f
        scores.append(balanced_accuracy(y[te], proba[te].argmax(1), C))
    seconds = time.perf_counter() - t0
    pred = proba.argmax(1)
    return {"balanced_accuracy": float(np.mean(scores)), "balanced_accuracy_std": float(np.std(scores)),
            "fold_balanced_accuracy": np.asarray(scores), "accuracy": float(np.mean(pred == y)),
            "confusion": confusion_matrix(y, pred, C), "proba": proba, "log_loss": log_loss(proba, y),
            "ece": ece(proba, y), "fold": fold_of, "l2": np.asarray(chosen), "seconds": seconds}


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

    Notebook: 07_style_index.ipynb
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
    informative by :func:`labkit.features.select_mutual_information` on the
    training split; ``"first"``: the first ``d``; ``"random"``: ``d`` random ones),
    standardise, fit :func:`fit_logreg`, and time the fit. Each fit is timed
    after a 1-step warm-up with the same shapes, so JIT compilation is not counted.
    Dimensions larger than ``X.shape[1]`` are skipped.

    Returns:
        list of dicts ``{"dims", "fit_seconds", "iterations", "balanced_accuracy", "accuracy"}``.

    Notebook: 07_style_index.ipynb
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


# ----------------------------------------------------------------------------------
# StyleModel: features + standardizer + logistic regression + temperature
# ----------------------------------------------------------------------------------

def _encode_labels(labels, styles):
    labels = list(labels)
    if styles is None:
        styles = tuple(sorted({str(s) for s in labels}))
    styles = tuple(str(s) for s in styles)
    lookup = {s: i for i, s in enumerate(styles)}
    try:
        y = np.array([lookup[str(s)] for s in labels], dtype=np.int32)
    except KeyError as err:
        raise ConfigError(f"label {err.args[0]!r} is not one of the styles {styles}") from None
    if len(styles) < 2:
        raise ConfigError(f"a style classifier needs at least two styles, got {styles}")
    return y, styles


def _fit_member(X, y, C, *, l2, steps, class_weight, X_val=None, y_val=None, names=None):
    """Standardizer, parameters and temperature of one linear model."""
    scaler = Standardizer.fit(X, names)
    params = fit_logreg(scaler.transform(X), y, C, l2=l2, steps=steps, class_weight=class_weight)
    temperature = 1.0
    if X_val is not None and len(y_val):
        temperature = calibrate(predict_logits(params, scaler.transform(X_val)), y_val)
    return scaler, params, temperature


#: A tune less typical than this share of the training tunes is "unlike every style the model knows".
TYPICAL_FLOOR = 0.01
#: Added to each column's variance within a style (in standardised units) in :class:`Typicality`.
TYPICALITY_VARIANCE_FLOOR = 0.1


@dataclass
class Typicality:
    """How typical a tune is of the tunes a style model learned from.

    A style model puts every tune into one of its styles, a string quartet too.
    This says whether it should be believed. Each style is summarised by the
    mean and variance of every dense (not hashed) standardised column over its
    training tunes; a tune's *statistic* is its smallest mean negative
    log-likelihood under these per-style diagonal Gaussians,
    ``min_c mean_j ((z_j - m_cj)^2 / v_cj + log v_cj)`` with
    ``v_cj`` = variance + :data:`TYPICALITY_VARIANCE_FLOOR`. Its *typicality*
    is the share of the training tunes whose statistic is at least as large:
    about uniform on tunes like the training tunes, near 0 for a tune unlike
    all of them. Below :data:`TYPICAL_FLOOR` (less typical than 99% of the
    training tunes), ``style score`` says the tune is unlike every style the
    model knows.

    Attributes:
        mean, var: ``[C, k]``, per style, over the ``k`` dense columns.
        reference: ``[n]`` the training tunes' statistics, sorted (cross-fitted, see :meth:`fit`).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> Z, y = rng.normal(size=(400, 3)), np.repeat([0, 1], 200)
        >>> names = ["interval:+1", "interval:+2", "register:min"]
        >>> t = Typicality.fit(Z, y, names, 2)
        >>> bool(t(Z, names).mean() > 0.4), float(t(np.full((1, 3), 8.0), names)[0])
        (True, 0.0)

    Notebook: 07_style_index.ipynb
    """

    mean: np.ndarray
    var: np.ndarray
    reference: np.ndarray

    @staticmethod
    def columns(names: Sequence[str]) -> np.ndarray:
        """The dense columns (every one that no hashed n-gram group owns)."""
        from labkit.features import hashed_columns

        hashed = np.zeros(len(names), dtype=bool)
        for cols in hashed_columns(names).values():
            hashed[cols] = True
        return np.flatnonzero(~hashed)

    @classmethod
    def fit(cls, Z, y, names: Sequence[str], num_classes: int, folds: int = 5) -> "Typicality":
        """Summarise standardised training features ``Z [n, d]`` with labels ``y`` (0..C-1).

        The reference statistics are cross-fitted: each training tune's comes from
        the means and variances of the other ``folds - 1`` folds (stratified), so
        that it is measured like a new tune's. (Measured on the tunes that made
        the means, it would be smaller, and new tunes of the same styles would
        look less typical than they are: with 30 tunes per style, 15% of new
        ones fell below :data:`TYPICAL_FLOOR`.)
        """
        Z = np.asarray(Z, np.float64)[:, cls.columns(names)]
        y = np.asarray(y)
        reference = np.zeros(len(y))
        k = max(2, min(folds, int(np.bincount(y, minlength=num_classes).max())))
        for train, held in stratified_kfold(y, k, seed=0):
            reference[held] = cls._summary(Z[train], y[train], num_classes)._statistic(Z[held])
        t = cls._summary(Z, y, num_classes)
        t.reference = np.sort(reference).astype(np.float32)
        return t

    @classmethod
    def _summary(cls, Zk, y, num_classes: int) -> "Typicality":
        """Means and floored variances per style of dense columns ``Zk`` (no reference yet)."""
        mean = np.stack([Zk[y == c].mean(0) if (y == c).any() else np.zeros(Zk.shape[1]) for c in range(num_classes)])
        var = np.stack([Zk[y == c].var(0) if (y == c).any() else np.ones(Zk.shape[1]) for c in range(num_classes)])
        return cls(mean.astype(np.float32), (var + TYPICALITY_VARIANCE_FLOOR).astype(np.float32), np.zeros(1))

    def _statistic(self, Zk) -> np.ndarray:
        mean, var = self.mean.astype(np.float64), self.var.astype(np.float64)
        nll = [(((Zk - mean[c]) ** 2) / var[c] + np.log(var[c])).mean(1) for c in range(len(mean))]
        return np.min(nll, axis=0)

    def statistic(self, Z, names: Sequence[str]) -> np.ndarray:
        """The statistic ``[n]`` of standardised features ``Z [n, d]`` (larger: less typical)."""
        return self._statistic(np.asarray(Z, np.float64)[:, self.columns(names)])

    def __call__(self, Z, names: Sequence[str]) -> np.ndarray:
        """Typicality ``[n]`` in [0, 1] of standardised features ``Z [n, d]`` whose columns are ``names``."""
        stat = self.statistic(Z, names).astype(np.float32)
        # the share of the training tunes whose statistic is at least this one's
        return (len(self.reference) - np.searchsorted(self.reference, stat, side="left")) / len(self.reference)


@dataclass
class StyleModel:
    """A trained style classifier: feature settings, standardizer, weights and temperature.

    Attributes:
        styles: the style names, in the order of the probability columns.
        variant, groups, paragraph, ngram_dims: the feature settings
            (see :func:`labkit.features.feature_matrix`).
        names: the feature column names (checked on load and on prediction).
        standardizer: the training split's column means and scales.
        params: ``{"w": float32 [d, C], "b": float32 [C]}``.
        temperature: ``T`` of :func:`calibrate` (1.0 when not calibrated).
        l2: the penalty it was trained with.
        typical: its :class:`Typicality` (``None`` in models saved before it existed).

    Example:
        >>> from labkit.melody import Melody
        >>> up = [Melody.from_notes([60 + i, 62 + i, 64 + i], [0, 2, 4], [2, 4, 6]) for i in range(6)]
        >>> down = [Melody.from_notes([64 + i, 57 + i, 50 + i], [0, 4, 8], [4, 8, 12]) for i in range(6)]
        >>> model = StyleModel.fit(up + down, ["up"] * 6 + ["down"] * 6, groups=["interval"], val_fraction=0)
        >>> model.predict(up[:1])
        ['up']

    Notebook: 07_style_index.ipynb
    """

    styles: tuple[str, ...]
    variant: str
    groups: tuple[str, ...]
    paragraph: bool
    ngram_dims: int
    names: list[str]
    standardizer: Standardizer
    params: dict[str, np.ndarray]
    temperature: float = 1.0
    l2: float = 1e-3
    typical: Typicality | None = None

    # --- training -----------------------------------------------------------------
    @classmethod
    def fit(cls, melodies, labels, *, styles: Sequence[str] | None = None, variant: str = "processed",
            groups=None, paragraph: bool = False, ngram_dims: int = NGRAM_DIMS, l2: float = 1e-3,
            steps: int = 300, val_fraction: float = 0.2, seed: int = 0, class_weight: str | None = "balanced",
            tune_groups=None, jobs: int = 1) -> "StyleModel":
        """Compute features and train (see :meth:`fit_features`).

        Args:
            melodies: the training melodies; labels: their style names.
            styles: the style order (default: sorted names found in ``labels``).
            variant, groups, paragraph, ngram_dims, jobs: feature settings.
            l2, steps, class_weight: the logistic regression.
            val_fraction: share held out (stratified, by ``tune_groups`` if given)
                to fit the temperature; 0 skips calibration (``T = 1``).
            seed: the validation split's seed.
        """
        variant, groups = _check_variant(variant), _check_groups(groups)
        X, names = feature_matrix(melodies, variant, groups, paragraph=paragraph, jobs=jobs, ngram_dims=ngram_dims)
        return cls.fit_features(X, labels, names, styles=styles, variant=variant, groups=groups,
                                paragraph=paragraph, ngram_dims=ngram_dims, l2=l2, steps=steps,
                                val_fraction=val_fraction, seed=seed, class_weight=class_weight,
                                tune_groups=tune_groups)

    @classmethod
    def fit_features(cls, X, labels, names, *, styles=None, variant="processed", groups=None, paragraph=False,
                     ngram_dims=NGRAM_DIMS, l2=1e-3, steps=300, val_fraction=0.2, seed=0,
                     class_weight="balanced", tune_groups=None) -> "StyleModel":
        """Train on a precomputed feature matrix ``X [n, d]`` whose columns are ``names``.

        The features must come from :func:`labkit.features.feature_matrix` with the
        settings given here (the names are checked against them).
        """
        groups = _check_groups(groups)
        expected = feature_names(groups, paragraph, ngram_dims)
        if list(names) != expected:
            raise ConfigError("feature names do not match variant/groups/paragraph/ngram_dims")
        y, styles = _encode_labels(labels, styles)
        X = np.asarray(X, np.float32)
        if val_fraction > 0:
            tr, va = stratified_split(y, val_fraction, seed, tune_groups)
            scaler, params, temperature = _fit_member(X[tr], y[tr], len(styles), l2=l2, steps=steps,
                                                      class_weight=class_weight, X_val=X[va], y_val=y[va],
                                                      names=names)
        else:
            scaler, params, temperature = _fit_member(X, y, len(styles), l2=l2, steps=steps,
                                                      class_weight=class_weight, names=names)
        typical = Typicality.fit(scaler.transform(X), y, names, len(styles))
        return cls(styles, variant, groups, bool(paragraph), int(ngram_dims), list(names), scaler, params,
                   float(temperature), float(l2), typical)

    # --- prediction ---------------------------------------------------------------
    def features(self, melodies, jobs: int = 1) -> np.ndarray:
        """The feature matrix ``[n, d]`` of ``melodies`` with this model's settings."""
        X, _ = feature_matrix(melodies, self.variant, self.groups, paragraph=self.paragraph, jobs=jobs,
                              ngram_dims=self.ngram_dims)
        return X

    def logits_from_features(self, X) -> np.ndarray:
        """Uncalibrated scores ``[n, C]`` of a feature matrix (not yet standardised)."""
        return predict_logits(self.params, self.standardizer.transform(X))

    def proba_from_features(self, X) -> np.ndarray:
        """Calibrated probabilities ``[n, C]`` of a feature matrix."""
        return softmax(self.logits_from_features(X), self.temperature)

    def predict_proba(self, melodies) -> np.ndarray:
        """Calibrated probability of each style, ``[n, C]`` (columns in ``self.styles`` order).

        Notebook: 07_style_index.ipynb
        """
        return self.proba_from_features(self.features(melodies))

    def predict(self, melodies) -> list[str]:
        """The most probable style name of each melody."""
        return [self.styles[i] for i in self.predict_proba(melodies).argmax(1)]

    def index(self, melodies, target: str) -> np.ndarray:
        """The style index: probability ``[n]`` of the ``target`` style (0 = surely not, 1 = surely).

        Notebook: 07_style_index.ipynb
        """
        return self.predict_proba(melodies)[:, self._style_column(target)]

    def typicality_from_features(self, X) -> np.ndarray:
        """How typical each feature-matrix row is of the training tunes: ``[n]`` in [0, 1] (:class:`Typicality`)."""
        if self.typical is None:
            raise ConfigError("this style model was saved without typicality figures: train it again")
        return self.typical(self.standardizer.transform(X), self.names)

    def typicality(self, melodies) -> np.ndarray:
        """How typical each melody is of the tunes the model learned from (see :class:`Typicality`).

        Notebook: 07_style_index.ipynb
        """
        return self.typicality_from_features(self.features(melodies))

    def _style_column(self, target: str) -> int:
        if target not in self.styles:
            raise ConfigError(f"target style {target!r} is not one of {self.styles}")
        return self.styles.index(target)

    # --- saving -------------------------------------------------------------------
    def _config(self) -> dict:
        return {"styles": list(self.styles), "variant": self.variant, "groups": list(self.groups),
                "paragraph": self.paragraph, "ngram_dims": self.ngram_dims, "temperature": self.temperature,
                "l2": self.l2, "num_features": len(self.names)}

    def _arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        typical = {} if self.typical is None else {
            f"{prefix}typical_mean": self.typical.mean, f"{prefix}typical_var": self.typical.var,
            f"{prefix}typical_reference": self.typical.reference}
        return {f"{prefix}w": self.params["w"], f"{prefix}b": self.params["b"],
                **_scaler_arrays(self.standardizer, prefix), **typical}

    @classmethod
    def _from_parts(cls, config: dict, arrays, prefix: str, names: list[str], where) -> "StyleModel":
        try:
            params = {"w": np.asarray(arrays[f"{prefix}w"], np.float32), "b": np.asarray(arrays[f"{prefix}b"], np.float32)}
            scaler = _scaler_from_arrays(arrays, prefix)
            typical = None
            if f"{prefix}typical_mean" in arrays:      # models saved before typicality existed have none
                typical = Typicality(*(np.asarray(arrays[f"{prefix}typical_{part}"], np.float32)
                                       for part in ("mean", "var", "reference")))
            model = cls(tuple(config["styles"]), config["variant"], tuple(config["groups"]), bool(config["paragraph"]),
                        int(config["ngram_dims"]), names, scaler, params, float(config["temperature"]),
                        float(config["l2"]), typical)
        except KeyError as err:
            raise CheckpointError(f"missing entry {err.args[0]!r}", where) from None
        d, C = model.params["w"].shape
        if (d != len(names) or C != len(model.styles) or model.params["b"].shape != (C,)
                or model.standardizer.mean.shape != (d,) or model.standardizer.scale.shape != (d,)):
            raise CheckpointError(f"array shapes do not match {len(names)} features and {len(model.styles)} styles",
                                  where)
        t = model.typical
        if t is not None and (t.mean.shape != t.var.shape or t.mean.shape != (C, len(Typicality.columns(names)))
                              or t.reference.ndim != 1 or len(t.reference) < 1):
            raise CheckpointError("typicality arrays do not match the features and styles", where)
        return model

    def save(self, directory) -> Path:
        """Write ``model.json`` (settings, names) and ``arrays.npz`` (weights, standardizer) into ``directory``.

        Plain JSON and numpy arrays: loading never unpickles code. Files are
        written to temporary names and renamed, so a crash leaves no half model.
        """
        config = {"format": FORMAT_VERSION, "kind": "StyleModel", **self._config(), "names": self.names}
        return _write_model(directory, config, self._arrays())

    @classmethod
    def load(cls, directory) -> "StyleModel":
        """Read a model written by :meth:`save` (:class:`CheckpointError` if missing or broken)."""
        config, arrays, where = _read_model(directory, "StyleModel")
        names = config.get("names")
        if not isinstance(names, list) or names != feature_names(config.get("groups"), config.get("paragraph", False),
                                                                 config.get("ngram_dims", NGRAM_DIMS)):
            raise CheckpointError("feature names do not match the stored feature settings", where)
        return cls._from_parts(config, arrays, "", names, where)


def _write_model(directory, config: dict, arrays: dict[str, np.ndarray]) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp_json, tmp_npz = directory / "model.json.tmp", directory / "arrays.tmp.npz"
    tmp_json.write_text(json.dumps(config, indent=1))
    np.savez(tmp_npz, **arrays)
    os.replace(tmp_npz, directory / "arrays.npz")
    os.replace(tmp_json, directory / "model.json")
    return directory


def _read_model(directory, kind: str):
    directory = Path(directory)
    json_path, npz_path = directory / "model.json", directory / "arrays.npz"
    for p in (json_path, npz_path):
        if not p.is_file():
            raise CheckpointError("missing file (not a saved style model)", p)
    try:
        config = json.loads(json_path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"not valid JSON ({err})", json_path) from None
    if config.get("kind") != kind or config.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"holds a {config.get('kind')!r} model of format {config.get('format')!r}, "
                              f"expected {kind!r} format {FORMAT_VERSION}", json_path)
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read arrays ({err})", npz_path) from None
    return config, arrays, directory


# ----------------------------------------------------------------------------------
# The paper's five feature groups, each with its own model, combined
# ----------------------------------------------------------------------------------

def _scaler_arrays(scaler: Standardizer, prefix: str) -> dict[str, np.ndarray]:
    """A standardizer's arrays for ``arrays.npz`` (``root`` only when some column is rooted)."""
    out = {f"{prefix}mean": scaler.mean, f"{prefix}scale": scaler.scale}
    if scaler.root is not None and scaler.root.any():
        out[f"{prefix}root"] = scaler.root.astype(bool)
    return out


def _scaler_from_arrays(arrays, prefix: str) -> Standardizer:
    """Inverse of :func:`_scaler_arrays` (models saved before ``root`` existed load unchanged)."""
    root = arrays[f"{prefix}root"].astype(bool) if f"{prefix}root" in arrays else None
    scaler = Standardizer(np.asarray(arrays[f"{prefix}mean"], np.float32),
                          np.asarray(arrays[f"{prefix}scale"], np.float32), root)
    if root is not None and root.shape != scaler.mean.shape:
        raise KeyError(f"{prefix}root")
    return scaler


def _member_logprobs(X, members, columns) -> np.ndarray:
    """Log-probabilities of every member, side by side: ``[n, G * C]``."""
    out = []
    for name, (scaler, params, temperature) in members.items():
        p = predict_proba(params, scaler.transform(X[:, columns[name]]), temperature)
        out.append(np.log(np.clip(p, 1e-12, 1.0)))
    return np.concatenate(out, axis=1)


def _ensemble_proba(X, members, columns, combiner, combine, temperature) -> np.ndarray:
    logp = _member_logprobs(X, members, columns)
    if combine == "mean":
        C = logp.shape[1] // len(members)
        logits = logp.reshape(len(X), len(members), C).mean(axis=1)
    else:
        logits = predict_logits(combiner, logp)
    return softmax(logits, temperature)


def _fit_ensemble_arrays(X, y, C, columns, *, l2, steps, class_weight, combine, seed, val_fraction,
                         k: int = 5, combiner_l2: float = 1e-3, tune_groups=None, names=None):
    """Members {name: (scaler, params, T)}, combiner params (stack) and the combined temperature."""
    member_names = {name: (None if names is None else [names[i] for i in cols]) for name, cols in columns.items()}
    if combine not in ("mean", "stack"):
        raise ConfigError(f"combine must be 'mean' or 'stack', got {combine!r}")
    if val_fraction > 0:
        tr, va = stratified_split(y, val_fraction, seed, tune_groups)
    else:
        tr, va = np.arange(len(y)), np.zeros(0, np.int64)
    Xtr, ytr = X[tr], y[tr]
    combiner = None
    if combine == "stack":
        # Out-of-fold log-probabilities of every member train the combiner, so that it
        # learns how far to trust each group on tunes the member has not seen.
        oof = np.zeros((len(ytr), len(columns) * C))
        sub_groups = None if tune_groups is None else np.asarray(tune_groups)[tr]
        for f_tr, f_te in stratified_kfold(ytr, k, seed, sub_groups):
            fold_members = {name: _fit_member(Xtr[f_tr][:, cols], ytr[f_tr], C, l2=l2, steps=steps,
                                              class_weight=class_weight, names=member_names[name])
                            for name, cols in columns.items()}
            oof[f_te] = _member_logprobs(Xtr[f_te], fold_members, columns)
        combiner = fit_logreg(oof, ytr, C, l2=combiner_l2, steps=steps, class_weight=class_weight)
    members = {}
    for name, cols in columns.items():
        members[name] = _fit_member(Xtr[:, cols], ytr, C, l2=l2, steps=steps, class_weight=class_weight,
                                    X_val=X[va][:, cols] if len(va) else None, y_val=y[va] if len(va) else None,
                                    names=member_names[name])
    temperature = 1.0
    if len(va):
        logp = _member_logprobs(X[va], members, columns)
        if combine == "mean":
            logits = logp.reshape(len(va), len(columns), C).mean(axis=1)
        else:
            logits = predict_logits(combiner, logp)
        temperature = calibrate(logits, y[va])
    return members, combiner, temperature


@dataclass
class GroupEnsemble:
    """The source paper's design: one style model per feature group, trained together and combined.

    Each member is a logistic regression on its own columns (by default the
    five :data:`labkit.features.PAPER_GROUPS`: pitch, interval, rhythm, contour,
    n-gram). They are combined either by ``"mean"``: the average of the members'
    log-probabilities (a normalised geometric mean), or by ``"stack"``: a
    logistic regression on the members' log-probabilities, fitted on
    out-of-fold predictions (k-fold inside the training split) so that it
    learns how much to trust each group on unseen tunes. A final temperature is
    fitted on the validation split.

    Attributes:
        styles, variant, paragraph, ngram_dims: as in :class:`StyleModel`.
        member_groups: ``{member name: feature groups}``.
        names: the feature column names of the union of the groups.
        members: ``{member name: (Standardizer, params, temperature)}``.
        combine: ``"mean"`` or ``"stack"``; combiner: the stacker's params (stack only).
        temperature: the combined output's temperature.

    Notebook: 07_style_index.ipynb
    """

    styles: tuple[str, ...]
    variant: str
    paragraph: bool
    ngram_dims: int
    member_groups: dict[str, tuple[str, ...]]
    names: list[str]
    members: dict
    combine: str = "stack"
    combiner: dict | None = None
    temperature: float = 1.0
    l2: float = 1e-3
    _columns: dict = field(default=None, repr=False)

    @property
    def groups(self) -> tuple[str, ...]:
        return _check_groups({g for gs in self.member_groups.values() for g in gs})

    @property
    def columns(self) -> dict[str, np.ndarray]:
        """Column indices of each member in the union feature matrix."""
        if self._columns is None:
            from labkit.features import group_columns

            self._columns = {name: group_columns(self.names, gs) for name, gs in self.member_groups.items()}
        return self._columns

    @classmethod
    def fit(cls, melodies, labels, *, member_groups: dict[str, Sequence[str]] | None = None,
            styles=None, variant: str = "processed", paragraph: bool = False, ngram_dims: int = NGRAM_DIMS,
            combine: str = "stack", l2: float = 1e-3, steps: int = 300, val_fraction: float = 0.2,
            seed: int = 0, class_weight: str | None = "balanced", tune_groups=None, jobs: int = 1) -> "GroupEnsemble":
        """Compute the features once and train every member and the combiner.

        ``member_groups`` defaults to :data:`labkit.features.PAPER_GROUPS`; other
        arguments as in :meth:`StyleModel.fit`.
        """
        member_groups = {k: _check_groups(v) for k, v in (member_groups or PAPER_GROUPS).items()}
        union = _check_groups({g for gs in member_groups.values() for g in gs})
        X, names = feature_matrix(melodies, _check_variant(variant), union, paragraph=paragraph, jobs=jobs,
                                  ngram_dims=ngram_dims)
        return cls.fit_features(X, labels, names, member_groups=member_groups, styles=styles, variant=variant,
                                paragraph=paragraph, ngram_dims=ngram_dims, combine=combine, l2=l2, steps=steps,
                                val_fraction=val_fraction, seed=seed, class_weight=class_weight,
                                tune_groups=tune_groups)

    @classmethod
    def fit_features(cls, X, labels, names, *, member_groups=None, styles=None, variant="processed",
                     paragraph=False, ngram_dims=NGRAM_DIMS, combine="stack", l2=1e-3, steps=300,
                     val_fraction=0.2, seed=0, class_weight="balanced", tune_groups=None) -> "GroupEnsemble":
        """Train on a precomputed feature matrix whose columns (``names``) cover every member's groups."""
        member_groups = {k: _check_groups(v) for k, v in (member_groups or PAPER_GROUPS).items()}
        y, styles = _encode_labels(labels, styles)
        model = cls(styles, _check_variant(variant), bool(paragraph), int(ngram_dims), member_groups, list(names),
                    {}, combine, None, 1.0, float(l2))
        for name, cols in model.columns.items():
            if len(cols) == 0:
                raise ConfigError(f"member {name!r}: none of its groups {member_groups[name]} is among the features")
        members, combiner, temperature = _fit_ensemble_arrays(
            np.asarray(X, np.float32), y, len(styles), model.columns, l2=l2, steps=steps,
            class_weight=class_weight, combine=combine, seed=seed, val_fraction=val_fraction,
            tune_groups=tune_groups, names=list(names))
        model.members, model.combiner, model.temperature = members, combiner, float(temperature)
        return model

    def features(self, melodies, jobs: int = 1) -> np.ndarray:
        """The feature matrix ``[n, d]`` (union of the members' groups) of ``melodies``."""
        X, _ = feature_matrix(melodies, self.variant, self.groups, paragraph=self.paragraph, jobs=jobs,
                              ngram_dims=self.ngram_dims)
        return X

    def proba_from_features(self, X) -> np.ndarray:
        """Combined, calibrated probabilities ``[n, C]`` of a feature matrix from :meth:`features`."""
        return _ensemble_proba(np.asarray(X, np.float32), self.members, self.columns, self.combiner, self.combine,
                               self.temperature)

    def member_proba_from_features(self, X) -> dict[str, np.ndarray]:
        """Each member's own calibrated probabilities ``{name: [n, C]}`` (what each group alone says)."""
        X = np.asarray(X, np.float32)
        return {name: predict_proba(params, scaler.transform(X[:, self.columns[name]]), t)
                for name, (scaler, params, t) in self.members.items()}

    def predict_proba(self, melodies) -> np.ndarray:
        """Combined probability of each style ``[n, C]``."""
        return self.proba_from_features(self.features(melodies))

    def predict(self, melodies) -> list[str]:
        """The most probable style name of each melody."""
        return [self.styles[i] for i in self.predict_proba(melodies).argmax(1)]

    def index(self, melodies, target: str) -> np.ndarray:
        """The style index ``[n]``: combined probability of ``target``."""
        if target not in self.styles:
            raise ConfigError(f"target style {target!r} is not one of {self.styles}")
        return self.predict_proba(melodies)[:, self.styles.index(target)]

    def save(self, directory) -> Path:
        """Write ``model.json`` and ``arrays.npz`` (members prefixed ``"<name>."``, combiner ``"combiner."``)."""
        arrays = {}
        for name, (scaler, params, _) in self.members.items():
            arrays.update({f"{name}.w": params["w"], f"{name}.b": params["b"],
                           **_scaler_arrays(scaler, f"{name}.")})
        if self.combiner is not None:
            arrays.update({"combiner.w": self.combiner["w"], "combiner.b": self.combiner["b"]})
        config = {"format": FORMAT_VERSION, "kind": "GroupEnsemble", "styles": list(self.styles),
                  "variant": self.variant, "paragraph": self.paragraph, "ngram_dims": self.ngram_dims,
                  "member_groups": {k: list(v) for k, v in self.member_groups.items()},
                  "member_temperatures": {k: float(m[2]) for k, m in self.members.items()},
                  "combine": self.combine, "temperature": self.temperature, "l2": self.l2, "names": self.names}
        return _write_model(directory, config, arrays)

    @classmethod
    def load(cls, directory) -> "GroupEnsemble":
        """Read an ensemble written by :meth:`save`."""
        config, arrays, where = _read_model(directory, "GroupEnsemble")
        try:
            member_groups = {k: _check_groups(v) for k, v in config["member_groups"].items()}
            model = cls(tuple(config["styles"]), config["variant"], bool(config["paragraph"]),
                        int(config["ngram_dims"]), member_groups, list(config["names"]), {}, config["combine"],
                        None, float(config["temperature"]), float(config["l2"]))
            union = _check_groups({g for gs in member_groups.values() for g in gs})
            if model.names != feature_names(union, model.paragraph, model.ngram_dims):
                raise CheckpointError("feature names do not match the stored feature settings", where)
            for name, cols in model.columns.items():
                scaler = _scaler_from_arrays(arrays, f"{name}.")
                params = {"w": arrays[f"{name}.w"], "b": arrays[f"{name}.b"]}
                if params["w"].shape != (len(cols), len(model.styles)) or scaler.mean.shape != (len(cols),):
                    raise CheckpointError(f"member {name!r}: array shapes do not match its features", where)
                model.members[name] = (scaler, params, float(config["member_temperatures"][name]))
            if model.combine == "stack":
                model.combiner = {"w": arrays["combiner.w"], "b": arrays["combiner.b"]}
        except KeyError as err:
            raise CheckpointError(f"missing entry {err.args[0]!r}", where) from None
        return model


# ----------------------------------------------------------------------------------
# The bipolar style axis
# ----------------------------------------------------------------------------------

def plot_style_axis(indices, labels=None, target: str = "irish", other: str = "german", ax=None,
                    seed: int = 0, cmap: str = "RdBu"):
    """Tunes as points on one axis from ``other`` (0) to ``target`` (1), coloured by their style index.

    A diverging colour strip runs under the axis (``RdBu``: red = ``other``,
    white = undecided, blue = ``target``); each tune is a dot at its style index,
    in the same colour. With ``labels`` (the true style or collection of each
    tune), every label gets its own row, so one sees how each group spreads
    along the axis; points are jittered vertically within their row (a numpy
    Generator from ``seed``, so the picture is the same every time).

    Args:
        indices: ``[n]`` style indices in [0, 1].
        labels: optional ``[n]`` group names (one row each, in order of first appearance).
        target, other: the names at the two ends.
        ax: a matplotlib Axes (default: a new figure).

    Returns:
        The matplotlib Axes.

    Notebook: 07_style_index.ipynb
    """
    import matplotlib.pyplot as plt

    indices = np.asarray(indices, dtype=np.float64).reshape(-1)
    if indices.size and (np.nanmin(indices) < 0 or np.nanmax(indices) > 1):
        raise ConfigError("style indices must lie in [0, 1]")
    labels = np.array(["all"] * len(indices) if labels is None else [str(v) for v in labels])
    if len(labels) != len(indices):
        raise ConfigError(f"{len(labels)} labels for {len(indices)} indices")
    rows = list(dict.fromkeys(labels.tolist()))
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 1.0 + 0.6 * len(rows)))
    colormap = plt.get_cmap(cmap)
    gradient = np.linspace(0, 1, 256)[None, :]
    ax.imshow(gradient, extent=(0, 1, -0.75, -0.45), aspect="auto", cmap=colormap, vmin=0, vmax=1)
    rng = np.random.default_rng(seed)
    for r, name in enumerate(rows):
        inside = labels == name
        y = r + rng.uniform(-0.25, 0.25, size=int(inside.sum()))
        ax.scatter(indices[inside], y, c=indices[inside], cmap=colormap, vmin=0, vmax=1, s=14,
                   edgecolors="0.3", linewidths=0.3)
    ax.axvline(0.5, color="0.6", lw=0.8, ls="--")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.85, len(rows) - 0.5)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1])
    ax.set_xticklabels([f"0\n{other}", "0.25", "0.5", "0.75", f"1\n{target}"])
    ax.set_xlabel(f"style index: P({target})")
    return ax
