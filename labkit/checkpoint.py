"""Checkpoints as plain arrays: one ``.npz`` file, written atomically, read without unpickling.

A checkpoint holds named pytrees of arrays (the model's ``nnx.Param`` state, the optax
state, ...) and one JSON document of metadata (the model and training configs, the step,
the position in the data, the history so far):

* every array is stored under ``"<tree>/<path>"``, e.g. ``params/cells/0/dense_h/kernel``
  or ``opt_state/1/0/mu/embed/embedding``, where ``<path>`` spells the pytree path of the leaf;
* the metadata is stored as UTF-8 JSON bytes under ``__meta__``.

Nothing in the file is code: :func:`load_checkpoint` reads it with :func:`labkit._common.read_npz`
(no unpickling; an array of Python objects is refused) and fills in a *template* pytree of the
right structure (built from the config), checking every name, shape and dtype, and that every
float is finite, so a checkpoint written for another model, or a broken one, raises
:class:`~labkit.errors.CheckpointError` naming the file and the first problem.
Files are written with :func:`labkit._common.atomic_write` (a hidden temporary file in the same
folder, moved into place), so an interrupted write never leaves a half-written checkpoint; the
temporary files of a writer that was killed are removed by the next save of that checkpoint
(:func:`labkit._common.remove_stale_temporaries`).

The melody model that ships with labkit (``labkit/assets/melody_lstm.npz``, trained by
``python -m labkit.train_shipped``) is found by :func:`shipped_melody_model_path` and loaded by
:func:`load_melody_model`; :func:`shipped_melody_model_info` reads its metadata.

Notebook: 04_lstm_melody_model.ipynb
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from labkit._common import atomic_write, read_npz, remove_stale_temporaries
from labkit.errors import CheckpointError, ConfigError
from labkit.models import ModelConfig, make_model

#: Bump when the layout of checkpoint files changes.
CHECKPOINT_FORMAT_VERSION = 1
_META_KEY = "__meta__"

#: The shipped melody model and its metadata, in ``labkit/assets`` of the installed package.
SHIPPED_MELODY_MODEL_FILE = "melody_lstm.npz"
SHIPPED_MELODY_META_FILE = "melody_lstm.json"


def _path_str(path) -> str:
    """``'cells/0/dense_h/kernel'`` for a pytree key path (a Variable's own ``.value`` is dropped)."""
    parts = []
    for entry in path:
        if isinstance(entry, jax.tree_util.DictKey):
            parts.append(str(entry.key))
        elif isinstance(entry, jax.tree_util.SequenceKey):
            parts.append(str(entry.idx))
        elif isinstance(entry, jax.tree_util.GetAttrKey):
            parts.append(entry.name)
        elif isinstance(entry, jax.tree_util.FlattenedIndexKey):
            parts.append(str(entry.key))
        else:  # pragma: no cover - a key type jax may add later
            parts.append(str(entry))
    if parts and parts[-1] == "value":
        parts.pop()
    return "/".join(parts)


def flatten_tree(tree: Any) -> dict[str, np.ndarray]:
    """A pytree of arrays as ``{path: numpy array}`` (paths as in the module docstring).

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> flatten_tree({"a": np.zeros(2), "b": [np.ones(1)]})
        {'a': array([0., 0.]), 'b/0': array([1.])}
    """
    flat = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = _path_str(path)
        if name in flat:  # pragma: no cover - would mean two leaves spell the same path
            raise CheckpointError(f"two leaves share the name {name!r}")
        flat[name] = np.asarray(jax.device_get(leaf))
    return flat


def save_checkpoint(path: str | os.PathLike, trees: dict[str, Any], meta: dict | None = None) -> Path:
    """Write the pytrees ``trees`` (name -> pytree of arrays) and JSON-able ``meta`` to ``path`` atomically.

    Returns the path written. The folder is created if needed. Temporary files that a killed
    earlier save of ``path`` left beside it are removed first.

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> import tempfile
        >>> p = save_checkpoint(Path(tempfile.mkdtemp()) / "c.npz", {"w": {"a": np.ones(3)}}, {"step": 7})
        >>> read_meta(p)["step"]
        7
    """
    path = Path(path)
    arrays = {}
    for tree_name, tree in trees.items():
        if "/" in tree_name or tree_name == _META_KEY:
            raise ConfigError(f"checkpoint tree name {tree_name!r} may not contain '/' or be {_META_KEY!r}")
        for leaf_name, array in flatten_tree(tree).items():
            arrays[f"{tree_name}/{leaf_name}"] = array
    document = {"format_version": CHECKPOINT_FORMAT_VERSION, "trees": sorted(trees), **(meta or {})}
    try:
        text = json.dumps(document, sort_keys=True, allow_nan=True)
    except TypeError as error:
        raise ConfigError(f"checkpoint metadata is not JSON-serialisable: {error}", path) from None
    arrays[_META_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    remove_stale_temporaries(path)
    return atomic_write(path, lambda handle: np.savez(handle, **arrays))


def _open(path: Path) -> dict[str, np.ndarray]:
    """Every array of the checkpoint file (:func:`labkit._common.read_npz`), or :class:`CheckpointError`."""
    if path.is_dir():
        raise CheckpointError("is a folder, not a checkpoint file", path)
    if not path.is_file():
        raise CheckpointError("no checkpoint file here", path)
    try:
        return read_npz(path)
    except ValueError as error:
        raise CheckpointError(f"not a readable labkit checkpoint: {error}", path) from None


def _meta_of(data: dict, path: Path) -> dict:
    if _META_KEY not in data:
        raise CheckpointError("not a labkit checkpoint (no metadata)", path)
    raw = data[_META_KEY]
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError("checkpoint metadata is corrupt (not UTF-8 bytes)", path)
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise CheckpointError(f"checkpoint metadata is corrupt ({error})", path) from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint metadata is a JSON {type(meta).__name__}, not an object: "
                              "not a labkit checkpoint", path)
    version = meta.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(f"checkpoint format version {version} is not {CHECKPOINT_FORMAT_VERSION}, "
                              "the version this labkit reads", path)
    return meta


def read_meta(path: str | os.PathLike) -> dict:
    """The metadata (JSON dict) of a checkpoint, without reading its arrays.

    Notebook: 04_lstm_melody_model.ipynb
    """
    path = Path(path)
    return _meta_of(_open(path), path)


def load_checkpoint(path: str | os.PathLike, templates: dict[str, Any]) -> tuple[dict[str, Any], dict]:
    """Read a checkpoint into pytrees shaped like ``templates``; returns ``(trees, meta)``.

    ``templates`` maps tree names to pytrees of the expected structure (arrays or
    ``jax.ShapeDtypeStruct``; e.g. ``nnx.state(model, nnx.Param)``). Every leaf must be in
    the file with the template's shape and dtype, and hold no NaN or infinity; otherwise
    :class:`CheckpointError` names the file and the leaf. Arrays in the file that no template
    asks for are ignored.

    Notebook: 04_lstm_melody_model.ipynb
    """
    path = Path(path)
    data = _open(path)
    meta = _meta_of(data, path)
    trees = {}
    for tree_name, template in templates.items():
        leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(template)
        leaves = []
        for leaf_path, leaf in leaves_with_path:
            name = f"{tree_name}/{_path_str(leaf_path)}"
            if name not in data:
                raise CheckpointError(f"array {name!r} is missing (was the checkpoint written for "
                                      "another model or optimizer?)", path)
            array = data[name]
            shape, dtype = tuple(np.shape(leaf)), np.dtype(leaf.dtype)
            if array.shape != shape:
                raise CheckpointError(f"array {name!r} has shape {array.shape} in the file but the "
                                      f"model expects {shape} (another ModelConfig?)", path)
            if array.dtype != dtype:
                raise CheckpointError(f"array {name!r} has dtype {array.dtype} in the file but the "
                                      f"model expects {dtype}", path)
            if np.issubdtype(dtype, np.inexact) and not np.isfinite(array).all():
                raise CheckpointError(f"array {name!r} holds NaN or infinite values (did the training "
                                      "diverge?)", path)
            leaves.append(jax.numpy.asarray(array))
        trees[tree_name] = jax.tree_util.tree_unflatten(treedef, leaves)
    return trees, meta


def save_model(path: str | os.PathLike, model: nnx.Module, config: ModelConfig,
               meta: dict | None = None) -> Path:
    """Save a model's parameters and its :class:`ModelConfig` (enough for :func:`load_model`).

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> import tempfile
        >>> cfg = ModelConfig(embed_dim=4, hidden_size=8, num_layers=1)
        >>> p = save_model(Path(tempfile.mkdtemp()) / "m.npz", make_model(cfg, 0), cfg)
        >>> load_model(p)[1] == cfg
        True
    """
    if not isinstance(config, ModelConfig):
        raise ConfigError(f"save_model needs a ModelConfig, got {type(config).__name__}")
    return save_checkpoint(path, {"params": nnx.state(model, nnx.Param)},
                           {**(meta or {}), "model_config": config.to_dict()})


def load_model(path: str | os.PathLike) -> tuple[nnx.Module, ModelConfig]:
    """The model stored in a checkpoint (from :func:`save_model` or a training run) and its config.

    Notebook: 04_lstm_melody_model.ipynb
    """
    path = Path(path)
    meta = read_meta(path)
    if "model_config" not in meta:
        raise CheckpointError("checkpoint has no model_config; it was not written by save_model or fit", path)
    try:
        config = ModelConfig.from_dict(meta["model_config"])
    except (ConfigError, TypeError, ValueError, AttributeError, KeyError) as error:
        raise CheckpointError(f"checkpoint's model_config is invalid: {error}", path) from None
    # a crafted model_config must not make us build a model far larger than the file (float32 parameters)
    if config.num_params() * 4 > path.stat().st_size:
        raise CheckpointError(f"checkpoint's model_config describes {config.num_params()} parameters, more than "
                              f"the file's {path.stat().st_size} bytes hold", path)
    model = make_model(config, 0)
    trees, _ = load_checkpoint(path, {"params": nnx.state(model, nnx.Param)})
    nnx.update(model, trees["params"])
    return model, config


# --- the shipped melody model --------------------------------------------------------------------

def shipped_melody_model_path() -> Path:
    """``<labkit package>/assets/melody_lstm.npz`` (found from the package folder, so it works installed).

    Notebook: 05_sampling_studio.ipynb

    Example:
        >>> shipped_melody_model_path().name
        'melody_lstm.npz'
    """
    return Path(__file__).resolve().parent / "assets" / SHIPPED_MELODY_MODEL_FILE


def shipped_melody_model_info() -> dict:
    """The metadata of the shipped melody model (``melody_lstm.json``): settings, scores, training time.

    Raises :class:`CheckpointError` when the file is missing or unreadable.

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> shipped_melody_model_info()["model_config"]["hidden_size"]
        256
    """
    path = shipped_melody_model_path().with_name(SHIPPED_MELODY_META_FILE)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError("the shipped model's metadata is missing; run `make model` "
                              "(python -m labkit.train_shipped)", path) from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read the shipped model's metadata ({exc})", path) from None


def load_melody_model(checkpoint: str | os.PathLike | None = None, *,
                      encoding=None) -> tuple[nnx.Module, ModelConfig]:
    """``(model, config)`` from ``checkpoint`` (written by :func:`save_model` or ``fit``), or the shipped model.

    Raises :class:`CheckpointError` naming the file when it is missing or does not hold a model,
    and, when an ``encoding`` (:class:`~labkit.encoding.MelodyEncoding`) is given, when the
    model's vocabulary is not that encoding's (a model trained on other tokens).

    Notebook: 05_sampling_studio.ipynb

    Example:
        >>> model, config = load_melody_model()
        >>> config.hidden_size, type(model).__name__
        (256, 'MelodyLSTM')
    """
    if checkpoint is None:
        path = shipped_melody_model_path()
        if not path.is_file():
            raise CheckpointError("the shipped model is missing; train it with `make model` "
                                  "(python -m labkit.train_shipped) or pass --checkpoint", path)
    else:
        path = Path(checkpoint)
        if path.is_dir():
            raise CheckpointError("is a folder; give the checkpoint file (e.g. best.npz)", path)
    model, config = load_model(path)
    if encoding is not None and config.vocab_size != encoding.vocab_size:
        raise CheckpointError(f"the model has a vocabulary of {config.vocab_size} tokens but the melody encoding "
                              f"(pitches {encoding.min_pitch}..{encoding.max_pitch}) has {encoding.vocab_size}: "
                              "a model trained on other tokens", path)
    return model, config
