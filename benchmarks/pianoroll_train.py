"""Training speed of labkit's piano-roll sigmoid model against a PyTorch equivalent, in one process.

What is timed, per step (one optimizer step on one batch of Nottingham-sized windows):

* ``labkit``: the real step of ``labkit.polyphony.train.fit_pianoroll``: its jitted
  ``pianoroll_train_step`` (built by ``_compiled_train_step`` as ``fit_pianoroll`` builds it), called as
  the loop calls it with a numpy batch from ``pianoroll_batches``: ``SigmoidLSTM`` with the default
  ``PianoRollConfig(model="sigmoid")`` (one LSTM layer of 256 units reading the previous frame and the
  clock features, dropout 0.5, 88 sigmoid outputs), binary cross-entropy summed over the keys and
  averaged over the real frames, clipping + AdamW (``labkit.train.make_optimizer``).
* ``torch``: the same model in PyTorch: ``nn.LSTM(88 + clock, 256)`` -> dropout -> ``nn.Linear(256, 88)``,
  ``binary_cross_entropy_with_logits`` summed over keys and averaged over the mask, ``clip_grad_norm_(1.0)``,
  ``AdamW`` with decay on matrices only, the batch copied from numpy every step.

Sizes: 32 windows x 128 frames (4,096 frames a step), 88 keys. The two run alternately in one process
(round r: labkit then torch; round r+1: torch then labkit); reported: median frames per second and the
median over rounds of the per-round ratio labkit / torch (both steps of a round see nearly the same
load). Threads as ``lstm_train.py``: ``--threads 2``, ``OMP_WAIT_POLICY=PASSIVE``.

    python benchmarks/pianoroll_train.py            # about 1-2 minutes on 2 cores; writes README.md
    python benchmarks/pianoroll_train.py --quick    # fewer rounds

Notebook: 08_polyphony.ipynb
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "benchmarks" / "README.md"
HEADING = "## Piano-roll training speed"
BATCH, SEQ = 32, 128


def setup_threads(threads: int) -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    if hasattr(os, "sched_getaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) > threads:
            os.sched_setaffinity(0, cpus[:threads])


def make_batch(seed: int = 0) -> dict:
    """A batch shaped as ``pianoroll_batches`` yields it, from random four-note chords held for a while."""
    import numpy as np

    from labkit.polyphony.data import pianoroll_batches

    rng = np.random.default_rng(seed)
    rolls = []
    for _ in range(BATCH):
        roll = np.zeros((SEQ + 1, 88), np.float32)
        for start in range(0, SEQ + 1, 4):
            roll[start:start + 4, rng.choice(np.arange(30, 70), 4, replace=False)] = 1.0
        rolls.append(roll)
    return next(pianoroll_batches(rolls, batch_size=BATCH, seq_len=SEQ, seed=seed, shuffle=False))


class LabkitStep:
    def __init__(self, batch: dict):
        import jax
        import numpy as np
        from flax import nnx

        from labkit.polyphony.models import PianoRollConfig, make_pianoroll_model
        from labkit.polyphony.train import PianoRollTrainConfig, _compiled_train_step
        from labkit.train import make_optimizer

        self.config = PianoRollConfig(model="sigmoid")
        model = make_pianoroll_model(self.config, 0)
        self.graphdef, self.params, self.rest = nnx.split(model, nnx.Param, ...)
        tx = make_optimizer(PianoRollTrainConfig())
        self.opt_state = tx.init(self.params)
        self.fn = _compiled_train_step(self.graphdef, tx)
        self.root = jax.random.key(1)
        self.batch, self.step_no, self.np = batch, 0, np

    def __call__(self) -> float:
        np = self.np
        self.params, self.opt_state, stats = self.fn(self.rest, self.params, self.opt_state, self.batch, self.root,
                                                     np.int32(self.step_no), np.float32(1e-3))
        self.step_no += 1
        return float(stats["nll"])          # waits for the step, as the training loop does


class TorchStep:
    def __init__(self, batch: dict, inputs: int):
        import torch
        from torch import nn

        torch.manual_seed(0)
        self.torch, self.batch = torch, batch
        self.lstm = nn.LSTM(inputs, 256, batch_first=True)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(256, 88)
        params = list(self.lstm.parameters()) + list(self.out.parameters())
        matrices = [p for p in params if p.ndim >= 2]
        vectors = [p for p in params if p.ndim < 2]
        self.params = params
        self.opt = torch.optim.AdamW([{"params": matrices, "weight_decay": 1e-4},
                                      {"params": vectors, "weight_decay": 0.0}], lr=1e-3)
        self.clock_width = inputs - 88

    def __call__(self) -> float:
        torch, b = self.torch, self.batch
        frames = torch.from_numpy(b["frames"])
        previous = torch.from_numpy(b["previous"])
        mask = torch.from_numpy(b["mask"])
        x = torch.cat([previous[:, None], frames[:, :-1]], dim=1)
        clock = torch.zeros(x.shape[0], x.shape[1], self.clock_width)   # the same input width as labkit's
        h, _ = self.lstm(torch.cat([x, clock], dim=-1))
        logits = self.out(self.drop(h))
        nll = torch.nn.functional.binary_cross_entropy_with_logits(logits, frames, reduction="none").sum(-1)
        loss = (nll * mask).sum() / mask.sum()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        return float(loss)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(rounds: int, steps: int) -> dict:
    import torch

    batch = make_batch()
    frames = float(batch["mask"].sum())
    lab = LabkitStep(batch)
    inputs = 88 + 2 * len(lab.config.clock_periods)
    tor = TorchStep(batch, inputs)
    for _ in range(3):                                           # compile and warm up both
        lab(), tor()
    speeds = {"labkit": [], "torch": []}
    ratios = []
    for r in range(rounds):
        order = [("labkit", lab), ("torch", tor)]
        if r % 2:
            order.reverse()
        this = {}
        for name, fn in order:
            seconds = statistics.median(timed(fn) for _ in range(steps))
            this[name] = frames / seconds
            speeds[name].append(this[name])
        ratios.append(this["labkit"] / this["torch"])
    return {"frames_per_step": frames, "rounds": rounds, "steps_per_round": steps,
            "labkit": speeds["labkit"], "torch": speeds["torch"], "ratios": ratios,
            "torch_version": torch.__version__, "torch_threads": torch.get_num_threads()}


def table(result: dict, load: tuple[float, float]) -> str:
    import jax
    import flax

    med = statistics.median
    lines = [HEADING, "",
             "`python benchmarks/pianoroll_train.py`: one optimizer step of the sigmoid piano-roll model (one LSTM "
             "layer of 256 units, 88 sigmoid outputs; 32 windows x 128 frames), labkit's jitted step against the "
             "same model in PyTorch, alternating in one process; medians over rounds "
             f"({result['rounds']} rounds x {result['steps_per_round']} steps each).", "",
             f"Machine: {os.cpu_count()} CPUs, load average {load[0]:.1f} -> {load[1]:.1f}; jax {jax.__version__}, "
             f"flax {flax.__version__}, torch {result['torch_version']} ({result['torch_threads']} threads); "
             f"{time.strftime('%Y-%m-%d')}.", "",
             "| step | frames/s (median) | range |", "|---|---|---|"]
    for name in ("labkit", "torch"):
        values = result[name]
        lines.append(f"| {name} | {med(values):,.0f} | {min(values):,.0f} - {max(values):,.0f} |")
    lines += ["", f"labkit / torch: **{med(result['ratios']):.2f}x** (median of the per-round ratios; "
              f"range {min(result['ratios']):.2f} - {max(result['ratios']):.2f})."]
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    old = README.read_text() if README.exists() else ""
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(text + "\n", old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    README.write_text(new)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 5 steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print the table, leave README.md alone")
    args = parser.parse_args(argv)
    setup_threads(args.threads)
    sys.path.insert(0, str(ROOT))
    load_start = os.getloadavg()[0]
    result = run(3 if args.quick else 9, 5 if args.quick else 10)
    text = table(result, (load_start, os.getloadavg()[0]))
    print(text)
    if not args.no_write:
        write_section(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
