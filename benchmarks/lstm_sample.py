"""Sampling speed of labkit's melody LSTM against PyTorch's usual per-step sampling loop.

64 melodies x 512 events from the same untrained model sizes as the training benchmark
(vocab 90, embedding 64, 2 x 256 LSTM), primed with one middle C:

* ``labkit``: :func:`labkit.sample.sample` (primer, then one jitted ``lax.scan`` over the 512
  steps: ``model.step_function()`` + inverse-CDF draws, :func:`labkit.models.kernels.inverse_cdf_draw`),
  including the copy of the tokens to numpy.
* ``labkit-plain`` (``--plain``): the same with ``make_model(..., use_kernels=False)``: the plain
  ``model.step`` and ``jax.random.categorical`` draws, to measure what the kernels gain.
* ``labkit+icdf``: the prototype that labkit adopted (inverse-CDF draws, one-``tanh`` gates),
  without labkit's precomputed first-layer table; kept as the base of the bfloat16 variant.
* ``torch``: what most tutorials write: ``nn.LSTM`` called one step at a time with the carried
  ``(h, c)``, ``softmax`` + ``torch.multinomial``, under ``torch.inference_mode()``.

Variants alternate in one process; each round also times the float32 matrix-multiply peak.
FLOPs per token: one forward step (see lstm_train.py). Threads and the device as in lstm_train.py.

    python benchmarks/lstm_sample.py            # about 1-2 minutes on 2 cores; writes README.md
    python benchmarks/lstm_sample.py --quick

Notebook: 06_sampling.ipynb
"""
from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lstm_train as common  # noqa: E402  (helpers; imports neither jax nor torch at import time)

HEADING = "## LSTM sampling speed"
NUM_SAMPLES, LENGTH = 64, 512


# --- the prototype ----------------------------------------------------------------------------------

def draw_icdf(key, logits):
    """One token per row of ``logits [N, V]`` (``-inf`` allowed) by inverse-CDF sampling: int32 ``[N]``.

    Draws ``u ~ U[0, 1)`` once per row and returns the first token whose cumulative
    probability exceeds ``u`` (tokens of probability 0 are never returned).
    """
    import jax
    import jax.numpy as jnp

    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    cdf = jnp.cumsum(probs, axis=-1)
    u = jax.random.uniform(key, logits.shape[:-1] + (1,), cdf.dtype) * cdf[..., -1:]
    return jnp.minimum(jnp.sum(cdf <= u, axis=-1), logits.shape[-1] - 1).astype(jnp.int32)


def fast_step(model, carry, token, matmul_dtype=None):
    """``MelodyLSTM.step`` with the gate activations of one ``tanh`` (``lstm_train._lstm_gates``);
    ``matmul_dtype=jnp.bfloat16``: bfloat16 matrix products with float32 accumulation and state."""
    import jax.numpy as jnp

    mm = common._matmul
    x = model.embed(token)
    new_carry = []
    for layer, cell in enumerate(model.cells):
        c, h = carry[layer]
        gates = common._lstm_gates(mm(x, cell.dense_i.kernel[...], matmul_dtype)
                                   + mm(h, cell.dense_h.kernel[...], matmul_dtype) + cell.dense_h.bias[...])
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        c = f * c + i * g
        x = o * jnp.tanh(c)
        new_carry.append((c, x))
    return tuple(new_carry), mm(x, model.head.kernel[...], matmul_dtype) + model.head.bias[...]


def _make_sample_icdf():
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from labkit.sample import filter_logits

    @partial(jax.jit, static_argnames=("graphdef", "length", "matmul_dtype"))
    def sample_icdf(graphdef, state, primer, key, temperature, *, length, matmul_dtype=None):
        model = nnx.merge(graphdef, state)
        if matmul_dtype is not None:   # cast the matrices (and the embedding table) once, outside the loop
            model = nnx.merge(graphdef, jax.tree_util.tree_map(
                lambda a: a.astype(matmul_dtype) if a.ndim == 2 else a, state))
        carry, logits = model.run(model.init_carry(primer.shape[0]), primer)

        def body(loop, step_key):
            carry, logits = loop
            token = draw_icdf(step_key, filter_logits(logits, temperature))
            carry, logits = fast_step(model, carry, token, matmul_dtype)
            return (carry, logits), token

        _, tokens = jax.lax.scan(body, (carry, logits[:, -1]), jax.random.split(key, length))
        return jnp.concatenate([primer, tokens.T], axis=1)

    return sample_icdf


