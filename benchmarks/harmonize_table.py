"""Harmonization measured against Bach (issue 17): every test-split chorale's soprano harmonized by the chorale
model, the rule rates of :mod:`labkit.polyphony.harmony` beside Bach's own settings and a baseline.

The baseline is the same model given ANOTHER chorale's soprano (the next test chorale's, repeated or cut to
this chorale's length, with its onsets and bar positions): its alto, tenor and bass ignore this melody, and
are measured under this chorale's soprano and key. Prints a markdown table.

    nice -n 10 .venv/bin/python benchmarks/harmonize_table.py [--checkpoint DIR] [--samples 3]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labkit.polyphony.harmony import (HARMONY_RULES, VOICE_REST, chorale_settings, harmony_counts,  # noqa: E402
                                      harmony_rates, sum_counts)
from labkit.polyphony.harmony_model import (DEFAULT_HARMONY_TEMPERATURE, harmonize_voices,  # noqa: E402
                                            load_harmony_model)

#: Where Bach's rate is near zero (below this), a rule's target is this share of the voice-pair moves.
NEAR_ZERO = 0.01


def _trim(s):
    sounding = np.flatnonzero((s.voices != VOICE_REST).any(axis=0))
    start = int(sounding[0])
    return s.voices[:, start:], s.onsets[0, start:], s.bar_position[start:]


def _fit(x, length):
    return np.resize(x, length)      # repeated or cut to ``length``


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="chorale model folder (default: the shipped model)")
    parser.add_argument("--samples", type=int, default=3, help="harmonizations per chorale (seeds 0..N-1)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--temperature", type=float, default=DEFAULT_HARMONY_TEMPERATURE)
    args = parser.parse_args(argv)
    started = time.monotonic()
    model, meta = load_harmony_model(args.checkpoint)
    settings, skipped = chorale_settings(args.split)
    runs = {"bach": [], "model": [], "model_rules": [], "base": [], "base_rules": []}
    for i, s in enumerate(settings):
        voices, onset, position = _trim(s)
        runs["bach"].append(harmony_counts(voices, s.key))
        other = settings[(i + 1) % len(settings)]
        o_voices, o_onset, o_position = _trim(other)
        length = voices.shape[1]
        for k in range(args.samples):
            for rules in (False, True):
                tag = "_rules" if rules else ""
                v = harmonize_voices(model, voices[0], onset, position, seed=k, temperature=args.temperature,
                                     rules=rules)
                runs["model" + tag].append(harmony_counts(v, s.key))
                b = harmonize_voices(model, _fit(o_voices[0], length), _fit(o_onset, length),
                                     _fit(o_position, length), seed=k, temperature=args.temperature, rules=rules)
                b[0] = voices[0]
                runs["base" + tag].append(harmony_counts(b, s.key))
    rates = {name: harmony_rates(sum_counts(c)) for name, c in runs.items()}
    totals = sum_counts(runs["bach"])
    print(f"{len(settings)} {args.split} chorales ({len(skipped)} skipped), {args.samples} samples each, "
          f"temperature {args.temperature}; model: {args.checkpoint or 'shipped'} "
          f"(valid {meta.get('valid_nats_per_frame')} nats/frame); {time.monotonic() - started:.0f} s\n")
    print("| rule (rate per chance) | chances (Bach) | Bach | model + rules (harmonize) | model alone "
          "| baseline + rules | baseline alone | target | met |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, _, chances in HARMONY_RULES:
        b = rates["bach"][name]
        target = max(2 * b, NEAR_ZERO) if chances == "pair_moves" and b < NEAR_ZERO / 2 else 2 * b
        m = rates["model_rules"][name]
        met = "yes" if m <= target else "no"
        cells = " | ".join(f"{100 * rates[r][name]:.2f}%" for r in ("bach", "model_rules", "model", "base_rules",
                                                                      "base"))
        print(f"| {name.replace('_', ' ')} (per {chances.replace('_', ' ')[:-1]}) | {totals[chances]} | {cells} | "
              f"<= {100 * target:.2f}% | {met} |")
    activity = {r: sum_counts(c)["pair_moves"] / max(sum_counts(c)["bass_frames"], 1) for r, c in runs.items()}
    cells = " | ".join(f"{activity[r]:.2f}" for r in ("bach", "model_rules", "model", "base_rules", "base"))
    print(f"| (activity: voice-pair moves per bass frame, no target) | {totals['pair_moves']} | {cells} | | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
