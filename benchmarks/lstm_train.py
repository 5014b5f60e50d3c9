"""Training speed of labkit's melody LSTM against PyTorch's ``nn.LSTM``, same sizes, same step.

What is timed, per step (one optimizer step on one batch):

* ``labkit``: the real training step of :func:`labkit.fit`: ``labkit.train``'s jitted
  ``train_step`` (built by ``labkit.train._compiled_train_step`` exactly as ``fit`` builds it,
  or, if that private helper is gone, ``jax.jit`` of the public ``labkit.train.train_step``),
  called as ``fit`` calls it: a numpy batch from ``prepare_batch``, dropout key, step, learning
  rate; clipping + AdamW (``make_optimizer``), masked cross-entropy, dropout 0.2.
* ``labkit-plain`` (``--plain``): the same step with ``make_model(..., use_kernels=False)``: the plain
  code of ``labkit.models.melody`` (``OptimizedLSTMCell`` in a ``lax.scan``, autodiff, ``bernoulli``
  dropout), to measure what the kernels of ``labkit.models.kernels`` (the default) gain.
* ``labkit+vjp``: the same step and call path, with ``labkit.models.kernels.lstm_layer`` replaced
  by :func:`lstm_layer_scan_vjp` below: an earlier form of the hand-written backward pass (weight
  gradients in one matrix product after the time loop, the four gate activations with one
  ``tanh``, the gates saved by the forward and differentiated in the backward loop). labkit's
  layer saves each gate's derivative in the forward pass instead, and overwrites them with the
  gate gradients (one ``[T, B, 4H]`` buffer instead of two).
* ``torch``: ``nn.Embedding`` -> ``nn.LSTM(64, 256, num_layers=2, dropout=0.2)`` -> dropout ->
  ``nn.Linear``, masked ``cross_entropy``, ``clip_grad_norm_(1.0)``, ``AdamW`` (weight decay on
  matrices only, as labkit), the batch copied from numpy every step (as ``fit`` does).

Sizes: vocab 90, embedding 64, 2 layers x 256 units, batch 64 x 128 steps (8,192 token
positions a step). The variants run alternately in one process (round r: A, B, C; round r+1:
C, B, A), and each round also times a float32 matrix product (2048^3; jitted JAX, numpy and
torch) so that "% of peak" compares with the peak measured under the same load. Reported:
median tokens/s with its range, tokens per CPU-second (process CPU time, much less sensitive
to other users of the machine than wall time), and the ratio to torch (median over rounds of
the per-round ratio: both steps of a round see nearly the same load).

FLOPs per token (multiply-add = 2): forward per layer ``2 * 4H * (in + H)``, logits ``2 * H * V``,
embedding 0; a training step is counted as 3 x forward (forward, and backward's two products).

Threads: ``--threads N`` (default 2) calls ``torch.set_num_threads(N)``, sets ``OMP_NUM_THREADS``
and, where the machine has more CPUs, restricts the process to ``N`` CPUs before JAX starts
(XLA sizes its CPU thread pool from the CPUs the process may use; JAX has no other knob).
``OMP_WAIT_POLICY`` is set to PASSIVE unless you set it: on a shared machine, OpenMP threads
that spin at barriers lose their time slices and PyTorch's step becomes 5-20x slower
(``--omp-wait-policy default`` keeps OpenMP's own choice).

The device is chosen by itself: JAX's default backend, and CUDA for torch if available.

    python benchmarks/lstm_train.py            # about 2-3 minutes on 2 cores; writes README.md
    python benchmarks/lstm_train.py --quick    # fewer rounds
    python benchmarks/lstm_train.py --check    # also compare gradients of labkit and labkit+vjp

Notebook: 05_training.ipynb
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import statistics
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "benchmarks" / "README.md"
HEADING = "## LSTM training speed"

VOCAB, EMBED, HIDDEN, LAYERS, DROPOUT = 90, 64, 256, 2, 0.2
BATCH, STEPS = 64, 128
LEARNING_RATE, GRAD_CLIP, WEIGHT_DECAY = 2e-3, 1.0, 1e-4


# --- process setup (before jax or torch is imported) ----------------------------------------------

def setup_threads(threads: int, omp_wait_policy: str) -> dict:
    """Set thread counts and OpenMP's wait policy; must run before jax and torch are imported.

    Returns what was set, for the report.
    """
    if "jax" in sys.modules or "torch" in sys.modules:
        raise RuntimeError("setup_threads must run before jax and torch are imported")
    done = {}
    if omp_wait_policy != "default":
        os.environ.setdefault("OMP_WAIT_POLICY", omp_wait_policy.upper())
    done["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY", "(OpenMP default)")
    if threads > 0:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        if hasattr(os, "sched_getaffinity"):
            cpus = sorted(os.sched_getaffinity(0))
            if len(cpus) > threads:
                os.sched_setaffinity(0, cpus[:threads])
    done["cpus_usable"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    done["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "")
    return done


def torch_device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def torch_sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- machine and statistics -------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def package_versions(names=("jax", "jaxlib", "flax", "optax", "torch", "numpy")) -> dict:
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine_info(settings: dict) -> dict:
    import jax

    dev = torch_device()
    torch_dev = "cpu"
    if dev.type == "cuda":
        import torch

        torch_dev = f"cuda ({torch.cuda.get_device_name(dev)})"
    jdev = jax.devices()[0]
    return {"nproc": os.cpu_count(), "cpu": cpu_model(), "jax_backend": jax.default_backend(),
            "jax_device": getattr(jdev, "device_kind", str(jdev)), "torch_device": torch_dev,
            "torch_threads": __import__("torch").get_num_threads(), **settings,
            "versions": package_versions()}


def describe_machine(info: dict, load_start: float, load_end: float) -> str:
    v = info["versions"]
    return (f"{info['nproc']} CPUs ({info['cpu']}), {info['cpus_usable']} used; JAX backend "
            f"{info['jax_backend']} ({info['jax_device']}), torch on {info['torch_device']} with "
            f"{info['torch_threads']} threads; OMP_WAIT_POLICY={info['OMP_WAIT_POLICY']}, "
            f"XLA_FLAGS={info['XLA_FLAGS'] or '(none)'}; Python {v['python']}, jax {v['jax']}, "
            f"flax {v['flax']}, optax {v['optax']}, torch {v['torch']}, numpy {v['numpy']}; "
            f"load average {load_start:.1f} at the start, {load_end:.1f} at the end")


def spread(values) -> dict:
    """Median, quartiles and range of a list of numbers."""
    values = sorted(values)
    q = statistics.quantiles(values, n=4) if len(values) >= 2 else [values[0]] * 3
    return {"median": statistics.median(values), "q1": q[0], "q3": q[2], "min": values[0], "max": values[-1],
            "n": len(values)}


def timed(fn, device=None):
    """Run ``fn()``; return ``(wall seconds, process CPU seconds, result)``."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    if device is not None:
        torch_sync(device)
    return time.perf_counter() - start, time.process_time() - cpu, out


