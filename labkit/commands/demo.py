"""``python -m labkit demo``: the main job (see :mod:`labkit.demo`).

Examples::

    python -m labkit demo --out out                      # fine-tune the shipped model (a few minutes)
    python -m labkit demo --out out --train              # train a small model from scratch instead
    python -m labkit demo --style irish --num 6 --temperature 0.9
"""
from __future__ import annotations

from labkit.commands._args import MAX_GENERATED_STEPS, MAX_MELODIES, MAX_TRAIN_STEPS, integer, seed, temperature


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="run the course's main job and write a report to --out",
                                   description="Corpus statistics, a melody LSTM (the shipped one fine-tuned "
                                               "on one style, or --train from scratch) and generated melodies, "
                                               "written to --out with report.md.")
    parser.add_argument("--out", default="out", help="output folder (default: out)")
    parser.add_argument("--seed", type=seed, default=0, help="seed of every random choice, 0..4294967295 (default: 0)")
    parser.add_argument("--train", action="store_true",
                        help="train a small LSTM from scratch (about 400 steps) instead of fine-tuning the "
                             "shipped model (600 steps, the default)")
    parser.add_argument("--style", default=None,
                        help="corpus style the model stage trains on (default: chinese)")
    parser.add_argument("--steps", type=integer(1, MAX_TRAIN_STEPS), default=None,
                        help="training steps (overrides the default)")
    parser.add_argument("--num", type=integer(1, MAX_MELODIES), default=None,
                        help=f"melodies to generate, 1..{MAX_MELODIES} (default: 8)")
    parser.add_argument("--length", type=integer(1, MAX_GENERATED_STEPS), default=None,
                        help=f"steps per generated melody after the primer, 1..{MAX_GENERATED_STEPS} (default: 256)")
    parser.add_argument("--temperature", type=temperature, default=None,
                        help="sampling temperature, 0.001..1000 (default: 0.8)")
    parser.add_argument("--to-order", nargs="+", default=None, metavar="STYLE",
                        help="styles the generation-to-order stage asks for (default: chinese chorale fiddle "
                             "german irish)")
    parser.add_argument("--quick", action="store_true", help="tiny settings, seconds (as LABKIT_FAST=1)")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    from labkit import demo

    path = demo.run(args.out, seed=args.seed, train=args.train, style=args.style or demo.DEFAULT_STYLE,
                    quick=True if args.quick else None, steps=args.steps, num=args.num, length=args.length,
                    temperature=args.temperature,
                    order_styles=tuple(args.to_order) if args.to_order else None)
    print(f"report written to {path}")
    return 0
