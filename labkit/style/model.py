"""The style model and its files: features, standardizer, logistic regression and temperature, in one object.

* :class:`StyleModel`: one multinomial logistic regression on chosen feature
  groups (:mod:`labkit.style.features`), fitted by :func:`labkit.style.logreg.fit_logreg`
  and calibrated by :func:`labkit.style.logreg.calibrate`; with its
  :class:`Typicality`, how typical a tune is of the tunes the model learned from.
* :class:`GroupEnsemble`: the source paper's design, one model per feature group, combined.
* Model files: ``model.json`` (settings and column names) and ``arrays.npz``
  (weights, standardizer), plain JSON and numpy, replaced as one unit
  (:func:`labkit._common.atomic_write_dir`), so a half-written model never loads.
  Loading checks every array's shape against the settings and refuses NaN and
  infinity (a broken model gives :class:`~labkit.errors.CheckpointError` naming the file,
  never a traceback or a NaN style index).
* The shipped model in ``labkit/assets/style_model/`` (:func:`shipped_style_model_dir`,
  :func:`load_style_model`, :func:`style_model_metrics`).

Notebooks: 07_style_index.ipynb, 12_style_research_appendix.ipynb
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from labkit._common import atomic_write_dir, read_npz
from labkit.errors import CheckpointError, ConfigError
from labkit.style.features import (NGRAM_DIMS, PAPER_GROUPS, Standardizer, _check_groups, _check_variant,
                                   feature_matrix, feature_names, group_columns, hashed_columns)
from labkit.style.logreg import (_ensemble_proba, _fit_ensemble_arrays, _fit_member, predict_logits, predict_proba,
                                 softmax, stratified_kfold, stratified_split)

#: Version of the ``model.json`` layout.
STYLE_MODEL_FORMAT_VERSION = 1

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

    Notebook: 12_style_research_appendix.ipynb
    """

    mean: np.ndarray
    var: np.ndarray
    reference: np.ndarray

    @staticmethod
    def columns(names: Sequence[str]) -> np.ndarray:
        """The dense columns (every one that no hashed n-gram group owns)."""
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
        look less typical than they are: far more than 1% of them would fall
        below :data:`TYPICAL_FLOOR`.)
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
            (see :func:`labkit.style.features.feature_matrix`).
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

        The features must come from :func:`labkit.style.features.feature_matrix` with the
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

        Notebook: 12_style_research_appendix.ipynb
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
        _check_floats(config, ("temperature",), where, positive=True)
        _check_floats(config, ("l2",), where)
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
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"model.json holds a bad setting ({err})", where) from None
        d, C = len(names), len(model.styles)
        if (model.params["w"].shape != (d, C) or model.params["b"].shape != (C,)
                or model.standardizer.mean.shape != (d,) or model.standardizer.scale.shape != (d,)):
            raise CheckpointError(f"array shapes do not match {len(names)} features and {len(model.styles)} styles",
                                  where)
        t = model.typical
        if t is not None and (t.mean.shape != t.var.shape or t.mean.shape != (C, len(Typicality.columns(names)))
                              or t.reference.ndim != 1 or len(t.reference) < 1 or not (t.var > 0).all()):
            raise CheckpointError("typicality arrays do not match the features and styles", where)
        if not (model.standardizer.scale > 0).all():
            raise CheckpointError("the standardizer has a scale that is not > 0", where)
        return model

    def save(self, directory, *, extra_files: dict[str, bytes] | None = None) -> Path:
        """Write ``model.json`` (settings, names) and ``arrays.npz`` (weights, standardizer) as ``directory``.

        Plain JSON and numpy arrays: loading never unpickles code. The folder is
        replaced as one unit (a crash leaves the old model whole, never half a new
        one); ``extra_files`` (``{name: bytes}``, such as ``metrics.json``) join it.
        """
        config = {"format": STYLE_MODEL_FORMAT_VERSION, "kind": "StyleModel", **self._config(), "names": self.names}
        return _write_model(directory, config, self._arrays(), extra_files)

    @classmethod
    def load(cls, directory) -> "StyleModel":
        """Read a model written by :meth:`save` (:class:`CheckpointError` if missing or broken)."""
        config, arrays, where = _read_model(directory, "StyleModel")
        groups = config.get("groups")
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise CheckpointError(f"model.json's groups are {str(groups)[:40]}, not a list of feature groups", where)
        names = _check_settings(config, where)
        try:
            expected = feature_names(groups, config.get("paragraph", False), config.get("ngram_dims", NGRAM_DIMS))
        except ConfigError as err:
            raise CheckpointError(f"model.json's feature settings are invalid ({err.problem})", where) from None
        if names != expected:
            raise CheckpointError("feature names do not match the stored feature settings", where)
        return cls._from_parts(config, arrays, "", names, where)