# --- FLOPs and the matrix-multiply peak -----------------------------------------------------------

def forward_flops_per_token(vocab=VOCAB, embed=EMBED, hidden=HIDDEN, layers=LAYERS) -> int:
    """Multiply-adds x 2 of one token through the model: the LSTM layers and the logits."""
    sizes = [embed] + [hidden] * layers
    lstm = sum(2 * 4 * hidden * (sizes[i] + hidden) for i in range(layers))
    return lstm + 2 * hidden * vocab


class PeakMeter:
    """Times an ``n x n x n`` float32 matrix product with jitted JAX, numpy (CPU only) and torch."""

    def __init__(self, n: int = 2048):
        import jax
        import jax.numpy as jnp
        import numpy as np
        import torch

        self.n = n
        self.flops = 2 * n ** 3
        rng = np.random.default_rng(0)
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        self.np_ab = (a, b)
        self.jax_ab = (jnp.asarray(a), jnp.asarray(b))
        self.jax_mm = jax.jit(lambda x, y: x @ y)
        self.device = torch_device()
        self.torch_ab = (torch.from_numpy(a).to(self.device), torch.from_numpy(b).to(self.device))
        self.on_cpu = jax.default_backend() == "cpu"
        self.samples = {"jax": [], "torch": []}
        if self.on_cpu:
            self.samples["numpy"] = []
        self.measure()  # compile and warm up
        self.samples = {k: [] for k in self.samples}

    def measure(self) -> None:
        import numpy as np

        wall, _, _ = timed(lambda: self.jax_mm(*self.jax_ab).block_until_ready())
        self.samples["jax"].append(self.flops / wall / 1e9)
        wall, _, _ = timed(lambda: self.torch_ab[0] @ self.torch_ab[1], self.device)
        self.samples["torch"].append(self.flops / wall / 1e9)
        if self.on_cpu:
            wall, _, _ = timed(lambda: np.matmul(*self.np_ab))
            self.samples["numpy"].append(self.flops / wall / 1e9)

    def summary(self) -> dict:
        out = {name: spread(values) for name, values in self.samples.items() if values}
        out["peak_gflops"] = max(s["median"] for s in out.values())
        return out


