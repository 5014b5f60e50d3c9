"""The style-index experiments (the source paper's, and what was tried beyond them), in one reproducible run.

``python -m labkit style experiment`` (or :func:`run_experiment`) reads the
corpus tunes of five styles (German, Chinese, Irish, Ryan's fiddle tunes, Bach
chorale sopranos; at most ``max_per_style`` each, drawn with ``seed``) and
measures, always with stratified k-fold cross-validation **by tune**:

1. ``basic``: the first course version's protocol (the eleven
   :data:`labkit.style.features.BASIC_GROUPS` with paragraph features, every column
   standardised on its own, a fixed L2 of ``basic_l2``): the baseline.
2. ``improved``: every feature group (joint interval-duration n-grams, metric
   n-grams, bar rhythms and the tune's form added), paragraph features, hashed groups
   square-rooted and scaled per group (:meth:`labkit.style.features.Standardizer.fit`
   with names), and the L2 strength chosen *inside* each training fold from
   ``l2_grid`` by ``inner_k``-fold CV (:func:`labkit.style.logreg.select_l2`): nested
   cross-validation, so no held-out tune plays a part in any choice.
3. ``deduplicated``: the improved protocol after removing, from training *and*
   evaluation, every tune that near-duplicates a tune of *another* style
   (:func:`labkit.evaluate.near_duplicates`: the same interval sequence, or at
   least half of the interval 8-grams shared; the project's fixed definition,
   not tuned here). Ryan's collection prints many of O'Neill's tunes: the same
   tune under two labels is label noise. The counts removed are reported.
4. ``improved_raw`` (and ``deduplicated_raw``), only with ``with_raw``: the
   improved protocol with the ``raw`` variant's columns beside the processed
   ones (named ``"raw:..."``; its hashed groups scaled as groups of their own).
   The raw columns keep what key normalisation removes (absolute pitch, the key
   itself) and unnormalised counts. Found after the other protocols, looking
   at the same folds: read its gain with that in mind (the form groups were
   found the same way, on ``seed`` 0; check such a gain on other seeds, whose
   German subsample and folds differ).
5. ``improved_trees`` (and ``deduplicated_trees``), only with ``with_trees``:
   the improved logistic regression's out-of-fold probabilities (with the raw
   columns when ``with_raw``) mixed with those of gradient-boosted trees
   (scikit-learn's ``HistGradientBoostingClassifier``, class-balanced) fitted
   on the same folds to the dense, paragraph and form columns:
   ``log p = w log p_logreg + (1 - w) log p_trees``, ``w = TREE_MIX``. The
   trees see interactions that a linear model cannot (a repeated strain
   means one thing in a reel, another in a song). ``w`` and the trees'
   settings were chosen on ``seed`` 0's folds and checked on ``seed`` 1's.
6. ``improved_lstm`` (``improved_raw_lstm`` with ``with_raw``; and the
   ``deduplicated`` ones), only with ``with_lstm``: the last improved columns
   with the shipped melody model's state beside them
   (:func:`labkit.style.features.melody_model_features`: the mean and standard
   deviation of its LSTM's output over the tune; 512 columns). The model was
   trained to predict notes, never told a style; it read the training split of
   its styles (not the chorales), so the result also gives the balanced
   accuracy on the tunes it never read, with and without its columns (a gain
   that appears only on tunes the model read is no gain to count on).
7. Generalisation to sub-collections never trained on: for each family of
   Essen German subsets (``altdeu``, ``ballad``, ...), a five-style model
   trained without that family scores *all* its tunes (share called German);
   and a five-style model whose Irish tunes are O'Neill's only scores Essen's
   62 Irish songs (share called Irish); and, for each of the three parts of
   O'Neill's book (:data:`ONEILL_SECTIONS`: airs, O'Carolan's tunes, dance
   tunes), a model whose Irish tunes are O'Neill's other two parts scores
   that part and Essen's Irish songs. All with the basic and the improved
   settings (the improved ones with the fixed L2 ``general_l2``), and, as
   ``pair``, the same held-out tunes scored by an Irish-against-German model
   (improved settings; the first target's model).

Every figure comes with the seconds it took. Notebook: 12_style_research_appendix.ipynb
"""
from __future__ import annotations

