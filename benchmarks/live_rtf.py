"""Real-time factor of live generation (:class:`labkit.live.LiveEngine`): seconds of music per second of compute.

The shipped melody LSTM plays ``--chunks`` chunks of ``--bars`` bars at 120 qpm, steered toward
``--target`` with ``--candidates`` candidates per chunk (one batch), each chunk rendered with the
SoundFont; every chunk's compute time covers sampling, style scoring and rendering. The first
``--warmup`` chunks (the sampler's compilations, one per primer length) are made first and not
counted. Prints each chunk's factor and the median (the figure the engine reports, and the one
to quote), with the machine.

    python benchmarks/live_rtf.py                     # 20 chunks of 2 bars: about 10-30 s on 2 cores
    python benchmarks/live_rtf.py --chunks 40 --candidates 16

Notebook: 10_mixing_and_performance.ipynb
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--bars", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--target", default="irish")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-audio", action="store_true", help="leave out the SoundFont rendering")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import jax

    from labkit.live import LiveEngine

    started = time.perf_counter()
    engine = LiveEngine(seed=args.seed, bars_per_chunk=args.bars, candidates=args.candidates, target=args.target,
                        audio=not args.no_audio)
    for _ in engine.chunks(args.warmup):
        pass
    print(f"set-up and {args.warmup} warm-up chunks: {time.perf_counter() - started:.1f} s")
    factors, indices = [], []
    for chunk in engine.chunks(args.chunks):
        factors.append(chunk.realtime_factor)
        indices.append(chunk.style_index)
        print(f"chunk {chunk.index:3d}: {chunk.seconds:.1f} s of music in {chunk.compute_seconds * 1000:7.1f} ms "
              f"-> {chunk.realtime_factor:7.1f}x real time, style index {chunk.style_index:.3f}")
    print(f"median real-time factor over {len(factors)} chunks: {statistics.median(factors):.1f}x "
          f"(min {min(factors):.1f}x, max {max(factors):.1f}x); {args.bars} bars per chunk at 120 qpm, "
          f"{args.candidates} candidates, target {args.target}, audio {'off' if args.no_audio else 'on'}")
    print(f"mean style index toward {args.target}: {statistics.mean(indices):.3f}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}; "
          f"jax {jax.__version__} on {jax.default_backend()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
