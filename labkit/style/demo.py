"""The demo's style stage: where the generated melodies fall on the style axis.

:func:`style_stage` scores the demo's generated MIDI files with the shipped
style model (:mod:`labkit.style.scoring`) and puts them on one bipolar axis, the
style index ``P(target)``, next to real tunes of each style from the corpus's
test split, which the style model never saw. It adds a section to the demo's
Markdown report with a picture (``style_axis.png``) and two tables.

Notebook: 07_style_index.ipynb
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from labkit.errors import LabkitError


def style_stage(report, generated_dir: str | os.PathLike, *, target: str | None = None, model=None,
                real_per_style: int | None = None, seed: int = 0,
                title: str = "4. The style of the generated melodies", image: str = "style_axis.png") -> dict:
    """Add a report section: the style index of generated melodies beside real held-out tunes.

    Args:
        report: the demo's :class:`labkit.demo.Report` (``section``, ``add``,
            ``table``, ``out``).
        generated_dir: folder of generated MIDI files (searched recursively).
        target: the style at the "1" end of the axis (the demo's style); when it is
            ``None`` or not one of the model's styles,
            :func:`labkit.style.scoring.default_target` (``irish``). The "0" end is
            every other style of the model.
        model: a style model or a folder holding one (default: the shipped model).
        real_per_style: test-split tunes of each style shown for comparison
            (default 40; 8 under ``LABKIT_FAST``), drawn with ``seed``.
        title: the section heading; image: the PNG's file name in ``report.out``.

    Returns:
        ``{"target", "generated": [records of score_paths], "real": {style: [indices]},
        "image": path or None}``; ``{}`` (and a line in the report) when the
        style model cannot be loaded or nothing could be scored.

    Notebook: 07_style_index.ipynb
    """
    from matplotlib.figure import Figure

    from labkit import env
    from labkit.corpus import load_manifest, select, tune_path
    from labkit.style.model import TYPICAL_FLOOR, load_style_model, style_model_metrics
    from labkit.style.plots import plot_style_axis
    from labkit.style.scoring import default_target, describe_typicality, score_paths

    report.section(title)
    try:
        if model is None or isinstance(model, (str, os.PathLike)):
            model_dir = model
            model = load_style_model(model)
        else:
            model_dir = None
    except LabkitError as exc:
        report.add(f"The style model could not be loaded ({exc}); this stage was skipped.")
        return {}
    note = ""
    if target is not None and target not in model.styles:
        note = (f" (The style model knows no style `{target}`, so the axis shows "
                f"`{default_target(model.styles)}` instead.)")
        target = None
    target = target if target is not None else default_target(model.styles)
    generated = score_paths([generated_dir], model, target)
    scored = [r for r in generated if "error" not in r]

    per_style = real_per_style if real_per_style is not None else env.fast(40, 8)
    rng = np.random.default_rng(seed)
    test_rows = select(load_manifest(), styles=list(model.styles), split="test")
    real_paths, real_styles = [], []
    for style in model.styles:
        rows = test_rows[test_rows["style"] == style]
        for i in sorted(rng.permutation(len(rows))[:per_style].tolist()):
            try:
                real_paths.append(str(tune_path(rows.iloc[i])))
                real_styles.append(style)
            except LabkitError:
                continue
    real_records = score_paths(real_paths, model, target) if real_paths else []
    real: dict[str, list[float]] = {s: [] for s in model.styles}
    for style, record in zip(real_styles, real_records):
        if "error" not in record:
            real[style].append(record["index"])

    try:
        figures = style_model_metrics(model_dir)
        test = figures.get("test") or {}
        quality = (f" On the corpus's test split it sorts {test['tunes']:,} tunes into their style with "
                   f"{test['balanced_accuracy']:.1%} balanced accuracy." if "balanced_accuracy" in test else "")
    except LabkitError:
        quality = ""
    report.add(f"A logistic-regression style classifier on melody features ({type(model).__name__}, "
               f"{model.variant} features; styles {', '.join(model.styles)}) gives each melody a probability "
               f"per style.{quality} The **style index** is the probability of `{target}`: 1 means surely "
               f"{target}, 0 surely one of the others. Each generated melody is shown beside real tunes of every "
               f"style from the test split (at most {per_style} each), scored the same way (the longest melody of "
               f"the MIDI file, its key estimated).{note}", "")
    if not scored:
        problems = "; ".join(f"`{Path(r['path']).name}`: {r['error']}" for r in generated[:5]) or "no MIDI files"
        report.add(f"No generated melody could be scored ({problems}).")
        return {"target": target, "generated": generated, "real": real, "image": None}

    labels, indices = [], []
    for style in model.styles:
        labels += [f"{style} (real)"] * len(real[style])
        indices += real[style]
    labels += ["generated"] * len(scored)
    indices += [r["index"] for r in scored]
    figure = Figure(figsize=(8, 1.2 + 0.45 * (len(model.styles) + 1)))
    ax = figure.add_subplot()
    plot_style_axis(np.clip(indices, 0.0, 1.0), labels, target=target, other="other styles", ax=ax, seed=seed)
    ax.set_title(f"Style index P({target}): generated melodies and real test-split tunes")
    figure.tight_layout()
    path = Path(report.out) / image
    figure.savefig(path, dpi=110)
    report.add(f"![style axis]({image})", "")

    rows = []
    for r in generated:
        name = Path(r["path"]).name
        if "error" in r:
            rows.append([f"`{name}`", "-", "-", f"not scored: {r['error']}", "-"])
            continue
        top = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[:3]
        typical = describe_typicality(r["typicality"]) if "typicality" in r else "-"
        rows.append([f"`{name}`", r["style"], f"{r['index']:.3f}", ", ".join(f"{s} {p:.2f}" for s, p in top),
                     typical])
    report.table(["generated melody", "most likely style", f"index P({target})", "top probabilities",
                  "typicality"], rows)
    report.add("", "Typicality: the share of the model's training tunes that are less like its styles than this "
               f"melody (below {TYPICAL_FLOOR}, the melody is unlike every style the model knows and its style "
               "means little; see `labkit.style.model.Typicality`).", "")
    summary = []
    for style in model.styles:
        values = np.asarray(real[style])
        if len(values):
            summary.append([style, len(values), f"{values.mean():.3f}", f"{np.mean(values > 0.5):.0%}"])
    gen_values = np.asarray([r["index"] for r in scored])
    summary.append(["generated", len(gen_values), f"{gen_values.mean():.3f}", f"{np.mean(gen_values > 0.5):.0%}"])
    report.table(["tunes", "count", f"mean index P({target})", "share with index > 0.5"], summary)
    report.add("", "Generated melodies carry no time signature of their own (their files say 4/4) and are short, "
               "so the metre and phrase features see them differently from notated tunes; read the index as "
               "a rough guide (see notebook 07_style_index.ipynb).")
    return {"target": target, "generated": generated, "real": real, "image": str(path)}
