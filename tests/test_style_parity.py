"""Parity with scikit-learn of what notebook 07 (and 06) teaches by hand: metrics, folds, standardising, MI.

The logistic regression's own parity test (probabilities against ``LogisticRegression``) is
``test_style.py::test_jax_logreg_matches_sklearn``.
"""
from __future__ import annotations

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.feature_selection import mutual_info_classif  # noqa: E402
from sklearn.metrics import balanced_accuracy_score, mutual_info_score  # noqa: E402
from sklearn.metrics import confusion_matrix as sk_confusion_matrix  # noqa: E402
from sklearn.model_selection import StratifiedKFold  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from labkit.style import logreg, selection  # noqa: E402
from labkit.style.features import Standardizer  # noqa: E402


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_matrix_and_balanced_accuracy_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    C = 4
    y_true = np.concatenate([np.arange(C), rng.integers(0, C, 80)])     # every class present
    y_pred = np.where(rng.random(len(y_true)) < 0.6, y_true, rng.integers(0, C, len(y_true)))
    np.testing.assert_array_equal(logreg.confusion_matrix(y_true, y_pred, C),
                                  sk_confusion_matrix(y_true, y_pred, labels=range(C)))
    assert logreg.balanced_accuracy(y_true, y_pred, C) == pytest.approx(balanced_accuracy_score(y_true, y_pred))


def test_log_loss_matches_sklearn():
    from sklearn.metrics import log_loss as sk_log_loss

    rng = np.random.default_rng(0)
    probs = logreg.softmax(rng.normal(size=(50, 3)))
    y = np.concatenate([[0, 1, 2], rng.integers(0, 3, 47)])
    assert logreg.log_loss(probs, y) == pytest.approx(sk_log_loss(y, probs, labels=[0, 1, 2]))


@pytest.mark.parametrize("k", [3, 5])
def test_stratified_kfold_keeps_class_proportions_as_sklearn_does(k):
    """Each class is split over the folds as evenly as sklearn's StratifiedKFold splits it (counts n_c//k or +1)."""
    rng = np.random.default_rng(k)
    labels = rng.permutation(np.repeat([0, 1, 2, 3], [41, 17, 9, 30]))
    ours = logreg.stratified_kfold(labels, k=k, seed=0)
    theirs = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=0).split(np.zeros(len(labels)), labels))
    tests = np.concatenate([te for _, te in ours])
    assert sorted(tests.tolist()) == list(range(len(labels)))               # a partition
    for tr, te in ours:
        assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == len(labels)

    def per_class(folds):    # [classes, k]: test items of each class in each fold, sorted over folds
        return np.sort(np.stack([np.bincount(labels[te], minlength=4) for _, te in folds], axis=1), axis=1)

    np.testing.assert_array_equal(per_class(ours), per_class(theirs))


def test_standardizer_matches_standard_scaler():
    rng = np.random.default_rng(0)
    X = rng.normal(3.0, 2.0, size=(40, 6))
    X[:, 2] = 7.0                                          # a constant column: both leave it at scale 1
    Z = rng.normal(size=(5, 6))
    ours = Standardizer.fit(X)
    scaler = StandardScaler().fit(X)
    np.testing.assert_allclose(ours.mean, scaler.mean_, rtol=1e-6)
    np.testing.assert_allclose(ours.scale, scaler.scale_, rtol=1e-6)
    np.testing.assert_allclose(ours.transform(Z), scaler.transform(Z), rtol=1e-5, atol=1e-5)


def test_mutual_information_of_a_discrete_column_matches_sklearn():
    """With one bin per value (a column of four values), it is the plug-in MI that sklearn computes (nats)."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    x = np.where(rng.random(400) < 0.5, y, rng.integers(0, 4, 400))       # tells something about y
    noise = rng.integers(0, 4, 400)
    X = np.stack([x, noise], axis=1).astype(float)
    ours = selection.mutual_information(X, y)
    np.testing.assert_allclose(ours, [mutual_info_score(x, y), mutual_info_score(noise, y)], rtol=1e-5)
    # sklearn's own estimator on discrete features agrees too, and both rank the informative column first
    theirs = mutual_info_classif(X, y, discrete_features=True)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    assert selection.select_mutual_information(X, y, 1)[0].tolist() == [0]

