"""``python -m labkit demo``: the main job (see :mod:`labkit.demo`)."""
from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="run the course's main job and write a report to --out")
    parser.add_argument("--out", default="out", help="output folder (default: out)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: 0)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from labkit import demo

    path = demo.run(args.out, seed=args.seed)
    print(f"report written to {path}")
    return 0