# --- the prototype: an LSTM layer with the weight gradients outside the time loop -----------------

def lstm_layer_scan_vjp(cell, carry, x, matmul_dtype=None):
    """Drop-in for ``labkit.models.kernels.lstm_layer``: the same layer, another backward pass.

    ``cell`` is an ``nnx.OptimizedLSTMCell``, ``carry`` its ``(c, h)`` (``[B, H]`` each), ``x`` the
    time-major input ``[T, B, D]``; returns ``((c, h), outputs [T, B, H])`` as ``lax.scan`` does.
    ``matmul_dtype=jnp.bfloat16`` runs the matrix products in bfloat16 with float32 accumulation
    (the cell state, gates and gradients stay float32): an option for CPUs with AMX/AVX512-BF16
    and for GPUs, not the default.
    """
    return _lstm_layer(matmul_dtype)(cell.dense_i.kernel[...], cell.dense_h.kernel[...], cell.dense_h.bias[...],
                                     carry, x)


def _matmul(a, b, dtype):
    """``a @ b``; with ``dtype`` (e.g. bfloat16) the operands are cast and the product accumulated in float32."""
    import jax.numpy as jnp

    if dtype is None:
        return a @ b
    return jnp.dot(a.astype(dtype), b.astype(dtype), preferred_element_type=jnp.float32)


def _lstm_gates(y):
    """Activations of the gate pre-activations ``y [..., 4H]`` (order i, f, g, o) with one tanh:
    ``sigmoid(z) = (1 + tanh(z / 2)) / 2`` for i, f, o and ``tanh(z)`` for g."""
    import jax.numpy as jnp

    hidden = y.shape[-1] // 4
    scale = jnp.repeat(jnp.asarray([0.5, 0.5, 1.0, 0.5], y.dtype), hidden)
    shift = jnp.repeat(jnp.asarray([0.5, 0.5, 0.0, 0.5], y.dtype), hidden)
    return scale * jnp.tanh(scale * y) + shift


def _lstm_forward(w_i, w_h, b, carry, x, dtype):
    import jax
    import jax.numpy as jnp

    if dtype is not None:
        w_i, w_h = w_i.astype(dtype), w_h.astype(dtype)   # cast once, outside the loop

    def body(state, x_t):
        c, h = state
        gates = _lstm_gates(_matmul(x_t, w_i, dtype) + _matmul(h, w_h, dtype) + b)
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        c = f * c + i * g
        h = o * jnp.tanh(c)
        return (c, h), (h, c, gates)

    return jax.lax.scan(body, carry, x)


