"""Tests of labkit.style.experiments and `python -m labkit style experiment` (a tiny run on the shipped corpus)."""
import json

import numpy as np
import pytest

from labkit.cli import main
from labkit.errors import ConfigError
from labkit.style import experiments, logreg
from labkit.style import features as F
from labkit.style.experiments import (ONEILL_SECTIONS, cross_style_duplicates, mix_with_trees, oneill_section,
                                      run_experiment, tree_columns)
from labkit.style.features import hashed_columns


def test_cross_style_duplicates_marks_only_tunes_shared_across_styles():
    song = [60, 62, 64, 65, 67, 67, 69, 69, 67, 65, 64, 62, 60]
    other = [72, 71, 69, 67, 65, 64, 62, 60, 62, 64, 60, 59, 57]
    marked = cross_style_duplicates([song, [p + 2 for p in song], other, list(song)], ["a", "b", "a", "a"])
    # the transposed copy under another label is a duplicate both ways; a copy within one style is not
    assert marked.tolist() == [True, True, False, True]
    assert cross_style_duplicates([song, other], ["a", "b"]).tolist() == [False, False]


def test_raw_columns_form_hashed_groups_of_their_own():
    names = ["interval:+1", "interval_ngram:3", "raw:interval_ngram:3", "raw:interval:+1", "raw:interval_ngram:4"]
    groups = hashed_columns(names)
    assert set(groups) == {"interval_ngram", "raw:interval_ngram"}
    np.testing.assert_array_equal(groups["raw:interval_ngram"], [2, 4])


def test_experiment_command_runs_every_protocol(tmp_path, capsys):
    out = tmp_path / "figures.json"
    status = main(["style", "experiment", "--styles", "chinese", "german", "irish", "--max-per-style", "15",
                   "--folds", "2", "--l2-grid", "0.1", "1", "--steps", "20", "--no-generalisation", "--with-raw",
                   "--with-trees", "--with-lstm", "--json", str(out)])
    assert status == 0
    text = capsys.readouterr().out
    figures = json.loads(out.read_text())
    assert figures["styles"] == ["chinese", "german", "irish"]
    assert figures["tunes"] == {"chinese": 15, "german": 15, "irish": 15}
    # the raw variant's columns beside the processed ones, without a second copy of the form groups
    form = sum(F.group_dims(g) for g in F.FORM_GROUPS)
    assert figures["features"]["improved_raw"] == 2 * figures["features"]["improved"] - form
    assert figures["features"]["melody_model"] == 512                  # the shipped model: mean and std of 256 units
    for name in ("basic", "improved", "improved_raw", "improved_raw_lstm", "improved_trees", "deduplicated",
                 "deduplicated_raw", "deduplicated_raw_lstm", "deduplicated_trees", "basic_deduplicated"):
        result = figures[name]
        # the mean over folds, and accuracy is what the pooled confusion matrix says
        assert result["balanced_accuracy"] == pytest.approx(np.mean(result["fold_balanced_accuracy"])), name
        cm = np.asarray(result["confusion"])
        assert result["accuracy"] == pytest.approx(np.trace(cm) / cm.sum()), name
        grid = {0.03} if name.startswith("basic") else {0.1, 1.0}     # basic: the fixed L2; else nested choice
        assert len(result["fold_balanced_accuracy"]) == 2 and set(result["l2"]) <= grid, name
        assert np.asarray(result["confusion"]).sum() <= 45 and set(result["recall"]) == set(figures["styles"])
        assert name in text
    assert np.asarray(figures["improved"]["confusion"]).sum() == 45
    assert set(figures["duplicates"]) == set(figures["styles"])
    assert "generalisation" not in figures
    unread = figures["improved_raw_lstm"]["unread"]         # tunes the melody model never trained on
    assert 0 < unread["tunes"] < 45 and 0.0 <= unread["without"] <= 1.0 and 0.0 <= unread["with"] <= 1.0
    assert "never read" in text
    assert figures["basic"]["balanced_accuracy"] > 0.5            # three very different styles: far above chance


def test_trees_see_the_processed_dense_and_form_columns_only():
    names = ["interval:+1", "interval_ngram:0003", "phrase_mean:contour:up", "form:pickup",
             "form_by_metre:num_2:pickup", "raw:interval:+1", "raw:interval_ngram:0003", "lstm_mean:000"]
    assert tree_columns(names).tolist() == [0, 2, 3]


def test_mix_with_trees_weighs_the_two_models():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 30)
    X = rng.normal(size=(90, 6)) + y[:, None] * np.array([1.5, 0, 0, 0, 0, 0])   # column 0 carries the style
    names = [f"interval:{i}" for i in range(6)]
    linear = logreg.cross_validate_logreg(X, y, k=3, seed=0, l2=0.1, steps=50)
    alone = mix_with_trees(X, y, names, linear, 3, mix=1.0)            # all weight on the logistic regression
    np.testing.assert_allclose(alone["proba"], linear["proba"], atol=1e-6)
    assert alone["balanced_accuracy"] == pytest.approx(linear["balanced_accuracy"])
    trees = mix_with_trees(X, y, names, linear, 3, mix=0.0)            # all weight on the trees
    assert not np.allclose(trees["proba"], linear["proba"], atol=1e-3)
    assert trees["balanced_accuracy"] > 0.6 and np.asarray(trees["confusion"]).sum() == 90
    np.testing.assert_allclose(trees["proba"].sum(1), 1.0, atol=1e-6)