import os
import platform
import time
from typing import Callable, Sequence

import numpy as np

from labkit.errors import ConfigError
from labkit.style import features as F
from labkit.style import logreg as LR
from labkit.style.model import TYPICAL_FLOOR, load_style_model
from labkit.style.scoring import DEFAULT_L2, corpus_style_data, melody_from_file

#: The five styles of the five-style target.
FIVE_STYLES: tuple[str, ...] = ("chinese", "chorale", "fiddle", "german", "irish")

#: The three parts of O'Neill's *Music of Ireland* (1903), by tune number, inclusive: songs and slow
#: airs; Turlough O'Carolan's harp tunes (the planxties); the dance tunes (jigs, reels, hornpipes,
#: long dances) and marches. The corpus's source files are cut at the same numbers (0550-0625.abc,
#: 0626-0700.abc, 0701-0720.abc).
ONEILL_SECTIONS: dict[str, tuple[int, int]] = {"airs": (1, 625), "carolan": (626, 700), "dances": (701, 1850)}


def oneill_section(tune_ids) -> np.ndarray:
    """The part of O'Neill's book (:data:`ONEILL_SECTIONS`) of each tune id; ``""`` for other collections.

    >>> oneill_section(["oneills-0012", "oneills-0650", "oneills-1201", "essen-kinder0-0001"]).tolist()
    ['airs', 'carolan', 'dances', '']

    Notebook: 12_style_research_appendix.ipynb
    """
    out = []
    for tune_id in tune_ids:
        collection, _, number = str(tune_id).partition("-")
        name = ""
        if collection == "oneills" and number.isdigit():
            name = next((sec for sec, (lo, hi) in ONEILL_SECTIONS.items() if lo <= int(number) <= hi), "")
        out.append(name)
    return np.array(out, dtype=object)


def cross_style_duplicates(melodies, labels) -> np.ndarray:
    """Which tunes near-duplicate a tune of another style: bool ``[n]``.

    Tune ``i`` of style ``a`` is marked when :func:`labkit.evaluate.near_duplicates`
    finds it close to any tune of a style ``b != a`` (the relation is not
    symmetric: it compares shared 8-grams with the *shorter* tune's count, so
    both directions are tested).

    Example:
        >>> song = [60, 62, 64, 65, 67, 67, 69, 69, 67, 65, 64, 62, 60]
        >>> other = [72, 71, 69, 67, 65, 64, 62, 60, 62, 64, 60, 59, 57]
        >>> cross_style_duplicates([song, [p + 2 for p in song], other], ["a", "b", "a"]).tolist()
        [True, True, False]

    Notebook: 12_style_research_appendix.ipynb
    """
    from labkit.evaluate import near_duplicates

    labels = np.asarray(labels)
    out = np.zeros(len(labels), dtype=bool)
    for style in sorted(set(labels.tolist())):
        mine, others = np.flatnonzero(labels == style), np.flatnonzero(labels != style)
        if len(mine) and len(others):
            out[mine] = near_duplicates([melodies[i] for i in mine], [melodies[i] for i in others])
    return out


def _recall(confusion, styles) -> dict[str, float]:
    cm = np.asarray(confusion)
    return {s: float(cm[i, i] / max(cm[i].sum(), 1)) for i, s in enumerate(styles)}


#: The logistic regression's weight in the ``*_trees`` protocols' log-probability mixture.
TREE_MIX = 0.8
#: Settings of the gradient-boosted trees of the ``*_trees`` protocols.
TREE_SETTINGS = {"max_iter": 200, "learning_rate": 0.1, "max_leaf_nodes": 31, "l2_regularization": 1.0}


def tree_columns(names: Sequence[str]) -> np.ndarray:
    """The columns the trees see: processed, not hashed, not ``form_by_metre`` (trees find such interactions).

    Nor the melody model's state columns (``lstm_...``): the trees' settings were chosen without them.

    Notebook: 12_style_research_appendix.ipynb
    """

    hashed = {int(i) for cols in F.hashed_columns(names).values() for i in cols}
    skip = ("raw:", "form_by_metre:", "lstm_")
    return np.array([i for i, name in enumerate(names) if i not in hashed and not name.startswith(skip)], dtype=np.int64)


