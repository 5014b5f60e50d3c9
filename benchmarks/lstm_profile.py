"""Where the time of labkit's LSTM training step and sampler goes, op by op.

Runs the two programs that benchmarks/lstm_train.py and benchmarks/lstm_sample.py time (the same
sizes: vocab 90, embedding 64, 2 x 256 LSTM; a training step on 64 x 128 tokens; 64 melodies x
512 events) under JAX's profiler, reads the trace back (``jax.profiler.ProfileData``) and sums
the time of XLA's operations by kind:

* *matrix products*: XLA's library calls for ``dot`` (``ynn_fusion``/``xnn_fusion``/``onednn``
  thunks on a CPU; on a GPU, kernels whose names contain ``gemm``, ``cublas`` or ``dot``: not yet
  checked on a GPU), split into those **in the time
  loop** (run once per time step: ``T`` or more times per call) and those **once per call**
  (the input products and weight gradients over all ``T * B`` rows);
* *element-wise and other ops*: everything else XLA runs (its fused loops: gates, tanh, masks,
  the optimizer's update, copies), again in the loop or once per call.

An op's time is its wall time on the thread that started it (a product that XLA's library
spreads over both cores counts once). Ops that XLA runs at the same time (the sampler's two
independent products) overlap, so the rows can add up to more than the wall-clock time. Minor
page faults per call (``getrusage``, without the profiler) show how much fresh memory each call
touches.

    python benchmarks/lstm_profile.py            # about a minute; writes its section of README.md
    python benchmarks/lstm_profile.py --no-write # print only

Run by ``make bench`` with the other benchmarks. It explains the speed tables; it is not a
speed comparison (the profiler itself adds a little time to every op).
"""
from __future__ import annotations

import argparse
import collections
import glob
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import lstm_train  # noqa: E402  (benchmarks/ is not a package)

HEADING = "## LSTM time by operation"
PRODUCT_MARKS = ("ynn_fusion", "xnn_fusion", "onednn", "dot", "gemm", "cublas", "matmul")
WRAPPERS = ("ThunkExecutor", "SlinkyThreadPool", "Await", "while", "conditional", "call")


def is_product(name: str) -> bool:
    """Whether an op of the trace is a matrix product (see the module docstring)."""
    low = name.lower()
    return any(mark in low for mark in PRODUCT_MARKS)


def is_wrapper(name: str) -> bool:
    """Events that contain other ops (executors, thread-pool waits, loops): not counted."""
    return any(name.startswith(mark) or name.split(".")[0] == mark for mark in WRAPPERS)


def op_times(run, calls: int, loop_length: int) -> dict:
    """Profile ``calls`` calls of ``run`` and sum XLA's op times by kind (ms per call)."""
    import jax
    from jax.profiler import ProfileData

    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    walls = []
    for _ in range(calls):                      # without the profiler first: wall time and page faults
        start = time.perf_counter()
        run()
        walls.append(time.perf_counter() - start)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / calls
    with tempfile.TemporaryDirectory() as folder:
        profiled = []
        with jax.profiler.trace(folder):
            for _ in range(calls):
                start = time.perf_counter()
                run()
                profiled.append(time.perf_counter() - start)
        data = ProfileData.from_file(glob.glob(f"{folder}/**/*.xplane.pb", recursive=True)[0])
        per_op: dict[str, list] = collections.defaultdict(lambda: [0, 0.0])
        for plane in data.planes:
            if plane.name.startswith("/host:metadata"):
                continue
            for line in plane.lines:
                if line.name == "python" or line.name.startswith("Framework") or "Steps" in line.name:
                    continue
                for event in line.events:
                    if is_wrapper(event.name):
                        continue
                    entry = per_op[event.name]
                    entry[0] += 1
                    entry[1] += event.duration_ns / 1e6
    kinds = {key: 0.0 for key in ("products_loop", "products_once", "other_loop", "other_once")}
    top = []
    for name, (count, ms) in per_op.items():
        per_call, ms = count / calls, ms / calls
        where = "loop" if per_call >= loop_length else "once"
        kinds[("products_" if is_product(name) else "other_") + where] += ms
        top.append((ms, name, per_call))
    top.sort(reverse=True)
    return {"wall_ms": 1000 * statistics.median(walls), "profiled_wall_ms": 1000 * statistics.median(profiled),
            "faults": faults, "kinds": kinds,
            "top": [{"op": n, "ms": m, "per_call": c} for m, n, c in top[:8]]}