def _make_lstm_layer(dtype):
    import jax
    import jax.numpy as jnp

    @jax.custom_vjp
    def layer(w_i, w_h, b, carry, x):
        carry, (hs, _, _) = _lstm_forward(w_i, w_h, b, carry, x, dtype)
        return carry, hs

    def forward(w_i, w_h, b, carry, x):
        new_carry, (hs, cs, gates) = _lstm_forward(w_i, w_h, b, carry, x, dtype)
        return (new_carry, hs), (w_i, w_h, carry, x, hs, cs, gates)

    def backward(residuals, cotangents):
        w_i, w_h, (c0, h0), x, hs, cs, gates = residuals
        (dc_last, dh_last), dhs = cotangents
        c_prev = jnp.concatenate([c0[None], cs[:-1]])
        w_h_t = w_h.T if dtype is None else w_h.T.astype(dtype)

        def body(state, inputs):               # only what the recurrence needs stays in the loop
            dc, dh = state
            dh_t, c, c_before, gate = inputs
            i, f, g, o = jnp.split(gate, 4, axis=-1)
            dh = dh + dh_t
            tanh_c = jnp.tanh(c)
            dc = dc + dh * o * (1 - tanh_c * tanh_c)
            dy = jnp.concatenate([dc * g * i * (1 - i), dc * c_before * f * (1 - f),
                                  dc * i * (1 - g * g), dh * tanh_c * o * (1 - o)], axis=-1)
            return (dc * f, _matmul(dy, w_h_t, dtype)), dy

        (dc0, dh0), dy = jax.lax.scan(body, (dc_last, dh_last), (dhs, cs, c_prev, gates), reverse=True)
        h_prev = jnp.concatenate([h0[None], hs[:-1]])
        dy2 = dy.reshape(-1, dy.shape[-1])                       # [T*B, 4H]: one product per gradient
        dw_h = _matmul(h_prev.reshape(-1, h_prev.shape[-1]).T, dy2, dtype)
        dw_i = _matmul(x.reshape(-1, x.shape[-1]).T, dy2, dtype)
        dx = _matmul(dy2, w_i.T, dtype).reshape(x.shape).astype(x.dtype)
        return dw_i, dw_h, dy2.sum(axis=0), (dc0, dh0), dx

    layer.defvjp(forward, backward)
    return layer


_LAYERS = {}


def _lstm_layer(dtype):
    if dtype not in _LAYERS:
        _LAYERS[dtype] = _make_lstm_layer(dtype)
    return _LAYERS[dtype]


@contextlib.contextmanager
def patched_layer(matmul_dtype=None):
    """Within this block, labkit's LSTM layers run through :func:`lstm_layer_scan_vjp`."""
    from labkit.models import kernels

    original = kernels.lstm_layer
    kernels.lstm_layer = lambda cell, carry, x: lstm_layer_scan_vjp(cell, carry, x, matmul_dtype)
    try:
        yield
    finally:
        kernels.lstm_layer = original


# --- the batch ------------------------------------------------------------------------------------