def mix_with_trees(X, y, names, logreg: dict, num_classes: int, *, seed: int = 0, mix: float = TREE_MIX) -> dict:
    """Mix a cross-validation result's out-of-fold probabilities with boosted trees' on the same folds.

    Args:
        X, y, names: the feature matrix, labels and column names the logistic
            regression was cross-validated on.
        logreg: the result of :func:`labkit.style.logreg.cross_validate_logreg` (its ``proba``
            and ``fold`` are used).
        mix: the logistic regression's weight ``w`` in
            ``log p = w log p_logreg + (1 - w) log p_trees``.

    Returns:
        a dict shaped like :func:`labkit.style.logreg.cross_validate_logreg`'s (``l2`` is the
        logistic regression's; ``seconds`` adds the trees' fitting time).

    Raises:
        ConfigError: scikit-learn is not installed.

    Notebook: 12_style_research_appendix.ipynb
    """

    try:
        from sklearn.ensemble import HistGradientBoostingClassifier
    except ImportError as err:  # pragma: no cover - scikit-learn is a dev dependency
        raise ConfigError("the trees protocols need scikit-learn: pip install scikit-learn") from err
    X, y = np.asarray(X), np.asarray(y)
    cols, fold = tree_columns(names), np.asarray(logreg["fold"])
    weight = len(y) / (num_classes * np.maximum(np.bincount(y, minlength=num_classes), 1))
    trees = np.full((len(y), num_classes), 1e-9)
    t = time.perf_counter()
    for f in range(int(fold.max()) + 1):
        tr, te = fold != f, fold == f
        model = HistGradientBoostingClassifier(random_state=seed, **TREE_SETTINGS)
        model.fit(X[tr][:, cols], y[tr], sample_weight=weight[y[tr]])
        trees[np.ix_(te, model.classes_)] = model.predict_proba(X[te][:, cols])
    log_p = mix * np.log(np.asarray(logreg["proba"]) + 1e-9) + (1 - mix) * np.log(trees + 1e-9)
    proba = np.exp(log_p - log_p.max(1, keepdims=True))
    proba /= proba.sum(1, keepdims=True)
    pred = proba.argmax(1)
    scores = [LR.balanced_accuracy(y[fold == f], pred[fold == f], num_classes) for f in range(int(fold.max()) + 1)]
    return {"balanced_accuracy": float(np.mean(scores)), "balanced_accuracy_std": float(np.std(scores)),
            "fold_balanced_accuracy": np.asarray(scores), "accuracy": float(np.mean(pred == y)),
            "confusion": LR.confusion_matrix(y, pred, num_classes), "proba": proba, "fold": fold,
            "l2": logreg["l2"], "seconds": logreg["seconds"] + time.perf_counter() - t}


def _cv_figures(result, styles) -> dict:
    return {"balanced_accuracy": result["balanced_accuracy"], "balanced_accuracy_std": result["balanced_accuracy_std"],
            "fold_balanced_accuracy": [float(v) for v in result["fold_balanced_accuracy"]],
            "accuracy": result["accuracy"], "recall": _recall(result["confusion"], styles),
            "confusion": np.asarray(result["confusion"]).tolist(), "l2": [float(v) for v in result["l2"]],
            "seconds": result["seconds"]}