def check_icdf(seed: int = 0, draws: int = 200_000) -> dict:
    """Chi-square test of labkit's draws (:func:`labkit.sample.draw_token` with its default kernel, the
    adopted form of :func:`draw_icdf`) against the softmax, plain and after top-k filtering."""
    import jax
    import numpy as np

    from labkit.sample import draw_token, filter_logits

    try:
        from scipy import stats as sps
    except ImportError:  # scipy is not a bench dependency: report the statistic alone
        sps = None

    out = {}
    logits = 2.0 * jax.random.normal(jax.random.key(seed), (common.VOCAB,))
    for name, row in (("plain", logits), ("top_k=10", filter_logits(logits, 1.0, 10))):
        tokens = np.asarray(draw_token(jax.random.key(seed + 1), jax.numpy.broadcast_to(row, (draws, common.VOCAB))))
        probs = np.asarray(jax.nn.softmax(row))
        counts = np.bincount(tokens, minlength=common.VOCAB)
        support = probs > 0
        expected = probs[support] * draws
        observed = counts[support]
        chi2 = float(((observed - expected) ** 2 / expected).sum())
        dof = int(support.sum() - 1)
        out[name] = {"chi2": chi2, "dof": dof, "outside_support": int(counts[~support].sum()),
                     "p_value": float(sps.chi2.sf(chi2, dof)) if sps is not None else None}
    return out


# --- the samplers -----------------------------------------------------------------------------------

class LabkitSampler:
    def __init__(self, seed: int, prototype: bool = False, matmul_dtype=None, plain: bool = False):
        import jax
        import numpy as np
        from flax import nnx

        from labkit import sample as S
        from labkit.models import ModelConfig, make_model

        self.S, self.jax, self.np = S, jax, np
        self.model = make_model(ModelConfig(vocab_size=common.VOCAB, embed_dim=common.EMBED,
                                            hidden_size=common.HIDDEN, num_layers=common.LAYERS,
                                            dropout=common.DROPOUT), seed, use_kernels=not plain)
        self.primer = S.default_primer()
        self.prototype = prototype
        self.matmul_dtype = matmul_dtype
        if prototype:
            self.fn = _make_sample_icdf()
            self.graphdef, self.state = nnx.split(self.model)
            self.primer_batch = np.broadcast_to(self.primer, (NUM_SAMPLES, self.primer.shape[0])).copy()
        self.round = 0

    def sample(self):
        key = self.jax.random.key(self.round)
        self.round += 1
        if self.prototype:
            return self.np.asarray(self.fn(self.graphdef, self.state, self.primer_batch, key,
                                           self.np.float32(1.0), length=LENGTH, matmul_dtype=self.matmul_dtype))
        config = self.S.SampleConfig(num_samples=NUM_SAMPLES, length=LENGTH)
        return self.S.sample(self.model, config, self.primer, key=key)


class TorchSampler:
    """The per-step loop of most tutorials: carried (h, c), softmax, multinomial, inference mode."""

    def __init__(self, primer_token: int, device):
        import torch

        self.torch = torch
        self.device = device
        self.model = common.make_torch_model(device).eval()
        self.primer_token = int(primer_token)
        self.generator = torch.Generator(device=device).manual_seed(0)

    def sample(self):
        torch = self.torch
        with torch.inference_mode():
            tokens = torch.full((NUM_SAMPLES, 1), self.primer_token, dtype=torch.long, device=self.device)
            logits, state = self.model(tokens)
            out = [tokens]
            for _ in range(LENGTH):
                probs = torch.softmax(logits[:, -1], dim=-1)
                token = torch.multinomial(probs, 1, generator=self.generator)
                out.append(token)
                logits, state = self.model(token, state)
            return torch.cat(out, dim=1).cpu().numpy()


# --- the run ----------------------------------------------------------------------------------------

