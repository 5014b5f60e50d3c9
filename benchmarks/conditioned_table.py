"""Generation to order, measured: the table of issue 18, item 3.

For each of the five main styles (``labkit.style.experiments.FIVE_STYLES``) the shipped conditioned
model (``labkit/assets/melody_conditioned.npz``) writes ``--num`` whole tunes in the style's typical
metre and key (the most common ones of its training tunes, as ``generate --style`` chooses them), with
``generate``'s sampling settings (temperature 0.8, no top-k/top-p), one seed per style. Nothing is
selected or reranked: every tune written is judged. Then ``labkit.judge.judge_paths(..., style=STYLE)``
(what ``python -m labkit judge --generated DIR --style STYLE --json`` prints) gives

* **agreement**: the share of the generated tunes whose style-model verdict is the requested style
  (target >= 90%; the real test tunes' own share is given beside it, all of them and those in the
  metre asked for);
* **typicality**: the median typicality of the generated tunes against the interquartile range of the
  real test tunes' typicality (target: inside), all of them and those in the metre asked for (the
  generated tunes are all in one metre; a style's tunes in other metres are more or less typical);
* **min overlap**: the smallest overlap area over every judge feature, and that feature (target >= 0.7);
* **repeated bars**: the share of the tunes' bars that equal an earlier bar of the same tune (the style
  model's first ``form`` feature), generated against the real test tunes;

and the cross-entropy column is the one of ``melody_conditioned.json``: bits per melody event on the
folk styles' test tunes, conditioned against the unconditioned shipped model on the same events.

Usage::

    nice -n 10 .venv/bin/python benchmarks/conditioned_table.py --num 50 --out out/conditioned_table

``--pool DIR [DIR ...]`` reads tables already written (say, seeds 0, 10, 20, 30: 200 tunes per style) and
prints each style's agreement and median typicality over all their tunes, with the range over the tables.

Notebook: 09_judging_generated_music.ipynb
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def repeated_bars(melodies) -> float:
    """The share of all bars (time-signature bars from step 0) equal to an earlier bar of the same melody."""
    repeats = total = 0
    for m in melodies:
        bar = int(round(m.steps_per_quarter * 4 * m.numerator / m.denominator))
        bars = [tuple(m.events[i:i + bar]) for i in range(0, len(m.events), bar)]
        repeats += sum(b in set(bars[:k]) for k, b in enumerate(bars))
        total += len(bars)
    return repeats / max(total, 1)


def real_typicality(style: str, model, meter: str) -> dict:
    """The real test tunes of ``style``, all and those in ``meter``: typicality quartiles, the share the style
    model gives to ``style``, and (all) their :func:`repeated_bars`."""
    from labkit.errors import LabkitError
    from labkit.judge import corpus_paths
    from labkit.midi_io import read_midi
    from labkit.style.scoring import melody_from_sequence, score_melodies

    melodies = []
    for path in corpus_paths(style):
        try:
            melodies.append(melody_from_sequence(read_midi(path)))
        except LabkitError:
            continue
    records = score_melodies(model, melodies, style)
    in_meter = np.array([f"{m.numerator}/{m.denominator}" == meter for m in melodies])
    out = {"repeated_bars": repeated_bars(melodies)}
    for name, keep in (("all", np.ones(len(records), bool)), ("meter", in_meter)):
        picked = [r for r, k in zip(records, keep) if k]
        typical = np.array([r["typicality"] for r in picked])
        out[name] = {"tunes": len(picked), "agreement": float(np.mean([r["style"] == style for r in picked])),
                     "iqr": [float(x) for x in np.percentile(typical, [25, 75])]}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num", type=int, default=50, help="tunes per style (default 50)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--guidance", type=float, default=None,
                        help="guidance towards the style asked for (default: generate's, labkit.conditioned.DEFAULT_GUIDANCE)")
    parser.add_argument("--plausibility", type=float, default=None,
                        help="guidance's plausibility constraint (default: labkit.conditioned.DEFAULT_PLAUSIBILITY)")
    parser.add_argument("--posterior", type=float, default=None,
                        help="guidance's contrast: the styles weighted by exp(POSTERIOR x their log-likelihood of the "
                             "tune so far); 0, the prior's equal weights "
                             "(default: labkit.conditioned.DEFAULT_POSTERIOR)")
    parser.add_argument("--rhythm-share", type=float, default=None,
                        help="guidance on the rhythm as a share of --guidance (default: labkit.conditioned.DEFAULT_RHYTHM_SHARE)")
    parser.add_argument("--temper", choices=("pitch", "all"), default=None,
                        help="what the temperature shapes (default: labkit.conditioned.DEFAULT_TEMPER)")
    parser.add_argument("--styles", nargs="+", default=None, help="default: the five main styles")
    parser.add_argument("--checkpoint", default=None, help="default: the shipped conditioned model")
    parser.add_argument("--pool", nargs="+", metavar="DIR", default=None,
                        help="pool the tables already written in these folders (no generation)")
    parser.add_argument("--out", default="out/conditioned_table", help="where the tunes and table.json go")
    args = parser.parse_args(argv)
    if args.pool:
        print(pooled(args.pool))
        return 0

    from labkit.conditioned import (DEFAULT_GUIDANCE, DEFAULT_PLAUSIBILITY, DEFAULT_POSTERIOR, DEFAULT_RHYTHM_SHARE,
                                    DEFAULT_TEMPER,
                                    load_conditioned_model, parse_key, sample_to_order,
                                    shipped_conditioned_path)
    from labkit.generate import write_outputs
    from labkit.judge import judge_paths
    from labkit.style.experiments import FIVE_STYLES
    from labkit.style.model import load_style_model

    styles = args.styles or list(FIVE_STYLES)
    guidance = DEFAULT_GUIDANCE if args.guidance is None else args.guidance
    plausibility = DEFAULT_PLAUSIBILITY if args.plausibility is None else args.plausibility
    temper = DEFAULT_TEMPER if args.temper is None else args.temper
    share = DEFAULT_RHYTHM_SHARE if args.rhythm_share is None else args.rhythm_share
    posterior = DEFAULT_POSTERIOR if args.posterior is None else args.posterior
    model, _, encoding, meta = load_conditioned_model(args.checkpoint)
    doc_path = (Path(args.checkpoint) if args.checkpoint else shipped_conditioned_path()).with_suffix(".json")
    doc = json.loads(doc_path.read_text()) if doc_path.is_file() else {}
    cond_bits = doc.get("scores", {}).get("test_folk", {}).get("bits_per_event")
    base_bits = ((doc.get("unconditioned") or {}).get("test_folk") or {}).get("bits_per_event")
    style_model = load_style_model()
    out = Path(args.out)
    rows = []
    for index, style in enumerate(styles):
        started = time.perf_counter()
        typical = meta["typical"][style]
        tunes = sample_to_order(model, encoding, style=style, meter=typical["meter"], key=parse_key(typical["key"]),
                                num=args.num, temperature=args.temperature, seed=args.seed + index, guidance=guidance,
                                plausibility=plausibility, temper=temper, rhythm_share=share,
                                posterior=posterior)
        folder = out / style
        write_outputs([m for m, _ in tunes], folder, settings={"style": style, **typical, "seed": args.seed + index,
                                                               "temperature": args.temperature, "guidance": guidance,
                                                               "plausibility": plausibility, "temper": temper,
                                                               "rhythm_share": share, "posterior": posterior})
        report = judge_paths([folder], style=style, model=style_model)
        verdicts = report["style_verdicts"]
        real = real_typicality(style, style_model, typical["meter"])
        q1, q3 = real["all"]["iqr"]
        m1, m3 = real["meter"]["iqr"]
        overlaps = {name: f["overlap"] for name, f in report["features"].items() if f["overlap"] is not None}
        worst = min(overlaps, key=overlaps.get)
        median_typ = verdicts["median_typicality"]
        rows.append({
            "style": style, "meter": typical["meter"], "key": typical["key"], "tunes": report["generated"],
            "ended": float(np.mean([info["ended"] for _, info in tunes])),
            "bars": float(np.mean([m.num_steps / encoding.bar_steps(typical["meter"]) for m, _ in tunes])),
            "agreement": verdicts["shares"][style], "real_agreement": real["all"]["agreement"],
            "real_metre_agreement": real["meter"]["agreement"], "real_metre_tunes": real["meter"]["tunes"],
            "median_typicality": median_typ, "real_iqr": [q1, q3], "typicality_in_iqr": q1 <= median_typ <= q3,
            "real_metre_iqr": [m1, m3], "typicality_in_metre_iqr": m1 <= median_typ <= m3,
            "repeated_bars": repeated_bars([m for m, _ in tunes]), "real_repeated_bars": real["repeated_bars"],
            "min_overlap": overlaps[worst], "min_overlap_feature": worst, "overlaps": overlaps,
            "seconds": round(time.perf_counter() - started, 1)})
        print(f"{style}: done in {rows[-1]['seconds']} s", file=sys.stderr)
    result = {"rows": rows, "bits_per_event": {"conditioned": cond_bits, "unconditioned": base_bits},
              "num": args.num, "seed": args.seed, "temperature": args.temperature, "guidance": guidance,
              "plausibility": plausibility, "temper": temper, "rhythm_share": share, "posterior": posterior}
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.json").write_text(json.dumps(result, indent=1) + "\n")
    print(format_table(result))
    return 0


def pooled(folders) -> str:
    """A Markdown table: per style, the agreement and median typicality over the tunes of every table in
    ``folders`` (each written by :func:`main`), the range of the tables' own figures, and the real IQR."""
    from labkit.midi_io import read_midi
    from labkit.style.model import load_style_model
    from labkit.style.scoring import melody_from_sequence, score_melodies

    model = load_style_model()
    tables = [json.loads((Path(f) / "table.json").read_text()) for f in folders]
    lines = [f"Pooled over {len(tables)} tables (seeds {', '.join(str(t['seed']) for t in tables)}):", "",
             "| style | tunes | agreement (range) | median typicality (range; real IQR same metre) | "
             "min overlap (range) |", "|---|---|---|---|---|"]
    for style in [r["style"] for r in tables[0]["rows"]]:
        rows = [next(r for r in t["rows"] if r["style"] == style) for t in tables]
        paths = [p for f in folders for p in sorted((Path(f) / style).glob("*.mid"))]
        melodies = [melody_from_sequence(read_midi(p)) for p in paths]
        records = score_melodies(model, melodies, style)
        agree = np.mean([r["style"] == style for r in records])
        typ = float(np.median([r["typicality"] for r in records]))
        m1, m3 = rows[0]["real_metre_iqr"]
        span = lambda key, fmt: f"{fmt(min(r[key] for r in rows))}-{fmt(max(r[key] for r in rows))}"
        lines.append(f"| {style} | {len(melodies)} | {agree:.0%} ({span('agreement', lambda x: f'{x:.0%}')}) | "
                     f"{typ:.3f} ({span('median_typicality', lambda x: f'{x:.3f}')}; {m1:.3f}-{m3:.3f}"
                     f"{'' if m1 <= typ <= m3 else ' OUT'}) | {span('min_overlap', lambda x: f'{x:.2f}')} |")
    return "\n".join(lines)