def make_batch(seed: int = 0) -> dict:
    """Random tokens ``[B, T+1]`` and a mask whose rows end at random lengths (like padded melodies)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, VOCAB, (BATCH, STEPS + 1), dtype=np.int32)
    lengths = rng.integers((STEPS + 1) // 2, STEPS + 2, BATCH)
    mask = (np.arange(STEPS + 1)[None, :] < lengths[:, None]).astype(np.float32)
    return {"tokens": tokens, "mask": mask}


# --- the steps ------------------------------------------------------------------------------------

class LabkitTrainer:
    """labkit's training step, built and called as ``labkit.train.fit`` builds and calls it."""

    def __init__(self, batch: dict, seed: int = 0, patched: bool = False, matmul_dtype=None, plain: bool = False):
        import jax
        import numpy as np
        from flax import nnx
        from jax.sharding import NamedSharding, PartitionSpec

        from labkit import train as T
        from labkit.models import ModelConfig, make_model

        self.patched = patched
        self.matmul_dtype = matmul_dtype
        root = jax.random.key(seed)
        config = ModelConfig(vocab_size=VOCAB, embed_dim=EMBED, hidden_size=HIDDEN, num_layers=LAYERS,
                             dropout=DROPOUT)
        model = make_model(config, jax.random.fold_in(root, 0), use_kernels=not plain)
        self.dropout_root = jax.random.fold_in(root, 1)
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        tcfg = T.TrainConfig(seed=seed, batch_size=BATCH, seq_len=STEPS, grad_clip=GRAD_CLIP,
                             weight_decay=WEIGHT_DECAY, learning_rate=LEARNING_RATE)
        tx = T.make_optimizer(tcfg)
        opt_state = tx.init(params)
        mesh = T.data_mesh()
        factory = getattr(T, "_compiled_train_step", None)
        if factory is not None:
            # A fresh jit for the patched variant, so it never shares a trace with the real one.
            build = getattr(factory, "__wrapped__", factory) if patched else factory
            self.fn = build(graphdef, tx, mesh)
            self.call_path = "labkit.train._compiled_train_step (as fit)"
        else:
            def train_fn(rest, params, opt_state, batch, dropout_root, step, learning_rate):
                key = jax.random.fold_in(dropout_root, step)
                return T.train_step(graphdef, rest, tx, params, opt_state, batch, key, learning_rate)

            self.fn = jax.jit(train_fn)
            self.call_path = "jax.jit(labkit.train.train_step)"
        replicated = NamedSharding(mesh, PartitionSpec())
        self.params, self.opt_state, self.rest = jax.device_put((params, opt_state, rest), replicated)
        self.batch = T.prepare_batch(batch, vocab_size=VOCAB, num_devices=mesh.size,
                                     pad_time_to=tcfg.pad_time_to)
        self.step_index = 0
        self.lr = np.float32(LEARNING_RATE)
        self.first_stats = None

    def step(self):
        import jax
        import numpy as np

        context = patched_layer(self.matmul_dtype) if self.patched else contextlib.nullcontext()
        with context:
            self.params, self.opt_state, stats = self.fn(self.rest, self.params, self.opt_state, self.batch,
                                                         self.dropout_root, np.int32(self.step_index), self.lr)
            jax.block_until_ready((self.params, self.opt_state))
        if self.first_stats is None:
            self.first_stats = {k: float(v) for k, v in stats.items()}
        self.step_index += 1
        return stats


def make_torch_model(device):
    import torch
    from torch import nn

    class TorchMelodyLSTM(nn.Module):
        """Embedding -> nn.LSTM -> dropout -> linear: labkit's MelodyLSTM in PyTorch."""

        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(VOCAB, EMBED)
            self.lstm = nn.LSTM(EMBED, HIDDEN, LAYERS, batch_first=True, dropout=DROPOUT if LAYERS > 1 else 0.0)
            self.drop = nn.Dropout(DROPOUT)
            self.head = nn.Linear(HIDDEN, VOCAB)

        def forward(self, tokens, state=None):
            out, state = self.lstm(self.embed(tokens), state)
            return self.head(self.drop(out)), state

    torch.manual_seed(0)
    return TorchMelodyLSTM().to(device)


class TorchTrainer:
    """The same step in PyTorch: masked cross-entropy, gradient clipping, AdamW."""

    def __init__(self, batch: dict, device):
        import torch

        self.device = device
        self.model = make_torch_model(device).train()
        decay = [p for p in self.model.parameters() if p.ndim >= 2]
        no_decay = [p for p in self.model.parameters() if p.ndim < 2]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                                      {"params": no_decay, "weight_decay": 0.0}], lr=LEARNING_RATE)
        self.batch = batch

    def step(self):
        import torch
        import torch.nn.functional as F

        tokens = torch.from_numpy(self.batch["tokens"]).to(self.device).long()
        mask = torch.from_numpy(self.batch["mask"]).to(self.device)
        self.opt.zero_grad(set_to_none=True)
        logits, _ = self.model(tokens[:, :-1])
        nll = F.cross_entropy(logits.reshape(-1, VOCAB), tokens[:, 1:].reshape(-1), reduction="none")
        weights = mask[:, 1:].reshape(-1)
        loss = (nll * weights).sum() / weights.sum().clamp_min(1.0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), GRAD_CLIP)
        self.opt.step()
        return loss


# --- the gradient check of the prototype ----------------------------------------------------------