def run(args) -> dict:
    settings = common.setup_threads(args.threads, args.omp_wait_policy)
    import jax
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    info = common.machine_info(settings)
    load_start = common.load_average()
    device = common.torch_device()
    tokens_per_call = NUM_SAMPLES * LENGTH
    flops_per_token = common.forward_flops_per_token()
    print(f"devices: jax {jax.default_backend()}, torch {device}; load average {load_start:.1f}", flush=True)

    runners = {"labkit": LabkitSampler(args.seed)}
    if args.plain:
        runners["labkit-plain"] = LabkitSampler(args.seed, plain=True)
    if not args.no_prototype:
        import jax.numpy as jnp

        runners["labkit+icdf"] = LabkitSampler(args.seed, prototype=True)
        if not args.no_bf16:
            runners["labkit+icdf+bf16"] = LabkitSampler(args.seed, prototype=True, matmul_dtype=jnp.bfloat16)
    runners["torch"] = TorchSampler(runners["labkit"].primer[0], device)
    syncs = {name: (device if name == "torch" else None) for name in runners}
    compile_s = {}
    for name, runner in runners.items():
        wall, _, tokens = common.timed(runner.sample, syncs[name])
        assert tokens.shape == (NUM_SAMPLES, LENGTH + 1), (name, tokens.shape)
        compile_s[name] = wall
        runner.sample()
        print(f"  {name}: first call {wall:.1f} s (compilation included)", flush=True)
    meter = common.PeakMeter(args.matmul_size)

    names = list(runners)
    samples = {name: {"wall": [], "cpu": []} for name in names}
    for r in range(args.rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            wall, cpu, _ = common.timed(runners[name].sample, syncs[name])
            samples[name]["wall"].append(wall)
            samples[name]["cpu"].append(cpu)
        meter.measure()
        line = ", ".join(f"{n} {tokens_per_call / samples[n]['wall'][-1]:,.0f}" for n in names)
        print(f"  round {r + 1}/{args.rounds}: tokens/s {line}", flush=True)
    load_end = common.load_average()

    peak = meter.summary()
    results = {}
    for name in names:
        wall, cpu = samples[name]["wall"], samples[name]["cpu"]
        tps = common.spread([tokens_per_call / w for w in wall])
        results[name] = {"tokens_per_s": tps,
                         "tokens_per_cpu_s": common.spread([tokens_per_call / c for c in cpu]),
                         "gflops": tps["median"] * flops_per_token / 1e9,
                         "percent_of_peak": 100 * tps["median"] * flops_per_token / 1e9 / peak["peak_gflops"],
                         "first_call_s": compile_s[name]}
        if name != "torch":
            results[name]["ratio_vs_torch"] = common.spread(
                [t / w for t, w in zip(samples["torch"]["wall"], wall)])
            results[name]["cpu_ratio_vs_torch"] = common.spread(
                [t / c for t, c in zip(samples["torch"]["cpu"], cpu)])
    for name in ("labkit-plain", "labkit+icdf", "labkit+icdf+bf16"):
        if name in results:
            results[name]["speedup_vs_labkit"] = common.spread(
                [a / b for a, b in zip(samples["labkit"]["wall"], samples[name]["wall"])])
            results[name]["cpu_speedup_vs_labkit"] = common.spread(
                [a / b for a, b in zip(samples["labkit"]["cpu"], samples[name]["cpu"])])
    if "labkit+icdf" in results:
        results["labkit+icdf"]["distribution_check"] = check_icdf(args.seed)
    return {"benchmark": "lstm_sample", "machine": info, "load_start": load_start, "load_end": load_end,
            "rounds": args.rounds, "tokens_per_call": tokens_per_call, "flops_per_token": flops_per_token,
            "peak": peak, "results": results, "matmul": f"{args.matmul_size}^3",
            "command": "python benchmarks/lstm_sample.py" + (" --quick" if args.quick else "")}


WHAT = ("64 melodies x 512 events after a one-token primer (vocab 90, embedding 64, 2 x 256 LSTM), "
        "alternately in one process. *labkit*: `labkit.sample.sample` (one jitted `lax.scan` of "
        "`model.step_function()`, whose first layer looks its input products up in a table computed once, and "
        "inverse-CDF draws, `labkit.models.kernels.inverse_cdf_draw`); *labkit-plain* (`--plain`): the same without "
        "the kernels (`use_kernels=False`: `model.step`, `jax.random.categorical`). *labkit+icdf*: the benchmark's prototype of the draws and one-tanh gates "
        "(benchmarks/lstm_sample.py), without the table; *labkit+icdf+bf16*: the same with bfloat16 matrix products "
        "(float32 accumulation and state; an opt-in for CPUs with AMX/AVX512-BF16 and GPUs). *torch*: `nn.LSTM` "
        "stepped from Python with the carried `(h, c)`, `softmax` + `torch.multinomial`, `torch.inference_mode()`. "
        "Tokens counted: the 32,768 generated.")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 8; --quick: 3)")
    parser.add_argument("--quick", action="store_true", help="3 rounds")
    parser.add_argument("--threads", type=int, default=2, help="threads for both frameworks (0: leave as is)")
    parser.add_argument("--omp-wait-policy", choices=["passive", "active", "default"], default="passive")
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--plain", action="store_true",
                        help="also time labkit-plain: the sampler without its kernels (use_kernels=False)")
    parser.add_argument("--no-prototype", action="store_true", help="skip the labkit+icdf variant")
    parser.add_argument("--no-bf16", action="store_true", help="skip the labkit+icdf+bf16 variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave README.md alone")
    parser.add_argument("--from-json", type=Path,
                        help="run nothing: write the section of a report saved with --json (e.g. on a GPU machine)")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 3 if args.quick else 8
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.from_json:
        report = json.loads(args.from_json.read_text())
    else:
        report = run(args)
        report["command"] = common.command_line("benchmarks/lstm_sample.py", argv)
    heading = common.section_heading(report, HEADING)
    text = common.markdown(report, heading, WHAT)
    lines = []
    for name in ("labkit-plain", "labkit+icdf", "labkit+icdf+bf16"):
        proto = report["results"].get(name)
        if proto:
            lines.append(f"{name} against labkit (per round): wall {common.fmt_spread(proto['speedup_vs_labkit'], 2)}x, "
                         f"CPU time {common.fmt_spread(proto['cpu_speedup_vs_labkit'], 2)}x.")
    proto = report["results"].get("labkit+icdf")
    if proto:
        check = ", ".join(
            (f"{k}: p = {v['p_value']:.2f}" if v["p_value"] is not None else f"{k}: chi2 {v['chi2']:.0f} on {v['dof']} dof")
            + f", {v['outside_support']} draws outside the support" for k, v in proto["distribution_check"].items())
        lines.append(f"Chi-square test of labkit's draws (`draw_token`, 200,000 draws from one softmax): {check}.")
    if lines:
        text += "\n" + "\n".join(lines) + "\n"
    print()
    print(text)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if not args.no_write:
        common.write_section(text, heading)
        print(f"written to {common.README.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