def format_table(result: dict) -> str:
    """The Markdown table of :func:`main`'s result."""
    bits = result["bits_per_event"]
    ce = (f"{bits['conditioned']:.3f} vs {bits['unconditioned']:.3f}"
          if bits["conditioned"] is not None and bits["unconditioned"] is not None else "-")
    lines = ["| style | metre, key | tunes (ended, mean length) | agreement (real: all; same metre) | "
             "median typicality (real IQR: all; same metre) | min overlap (feature) | repeated bars (real) | "
             "test bits/event cond. vs uncond. |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        q1, q3 = r["real_iqr"]
        m1, m3 = r.get("real_metre_iqr", (float("nan"),) * 2)
        lines.append(f"| {r['style']} | {r['meter']}, {r['key']} | {r['tunes']} ({r['ended']:.0%}, "
                     f"{r['bars']:.1f} bars) | {r['agreement']:.0%} ({r['real_agreement']:.0%}; "
                     f"{r.get('real_metre_agreement', float('nan')):.0%} of {r.get('real_metre_tunes', 0)}) | "
                     f"{r['median_typicality']:.3f} ({q1:.3f}-{q3:.3f}{'' if r['typicality_in_iqr'] else ' OUT'}; "
                     f"{m1:.3f}-{m3:.3f}{'' if r.get('typicality_in_metre_iqr') else ' OUT'}) | "
                     f"{r['min_overlap']:.2f} ({r['min_overlap_feature']}) | "
                     f"{r.get('repeated_bars', float('nan')):.2f} ({r.get('real_repeated_bars', float('nan')):.2f}) | {ce} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