def run_experiment(styles: Sequence[str] = FIVE_STYLES, *, max_per_style: int | None = 2000, folds: int = 5,
                   seed: int = 0, ngram_dims: int = 256, l2_grid: Sequence[float] | None = None, inner_k: int = 3,
                   steps: int = 200, basic_l2: float = 0.03, general_l2: float | None = None,
                   dedup: bool = True, generalisation: bool = True, with_raw: bool = False,
                   with_trees: bool = False, with_lstm: bool = False, root=None,
                   log: Callable[[str], None] | None = print) -> dict:
    """Run the five-style and generalisation experiments and return every figure.

    Args:
        styles: manifest style labels (default :data:`FIVE_STYLES`).
        max_per_style: at most this many tunes per style (the rest are not read;
            German has about 6,000). ``None``: all.
        folds: outer cross-validation folds (by tune, stratified by style).
        seed: the subsample and the folds.
        ngram_dims: columns of each hashed n-gram group.
        l2_grid: candidates of the nested L2 choice (default
            :data:`labkit.style.logreg.L2_GRID`); inner_k: its folds.
        steps: L-BFGS iterations at most per fit.
        basic_l2: the fixed L2 of the basic protocol (the first version's notebook value).
        general_l2: the fixed L2 of the improved generalisation runs (default
            :data:`labkit.style.scoring.DEFAULT_L2`).
        dedup, generalisation: run those parts.
        with_raw: also the ``improved_raw`` protocol (and ``deduplicated_raw`` with ``dedup``).
        with_trees: also ``improved_trees`` (and ``deduplicated_trees``): the last
            improved logistic regression mixed with boosted trees (:func:`mix_with_trees`;
            needs scikit-learn).
        with_lstm: also ``improved_lstm`` (``improved_raw_lstm`` with ``with_raw``; and the
            ``deduplicated`` ones): the shipped melody model's state columns
            (:func:`labkit.style.features.melody_model_features`) beside the others; the
            trees, if any, then mix with this logistic regression.
        log: called with one line of progress at a time (``None``: silent).

    Returns:
        dict: ``tunes`` (per style), ``basic`` / ``improved`` / ``deduplicated``
        (balanced accuracy, its std over folds, per-fold values, recall per style,
        confusion, the L2 of each fold, seconds), ``duplicates`` (tunes removed
        per style), ``generalisation`` (per held-out family and for Essen's Irish
        tunes, basic, improved and the Irish-against-German ``pair``), ``seconds`` and ``machine``.

    Example:
        >>> figures = run_experiment(max_per_style=60, folds=3, l2_grid=[0.1, 1.0])  # doctest: +SKIP
        >>> sorted(figures["improved"])[:3]                                             # doctest: +SKIP
        ['accuracy', 'balanced_accuracy', 'balanced_accuracy_std']

    Notebook: 12_style_research_appendix.ipynb
    """

    say = log or (lambda line: None)
    styles = tuple(sorted(set(styles)))
    if len(styles) < 2:
        raise ConfigError(f"the experiment needs at least two styles, got {styles}")
    l2_grid = tuple(LR.L2_GRID if l2_grid is None else l2_grid)
    general_l2 = DEFAULT_L2 if general_l2 is None else float(general_l2)
    started = time.perf_counter()
    out: dict = {"styles": list(styles),
                 "settings": {"max_per_style": max_per_style, "folds": folds, "seed": seed, "ngram_dims": ngram_dims,
                              "l2_grid": list(l2_grid), "inner_k": inner_k, "steps": steps, "basic_l2": basic_l2,
                              "general_l2": general_l2, "with_raw": bool(with_raw),
                              "with_trees": bool(with_trees), "tree_mix": TREE_MIX if with_trees else None,
                              "with_lstm": bool(with_lstm)}}

    t = time.perf_counter()
    melodies, rows = corpus_style_data(styles, max_per_style=max_per_style, seed=seed, root=root)
    labels = rows["style"].to_numpy()
    y = np.array([styles.index(s) for s in labels])
    out["tunes"] = {s: int((labels == s).sum()) for s in styles}
    say(f"read {len(melodies)} tunes {out['tunes']} in {time.perf_counter() - t:.0f} s")

    t = time.perf_counter()
    Xb, names_b = F.feature_matrix(melodies, "processed", F.BASIC_GROUPS, paragraph=True, ngram_dims=ngram_dims)
    Xn, names_n = F.feature_matrix(melodies, "processed", None, paragraph=True, ngram_dims=ngram_dims)
    if with_raw:
        # The form groups are the same in both variants: the raw set leaves them out.
        raw_groups = [g for g in F.FEATURE_GROUPS if g not in F.FORM_GROUPS]
        Xr, names_r = F.feature_matrix(melodies, "raw", raw_groups, paragraph=True, ngram_dims=ngram_dims)
        Xnr, names_nr = np.hstack([Xn, Xr]), list(names_n) + [f"raw:{name}" for name in names_r]
    out["features"] = {"basic": Xb.shape[1], "improved": Xn.shape[1], "seconds": time.perf_counter() - t}
    if with_raw:
        out["features"]["improved_raw"] = Xnr.shape[1]
    say(f"features: basic {Xb.shape[1]} columns, improved {Xn.shape[1]} columns"
        + (f", improved + raw {Xnr.shape[1]} columns" if with_raw else "")
        + f" ({out['features']['seconds']:.0f} s)")

    def report(name, r):
        f = _cv_figures(r, styles)
        out[name] = f
        recall = ", ".join(f"{s} {v:.3f}" for s, v in f["recall"].items())
        say(f"{name:12s}: {folds}-fold CV by tune, balanced accuracy {f['balanced_accuracy']:.4f} "
            f"+- {f['balanced_accuracy_std']:.4f} (recall: {recall}; L2 per fold {f['l2']}; {f['seconds']:.0f} s)")

    C = len(styles)
    report("basic", LR.cross_validate_logreg(Xb, y, k=folds, seed=seed, l2=basic_l2, steps=steps, num_classes=C))
    last = LR.cross_validate_logreg(Xn, y, k=folds, seed=seed, l2=l2_grid, steps=steps, names=names_n, inner_k=inner_k,
                            num_classes=C)
    report("improved", last)
    X_last, names_last = Xn, names_n
    if with_raw:
        last = LR.cross_validate_logreg(Xnr, y, k=folds, seed=seed, l2=l2_grid, steps=steps, names=names_nr,
                                inner_k=inner_k, num_classes=C)
        report("improved_raw", last)
        X_last, names_last = Xnr, names_nr
    if with_lstm:
        t = time.perf_counter()
        H, names_h = F.melody_model_features(melodies)
        out["features"]["melody_model"] = H.shape[1]
        say(f"melody model state: {H.shape[1]} columns ({time.perf_counter() - t:.0f} s)")
        before = last
        X_last, names_last = np.hstack([X_last, H]), list(names_last) + names_h
        last = LR.cross_validate_logreg(X_last, y, k=folds, seed=seed, l2=l2_grid, steps=steps, names=names_last,
                                inner_k=inner_k, num_classes=C)
        lstm_name = ("improved_raw" if with_raw else "improved") + "_lstm"
        report(lstm_name, last)
        out[lstm_name]["unread"] = _unread_by_melody_model(rows, y, before, last, C)
        say(f"{'':12s}  on the {out[lstm_name]['unread']['tunes']} tunes the melody model never read: "
            f"{out[lstm_name]['unread']['without']:.4f} without its columns, "
            f"{out[lstm_name]['unread']['with']:.4f} with them")
    if with_trees:
        report("improved_trees", mix_with_trees(X_last, y, names_last, last, C, seed=seed))

    if dedup:
        t = time.perf_counter()
        dup = cross_style_duplicates(melodies, labels)
        out["duplicates"] = {s: int(dup[labels == s].sum()) for s in styles}
        say(f"cross-style near-duplicates removed: {int(dup.sum())} {out['duplicates']} "
            f"({time.perf_counter() - t:.0f} s)")
        keep = ~dup
        last = LR.cross_validate_logreg(Xn[keep], y[keep], k=folds, seed=seed, l2=l2_grid, steps=steps, names=names_n,
                                inner_k=inner_k, num_classes=C)
        report("deduplicated", last)
        report("basic_deduplicated", LR.cross_validate_logreg(Xb[keep], y[keep], k=folds, seed=seed, l2=basic_l2,
                                                      steps=steps, num_classes=C))
        if with_raw:
            last = LR.cross_validate_logreg(Xnr[keep], y[keep], k=folds, seed=seed, l2=l2_grid, steps=steps,
                                    names=names_nr, inner_k=inner_k, num_classes=C)
            report("deduplicated_raw", last)
        if with_lstm:
            last = LR.cross_validate_logreg(X_last[keep], y[keep], k=folds, seed=seed, l2=l2_grid, steps=steps,
                                    names=names_last, inner_k=inner_k, num_classes=C)
            report(("deduplicated_raw" if with_raw else "deduplicated") + "_lstm", last)
        if with_trees:
            report("deduplicated_trees", mix_with_trees(X_last[keep], y[keep], names_last, last, C, seed=seed))

    if generalisation and "german" in styles:
        out["generalisation"] = _generalisation(melodies, rows, labels, styles, (Xb, names_b, basic_l2),
                                                (Xn, names_n, general_l2), ngram_dims, steps, root, say)
    out["seconds"] = time.perf_counter() - started
    out["machine"] = f"{platform.machine()}, {os.cpu_count()} CPU cores"
    say(f"done in {out['seconds']:.0f} s on {out['machine']}")
    return out


