"""Multinomial logistic regression in JAX, calibration, metrics, folds by tune, cross-validation.

A tune's features ``x`` (a row of :func:`labkit.style.features.feature_matrix`,
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

Then: temperature scaling on a validation split (:func:`calibrate`), the
metrics (:func:`confusion_matrix`, :func:`balanced_accuracy`, :func:`log_loss`,
:func:`ece`), stratified folds that keep a tune's variants together
(:func:`stratified_kfold`, :func:`stratified_split`), and
:func:`cross_validate_logreg` with nested L2 selection (:func:`select_l2`),
for one model or a per-group ensemble (the array side of
:class:`labkit.style.model.GroupEnsemble`). Notebook 07 writes the metrics and
folds by hand; ``tests/test_style_logreg.py`` checks them against scikit-learn.

Notebook: 07_style_index.ipynb
"""
from __future__ import annotations

import functools
import math
import time
from functools import partial
from typing import Sequence

import numpy as np

from labkit.errors import ConfigError
from labkit.style.features import Standardizer

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


@functools.cache
def _jitted(name: str):
    """The jit-compiled ``"lbfgs"``, ``"fista"`` or ``"loss"``, made on first use (importing compiles nothing)."""
    import jax

    return jax.jit({"lbfgs": _lbfgs_impl, "fista": _fista_impl, "loss": _loss}[name])


def _pad(X, Y, weights, row_multiple: int = 256, col_multiple: int = 128):
    """Pad rows with zero-weight examples and columns with zero features.

    Neither changes the solution (a zero-weight row adds nothing to the loss; a
    zero column's weight stays 0 under the L2/L1 penalty). The padding lets
    problems of slightly different sizes (cross-validation folds, the members
    of a :class:`labkit.style.model.GroupEnsemble`) share one compiled solver
    instead of paying JAX's compilation for each.
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
      optax 0.2.4 or later), at most ``steps``
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

    Call it on *training* tunes only: inside :func:`cross_validate_logreg` (``l2`` a
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


def cross_validate_logreg(X, y, k: int = 5, *, seed: int = 0, groups=None, l2: float | Sequence[float] = 1e-3,
                   steps: int = 300, class_weight: str | None = "balanced", standardize: bool = True,
                   num_classes: int | None = None, ensemble: dict[str, np.ndarray] | None = None,
                   combine: str = "stack", names: Sequence[str] | None = None, inner_k: int = 3) -> dict:
    """k-fold cross-validation of the style classifier on a feature matrix.

    Each fold: standardise with the training part's statistics, fit
    :func:`fit_logreg` (or, with ``ensemble``, one model per column group and a
    combiner, as :class:`labkit.style.model.GroupEnsemble`), predict the held-out tunes.

    Args:
        X: ``[n, d]`` features; y: ``[n]`` integer labels.
        k, seed, groups: the folds (:func:`stratified_kfold`; ``groups`` keep
            tunes or sub-collections together).
        ensemble: optional ``{name: column indices}`` (see
            :func:`labkit.style.features.group_columns`) for a per-group ensemble.
        l2: the L2 strength, or a sequence of candidates: then each fold picks
            its own by :func:`select_l2` (``inner_k``-fold CV on the fold's
            training part only: nested cross-validation, the held-out fold
            plays no part in the choice).
        names: the column names; given, hashed n-gram groups are square-rooted
            and scaled per group (:meth:`labkit.style.features.Standardizer.fit`).

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
# Ensembles of per-group models (the arrays of labkit.style.model.GroupEnsemble)
# ----------------------------------------------------------------------------------

def _fit_member(X, y, C, *, l2, steps, class_weight, X_val=None, y_val=None, names=None):
    """Standardizer, parameters and temperature of one linear model."""
    scaler = Standardizer.fit(X, names)
    params = fit_logreg(scaler.transform(X), y, C, l2=l2, steps=steps, class_weight=class_weight)
    temperature = 1.0
    if X_val is not None and len(y_val):
        temperature = calibrate(predict_logits(params, scaler.transform(X_val)), y_val)
    return scaler, params, temperature


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