def check_gradients(seed: int = 0) -> float:
    """Largest relative difference between the gradients (parameters and initial carry) of
    labkit's layer and :func:`lstm_layer_scan_vjp`, on a small batch from a random carry."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from labkit import train as T
    from labkit.models import ModelConfig, make_model

    batch = make_batch(seed)
    tokens, mask = jnp.asarray(batch["tokens"][:8, :33]), jnp.asarray(batch["mask"][:8, :33])
    model = make_model(ModelConfig(vocab_size=VOCAB, embed_dim=EMBED, hidden_size=HIDDEN, num_layers=LAYERS,
                                   dropout=0.0), seed)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    carry = jax.tree_util.tree_map(lambda z: 0.5 * jax.random.normal(jax.random.key(3), z.shape),
                                   model.init_carry(8))

    def loss(p, carry):
        new_carry, logits = nnx.merge(graphdef, p, rest).run(carry, tokens[:, :-1])
        stats = T.token_stats(logits, tokens[:, 1:], mask[:, 1:])
        return stats["nll"] / stats["weight"] + sum(jnp.sum(x * x) for x in jax.tree_util.tree_leaves(new_carry))

    reference = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, carry)
    with patched_layer():
        patched = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, carry)
    errors = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-30)),
                                    patched, reference)
    return max(jax.tree_util.tree_leaves(errors))


# --- the run --------------------------------------------------------------------------------------

def run(args) -> dict:
    settings = setup_threads(args.threads, args.omp_wait_policy)
    import jax
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    info = machine_info(settings)
    load_start = load_average()
    device = torch_device()
    batch = make_batch(args.seed)
    tokens_per_step = BATCH * STEPS
    flops_per_token = 3 * forward_flops_per_token()

    print(f"devices: jax {jax.default_backend()}, torch {device}; load average {load_start:.1f}", flush=True)
    runners = {"labkit": LabkitTrainer(batch, args.seed)}
    if args.plain:
        runners["labkit-plain"] = LabkitTrainer(batch, args.seed, plain=True)
    if not args.no_prototype:
        import jax.numpy as jnp

        runners["labkit+vjp"] = LabkitTrainer(batch, args.seed, patched=True)
        if not args.no_bf16:
            runners["labkit+vjp+bf16"] = LabkitTrainer(batch, args.seed, patched=True, matmul_dtype=jnp.bfloat16)
    runners["torch"] = TorchTrainer(batch, device)
    syncs = {name: (device if name == "torch" else None) for name in runners}

    compile_s = {}
    for name, runner in runners.items():   # compile (and re-compile on committed inputs) and warm up
        wall, _, _ = timed(runner.step, syncs[name])
        compile_s[name] = wall
        for _ in range(2):
            runner.step()
            torch_sync(device)
        print(f"  {name}: first step {wall:.1f} s (compilation included)", flush=True)
    meter = PeakMeter(args.matmul_size)

    samples = {name: {"wall": [], "cpu": []} for name in runners}
    names = list(runners)
    for r in range(args.rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            wall, cpu, _ = timed(runners[name].step, syncs[name])
            samples[name]["wall"].append(wall)
            samples[name]["cpu"].append(cpu)
        meter.measure()
        line = ", ".join(f"{n} {tokens_per_step / samples[n]['wall'][-1]:,.0f}" for n in names)
        print(f"  round {r + 1}/{args.rounds}: tokens/s {line}", flush=True)
    load_end = load_average()

    peak = meter.summary()
    results = {}
    for name in names:
        wall, cpu = samples[name]["wall"], samples[name]["cpu"]
        tps = spread([tokens_per_step / w for w in wall])
        results[name] = {
            "tokens_per_s": tps,
            "tokens_per_cpu_s": spread([tokens_per_step / c for c in cpu]),
            "gflops": tps["median"] * flops_per_token / 1e9,
            "percent_of_peak": 100 * tps["median"] * flops_per_token / 1e9 / peak["peak_gflops"],
            "first_step_s": compile_s[name],
        }
        if name != "torch":
            ratios = [t / w for t, w in zip(samples["torch"]["wall"], wall)]
            results[name]["ratio_vs_torch"] = spread(ratios)
            cpu_ratios = [t / c for t, c in zip(samples["torch"]["cpu"], cpu)]
            results[name]["cpu_ratio_vs_torch"] = spread(cpu_ratios)
    for name in ("labkit-plain", "labkit+vjp", "labkit+vjp+bf16"):
        if name in runners:
            a, b = runners["labkit"].first_stats, runners[name].first_stats
            results[name]["first_step_agreement"] = {
                k: abs(a[k] - b[k]) / max(abs(a[k]), 1e-30) for k in ("grad_norm",) if k in a and k in b}
            results[name]["speedup_vs_labkit"] = spread(
                [w0 / w1 for w0, w1 in zip(samples["labkit"]["wall"], samples[name]["wall"])])
            results[name]["cpu_speedup_vs_labkit"] = spread(
                [c0 / c1 for c0, c1 in zip(samples["labkit"]["cpu"], samples[name]["cpu"])])
    if args.check and not args.no_prototype:
        results.setdefault("labkit+vjp", {})["gradient_check_max_rel_diff"] = check_gradients(args.seed)
    return {"benchmark": "lstm_train", "machine": info, "load_start": load_start, "load_end": load_end,
            "rounds": args.rounds, "tokens_per_step": tokens_per_step, "flops_per_token": flops_per_token,
            "call_path": runners["labkit"].call_path, "peak": peak, "results": results,
            "command": "python benchmarks/lstm_train.py" + (" --quick" if args.quick else "")}


def fmt_spread(s: dict, digits: int = 0) -> str:
    return f"{s['median']:,.{digits}f} ({s['min']:,.{digits}f} - {s['max']:,.{digits}f})"


def peak_line(peak: dict) -> str:
    parts = [f"{name} {fmt_spread(s, 1)}" for name, s in peak.items() if isinstance(s, dict)]
    return "; ".join(parts)


def markdown(report: dict, heading: str = HEADING, what: str = "") -> str:
    """The README section of a report from :func:`run` (also used by lstm_sample.py)."""
    info = report["machine"]
    peak = report["peak"]
    lines = [heading, "", what, "",
             f"Command: `{report['command']}` (or `make bench` / `python benchmarks/run.py`, which run every "
             "benchmark). Median over the rounds, range in parentheses.", "",
             f"Machine: {describe_machine(info, report['load_start'], report['load_end'])}.", "",
             f"Float32 matrix-multiply peak ({report.get('matmul', '2048^3')}, GFLOP/s, timed in every round): "
             f"{peak_line(peak)}; peak used: {peak['peak_gflops']:.1f} GFLOP/s. "
             f"FLOPs per token counted: {report['flops_per_token'] / 1e6:.2f} M.", "",
             "| variant | tokens/s | tokens per CPU-second | GFLOP/s | % of peak | speed vs torch (per round) "
             "| CPU-time ratio vs torch |",
             "|---|---|---|---|---|---|---|"]
    for name, r in report["results"].items():
        ratio = fmt_spread(r["ratio_vs_torch"], 2) + "x" if "ratio_vs_torch" in r else "1"
        cpu_ratio = f"{r['cpu_ratio_vs_torch']['median']:.2f}x" if "cpu_ratio_vs_torch" in r else "1"
        note = " (of the float32 peak)" if "bf16" in name else ""
        lines.append(f"| {name} | {fmt_spread(r['tokens_per_s'])} | {fmt_spread(r['tokens_per_cpu_s'])} "
                     f"| {r['gflops']:.1f} | {r['percent_of_peak']:.0f}%{note} | {ratio} | {cpu_ratio} |")
    lines.append("")
    return "\n".join(lines)


def section_heading(report: dict, heading: str) -> str:
    """``heading``, with the accelerator named where JAX ran on one (a GPU run gets its own section)."""
    info = report["machine"]
    if info["jax_backend"] == "cpu":
        return heading
    return f"{heading} on {info['jax_backend'].upper()} ({info['jax_device']})"


def command_line(script: str, argv) -> str:
    """The command that made a report, without the options that only say where output goes."""
    args, skip = [], False
    for arg in (sys.argv[1:] if argv is None else argv):
        if skip:
            skip = False
        elif arg in ("--json", "--from-json"):
            skip = True
        elif arg != "--no-write" and not arg.startswith(("--json=", "--from-json=")):
            args.append(arg)
    return " ".join(["python", script, *args])


def write_section(text: str, heading: str) -> None:
    """Put ``text`` (starting with ``heading``) into README.md, replacing an older version of that section."""
    old = README.read_text() if README.exists() else "# Benchmarks\n\nSpeed and quality benchmarks.\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    README.write_text(tidy_markdown(new))


def tidy_markdown(text: str) -> str:
    """One blank line before every ``## `` heading, one newline at the end."""
    text = re.sub(r"\n+(?=## )", "\n\n", text)
    return text.strip("\n") + "\n"