#: The files of a saved style model, and the figures :func:`labkit.style.scoring.train_style_model` adds.
MODEL_FILES: tuple[str, ...] = ("model.json", "arrays.npz")
METRICS_FILE = "metrics.json"


def _check_model_folder(directory, extra_files=None) -> Path:
    """``directory`` as a Path, if a model may be saved there: new, empty, or holding only a style model's files."""
    directory = Path(directory)
    known = set(MODEL_FILES) | {METRICS_FILE} | set(extra_files or {})
    if directory.exists():
        if not directory.is_dir():
            raise CheckpointError("exists and is not a folder", directory)
        others = sorted(p.name for p in directory.iterdir() if p.name not in known)
        if others:
            raise CheckpointError(f"holds other files than a style model ({', '.join(others[:3])}"
                                  f"{', ...' if len(others) > 3 else ''}): choose a new or empty folder", directory)
    return directory


def _write_model(directory, config: dict, arrays: dict[str, np.ndarray],
                 extra_files: dict[str, bytes] | None = None) -> Path:
    """Write ``model.json``, ``arrays.npz`` (and ``extra_files``) as one unit (:func:`labkit._common.atomic_write_dir`).

    The folder is replaced whole, so a reader finds the old model or the new one, never a mix, and a
    failed save leaves the old model as it was. A folder that holds files other than a style model's
    is refused rather than replaced (``--out .`` must not empty the working folder).
    """
    directory = _check_model_folder(directory, extra_files)

    def fill(tmp: Path) -> None:
        (tmp / "model.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
        with open(tmp / "arrays.npz", "wb") as handle:
            np.savez(handle, **arrays)
        for name, data in (extra_files or {}).items():
            (tmp / name).write_bytes(data)

    return atomic_write_dir(directory, fill)


def _read_model(directory, kind: str):
    directory = Path(directory)
    json_path, npz_path = directory / "model.json", directory / "arrays.npz"
    for p in (json_path, npz_path):
        if not p.is_file():
            raise CheckpointError("missing file (not a saved style model)", p)
    try:
        config = json.loads(json_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"not valid JSON ({err})", json_path) from None
    if not isinstance(config, dict):
        raise CheckpointError(f"holds a JSON {type(config).__name__}, not a style model's settings", json_path)
    if config.get("kind") != kind or config.get("format") != STYLE_MODEL_FORMAT_VERSION:
        raise CheckpointError(f"holds a {config.get('kind')!r} model of format {config.get('format')!r}, "
                              f"expected {kind!r} format {STYLE_MODEL_FORMAT_VERSION}", json_path)
    try:
        arrays = read_npz(npz_path)
    except ValueError as err:
        raise CheckpointError(f"not a readable style model's arrays: {err}", npz_path) from None
    for name, array in arrays.items():
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise CheckpointError(f"array {name!r} holds {array.dtype} values, not numbers", npz_path)
        if np.issubdtype(array.dtype, np.inexact) and not np.isfinite(array).all():
            raise CheckpointError(f"array {name!r} holds NaN or infinite values", npz_path)
    return config, arrays, directory


def _check_settings(config: dict, where) -> list[str]:
    """The settings every style model's ``model.json`` holds, checked before they are used; returns its names.

    Cheap checks first, so that a crafted file (``ngram_dims`` of ten million) costs no time: a model
    has at most as many n-gram columns as names (or the default's).
    """
    names, styles = config.get("names"), config.get("styles")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CheckpointError("model.json's names are not a list of feature names", where)
    if (not isinstance(styles, list) or len(styles) < 2 or len(set(map(str, styles))) != len(styles)
            or not all(isinstance(x, str) for x in styles)):
        raise CheckpointError("model.json's styles are not a list of two or more style names", where)
    if config.get("variant") not in ("raw", "processed"):
        raise CheckpointError(f"model.json's variant is {str(config.get('variant'))[:40]!r}, "
                              "not 'raw' or 'processed'", where)
    if not isinstance(config.get("paragraph", False), bool):
        raise CheckpointError("model.json's paragraph is not true or false", where)
    dims = config.get("ngram_dims", NGRAM_DIMS)
    if not isinstance(dims, int) or isinstance(dims, bool) or not 1 <= dims <= max(NGRAM_DIMS, len(names)):
        raise CheckpointError(f"model.json's ngram_dims is {str(dims)[:40]}, not a column count that fits "
                              f"its {len(names)} names", where)
    return names


def _check_floats(config: dict, keys, where, *, positive: bool = False, what: str = "") -> None:
    """Each ``config[key]`` (when present) must be a finite number >= 0 (> 0 when ``positive``: a temperature)."""
    for key in keys:
        if key not in config:
            continue
        value = config[key]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
        if not ok or value < 0 or (value == 0 and positive):
            raise CheckpointError(f"model.json's {what}{key} is {str(value)[:40]}, not a finite number "
                                  f"{'> 0' if positive else '>= 0'}", where)


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


@dataclass
class GroupEnsemble:
    """The source paper's design: one style model per feature group, trained together and combined.

    Each member is a logistic regression on its own columns (by default the
    five :data:`labkit.style.features.PAPER_GROUPS`: pitch, interval, rhythm, contour,
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
            self._columns = {name: group_columns(self.names, gs) for name, gs in self.member_groups.items()}
        return self._columns

    @classmethod
    def fit(cls, melodies, labels, *, member_groups: dict[str, Sequence[str]] | None = None,
            styles=None, variant: str = "processed", paragraph: bool = False, ngram_dims: int = NGRAM_DIMS,
            combine: str = "stack", l2: float = 1e-3, steps: int = 300, val_fraction: float = 0.2,
            seed: int = 0, class_weight: str | None = "balanced", tune_groups=None, jobs: int = 1) -> "GroupEnsemble":
        """Compute the features once and train every member and the combiner.

        ``member_groups`` defaults to :data:`labkit.style.features.PAPER_GROUPS`; other
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

    def save(self, directory, *, extra_files: dict[str, bytes] | None = None) -> Path:
        """Write ``model.json`` and ``arrays.npz`` (members prefixed ``"<name>."``, combiner ``"combiner."``).

        As :meth:`StyleModel.save`: one unit, with the optional ``extra_files``.
        """
        arrays = {}
        for name, (scaler, params, _) in self.members.items():
            arrays.update({f"{name}.w": params["w"], f"{name}.b": params["b"],
                           **_scaler_arrays(scaler, f"{name}.")})
        if self.combiner is not None:
            arrays.update({"combiner.w": self.combiner["w"], "combiner.b": self.combiner["b"]})
        config = {"format": STYLE_MODEL_FORMAT_VERSION, "kind": "GroupEnsemble", "styles": list(self.styles),
                  "variant": self.variant, "paragraph": self.paragraph, "ngram_dims": self.ngram_dims,
                  "member_groups": {k: list(v) for k, v in self.member_groups.items()},
                  "member_temperatures": {k: float(m[2]) for k, m in self.members.items()},
                  "combine": self.combine, "temperature": self.temperature, "l2": self.l2, "names": self.names}
        return _write_model(directory, config, arrays, extra_files)

    @classmethod
    def load(cls, directory) -> "GroupEnsemble":
        """Read an ensemble written by :meth:`save`."""
        config, arrays, where = _read_model(directory, "GroupEnsemble")
        _check_floats(config, ("temperature",), where, positive=True)
        _check_floats(config, ("l2",), where)
        _check_settings(config, where)
        temperatures = config.get("member_temperatures")
        if not isinstance(temperatures, dict) or not isinstance(config.get("member_groups"), dict) \
                or set(temperatures) != set(config["member_groups"]):
            raise CheckpointError("model.json's member_groups and member_temperatures do not name the same members",
                                  where)
        _check_floats(temperatures, list(temperatures), where, positive=True, what="temperature of member ")
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
                C = len(model.styles)
                if (params["w"].shape != (len(cols), C) or params["b"].shape != (C,)
                        or scaler.mean.shape != (len(cols),) or scaler.scale.shape != (len(cols),)):
                    raise CheckpointError(f"member {name!r}: array shapes do not match its features", where)
                if not (scaler.scale > 0).all():
                    raise CheckpointError(f"member {name!r}: the standardizer has a scale that is not > 0", where)
                model.members[name] = (scaler, params, float(config["member_temperatures"][name]))
            if model.combine not in ("mean", "stack"):
                raise CheckpointError(f"combine is {model.combine!r}, not 'mean' or 'stack'", where)
            if model.combine == "stack":
                model.combiner = {"w": arrays["combiner.w"], "b": arrays["combiner.b"]}
                width = len(model.member_groups) * len(model.styles)
                if model.combiner["w"].shape != (width, len(model.styles)) or model.combiner["b"].shape != (
                        len(model.styles),):
                    raise CheckpointError("the combiner's array shapes do not match the members and styles", where)
        except KeyError as err:
            raise CheckpointError(f"missing entry {err.args[0]!r}", where) from None
        except (TypeError, ValueError, AttributeError, IndexError) as err:
            raise CheckpointError(f"model.json holds a bad setting ({err})", where) from None
        except ConfigError as err:
            raise CheckpointError(f"model.json's feature settings are invalid ({err.problem})", where) from None
        return model


# ----------------------------------------------------------------------------------
# The shipped model
# ----------------------------------------------------------------------------------

#: The shipped style model: ``model.json`` + ``arrays.npz`` + ``metrics.json``, inside the package.
SHIPPED_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "style_model"


def shipped_style_model_dir() -> Path:
    """``<labkit package>/assets/style_model`` (found from the package folder, so it works installed).

    >>> (shipped_style_model_dir() / "model.json").is_file()
    True

    Notebook: 07_style_index.ipynb
    """
    return SHIPPED_MODEL_DIR


def load_style_model(directory: str | os.PathLike | None = None):
    """A saved style model: :class:`StyleModel` or :class:`GroupEnsemble`.

    The kind is read from ``model.json``. ``directory=None`` loads the shipped
    model. Raises :class:`~labkit.errors.CheckpointError` naming the folder
    when it holds no model (for the shipped one: how to train it).

    Example:
        >>> model = load_style_model()
        >>> model.styles
        ('chinese', 'chorale', 'fiddle', 'german', 'irish')

    Notebook: 07_style_index.ipynb
    """
    where = Path(directory) if directory is not None else SHIPPED_MODEL_DIR
    config_path = where / "model.json"
    if not config_path.is_file():
        hint = (" (train it with `make style-model`)" if directory is None
                else " (a folder written by `python -m labkit style train --out DIR`)")
        raise CheckpointError(f"no style model here: model.json is missing{hint}", where)
    try:
        kind = json.loads(config_path.read_text(encoding="utf-8")).get("kind")
    except (ValueError, UnicodeDecodeError, AttributeError) as exc:
        raise CheckpointError(f"not valid JSON ({exc})", config_path) from None
    if kind == "GroupEnsemble":
        return GroupEnsemble.load(where)
    if kind == "StyleModel":
        return StyleModel.load(where)
    raise CheckpointError(f"holds a model of kind {kind!r}, not a style model", config_path)


def style_model_metrics(directory: str | os.PathLike | None = None) -> dict:
    """The figures saved beside a model by :func:`labkit.style.scoring.train_style_model` (``metrics.json``).

    >>> style_model_metrics()["styles"]
    ['chinese', 'chorale', 'fiddle', 'german', 'irish']

    Notebook: 07_style_index.ipynb
    """
    path = (Path(directory) if directory is not None else SHIPPED_MODEL_DIR) / METRICS_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError("no metrics.json beside the style model", path) from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read the style model's figures ({exc})", path) from None