def _unread_by_melody_model(rows, y, without: dict, with_: dict, num_classes: int) -> dict:
    """Balanced accuracy, without and with the melody model's columns, on the tunes it never trained on.

    The shipped melody model read the training split of its styles (``melody_lstm.json``), without
    their labels; a tune of another split or style was never read. If its columns helped only on
    tunes it had read, the gain would vanish here.
    """
    from labkit.checkpoint import shipped_melody_model_info

    read = set(shipped_melody_model_info()["data"]["styles"])
    unread = ~((rows["split"] == "train").to_numpy() & rows["style"].isin(read).to_numpy())
    return {"tunes": int(unread.sum()),
            "without": LR.balanced_accuracy(y[unread], without["proba"][unread].argmax(1), num_classes),
            "with": LR.balanced_accuracy(y[unread], with_["proba"][unread].argmax(1), num_classes)}


def _generalisation(melodies, rows, labels, styles, basic, improved, ngram_dims, steps, root, say) -> dict:
    """Held-out Essen German families and Essen's Irish songs (see the module docstring)."""

    t = time.perf_counter()
    german_all, german_rows = corpus_style_data(["german"], collections=["essen"], root=root)
    family_all = np.array([s.rstrip("0123456789") for s in german_rows["subset"]])
    family = np.array([s.rstrip("0123456789") for s in rows["subset"]])
    # name: (training features, their names for the hashed-group scaling or None, L2, feature groups)
    settings = {"basic": (basic[0], None, basic[2], F.BASIC_GROUPS),
                "improved": (improved[0], improved[1], improved[2], None)}

    # Irish against German alone (the first target), improved settings: only those two styles' tunes train it.
    in_pair = np.isin(labels, ["german", "irish"])
    if "irish" in styles:
        settings["pair"] = settings["improved"]
    features: dict = {}

    def called(name, train, tunes, what):
        """The styles that the ``name`` model, fitted on ``train``, gives ``tunes`` (names, not indices)."""
        Xtr, names, l2, groups = settings[name]
        if (what, groups) not in features:
            features[what, groups] = F.feature_matrix(tunes, "processed", groups, paragraph=True,
                                                      ngram_dims=ngram_dims)[0]
        fit_styles = ("german", "irish") if name == "pair" else styles
        train = train & in_pair if name == "pair" else train
        fit_y = np.array([fit_styles.index(s) for s in labels[train]])
        proba = LR._fit_predict_logreg(Xtr[train], fit_y, features[what, groups], len(fit_styles), l2=l2,
                                      steps=steps, class_weight="balanced", standardize=True, names=names)
        return np.asarray(fit_styles)[proba.argmax(1)]

    def shares(entry):
        return ", ".join(f"{entry[name]:.1%} {name}" for name in settings)

    is_german_essen = (labels == "german") & (rows["collection"] == "essen").to_numpy()
    out: dict = {"families": {}}
    for fam in sorted(set(family_all)):
        test = np.flatnonzero(family_all == fam)
        if len(test) < 5:
            continue
        train = ~(is_german_essen & (family == fam))
        entry = {"tunes": int(len(test)), "trained_without": int((~train).sum())}
        for name in settings:
            entry[name] = float(np.mean(called(name, train, [german_all[i] for i in test], fam) == "german"))
        out["families"][fam] = entry
        say(f"  German family {fam + '*':9s} held out ({entry['tunes']:4d} tunes): called German {shares(entry)}")
    if "irish" in styles:
        essen_irish, _ = corpus_style_data(["irish"], collections=["essen"], root=root)
        train = ~((labels == "irish") & (rows["collection"] == "essen").to_numpy())
        entry = {"tunes": len(essen_irish)}
        for name in settings:
            pred = called(name, train, essen_irish, "essen irish")
            entry[name] = float(np.mean(pred == "irish"))
            entry[name + "_called"] = {s: int((pred == s).sum()) for s in styles}
        out["essen_irish"] = entry
        say(f"  Essen's Irish songs, Irish learned from O'Neill only ({entry['tunes']} tunes): called Irish "
            f"{shares(entry)}; improved calls them {entry['improved_called']}")
        # Each part of O'Neill's book held out in turn (Essen's Irish songs never train): does a style model
        # that learned Irish from dance tunes know an Irish air, and the other way round?
        oneills, oneill_rows = corpus_style_data(["irish"], collections=["oneills"], root=root)
        section_all, section = oneill_section(oneill_rows["id"]), oneill_section(rows["id"])
        out["oneill_sections"] = {}
        for sec in ONEILL_SECTIONS:
            test = [oneills[i] for i in np.flatnonzero(section_all == sec)]
            if len(test) < 5:
                continue
            held = train & (section != sec)
            entry = {"tunes": len(test), "trained_without": int((section == sec).sum()), "essen_irish": {}}
            for name in settings:
                pred = called(name, held, test + essen_irish, f"oneills {sec} + essen irish")
                entry[name + "_called"] = {s: int((pred[:len(test)] == s).sum()) for s in styles}
                is_irish = pred == "irish"
                entry[name] = float(is_irish[:len(test)].mean())
                entry["essen_irish"][name] = float(is_irish[len(test):].mean())
            out["oneill_sections"][sec] = entry
            say(f"  O'Neill's {sec + ',':9s} held out ({entry['tunes']:4d} tunes): called Irish {shares(entry)}; "
                f"Essen's Irish songs then {shares(entry['essen_irish'])}; improved calls them "
                f"{entry['improved_called']}")
    fams = out["families"]
    if fams:
        total = sum(e["tunes"] for e in fams.values())
        for name in settings:
            out[f"german_families_{name}"] = sum(e[name] * e["tunes"] for e in fams.values()) / total
        say(f"  all held-out German families together ({total} tunes): called German "
            + ", ".join(f"{out[f'german_families_{name}']:.1%} {name}" for name in settings))
    out["seconds"] = time.perf_counter() - t
    return out