def profile_training(calls: int) -> dict:
    trainer = lstm_train.LabkitTrainer(lstm_train.make_batch(0), 0)
    for _ in range(3):
        trainer.step()
    return op_times(trainer.step, calls, lstm_train.STEPS)


def profile_sampling(calls: int) -> dict:
    import jax

    from labkit import models, sample

    model = models.make_model(models.ModelConfig(vocab_size=lstm_train.VOCAB, embed_dim=lstm_train.EMBED,
                                                 hidden_size=lstm_train.HIDDEN, num_layers=lstm_train.LAYERS,
                                                 dropout=0.0), 0)
    config = sample.SampleConfig(num_samples=64, length=512, seed=0)

    def run():
        jax.block_until_ready(sample.sample(model, config))

    for _ in range(2):
        run()
    return op_times(run, calls, 512)


def machine_info(settings: dict) -> dict:
    import os

    import jax

    device = jax.devices()[0]
    return {"nproc": os.cpu_count(), "cpu": lstm_train.cpu_model(), "jax_backend": jax.default_backend(),
            "jax_device": getattr(device, "device_kind", str(device)), **settings,
            "versions": lstm_train.package_versions(("jax", "jaxlib", "flax", "optax", "numpy"))}


def describe(report: dict) -> str:
    info, v = report["machine"], report["machine"]["versions"]
    return (f"{info['nproc']} CPUs ({info['cpu']}), {info['cpus_usable']} used; JAX backend {info['jax_backend']} "
            f"({info['jax_device']}); XLA_FLAGS={info['XLA_FLAGS'] or '(none)'}; Python {v['python']}, jax {v['jax']}, "
            f"flax {v['flax']}; load average {report['load_start']:.1f} at the start, {report['load_end']:.1f} at the end")


def markdown(report: dict) -> str:
    rows = {"products_loop": "matrix products in the time loop", "products_once": "matrix products once per call",
            "other_loop": "element-wise and other ops in the time loop",
            "other_once": "element-wise and other ops once per call"}
    lines = [HEADING, "",
             "Where the time of one training step and of one sampling call goes (`python benchmarks/lstm_profile.py`, "
             "run by `make bench`): XLA's operations from JAX's profiler, summed by kind, in ms per call. An op's time is its wall time "
             "on the thread that started it; ops that run at the same time (the sampler's two independent products) "
             "overlap, so the rows can add up to more than the wall-clock time. The profiler adds time to every op (compare the two wall-clock rows); page faults are counted "
             "without it. The sizes of the two tables above.", "",
             f"Machine: {describe(report)}", "",
             "| | training step (64 x 128 tokens) | sampling (64 x 512 events) |", "|---|---|---|"]
    train, samp = report["training"], report["sampling"]
    for key, label in rows.items():
        lines.append(f"| {label} | {train['kinds'][key]:.0f} | {samp['kinds'][key]:.0f} |")
    lines.append(f"| wall-clock time per call, under the profiler | {train['profiled_wall_ms']:.0f} | "
                 f"{samp['profiled_wall_ms']:.0f} |")
    lines.append(f"| wall-clock time per call, without it | {train['wall_ms']:.0f} | {samp['wall_ms']:.0f} |")
    lines.append(f"| minor page faults per call | {train['faults']:,.0f} | {samp['faults']:,.0f} |")
    lines += ["", "The largest ops (ms per call, calls per call):", ""]
    for name, part in (("training", train), ("sampling", samp)):
        ops = "; ".join(f"`{t['op']}` {t['ms']:.1f} ({t['per_call']:.0f}x)" for t in part["top"])
        lines.append(f"- {name}: {ops}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=4, help="profiled calls of each program")
    parser.add_argument("--quick", action="store_true", help="2 calls each")
    parser.add_argument("--threads", type=int, default=2, help="threads (0: leave as is); as lstm_train.py")
    parser.add_argument("--no-write", action="store_true", help="print, leave README.md alone")
    args = parser.parse_args(argv)
    settings = lstm_train.setup_threads(args.threads, "passive")
    calls = 2 if args.quick else args.calls
    load_start = lstm_train.load_average()
    report = {"machine": machine_info(settings), "load_start": load_start,
              "training": profile_training(calls), "sampling": profile_sampling(calls)}
    report["load_end"] = lstm_train.load_average()
    text = markdown(report)
    print(text)
    if not args.no_write:
        lstm_train.write_section(text, HEADING)
    return 0


if __name__ == "__main__":
    sys.exit(main())
