"""Pictures of the style index: tunes on one bipolar axis (:func:`plot_style_axis`).

Kept apart from the numeric modules so that they never import matplotlib; this
module imports it only when a picture is drawn.

Notebook: 07_style_index.ipynb
"""
from __future__ import annotations

import numpy as np

from labkit.errors import ConfigError


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