def test_experiment_needs_two_styles():
    with pytest.raises(ConfigError, match="at least two styles"):
        run_experiment(["german"], log=None)


def test_generalisation_scores_held_out_sub_collections(monkeypatch):
    """Every held-out family and Essen's Irish songs get a share from each model (tiny data: at most 40 tunes read)."""
    real = experiments.corpus_style_data

    def small(styles=None, splits=None, *, max_per_style=None, **kwargs):
        return real(styles, splits, max_per_style=min(max_per_style or 40, 40), **kwargs)

    monkeypatch.setattr(experiments, "corpus_style_data", small)
    figures = run_experiment(["chinese", "german", "irish"], max_per_style=30, folds=2, l2_grid=[0.3], steps=20,
                             dedup=False, log=None)
    gen = figures["generalisation"]
    assert gen["families"], "no German family had 5 tunes among the 40 read"
    for fam, entry in gen["families"].items():
        assert set(entry) >= {"tunes", "trained_without", "basic", "improved", "pair"}, fam
        assert entry["tunes"] >= 5
        for name in ("basic", "improved", "pair"):             # a share of the family's tunes: a count over tunes
            called = entry[name] * entry["tunes"]
            assert called == pytest.approx(round(called)) and 0 <= round(called) <= entry["tunes"], fam
    irish = gen["essen_irish"]
    assert set(irish) >= {"basic", "improved", "pair", "pair_called"}
    assert sum(irish["pair_called"].values()) == irish["tunes"]
    assert set(k for k, v in irish["pair_called"].items() if v) <= {"german", "irish"}   # the pair knows two styles
    for name in ("basic", "improved", "pair"):
        assert irish[name] == irish[f"{name}_called"]["irish"] / irish["tunes"]
    families = gen["families"].values()
    assert gen["german_families_pair"] == pytest.approx(sum(e["pair"] * e["tunes"] for e in families)
                                                        / sum(e["tunes"] for e in families))
    # O'Neill's parts held out one at a time: each scored by every model, with Essen's Irish songs beside it
    assert gen["oneill_sections"], "no part of O'Neill's book had 5 tunes among the 40 read"
    for sec, entry in gen["oneill_sections"].items():
        assert sec in ONEILL_SECTIONS and entry["tunes"] >= 5, sec
        for name in ("basic", "improved", "pair"):
            assert entry[name] == entry[f"{name}_called"]["irish"] / entry["tunes"], sec
            essen_called = entry["essen_irish"][name] * irish["tunes"]
            assert essen_called == pytest.approx(round(essen_called)), sec
        assert sum(entry["improved_called"].values()) == entry["tunes"]
        assert entry["pair"] == entry["pair_called"]["irish"] / entry["tunes"]


def test_oneill_section_follows_the_books_numbering():
    ids = ["oneills-0001", "oneills-0625", "oneills-0626", "oneills-0700", "oneills-0701", "oneills-1850",
           "ryans-0001", "essen-kinder0-0001", "oneills-x"]
    assert oneill_section(ids).tolist() == ["airs", "airs", "carolan", "carolan", "dances", "dances", "", "", ""]
    # the parts cover the book's 1,850 numbers once each
    numbers = [n for lo, hi in ONEILL_SECTIONS.values() for n in range(lo, hi + 1)]
    assert sorted(numbers) == list(range(1, 1851))


def test_typicality_check_flags_classical_works_more_than_folk_tunes(monkeypatch, tmp_path, capsys):
    """The shipped model on a few tunes of each set; the command writes the same figures as JSON."""
    real = experiments.typicality_check

    def small(model=None, *, per_composer=4, **kwargs):
        return real(model, per_composer=1, composers=("webern", "schoenberg"), max_per_style=20, log=print)

    monkeypatch.setattr(experiments, "typicality_check", small)
    out = tmp_path / "typicality.json"
    assert main(["style", "typicality", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    own, other = figures["own styles, test split"], figures["other folk styles, test split"]
    classical = figures["classical (music21 corpus)"]
    assert own["tunes"] == 100 and other["tunes"] == 60        # 20 per style; Scottish, Lorraine, Luxembourg
    assert figures["other_styles"] == ["lorraine", "luxembourg", "scottish"]
    assert classical["tunes"] == len(figures["classical_works"]) >= 1
    assert all(work.split("/")[0] in ("webern", "schoenberg") for work in figures["classical_works"])
    # twentieth-century atonal pieces are unlike every style; the model's own test tunes mostly are not
    assert classical["flagged"] == 1.0 and own["flagged"] <= 0.1 and own["median"] > 0.2
    assert "below typicality" in capsys.readouterr().out


def test_typicality_check_needs_a_model_with_typicality(tmp_path):
    from labkit.style.experiments import typicality_check

    class NoFigures:
        typical = None
        styles = ("german", "irish")

    with pytest.raises(ConfigError, match="no typicality figures"):
        typicality_check(NoFigures(), log=None)
