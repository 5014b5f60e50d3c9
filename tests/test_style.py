"""Tests of labkit.style.logreg, .model, .selection and .plots: the JAX logistic regression, calibration, folds,
models and their files, feature selection, perturbations."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from labkit.style import features as F
from labkit.style import logreg, plots, selection
from labkit.style import model as style_model
from labkit.errors import CheckpointError, ConfigError
from labkit.melody import Melody

NGRAM = 256  # small n-gram tables keep these tests fast


def synthetic_tune(rng: np.random.Generator, style: str, bars: int = 8) -> Melody:
    """A 'jig' (6/8, small steps, eighth notes) or a 'march' (4/4, leaps, quarter notes)."""
    if style == "jig":
        num, den, moves, durations, bar = 6, 8, [-2, -1, 1, 2, 0], [2, 2, 2, 4, 6], 12
    else:
        num, den, moves, durations, bar = 4, 4, [-7, -5, 5, 7, -3, 4], [4, 4, 8, 2], 16
    pitches, starts, ends, t, p = [], [], [], 0, 67
    while t < bars * bar:
        d = min(int(rng.choice(durations)), bars * bar - t)
        p = int(np.clip(p + rng.choice(moves), 55, 84))
        pitches.append(p), starts.append(t), ends.append(t + d)
        t += d
    return Melody.from_notes(pitches, starts, ends, numerator=num, denominator=den, key=int(rng.integers(12)),
                             source=f"{style}-synthetic")


@pytest.fixture(scope="module")
def two_styles():
    rng = np.random.default_rng(42)
    labels = ["jig"] * 30 + ["march"] * 30
    return [synthetic_tune(rng, s) for s in labels], labels


def toy_problem(n=300, d=10, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    W = rng.normal(size=(d, classes))
    y = (X @ W + rng.gumbel(size=(n, classes))).argmax(1)
    return X, y


# --- the logistic regression ------------------------------------------------------------

@pytest.mark.parametrize("classes", [3, 2])
def test_jax_logreg_matches_sklearn(classes):
    sklearn = pytest.importorskip("sklearn.linear_model")
    X, y = toy_problem(classes=classes)
    n, l2 = len(y), 0.01
    # sklearn minimises C * sum CE + ||W||^2 / 2; with a softmax (3+ classes) that is ours
    # with C = 1 / (l2 n); for 2 classes it fits one vector v = w1 - w0, hence C = 2 / (l2 n).
    C = 1 / (l2 * n) if classes > 2 else 2 / (l2 * n)
    for weight in (None, "balanced"):
        ours = logreg.fit_logreg(X, y, classes, l2=l2, steps=500, class_weight=weight)
        ref = sklearn.LogisticRegression(C=C, tol=1e-10, max_iter=10_000, class_weight=weight).fit(X, y)
        diff = np.abs(logreg.predict_proba(ours, X) - ref.predict_proba(X)).max()
        assert diff < 1e-3, (classes, weight, diff)
    # and the mapping matters: ten times the penalty gives visibly different probabilities
    other = sklearn.LogisticRegression(C=C / 10, tol=1e-10, max_iter=10_000).fit(X, y)
    ours = logreg.fit_logreg(X, y, classes, l2=l2, steps=500)
    assert np.abs(logreg.predict_proba(ours, X) - other.predict_proba(X)).max() > 1e-2


def test_fit_is_deterministic_and_checks_its_input():
    X, y = toy_problem()
    a, b = logreg.fit_logreg(X, y, 3, l2=0.01), logreg.fit_logreg(X, y, 3, l2=0.01)
    assert np.array_equal(a["w"], b["w"]) and np.array_equal(a["b"], b["b"])
    assert a["w"].shape == (10, 3) and a["b"].shape == (3,)
    with pytest.raises(ConfigError):
        logreg.fit_logreg(X, y + 5, 3)
    with pytest.raises(ConfigError):
        logreg.fit_logreg(X[:, :, None], y, 3)
    with pytest.raises(ConfigError):
        logreg.fit_logreg(np.full_like(X, np.nan), y, 3)


def test_l1_makes_weights_sparse_and_l1_path_counts_them():
    X, y = toy_problem(classes=2, d=10)
    X = np.concatenate([X, np.random.default_rng(5).normal(size=(len(X), 30)).astype(np.float32)], axis=1)
    dense = logreg.fit_logreg(X, y, 2, l2=0.0, l1=1e-4, steps=300)
    sparse = logreg.fit_logreg(X, y, 2, l2=0.0, l1=0.05, steps=300)
    nz = lambda p: int(np.any(p["w"] != 0, axis=1).sum())
    assert nz(sparse) < nz(dense)
    assert nz(sparse) >= 1 and np.abs(sparse["w"][10:]).sum() < np.abs(sparse["w"][:10]).sum()
    path = selection.l1_path(X, y, [1e-4, 0.02, 0.2], steps=300)
    assert path["nonzero"].tolist() == sorted(path["nonzero"].tolist(), reverse=True)
    assert path["nonzero"][0] > path["nonzero"][-1]
    assert path["balanced_accuracy"][0] > 0.7
    assert all(len(s) == k for s, k in zip(path["selected"], path["nonzero"]))


# --- calibration ---------------------------------------------------------------------------

def test_temperature_scaling_repairs_an_overconfident_model():
    rng = np.random.default_rng(3)
    n, C = 2000, 3
    true_logits = rng.normal(size=(n, C)) * 2.0
    y = np.array([rng.choice(C, p=p) for p in logreg.softmax(true_logits)])
    overconfident = true_logits * 4.0
    T = logreg.calibrate(overconfident, y)
    assert 3.0 < T < 5.3
    before = logreg.log_loss(logreg.softmax(overconfident), y)
    after = logreg.log_loss(logreg.softmax(overconfident, T), y)
    assert after < before - 0.3
    assert logreg.ece(logreg.softmax(overconfident, T), y) < logreg.ece(logreg.softmax(overconfident), y)


def test_ece_by_hand():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    y = np.array([0, 1, 0, 1])
    # bin 0.9: accuracy 0.5, confidence 0.9 (2 of 4); bin 0.6: accuracy 1, confidence 0.6 (2 of 4)
    assert logreg.ece(probs, y, bins=10) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)


# --- folds and metrics ------------------------------------------------------------------------

def test_stratified_kfold_is_a_stratified_partition():
    labels = np.array(["irish"] * 23 + ["german"] * 51 + ["chorale"] * 7)
    folds = logreg.stratified_kfold(labels, k=5, seed=1)
    tests = np.concatenate([te for _, te in folds])
    assert sorted(tests.tolist()) == list(range(len(labels)))          # every tune in exactly one fold
    for tr, te in folds:
        assert not set(tr) & set(te) and len(tr) + len(te) == len(labels)
        for style, total in (("irish", 23), ("german", 51), ("chorale", 7)):
            assert abs((labels[te] == style).sum() - total / 5) < 1
    again = logreg.stratified_kfold(labels, k=5, seed=1)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    other = logreg.stratified_kfold(labels, k=5, seed=2)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other))


def test_stratified_kfold_keeps_groups_together():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 30, 200)                     # e.g. tune families or sub-collections
    labels = groups % 2                                   # each group has one style
    folds = logreg.stratified_kfold(labels, k=4, seed=0, groups=groups)
    fold_of_group = {}
    for f, (_, te) in enumerate(folds):
        for g in set(groups[te].tolist()):
            assert fold_of_group.setdefault(g, f) == f     # no group in two folds
    assert sorted(np.concatenate([te for _, te in folds]).tolist()) == list(range(200))
    with pytest.raises(ConfigError):
        logreg.stratified_kfold(labels, k=40, groups=groups)


def test_stratified_split_fraction_and_groups():
    labels = np.repeat([0, 1], [100, 40])
    rest, part = logreg.stratified_split(labels, 0.25, seed=0)
    assert (labels[part] == 0).sum() == 25 and (labels[part] == 1).sum() == 10
    assert sorted(np.concatenate([rest, part]).tolist()) == list(range(140))
    groups = np.arange(140) // 4
    rest, part = logreg.stratified_split(labels, 0.25, seed=0, groups=groups)
    assert not set(groups[rest]) & set(groups[part])


def test_balanced_accuracy_and_confusion_matrix():
    y = [0, 0, 0, 0, 1, 1, 2]
    p = [0, 0, 0, 1, 1, 0, 2]
    assert logreg.confusion_matrix(y, p).tolist() == [[3, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert logreg.balanced_accuracy(y, p) == pytest.approx((3 / 4 + 1 / 2 + 1) / 3)
    assert logreg.balanced_accuracy([0, 0, 0, 1], [0, 0, 0, 0]) == 0.5


# --- learning two synthetic styles -------------------------------------------------------------

def test_two_synthetic_styles_are_learned(two_styles):
    melodies, labels = two_styles
    X, names = F.feature_matrix(melodies, "processed", ngram_dims=NGRAM)
    y = np.array([0 if s == "jig" else 1 for s in labels])
    result = logreg.cross_validate_logreg(X, y, k=5, seed=0)
    assert result["balanced_accuracy"] > 0.9
    assert result["proba"].shape == (60, 2) and np.allclose(result["proba"].sum(1), 1)
    assert result["confusion"].sum() == 60
    # a shuffled labelling cannot be learned: the check can fail
    shuffled = np.random.default_rng(0).permutation(y)
    assert logreg.cross_validate_logreg(X, shuffled, k=5, seed=0)["balanced_accuracy"] < 0.8


def test_style_model_save_load_round_trip(two_styles, tmp_path):
    melodies, labels = two_styles
    model = style_model.StyleModel.fit(melodies, labels, ngram_dims=NGRAM, val_fraction=0.25, seed=0)
    assert model.styles == ("jig", "march") and model.temperature > 0
    idx = model.index(melodies, "jig")
    assert idx.shape == (60,) and ((idx > 0.5) == (np.array(labels) == "jig")).mean() > 0.9
    model.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "model.json").read_text())["kind"] == "StyleModel"
    loaded = style_model.StyleModel.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict_proba(melodies), model.predict_proba(melodies))
    assert loaded.predict(melodies[:2]) == model.predict(melodies[:2])
    with pytest.raises(ConfigError, match="target style"):
        model.index(melodies, "reel")
    with pytest.raises(CheckpointError, match="missing file"):
        style_model.StyleModel.load(tmp_path / "nothing")
    (tmp_path / "m" / "model.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        style_model.StyleModel.load(tmp_path / "m")


def test_a_failed_save_leaves_the_old_model_whole(two_styles, tmp_path, monkeypatch):
    """The two files of a model are replaced as one unit: a save that fails half-way changes nothing."""
    melodies, labels = two_styles
    old = style_model.StyleModel.fit(melodies, labels, groups=["interval"], val_fraction=0)
    new = style_model.StyleModel.fit(melodies, labels, groups=["interval", "contour"], val_fraction=0)
    old.save(tmp_path / "m", extra_files={"metrics.json": b"{}"})
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}

    def broken_savez(*args, **kwargs):       # model.json is written, then the arrays fail
        raise OSError("disk full")

    monkeypatch.setattr(style_model.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        new.save(tmp_path / "m")
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]          # no temporary folder left behind
    loaded = style_model.load_style_model(tmp_path / "m")
    assert loaded.groups == ("interval",)
    np.testing.assert_array_equal(loaded.predict_proba(melodies[:4]), old.predict_proba(melodies[:4]))
    new.save(tmp_path / "m")                 # a good save replaces both files (and the old figures)
    assert style_model.load_style_model(tmp_path / "m").groups == ("interval", "contour")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["arrays.npz", "model.json"]


def test_save_refuses_a_folder_holding_other_files(two_styles, tmp_path):
    melodies, labels = two_styles
    model = style_model.StyleModel.fit(melodies, labels, groups=["interval"], val_fraction=0)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="other files"):
        model.save(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine" and not (tmp_path / "model.json").exists()


def atonal_tune(rng: np.random.Generator, bars: int = 8) -> Melody:
    """Unlike both synthetic styles: 5/4, chromatic leaps of up to an octave, sixteenths to dotted halves."""
    pitches, starts, ends, t, p = [], [], [], 0, 67
    while t < bars * 20:
        d = int(rng.choice([1, 3, 5, 12]))
        p = int(np.clip(p + rng.choice([-11, -10, -6, 6, 10, 11]), 40, 96))
        pitches.append(p), starts.append(t), ends.append(t + d)
        t += d
    return Melody.from_notes(pitches, starts, ends, numerator=5, denominator=4, source="atonal")


def test_typicality_flags_tunes_unlike_every_style(two_styles, tmp_path):
    from labkit.style.scoring import score_melodies

    melodies, labels = two_styles
    model = style_model.StyleModel.fit(melodies, labels, ngram_dims=NGRAM, val_fraction=0)
    own = model.typicality(melodies)
    shares = own * len(model.typical.reference)          # the share of training tunes at least as atypical
    assert own.shape == (60,) and np.allclose(shares, np.round(shares), atol=1e-3)
    # new tunes of the two styles: typicality spread over [0, 1] (median near 0.5), few below the floor
    rng = np.random.default_rng(7)
    fresh = [synthetic_tune(rng, s) for s in ["jig", "march"] * 50]
    typical = model.typicality(fresh)
    assert 0.3 < np.median(typical) < 0.7 and np.mean(typical < style_model.TYPICAL_FLOOR) <= 0.06
    strange = [atonal_tune(rng) for _ in range(10)]
    assert (model.typicality(strange) < style_model.TYPICAL_FLOOR).all()
    records = score_melodies(model, fresh[:1] + strange[:1], target="jig")
    assert records[0]["typicality"] > style_model.TYPICAL_FLOOR > records[1]["typicality"]
    # saved and read back: the same figures; a model saved before typicality existed still loads, without them
    model.save(tmp_path / "m")
    loaded = style_model.StyleModel.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.typicality(strange), model.typicality(strange))
    with np.load(tmp_path / "m" / "arrays.npz") as data:
        old = {k: data[k] for k in data.files if not k.startswith("typical_")}
    np.savez(tmp_path / "m" / "arrays.npz", **old)
    older = style_model.StyleModel.load(tmp_path / "m")
    assert older.typical is None and "typicality" not in score_melodies(older, fresh[:1], target="jig")[0]
    with pytest.raises(ConfigError, match="without typicality"):
        older.typicality(fresh[:1])
    np.savez(tmp_path / "m" / "arrays.npz", **old, typical_mean=model.typical.mean[:, :3],
             typical_var=model.typical.var, typical_reference=model.typical.reference)
    with pytest.raises(CheckpointError, match="typicality arrays"):
        style_model.StyleModel.load(tmp_path / "m")


@pytest.mark.parametrize("combine", ["stack", "mean"])
def test_group_ensemble_learns_and_round_trips(two_styles, tmp_path, combine):
    melodies, labels = two_styles
    ens = style_model.GroupEnsemble.fit(melodies[::2] + melodies[1::2], labels[::2] + labels[1::2], ngram_dims=NGRAM,
                              combine=combine, val_fraction=0.25, seed=0)
    assert set(ens.members) == set(F.PAPER_GROUPS)
    p = ens.predict_proba(melodies)
    assert ((p[:, 0] > 0.5) == (np.array(labels) == "jig")).mean() > 0.9
    members = ens.member_proba_from_features(ens.features(melodies))
    assert set(members) == set(F.PAPER_GROUPS) and all(m.shape == (60, 2) for m in members.values())
    ens.save(tmp_path / combine)
    loaded = style_model.GroupEnsemble.load(tmp_path / combine)
    np.testing.assert_array_equal(loaded.predict_proba(melodies), p)


def test_cross_validate_with_an_ensemble(two_styles):
    melodies, labels = two_styles
    X, names = F.feature_matrix(melodies, "processed", ngram_dims=NGRAM)
    y = np.array([0 if s == "jig" else 1 for s in labels])
    columns = {k: F.group_columns(names, v) for k, v in F.PAPER_GROUPS.items()}
    result = logreg.cross_validate_logreg(X, y, k=3, ensemble=columns, combine="mean")
    assert result["balanced_accuracy"] > 0.9


def test_select_l2_and_nested_cross_validation():
    # Many noise columns, few examples: a strong penalty must win, and the nested CV must say so.
    rng = np.random.default_rng(1)
    X = rng.normal(size=(90, 300))
    y = (X[:, 0] + 0.5 * rng.normal(size=90) > 0).astype(int)
    best, scores = logreg.select_l2(X, y, [1e-4, 3.0], k=3, steps=150)
    assert best == 3.0 and scores[3.0] > scores[1e-4]
    r = logreg.cross_validate_logreg(X, y, k=3, l2=[1e-4, 3.0], steps=150, seed=0)
    # each fold's choice is select_l2 on that fold's training part alone (nested: the test fold unseen)
    for (tr, _), chosen in zip(logreg.stratified_kfold(y, 3, 0), r["l2"]):
        assert chosen == logreg.select_l2(X[tr], y[tr], [1e-4, 3.0], k=3, seed=1, steps=150)[0]
    assert (r["l2"] == 3.0).sum() >= 2
    with pytest.raises(ConfigError):
        logreg.select_l2(X, y, [], k=3)


def test_names_switch_on_hashed_group_scaling(two_styles, tmp_path):
    melodies, labels = two_styles
    X, names = F.feature_matrix(melodies, "processed", ngram_dims=NGRAM)
    y = np.array([0 if s == "jig" else 1 for s in labels])
    r = logreg.cross_validate_logreg(X, y, k=3, names=names, l2=0.1)
    assert r["balanced_accuracy"] > 0.9
    with pytest.raises(ConfigError, match="names"):
        logreg.cross_validate_logreg(X, y, k=3, names=names[:-1])
    model = style_model.StyleModel.fit_features(X, labels, names, ngram_dims=NGRAM, val_fraction=0)
    hashed = np.concatenate(list(F.hashed_columns(names).values()))
    assert model.standardizer.root[hashed].all() and model.standardizer.root.sum() == len(hashed)
    model.save(tmp_path / "m")
    loaded = style_model.StyleModel.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.standardizer.root, model.standardizer.root)
    np.testing.assert_array_equal(loaded.proba_from_features(X), model.proba_from_features(X))
    # a model saved before ``root`` existed (no root array) still loads, with no column rooted
    arrays = dict(np.load(tmp_path / "m" / "arrays.npz"))
    del arrays["root"]
    np.savez(tmp_path / "m" / "arrays.npz", **arrays)
    assert style_model.StyleModel.load(tmp_path / "m").standardizer.root is None


# --- perturbations ----------------------------------------------------------------------------

def test_perturb_transpose_and_pitch_noise():
    m = synthetic_tune(np.random.default_rng(1), "jig")
    up = selection.perturb(m, "transpose", 3)
    assert np.array_equal(up.pitches, m.pitches + 3)
    noisy = selection.perturb(m, "pitch", 0.25, key=7)
    diff = noisy.pitches.astype(int) - m.pitches
    assert (np.abs(diff) <= 1).all() and (diff != 0).sum() == round(0.25 * len(diff))
    assert np.array_equal(noisy.events < 0, m.events < 0)           # the rhythm is untouched
    assert np.array_equal(selection.perturb(m, "pitch", 0.25, key=7).events, noisy.events)
    assert not np.array_equal(selection.perturb(m, "pitch", 0.25, key=8).events, noisy.events)


def test_perturb_rhythm_moves_onsets_by_one_step_and_keeps_order():
    import jax

    m = synthetic_tune(np.random.default_rng(2), "march")
    jittered = selection.perturb(m, "rhythm", 0.5, key=jax.random.key(0))
    p0, s0, e0 = m.notes()
    p1, s1, e1 = jittered.notes()
    assert np.array_equal(p0, p1)                        # same notes, same order
    assert (np.abs(s1 - s0) <= 1).all() and (s1 != s0).sum() > 0.2 * len(s0)
    assert (np.diff(s1) > 0).all() and (e1 > s1).all()
    assert np.array_equal(selection.perturb(m, "rhythm", 0.5, key=jax.random.key(0)).events, jittered.events)
    assert np.array_equal(selection.perturb(m, "rhythm", 0.0, key=1).events[: m.num_steps], m.events)
    with pytest.raises(ConfigError):
        selection.perturb(m, "rhythm", 0.5)
    with pytest.raises(ConfigError):
        selection.perturb(m, "swing", 0.5, key=1)


def test_perturb_features_is_seeded_noise():
    X = np.zeros((100, 5), np.float32)
    a, b = selection.perturb_features(X, 0.5, 0), selection.perturb_features(X, 0.5, 0)
    assert np.array_equal(a, b) and abs(a.std() - 0.5) < 0.05


# --- the style axis plot ----------------------------------------------------------------------

def test_plot_style_axis():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = np.array([0.05, 0.2, 0.9, 0.95, 0.5])
    ax = plots.plot_style_axis(idx, ["german", "german", "irish", "irish", "irish"])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["german", "irish"]
    offsets = np.concatenate([c.get_offsets()[:, 0] for c in ax.collections])
    assert sorted(offsets.tolist()) == sorted(idx.tolist())
    assert ax.get_xlim() == (0, 1)
    with pytest.raises(ConfigError):
        plots.plot_style_axis([1.5])
    plt.close("all")


# --- dimension and data-size studies ---------------------------------------------------------

def test_dimensionality_cost_and_learning_curve():
    X, y = toy_problem(n=400, d=12, classes=3, seed=4)
    rows = selection.dimensionality_cost(X, y, [1, 12, 50], selection="mi", steps=200)
    assert [r["dims"] for r in rows] == [1, 12]                     # 50 > 12 columns: skipped
    assert rows[1]["balanced_accuracy"] > rows[0]["balanced_accuracy"]
    assert all(r["fit_seconds"] > 0 and 1 <= r["iterations"] <= 200 for r in rows)
    curve = selection.learning_curve(X, y, [0.05, 0.5], steps=200)
    assert curve[0]["train_size"] < curve[1]["train_size"]
    assert curve[1]["balanced_accuracy"] > 0.6


# --- broken model files: one CheckpointError naming the file, never a traceback or a NaN index -------

@pytest.fixture
def shipped_copy(tmp_path):
    """A copy of the shipped style model, to break."""
    import shutil

    return shutil.copytree(style_model.shipped_style_model_dir(), tmp_path / "model")


def shipped_arrays(where):
    from labkit._common import read_npz

    return read_npz(where / "arrays.npz")


def save_arrays(where, arrays, **options):
    with open(where / "arrays.npz", "wb") as handle:
        np.savez(handle, **arrays, **options)


def score_cli(capsys, where, midi):
    """``python -m labkit style score --json --model DIR FILE``: (exit status, stdout, stderr lines)."""
    from labkit import cli

    try:
        status = cli.main(["style", "score", "--json", "--model", str(where), str(midi)])
    except SystemExit as exc:
        status = exc.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err.strip().splitlines()


@pytest.fixture(scope="module")
def a_tune():
    from labkit.examples import example_midi

    return example_midi()


def break_arrays_file(where, how):
    raw = (where / "arrays.npz").read_bytes()
    data = {"empty": b"", "truncated": raw[: len(raw) // 2], "random": bytes(range(256)) * 4,
            "pickle": b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00]\x94."}[how]
    (where / "arrays.npz").write_bytes(data)


@pytest.mark.parametrize("how", ["empty", "truncated", "random", "pickle"])
def test_a_broken_arrays_file_names_it(shipped_copy, capsys, a_tune, how):
    break_arrays_file(shipped_copy, how)
    with pytest.raises(CheckpointError, match="not a readable style model's arrays") as info:
        style_model.load_style_model(shipped_copy)
    assert info.value.path == str(shipped_copy / "arrays.npz")
    assert "allow_pickle" not in str(info.value) and "unsafe" not in str(info.value)
    status, out, err = score_cli(capsys, shipped_copy, a_tune)
    assert status == 2 and out == "" and len(err) == 1 and "arrays.npz" in err[0] and "allow_pickle" not in err[0]


def test_an_object_array_is_not_a_labkit_model(shipped_copy, capsys, a_tune):
    save_arrays(shipped_copy, {**shipped_arrays(shipped_copy), "w": np.array([None, {}], dtype=object)},
                allow_pickle=True)
    with pytest.raises(CheckpointError, match="Python objects, which labkit never loads: not a file labkit wrote"):
        style_model.load_style_model(shipped_copy)
    status, _, err = score_cli(capsys, shipped_copy, a_tune)
    assert status == 2 and len(err) == 1 and "allow_pickle" not in err[0]


@pytest.mark.parametrize("name, change", [
    ("w", lambda a: a.ravel()),                       # 1-D: used to be a ValueError from unpacking its shape
    ("w", lambda a: a[:-1]),
    ("w", lambda a: a[:, :-1]),
    ("b", lambda a: np.append(a, 0)),
    ("mean", lambda a: a[:-2]),
    ("scale", lambda a: a.reshape(1, -1)),
    ("typical_mean", lambda a: a[:, :-1]),
    ("typical_reference", lambda a: a[:0]),
    ("scale", lambda a: np.zeros_like(a)),
    ("w", lambda a: a.astype("U3")),
])
def test_a_resized_or_retyped_array_is_refused(shipped_copy, name, change):
    arrays = shipped_arrays(shipped_copy)
    save_arrays(shipped_copy, {**arrays, name: change(arrays[name])})
    with pytest.raises(CheckpointError) as info:
        style_model.load_style_model(shipped_copy)
    assert str(shipped_copy) in str(info.value)


@pytest.mark.parametrize("name", ["w", "b", "mean", "scale", "typical_var", "typical_reference"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_and_infinity_in_a_style_model_are_refused(shipped_copy, capsys, a_tune, name, value):
    arrays = shipped_arrays(shipped_copy)
    broken = arrays[name].astype(np.float32)
    broken.flat[0] = value
    save_arrays(shipped_copy, {**arrays, name: broken})
    with pytest.raises(CheckpointError, match=f"{name!r} holds NaN or infinite values"):
        style_model.load_style_model(shipped_copy)
    if name == "w" and np.isnan(value):     # before: {"index": NaN}, which is not JSON, and exit status 0
        status, out, err = score_cli(capsys, shipped_copy, a_tune)
        assert status == 2 and out == "" and len(err) == 1 and "arrays.npz" in err[0]


@pytest.mark.parametrize("key, value", [("temperature", float("nan")), ("temperature", 0), ("l2", float("inf")),
                                        ("temperature", "hot"), ("styles", 5), ("styles", ["a"]), ("styles", [1, 2]),
                                        ("groups", 5), ("groups", ["nope"]), ("paragraph", "x"), ("variant", 3),
                                        ("names", 5), ("ngram_dims", -1), ("ngram_dims", "a"),
                                        ("ngram_dims", 10 ** 7)])      # used to build 10 million names (35 s)
def test_bad_settings_in_model_json_are_refused_at_once(shipped_copy, key, value):
    import time

    config = json.loads((shipped_copy / "model.json").read_text())
    (shipped_copy / "model.json").write_text(json.dumps({**config, key: value}))
    started = time.perf_counter()
    with pytest.raises(CheckpointError) as info:
        style_model.load_style_model(shipped_copy)
    assert str(shipped_copy) in str(info.value) and time.perf_counter() - started < 2


@pytest.mark.parametrize("change", [{"member_temperatures": [1]}, {"member_groups": [1]}, {"member_groups": {}},
                                    {"member_temperatures": {"pitch": 0}}, {"combine": "vote"}])
def test_bad_ensemble_settings_are_refused(shipped_copy, change):
    config = json.loads((shipped_copy / "model.json").read_text())
    ensemble = {**config, "kind": "GroupEnsemble", "member_groups": {"pitch": ["pitch_class"]},
                "member_temperatures": {"pitch": 1.0}, "combine": "mean"}
    (shipped_copy / "model.json").write_text(json.dumps({**ensemble, **change}))
    with pytest.raises(CheckpointError) as info:
        style_model.load_style_model(shipped_copy)
    assert str(shipped_copy) in str(info.value)


def test_model_json_that_is_a_list(shipped_copy):
    (shipped_copy / "model.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="model.json"):
        style_model.load_style_model(shipped_copy)
    with pytest.raises(CheckpointError, match="JSON list"):
        style_model.StyleModel.load(shipped_copy)


def test_an_ensemble_with_a_resized_or_nan_combiner_is_refused(two_styles, tmp_path):
    melodies, labels = two_styles
    ens = style_model.GroupEnsemble.fit(melodies, labels, ngram_dims=NGRAM, combine="stack", val_fraction=0.25,
                                        seed=0, steps=30)
    for change, words in [(lambda a: a[:-1], "combiner's array shapes"), (lambda a: a * np.nan, "NaN")]:
        where = ens.save(tmp_path / "ens")
        arrays = shipped_arrays(where)
        save_arrays(where, {**arrays, "combiner.w": change(arrays["combiner.w"])})
        with pytest.raises(CheckpointError, match=words):
            style_model.load_style_model(where)
    where = ens.save(tmp_path / "ens")
    config = json.loads((where / "model.json").read_text())
    temperatures = {**config["member_temperatures"], "pitch": float("nan")}
    (where / "model.json").write_text(json.dumps({**config, "member_temperatures": temperatures}))
    with pytest.raises(CheckpointError, match="pitch"):
        style_model.load_style_model(where)


@settings(max_examples=50, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_arrays_files_raise_only_checkpoint_errors(shipped_copy, data):
    raw = bytearray((style_model.shipped_style_model_dir() / "arrays.npz").read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        if data.draw(st.booleans()):
            raw[at] ^= data.draw(st.integers(1, 255))
        else:
            del raw[at:at + data.draw(st.integers(1, 64))]
    (shipped_copy / "arrays.npz").write_bytes(bytes(raw))
    try:
        model = style_model.load_style_model(shipped_copy)
    except CheckpointError as error:
        assert "allow_pickle" not in str(error) and "\n" not in str(error)
    else:
        assert all(np.isfinite(v).all() for v in model.params.values())