WHAT = ("One optimizer step on a batch of 64 x 128 tokens (vocab 90, embedding 64, 2 x 256 LSTM, dropout 0.2, "
        "masked cross-entropy, gradient clipping, AdamW), alternately in one process. *labkit*: labkit.train's "
        "jitted train step, called as `fit` calls it (with the kernels of `labkit.models.kernels`, the default). "
        "*labkit-plain* (`--plain`): the same step without the kernels (`use_kernels=False`). *labkit+vjp*: the "
        "same step with the LSTM layer of `lstm_layer_scan_vjp` (benchmarks/lstm_train.py), an earlier form of the "
        "hand-written backward pass (the forward saves the gates, the backward loop computes their derivatives "
        "and fills a second `[T, B, 4H]` buffer; labkit's layer saves the derivatives and writes the gate "
        "gradients over them); "
        "*labkit+vjp+bf16*: the same with bfloat16 matrix products (float32 accumulation, state and gradients), "
        "an opt-in for CPUs with AMX/AVX512-BF16 and GPUs, not comparable in precision with the others. *torch*: "
        "`nn.LSTM` with the same sizes and step. Speed vs torch is the median of each round's ratio.")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 12; --quick: 4)")
    parser.add_argument("--quick", action="store_true", help="4 rounds")
    parser.add_argument("--threads", type=int, default=2, help="threads for both frameworks (0: leave as is)")
    parser.add_argument("--omp-wait-policy", choices=["passive", "active", "default"], default="passive",
                        help="OpenMP wait policy for torch (used only if OMP_WAIT_POLICY is not set)")
    parser.add_argument("--matmul-size", type=int, default=2048, help="n of the n^3 peak matrix product")
    parser.add_argument("--plain", action="store_true",
                        help="also time labkit-plain: the model without its kernels (use_kernels=False)")
    parser.add_argument("--no-prototype", action="store_true", help="skip the labkit+vjp variant")
    parser.add_argument("--no-bf16", action="store_true", help="skip the labkit+vjp+bf16 variant")
    parser.add_argument("--check", action="store_true", help="also compare gradients of labkit and labkit+vjp")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave README.md alone")
    parser.add_argument("--from-json", type=Path,
                        help="run nothing: write the section of a report saved with --json (e.g. on a GPU machine)")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 4 if args.quick else 12
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.from_json:
        report = json.loads(args.from_json.read_text())
    else:
        report = run(args)
        report["matmul"] = f"{args.matmul_size}^3"
        report["command"] = command_line("benchmarks/lstm_train.py", argv)
    heading = section_heading(report, HEADING)
    text = markdown(report, heading, WHAT)
    extra = []
    for name in ("labkit-plain", "labkit+vjp", "labkit+vjp+bf16"):
        proto = report["results"].get(name, {})
        if "speedup_vs_labkit" in proto:
            agreement = ", ".join(f"{v:.1e}" for v in proto.get("first_step_agreement", {}).values())
            extra.append(f"{name} against labkit (per round): wall {fmt_spread(proto['speedup_vs_labkit'], 2)}x, "
                         f"CPU time {fmt_spread(proto['cpu_speedup_vs_labkit'], 2)}x; first-step gradient norm "
                         f"relative difference: {agreement}.")
    proto = report["results"].get("labkit+vjp", {})
    if "gradient_check_max_rel_diff" in proto:
        extra.append(f"Gradient check (`--check`): largest relative difference "
                     f"{proto['gradient_check_max_rel_diff']:.1e}.")
    if extra:
        text = text + "\n" + "\n".join(extra) + "\n"
    print()
    print(text)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if not args.no_write:
        write_section(text, heading)
        print(f"written to {README.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