# ----------------------------------------------------------------------------------
# Typicality: does the model know when a tune is unlike all of its styles?
# ----------------------------------------------------------------------------------

#: Composers of music21's corpus (shipped with the music21 package) whose works
#: :func:`typicality_check` scores: far from folk songs, dance tunes and chorale
#: melodies (Bach is left out: his chorales are one of the styles).
CLASSICAL_COMPOSERS: tuple[str, ...] = (
    "josquin", "palestrina", "monteverdi", "corelli", "handel", "cpebach", "haydn", "mozart", "beethoven",
    "schubert", "weber", "schumann_robert", "schumann_clara", "verdi", "joplin", "beach", "schoenberg", "webern")


def classical_melodies(per_composer: int = 4, composers: Sequence[str] = CLASSICAL_COMPOSERS, *,
                       seed: int = 0) -> tuple[list, dict[str, str]]:
    """Melodies of classical works from music21's corpus, read the way ``style score`` reads a MIDI file.

    Each work (at most ``per_composer`` per composer, drawn with ``seed``; an
    opus's first score) is written as a MIDI file by music21 and read back with
    :func:`labkit.style.scoring.melody_from_file` (skyline of all parts).

    Returns:
        ``(melodies, skipped)``: each melody's ``source`` is the work's path in the
        corpus without its suffix (``"mozart/k156/movement1"``);
        ``skipped`` maps the works that could not be used to the reason (they do not
        stop the others).

    Notebook: 12_style_research_appendix.ipynb
    """
    import random
    import tempfile
    from pathlib import Path

    import music21

    from labkit.errors import LabkitError

    melodies, skipped = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for composer in composers:
            paths = sorted(str(p) for p in music21.corpus.getComposer(composer)
                           if str(p).endswith((".mxl", ".xml", ".musicxml", ".krn", ".mid")))
            random.Random(f"{seed}/{composer}").shuffle(paths)
            taken = 0
            for path in paths:
                if taken >= per_composer:
                    break
                parts = Path(path).with_suffix("").parts
                name = "/".join(parts[len(parts) - 1 - parts[::-1].index(composer):])   # composer/.../work
                try:
                    score = music21.converter.parse(path)
                    score = score.scores[0] if hasattr(score, "scores") else score
                    midi = Path(tmp) / (name.replace("/", "-") + ".mid")
                    score.write("midi", fp=midi)
                    melody = melody_from_file(midi)
                except LabkitError as exc:
                    skipped[name] = exc.problem
                    continue
                except Exception as exc:  # music21 raises many kinds on scores it cannot expand or write
                    skipped[name] = f"music21 could not read it or write it as MIDI ({type(exc).__name__})"
                    continue
                melodies.append(melody.replace(source=name))
                taken += 1
    return melodies, skipped


