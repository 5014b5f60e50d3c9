"""Checkpoints as plain arrays: one ``.npz`` file, written atomically, read without unpickling.

A checkpoint holds named pytrees of arrays (the model's ``nnx.Param`` state, the optax
state, ...) and one JSON document of metadata (the model and training configs, the step,
the position in the data, the history so far):

* every array is stored under ``"<tree>/<path>"``, e.g. ``params/cells/0/dense_h/kernel``
  or ``opt_state/1/0/mu/embed/embedding``, where ``<path>`` spells the pytree path of the leaf;
* the metadata is stored as UTF-8 JSON bytes under ``__meta__``.

Nothing in the file is code: :func:`load_checkpoint` reads it with
``np.load(..., allow_pickle=False)`` and fills in a *template* pytree of the right structure
(built from the config), checking every name, shape and dtype, so a checkpoint written
for another model raises :class:`~labkit.errors.CheckpointError` naming the first mismatch.
Files are written with :func:`labkit._common.atomic_write` (a hidden temporary file in the same
folder, moved into place), so an interrupted write never leaves a half-written checkpoint.

The melody model that ships with labkit (``labkit/assets/melody_lstm.npz``, trained by
``python -m labkit.train_shipped``) is found by :func:`shipped_melody_model_path` and loaded by
:func:`load_melody_model`; :func:`shipped_melody_model_info` reads its metadata.

Notebook: 04_lstm_melody_model.ipynb
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from labkit._common import atomic_write
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

    Returns the path written. The folder is created if needed.

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
    return atomic_write(path, lambda handle: np.savez(handle, **arrays))


def _open(path: Path):
    if not path.is_file():
        raise CheckpointError("no checkpoint file here", path)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise CheckpointError(f"not a readable checkpoint ({error})", path) from None


def _meta_of(data, path: Path) -> dict:
    if _META_KEY not in data.files:
        raise CheckpointError("not a labkit checkpoint (no metadata)", path)
    try:
        meta = json.loads(bytes(data[_META_KEY]).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"checkpoint metadata is corrupt ({error})", path) from None
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
    with _open(path) as data:
        return _meta_of(data, path)


def load_checkpoint(path: str | os.PathLike, templates: dict[str, Any]) -> tuple[dict[str, Any], dict]:
    """Read a checkpoint into pytrees shaped like ``templates``; returns ``(trees, meta)``.

    ``templates`` maps tree names to pytrees of the expected structure (arrays or
    ``jax.ShapeDtypeStruct``; e.g. ``nnx.state(model, nnx.Param)``). Every leaf must be in
    the file with the template's shape and dtype; otherwise :class:`CheckpointError` names
    the leaf. Arrays in the file that no template asks for are ignored.

    Notebook: 04_lstm_melody_model.ipynb
    """
    path = Path(path)
    with _open(path) as data:
        meta = _meta_of(data, path)
        files = set(data.files)
        trees = {}
        for tree_name, template in templates.items():
            leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(template)
            leaves = []
            for leaf_path, leaf in leaves_with_path:
                name = f"{tree_name}/{_path_str(leaf_path)}"
                if name not in files:
                    raise CheckpointError(f"array {name!r} is missing (was the checkpoint written for "
                                          "another model or optimizer?)", path)
                try:
                    array = data[name]
                except (OSError, ValueError, zipfile.BadZipFile) as error:
                    raise CheckpointError(f"array {name!r} cannot be read ({error})", path) from None
                shape, dtype = tuple(np.shape(leaf)), np.dtype(leaf.dtype)
                if array.shape != shape:
                    raise CheckpointError(f"array {name!r} has shape {array.shape} in the file but the "
                                          f"model expects {shape} (another ModelConfig?)", path)
                if array.dtype != dtype:
                    raise CheckpointError(f"array {name!r} has dtype {array.dtype} in the file but the "
                                          f"model expects {dtype}", path)
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
    except (ConfigError, TypeError) as error:
        raise CheckpointError(f"checkpoint's model_config is invalid: {error}", path) from None
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


def load_melody_model(checkpoint: str | os.PathLike | None = None) -> tuple[nnx.Module, ModelConfig]:
    """``(model, config)`` from ``checkpoint`` (written by :func:`save_model` or ``fit``), or the shipped model.

    Raises :class:`CheckpointError` naming the file when it is missing or does not hold a model.

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
    return load_model(path)