def typicality_check(model=None, *, per_composer: int = 4, composers: Sequence[str] = CLASSICAL_COMPOSERS,
                     max_per_style: int | None = None, root=None, log: Callable[[str], None] | None = print) -> dict:
    """How often a style model says "unlike every style I know", on tunes of its styles and on others.

    Three sets, none of them trained on: the corpus's test split of the model's
    own styles (a flag there is a false alarm; about :data:`labkit.style.model.TYPICAL_FLOOR`
    by construction), the test split of the corpus's *other* folk styles (Scottish,
    Lorraine, Luxembourg: folk tunes, but not the model's), and classical works
    from music21's corpus (:func:`classical_melodies`).

    Returns:
        ``{set name: {"tunes", "flagged" (share below the floor), "median" (typicality)}}``,
        plus ``"classical_works"`` ``{work: typicality}`` and ``"skipped"``.

    Notebook: 12_style_research_appendix.ipynb
    """
    from labkit.corpus import load_manifest

    say = log or (lambda line: None)
    model = load_style_model(model) if model is None or isinstance(model, (str, os.PathLike)) else model
    if getattr(model, "typical", None) is None:
        raise ConfigError("this style model has no typicality figures (a group ensemble, or a model saved "
                          "before they existed): train it again with `python -m labkit style train`")
    others = sorted(set(load_manifest(root)["style"]) - set(model.styles))
    sets = {"own styles, test split": corpus_style_data(model.styles, ["test"], max_per_style=max_per_style,
                                                        root=root)[0],
            "other folk styles, test split": corpus_style_data(others, ["test"], max_per_style=max_per_style,
                                                               root=root)[0] if others else []}
    sets["classical (music21 corpus)"], skipped = classical_melodies(per_composer, composers)
    out: dict = {"floor": TYPICAL_FLOOR, "other_styles": others, "skipped": skipped}
    for name, melodies in sets.items():
        if not melodies:
            continue
        typ = model.typicality(melodies)
        out[name] = {"tunes": len(melodies), "flagged": float(np.mean(typ < TYPICAL_FLOOR)),
                     "median": float(np.median(typ))}
        if name.startswith("classical"):
            out["classical_works"] = {m.source: float(t) for m, t in zip(melodies, typ)}
        say(f"{name:32s} {len(melodies):5d} tunes: {out[name]['flagged']:6.1%} below typicality "
            f"{TYPICAL_FLOOR} (median typicality {out[name]['median']:.3f})")
    if skipped:
        say(f"skipped {len(skipped)} works: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return out

