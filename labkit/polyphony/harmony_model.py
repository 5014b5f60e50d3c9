"""A small model that harmonizes a soprano in four parts: alto, tenor and bass given the whole melody (issue 17).

The model reads the chorale on the eighth-note grid of :mod:`labkit.polyphony.harmony` and factorizes the
three lower voices frame by frame, from left to right, and within a frame from the bottom up:

.. math::

    p(A, T, B \\mid S) = \\prod_t p(B_t \\mid h_t)\\, p(T_t \\mid h_t, B_t)\\, p(A_t \\mid h_t, B_t, T_t)

* a **bidirectional LSTM** reads the whole soprano (its pitch, whether a note begins, and the frame's position
  in the bar), so each frame knows where the melody comes from and where it goes (the cadence ahead);
* a **forward LSTM** reads, per frame, that reading and the alto, tenor and bass of the previous frame:
  its state ``h_t`` knows the harmony so far;
* three small **softmax heads** (one hidden layer each) give the bass from ``h_t``, the tenor from ``h_t`` and
  the bass just chosen, the alto from ``h_t``, bass and tenor: the joint distribution of the chord, not three
  independent guesses (as NADE orders the keys of a frame, Boulanger-Lewandowski et al. 2012). Each softmax
  runs over one vocabulary: a rest and the pitches :data:`HARMONY_LOW`..:data:`HARMONY_HIGH`.

This is the layout of DeepBach (Hadjeres, Pachet and Nielsen, ICML 2017: recurrent networks reading the
context on both sides of a frame) reduced to a left-to-right sampler; Coconet (Huang, Cooijmans, Roberts,
Courville and Eck, ISMIR 2017) instead fills the voices in any order by Gibbs sampling with a convolutional
network. Left-to-right sampling is exact (one pass, no burn-in) and cheap on a CPU.

Training (:func:`fit_harmony_model`): teacher forcing, the cross-entropy of the three voices summed per frame
(nats), Adam (optax) with gradient clipping, dropout on ``h_t``, windows of :data:`HARMONY_WINDOW` frames cut at a
random offset per epoch, and each window transposed by a random shift in ``-6..+6`` semitones that keeps every
voice in the vocabulary (the 314 training chorales are few; transposition is the augmentation of both papers).
The model with the best loss on the ``valid`` chorales is kept. All draws come from the seed: the same seed
and steps give the same weights.

Sampling (:func:`harmonize_voices`): one JAX key; frame ``t`` draws the bass, then tenor, then alto with the key
``fold_in(key, t)``, at a temperature (default :data:`DEFAULT_HARMONY_TEMPERATURE`, a little below 1, as
sampling from a slightly sharpened distribution avoids the rare wrong notes of the tail). By default each draw
leaves out the pitches the textbook forbids given the voices already decided (parallel fifths and octaves,
crossing, a voice's range: the rules of :mod:`labkit.polyphony.harmony`), the constrained sampling DeepBach
offers. Measured on the 43 test chorales (``benchmarks/harmonize_table.py``): the model alone writes parallel
fifths in 2.1 % of the voice-pair moves (Bach 0.07 %) and leaves the ranges in 1.4 % of the voice-frames (Bach
0.45 %), so on its own it does not yet reach the issue's targets; its bass stays in the key as often as
Bach's (4.5 % outside, Bach 4.3 %, a model given another chorale's melody 25 %). With the rules every target
is met.

Notebook: 08_polyphony.ipynb
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from labkit._common import ConfigDict
from labkit.checkpoint import load_checkpoint, save_checkpoint
from labkit.errors import CheckpointError, ConfigError
from labkit.models import kernels
from labkit.polyphony.harmony import (DEFAULT_HARMONY_TEMPERATURE, HARMONY_VOICE_RANGES, MAX_BAR_FRAMES, VOICE_REST,
                                      ChoraleSetting)

#: Lowest and highest pitch of the voices' vocabulary (E1 .. E6); index 0 is a rest, index k pitch LOW + k - 1.
HARMONY_LOW, HARMONY_HIGH = 28, 88
#: Size of each voice's softmax: a rest and the pitches LOW..HIGH.
HARMONY_VOCAB = HARMONY_HIGH - HARMONY_LOW + 2
#: Frames per training window (16 bars of 4/4 in eighths).
HARMONY_WINDOW = 128
#: Largest transposition of a training window, in semitones either way.
HARMONY_AUGMENT_SEMITONES = 6
#: The file names of a chorale-model folder.
HARMONY_MODEL_FILE, HARMONY_META_FILE = "model.npz", "model.json"


@dataclass(frozen=True)
class HarmonyConfig(ConfigDict):
    """Sizes of the harmony model.

    Attributes:
        embed: size of the soprano's and of each lower voice's pitch embedding.
        soprano_hidden: units of each direction of the soprano's bidirectional LSTM.
        hidden: units of the forward LSTM over the voices.
        head_hidden: units of each voice's head.
        dropout: dropout rate on the forward LSTM's output while training.
    """
    embed: int = 24
    soprano_hidden: int = 64
    hidden: int = 128
    head_hidden: int = 128
    dropout: float = 0.2


@dataclass(frozen=True)
class HarmonyTrainConfig(ConfigDict):
    """Training settings: ``steps`` Adam steps of ``batch_size`` windows, validated every ``eval_every`` steps."""
    steps: int = 2000
    batch_size: int = 32
    learning_rate: float = 2e-3
    clip: float = 1.0
    eval_every: int = 100
    seed: int = 0


def pitch_tokens(pitches) -> np.ndarray:
    """MIDI pitches (``VOICE_REST`` = -1) as vocabulary indices: 0 for a rest, pitches clipped to LOW..HIGH.

    Example:
        >>> pitch_tokens([-1, 28, 60, 127]).tolist()
        [0, 1, 33, 61]

    Notebook: 08_polyphony.ipynb
    """
    p = np.asarray(pitches)
    return np.where(p == VOICE_REST, 0, np.clip(p, HARMONY_LOW, HARMONY_HIGH) - HARMONY_LOW + 1).astype(np.int32)


def token_pitches(tokens) -> np.ndarray:
    """Vocabulary indices back to MIDI pitches (0 -> ``VOICE_REST``).

    Example:
        >>> token_pitches([0, 1, 33]).tolist()
        [-1, 28, 60]

    Notebook: 08_polyphony.ipynb
    """
    t = np.asarray(tokens)
    return np.where(t == 0, VOICE_REST, t + HARMONY_LOW - 1).astype(np.int32)


class HarmonyLSTM(nnx.Module):
    """The model of the module docstring: soprano features ``[B, T]`` -> logits of bass, tenor, alto."""

    def __init__(self, config: HarmonyConfig, rngs: nnx.Rngs):
        self.config = c = config
        self.soprano_embed = nnx.Embed(HARMONY_VOCAB, c.embed, rngs=rngs)
        self.voice_embed = nnx.Embed(HARMONY_VOCAB, c.embed, rngs=rngs)
        features = c.embed + 1 + MAX_BAR_FRAMES
        self.forward_cell = nnx.OptimizedLSTMCell(features, c.soprano_hidden, rngs=rngs)
        self.backward_cell = nnx.OptimizedLSTMCell(features, c.soprano_hidden, rngs=rngs)
        self.cell = nnx.OptimizedLSTMCell(2 * c.soprano_hidden + 3 * c.embed, c.hidden, rngs=rngs)
        self.bass_hidden = nnx.Linear(c.hidden, c.head_hidden, rngs=rngs)
        self.tenor_hidden = nnx.Linear(c.hidden + c.embed, c.head_hidden, rngs=rngs)
        self.alto_hidden = nnx.Linear(c.hidden + 2 * c.embed, c.head_hidden, rngs=rngs)
        self.bass_out = nnx.Linear(c.head_hidden, HARMONY_VOCAB, rngs=rngs)
        self.tenor_out = nnx.Linear(c.head_hidden, HARMONY_VOCAB, rngs=rngs)
        self.alto_out = nnx.Linear(c.head_hidden, HARMONY_VOCAB, rngs=rngs)

    def soprano_states(self, soprano, onset, position, lengths):
        """The bidirectional reading ``[B, T, 2 * soprano_hidden]`` of the soprano (``lengths [B]`` real frames)."""
        x = jnp.concatenate([self.soprano_embed(soprano), onset[..., None].astype(jnp.float32),
                             jax.nn.one_hot(position, MAX_BAR_FRAMES)], axis=-1)
        batch, length = soprano.shape
        zeros = jnp.zeros((batch, self.config.soprano_hidden), jnp.float32)
        _, ahead = kernels.lstm_layer(self.forward_cell, (zeros, zeros), jnp.swapaxes(x, 0, 1))
        t = jnp.arange(length)[None, :]
        flip = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)     # reverse each tune within its length
        x_back = jnp.take_along_axis(x, flip[..., None], axis=1)
        _, behind = kernels.lstm_layer(self.backward_cell, (zeros, zeros), jnp.swapaxes(x_back, 0, 1))
        behind = jnp.take_along_axis(jnp.swapaxes(behind, 0, 1), flip[..., None], axis=1)
        return jnp.concatenate([jnp.swapaxes(ahead, 0, 1), behind], axis=-1)

    def heads(self, h, bass, tenor, alto):
        """Logits ``(bass, tenor, alto)`` ``[..., V]`` from states ``h`` and the (true or drawn) lower voices."""
        eb, et = self.voice_embed(bass), self.voice_embed(tenor)
        zb = self.bass_out(jax.nn.relu(self.bass_hidden(h)))
        zt = self.tenor_out(jax.nn.relu(self.tenor_hidden(jnp.concatenate([h, eb], -1))))
        za = self.alto_out(jax.nn.relu(self.alto_hidden(jnp.concatenate([h, eb, et], -1))))
        return zb, zt, za

    def __call__(self, batch, *, deterministic: bool = True, key=None):
        """Teacher-forced logits ``(bass, tenor, alto)``, each ``[B, T, V]``, of a batch (:func:`harmony_batches`)."""
        bi = self.soprano_states(batch["soprano"], batch["onset"], batch["position"], batch["lengths"])
        atb = batch["atb"]                                                    # [B, T, 3]: alto, tenor, bass
        previous = jnp.concatenate([jnp.zeros_like(atb[:, :1]), atb[:, :-1]], axis=1)
        inputs = jnp.concatenate([bi, self.voice_embed(previous).reshape(*atb.shape[:2], -1)], axis=-1)
        zeros = jnp.zeros((atb.shape[0], self.config.hidden), jnp.float32)
        _, h = kernels.lstm_layer(self.cell, (zeros, zeros), jnp.swapaxes(inputs, 0, 1))
        h = jnp.swapaxes(h, 0, 1)
        if not deterministic and self.config.dropout > 0:
            h = kernels.byte_dropout(h, self.config.dropout, key)
        return self.heads(h, atb[..., 2], atb[..., 1], atb[..., 0])


def harmony_loss(model: HarmonyLSTM, batch, *, deterministic: bool = True, key=None):
    """``(sum of nats, frames)``: the three voices' cross-entropy summed over the real frames of a batch.

    Notebook: 08_polyphony.ipynb
    """
    zb, zt, za = model(batch, deterministic=deterministic, key=key)
    atb = batch["atb"]
    nll = (optax.softmax_cross_entropy_with_integer_labels(zb, atb[..., 2])
           + optax.softmax_cross_entropy_with_integer_labels(zt, atb[..., 1])
           + optax.softmax_cross_entropy_with_integer_labels(za, atb[..., 0]))
    return (nll * batch["mask"]).sum(), batch["mask"].sum()


def _trimmed(setting: ChoraleSetting):
    """A setting from its first sounding frame: ``(tokens [4, T], soprano onset [T], bar position [T])``."""
    sounding = np.flatnonzero((setting.voices != VOICE_REST).any(axis=0))
    start = int(sounding[0]) if len(sounding) else 0
    return (setting.voices[:, start:], setting.onsets[0, start:], setting.bar_position[start:])


def harmony_batches(settings: list[ChoraleSetting], *, batch_size: int, window: int = HARMONY_WINDOW, seed: int = 0,
                    epoch: int = 0, shuffle: bool = True, augment: int = HARMONY_AUGMENT_SEMITONES):
    """Padded batches of windows of the settings (every frame once per epoch), transposed at random.

    Yields ``{"soprano", "onset", "position": [B, L], "atb": int [B, L, 3] (alto, tenor, bass tokens),
    "mask": float [B, L], "lengths": int [B]}``. Draws come from ``numpy.random.default_rng([seed, epoch])``.

    Example:
        >>> import numpy as np
        >>> from labkit.polyphony.harmony import ChoraleSetting
        >>> v = np.array([[72, 74, 76], [67, 67, 67], [64, 62, 60], [48, 55, 48]])
        >>> s = ChoraleSetting("x", v, np.ones((4, 3), bool), np.arange(3), (0, "major"))
        >>> b = next(harmony_batches([s], batch_size=2, window=4, shuffle=False, augment=0))
        >>> b["atb"].shape, b["lengths"].tolist(), token_pitches(b["atb"][0, :, 2]).tolist()
        ((2, 4, 3), [3, 0], [48, 55, 48, -1])

    Notebook: 08_polyphony.ipynb
    """
    rng = np.random.default_rng([int(seed), int(epoch)])
    windows = []
    for i, s in enumerate(settings):
        voices, _, _ = _trimmed(s)
        length = voices.shape[1]
        offset = int(rng.integers(window)) if shuffle else 0
        starts = ([0] if offset else []) + list(range(offset, length, window))
        for start in starts:
            end = min(length, offset if (offset and start == 0) else start + window)
            if end > start:
                windows.append((i, start, end))
    if shuffle:
        windows = [windows[j] for j in rng.permutation(len(windows))]
    for first in range(0, len(windows), batch_size):
        out = {"soprano": np.zeros((batch_size, window), np.int32), "onset": np.zeros((batch_size, window), np.int32),
               "position": np.zeros((batch_size, window), np.int32), "atb": np.zeros((batch_size, window, 3), np.int32),
               "mask": np.zeros((batch_size, window), np.float32), "lengths": np.zeros(batch_size, np.int32)}
        for row, (i, start, end) in enumerate(windows[first:first + batch_size]):
            voices, onset, position = _trimmed(settings[i])
            piece = voices[:, start:end]
            shift = 0
            if augment:
                sounding = piece[piece != VOICE_REST]
                low = max(-augment, HARMONY_LOW - int(sounding.min())) if len(sounding) else -augment
                high = min(augment, HARMONY_HIGH - int(sounding.max())) if len(sounding) else augment
                shift = int(rng.integers(low, high + 1)) if high >= low else 0
            tokens = pitch_tokens(np.where(piece == VOICE_REST, VOICE_REST, piece + shift))
            n = end - start
            out["soprano"][row, :n] = tokens[0]
            out["atb"][row, :n] = tokens[1:].T
            out["onset"][row, :n] = onset[start:end]
            out["position"][row, :n] = position[start:end]
            out["mask"][row, :n] = 1.0
            out["lengths"][row] = n
        yield out


def make_harmony_model(config: HarmonyConfig | None = None, seed: int = 0) -> HarmonyLSTM:
    """A fresh model, its weights drawn from ``seed``.

    Notebook: 08_polyphony.ipynb
    """
    return HarmonyLSTM(config or HarmonyConfig(), nnx.Rngs(int(seed)))


def _loss_of_params(graphdef, params, rest, batch, key):
    model = nnx.merge(graphdef, params, rest)
    total, frames = harmony_loss(model, batch, deterministic=False, key=key)
    return total / jnp.maximum(frames, 1.0)


_COMPILED: dict = {}


def _train_step(graphdef, tx):
    @jax.jit
    def step(params, rest, opt_state, batch, key):
        loss, grads = jax.value_and_grad(_loss_of_params, argnums=1)(graphdef, params, rest, batch, key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss
    return step


def _eval_step(graphdef):
    @jax.jit
    def evaluate(params, rest, batch):
        return harmony_loss(nnx.merge(graphdef, params, rest), batch)
    return evaluate


def evaluate_harmony_model(model: HarmonyLSTM, settings: list[ChoraleSetting], *, batch_size: int = 32) -> float:
    """Nats per frame (the three voices' cross-entropy summed) on the settings, untransposed.

    Notebook: 08_polyphony.ipynb
    """
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    evaluate = _COMPILED.setdefault(("eval", graphdef), _eval_step(graphdef))
    total = frames = 0.0
    for batch in harmony_batches(settings, batch_size=batch_size, shuffle=False, augment=0):
        t, f = evaluate(params, rest, batch)
        total, frames = total + float(t), frames + float(f)
    return total / max(frames, 1.0)


def fit_harmony_model(train: list[ChoraleSetting], valid: list[ChoraleSetting], *,
                      config: HarmonyConfig | None = None, train_config: HarmonyTrainConfig | None = None,
                      minutes: float | None = None, log=None) -> tuple[HarmonyLSTM, dict]:
    """Train a model (module docstring); returns ``(best model on valid, history)``.

    ``minutes`` stops early by the clock (not reproducible; leave None for a fixed number of steps). ``log``:
    a function given one line per validation. ``history``: ``{"steps", "best_step", "valid_nats", "train_nats"}``.

    Notebook: 08_polyphony.ipynb
    """
    cfg = train_config or HarmonyTrainConfig()
    model = make_harmony_model(config, cfg.seed)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.chain(optax.clip_by_global_norm(cfg.clip), optax.adam(cfg.learning_rate))
    opt_state = tx.init(params)
    # one compiled step per model layout and optimizer settings (a second run of the same sizes reuses it)
    step_fn = _COMPILED.setdefault(("train", graphdef, cfg.clip, cfg.learning_rate), _train_step(graphdef, tx))
    key = jax.random.key(cfg.seed)
    best, best_params, best_step, losses = math.inf, params, 0, []
    history = {"valid_nats": [], "train_nats": []}
    started, step, epoch = time.monotonic(), 0, 0
    while step < cfg.steps:
        for batch in harmony_batches(train, batch_size=cfg.batch_size, seed=cfg.seed, epoch=epoch):
            params, opt_state, loss = step_fn(params, rest, opt_state, batch, jax.random.fold_in(key, step))
            losses.append(float(loss))
            step += 1
            out_of_time = minutes is not None and time.monotonic() - started > 60 * minutes
            if step % cfg.eval_every == 0 or step == cfg.steps or out_of_time:
                nnx.update(model, params)
                nats = evaluate_harmony_model(model, valid)
                history["valid_nats"].append((step, nats))
                history["train_nats"].append((step, float(np.mean(losses[-cfg.eval_every:]))))
                if nats < best:
                    best, best_params, best_step = nats, params, step
                if log:
                    log(f"step {step}: train {history['train_nats'][-1][1]:.3f} valid {nats:.3f} nats/frame"
                        f" ({time.monotonic() - started:.0f} s)")
            if step >= cfg.steps or out_of_time:
                break
        epoch += 1
        if minutes is not None and time.monotonic() - started > 60 * minutes:
            break
    nnx.update(model, best_params)
    history.update(steps=step, best_step=best_step, best_valid_nats=best)
    return model, history


def save_harmony_model(folder: str | os.PathLike, model: HarmonyLSTM, meta: dict | None = None) -> Path:
    """Write ``folder/model.npz`` (weights and config) and ``folder/model.json`` (the same metadata, readable).

    Notebook: 08_polyphony.ipynb
    """
    folder = Path(folder)
    document = {"kind": "labkit chorale harmony model", "config": asdict(model.config), **(meta or {})}
    save_checkpoint(folder / HARMONY_MODEL_FILE, {"params": nnx.state(model, nnx.Param)}, document)
    from labkit._common import atomic_write
    atomic_write(folder / HARMONY_META_FILE, (json.dumps(document, indent=1, sort_keys=True) + "\n").encode())
    return folder


def shipped_harmony_model_dir() -> Path:
    """The folder of the chorale model that ships with labkit (``labkit/assets/chorale_model``).

    Notebook: 08_polyphony.ipynb
    """
    return Path(__file__).resolve().parents[1] / "assets" / "chorale_model"


def load_harmony_model(folder: str | os.PathLike | None = None) -> tuple[HarmonyLSTM, dict]:
    """``(model, metadata)`` from a folder :func:`save_harmony_model` wrote (default: the shipped model).

    Raises :class:`~labkit.errors.CheckpointError` naming the file when it is missing or not such a model.

    Notebook: 08_polyphony.ipynb
    """
    from labkit.checkpoint import read_meta

    folder = Path(folder) if folder is not None else shipped_harmony_model_dir()
    path = folder / HARMONY_MODEL_FILE if folder.is_dir() else folder
    meta = read_meta(path)
    if meta.get("kind") != "labkit chorale harmony model" or not isinstance(meta.get("config"), dict):
        raise CheckpointError("not a chorale harmony model (no such kind in its metadata)", path)
    try:
        config = HarmonyConfig(**meta["config"])
    except TypeError as error:
        raise CheckpointError(f"its config does not fit this labkit ({error})", path) from None
    model = make_harmony_model(config)
    template = nnx.state(model, nnx.Param)
    trees, _ = load_checkpoint(path, {"params": template})
    nnx.update(model, trees["params"])
    return model, meta


#: The ranges the rules keep the drawn voices in, as vocabulary tokens: alto, tenor, bass.
_RANGE_TOKENS = np.array([[HARMONY_VOICE_RANGES[v][0], HARMONY_VOICE_RANGES[v][1]]
                          for v in ("Alto", "Tenor", "Bass")]) - HARMONY_LOW + 1


def _forbidden(previous, candidates, previous_other, other):
    """bool ``[V]``: the candidates (tokens) of one voice that move in parallel fifths or octaves (unisons)
    with another voice going from token ``previous_other`` to ``other``, this voice from ``previous``."""
    sounding = (previous > 0) & (previous_other > 0) & (other > 0) & (candidates > 0)
    mine, theirs = candidates - previous, other - previous_other
    similar = (mine != 0) & (theirs != 0) & (jnp.sign(mine) == jnp.sign(theirs))
    before, after = jnp.abs(previous - previous_other) % 12, jnp.abs(candidates - other) % 12
    return sounding & similar & (before == after) & ((after == 0) | (after == 7))


def _masked(logits, forbidden, rules):
    """Logits with the forbidden tokens removed, when ``rules`` and when something is left."""
    keep = ~forbidden
    use = rules & jnp.any(keep)
    return jnp.where(use & forbidden, -jnp.inf, logits)


def _sampler(graphdef):
    @jax.jit
    def run(params, rest, soprano, onset, position, length, key, temperature, rules):
        model = nnx.merge(graphdef, params, rest)
        bi = model.soprano_states(soprano[None], onset[None], position[None], length[None])[0]
        hidden = model.config.hidden
        tokens = jnp.arange(HARMONY_VOCAB)
        ranges = jnp.asarray(_RANGE_TOKENS)

        def out_of_range(voice):
            return (tokens > 0) & ((tokens < ranges[voice, 0]) | (tokens > ranges[voice, 1]))

        def step(carry, inputs):
            lstm, previous, previous_soprano = carry
            b_t, t, s_t = inputs
            x = jnp.concatenate([b_t, model.voice_embed(previous).reshape(-1)])
            lstm, h = kernels.lstm_cell(model.cell, lstm, x[None])
            k = jax.random.fold_in(key, t)
            kb, kt, ka = jax.random.split(k, 3)
            h = h[0]
            p_alto, p_tenor, p_bass = previous[0], previous[1], previous[2]
            zb = model.bass_out(jax.nn.relu(model.bass_hidden(h)))
            bad = out_of_range(2) | _forbidden(p_bass, tokens, previous_soprano, s_t)
            bass = jax.random.categorical(kb, _masked(zb, bad, rules) / temperature)
            zt = model.tenor_out(jax.nn.relu(model.tenor_hidden(jnp.concatenate([h, model.voice_embed(bass)]))))
            bad = (out_of_range(1) | _forbidden(p_tenor, tokens, previous_soprano, s_t)
                   | _forbidden(p_tenor, tokens, p_bass, bass) | ((tokens > 0) & (bass > 0) & (tokens < bass)))
            tenor = jax.random.categorical(kt, _masked(zt, bad, rules) / temperature)
            za = model.alto_out(jax.nn.relu(model.alto_hidden(
                jnp.concatenate([h, model.voice_embed(bass), model.voice_embed(tenor)]))))
            bad = (out_of_range(0) | _forbidden(p_alto, tokens, previous_soprano, s_t)
                   | _forbidden(p_alto, tokens, p_bass, bass) | _forbidden(p_alto, tokens, p_tenor, tenor)
                   | ((tokens > 0) & (tenor > 0) & (tokens < tenor)) | ((tokens > 0) & (s_t > 0) & (tokens > s_t)))
            alto = jax.random.categorical(ka, _masked(za, bad, rules) / temperature)
            chosen = jnp.stack([alto, tenor, bass]).astype(jnp.int32)
            return (lstm, chosen, s_t), chosen

        zeros = jnp.zeros((1, hidden), jnp.float32)
        carry = ((zeros, zeros), jnp.zeros(3, jnp.int32), jnp.int32(0))
        _, atb = jax.lax.scan(step, carry, (bi, jnp.arange(soprano.shape[0]), soprano))
        return atb
    return run


_SAMPLERS: dict = {}
#: Melodies are padded to a multiple of this many frames before sampling (fewer compilations).
SAMPLE_BUCKET = 64


def harmonize_voices(model: HarmonyLSTM, soprano, onset, position, *, seed: int = 0,
                     temperature: float = DEFAULT_HARMONY_TEMPERATURE, rules: bool = True) -> np.ndarray:
    """Draw alto, tenor and bass for a soprano: int ``[4, T]`` MIDI pitches (row 0 the soprano as given).

    ``soprano`` int ``[T]`` (MIDI pitches or ``VOICE_REST``), ``onset`` ``[T]`` (a note begins), ``position`` ``[T]``
    (frames since the bar line). The same seed gives the same voices.

    With ``rules`` (the default) each draw leaves out the pitches that the textbook forbids given the voices
    already decided: parallel fifths and octaves with them, a pitch outside the voice's range
    (:data:`~labkit.polyphony.harmony.HARMONY_VOICE_RANGES`), crossing the voice above or below (when every
    pitch is forbidden, none is left out). The model proposes, the rules dispose, as DeepBach samples under
    constraints; ``rules=False`` draws from the model alone.

    Notebook: 08_polyphony.ipynb
    """
    soprano = np.asarray(soprano)
    if not len(soprano):
        raise ConfigError("harmonize_voices needs a soprano of at least one frame")
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    run = _SAMPLERS.setdefault(graphdef, _sampler(graphdef))
    length = len(soprano)
    padded = -(-length // SAMPLE_BUCKET) * SAMPLE_BUCKET       # one compiled sampler per bucket of lengths

    def pad(x):
        return jnp.asarray(np.pad(np.asarray(x, np.int32), (0, padded - length)))
    # frames after the end change nothing before it: the readings forward are causal, the one backward starts
    # at the melody's last frame (``length``), and frame t draws with fold_in(key, t)
    atb = run(params, rest, pad(pitch_tokens(soprano)), pad(onset),
              pad(np.minimum(np.asarray(position, np.int32), MAX_BAR_FRAMES - 1)), jnp.int32(length),
              jax.random.key(int(seed)), jnp.float32(temperature), jnp.bool_(rules))
    atb = token_pitches(np.asarray(atb)[:length]).T                           # [3, T]
    return np.concatenate([np.asarray(soprano, np.int32)[None], atb], axis=0)


def train_shipped_harmony_model(out: str | os.PathLike, *, steps: int, seed: int = 0, log=print) -> Path:
    """Retrain the shipped chorale model on the corpus's train split (valid for early stopping): ``make chorale-model``.

    Notebook: 08_polyphony.ipynb
    """
    from labkit.polyphony.harmony import chorale_settings

    train, skipped = chorale_settings("train")
    valid, skipped_valid = chorale_settings("valid")
    for name, reason in skipped + skipped_valid:
        log(f"skipped {name}: {reason}")
    log(f"{len(train)} train and {len(valid)} valid chorales ({len(skipped) + len(skipped_valid)} skipped)")
    model, history = fit_harmony_model(train, valid, train_config=HarmonyTrainConfig(steps=steps, seed=seed), log=log)
    meta = {"trained_on": "labkit corpus, Bach chorales, split train (valid for model selection)",
            "steps": history["steps"], "best_step": history["best_step"], "seed": seed,
            "valid_nats_per_frame": round(history["best_valid_nats"], 4)}
    return save_harmony_model(out, model, meta)


def _main(argv=None) -> int:  # pragma: no cover - the make target
    import argparse

    parser = argparse.ArgumentParser(description="Retrain the shipped chorale harmony model (make chorale-model).")
    parser.add_argument("--out", default=str(shipped_harmony_model_dir()))
    parser.add_argument("--steps", type=int, default=HarmonyTrainConfig.steps)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    train_shipped_harmony_model(args.out, steps=args.steps, seed=args.seed)
    return 0



# --- a melody file -> a four-part NoteSequence ---------------------------------------------------

#: The soprano's comfortable range for the model (Bach's sopranos span A3..A5, most of them C4..G5).
SOPRANO_CENTRE, SOPRANO_SPAN = 70, (57, 81)
#: General MIDI program of the four voices (52: Choir Aahs, as in the corpus's chorales).
HARMONY_PROGRAM = 52
#: Longest melody harmonized, in frames (eighth notes): about an hour at 120 quarters per minute.
MAX_HARMONY_FRAMES = 15_000


def soprano_shift(pitches) -> int:
    """Semitones that move a melody into the model's soprano range: whole octaves when they suffice, else the
    shift that centres the melody's range on :data:`SOPRANO_CENTRE`.

    Example:
        >>> soprano_shift([67, 72, 76]), soprano_shift([79, 84, 88]), soprano_shift([40, 70])
        (0, -12, 15)

    Notebook: 08_polyphony.ipynb
    """
    p = np.asarray(pitches)
    low, high = int(p.min()), int(p.max())
    octave = 12 * int(round((SOPRANO_CENTRE - float(np.median(p))) / 12))
    if SOPRANO_SPAN[0] <= low + octave and high + octave <= SOPRANO_SPAN[1]:
        return octave
    return int(round(SOPRANO_CENTRE - (low + high) / 2))


def _quarters_to_seconds(sequence):
    """A function: quarter notes from time 0 -> seconds, through the sequence's tempo map."""
    tempos = sorted(((t.time, t.qpm) for t in sequence.tempos if t.qpm > 0), key=lambda x: x[0]) or [(0.0, 120.0)]
    if tempos[0][0] > 0:
        tempos.insert(0, (0.0, 120.0))
    times, qpms = np.array([t for t, _ in tempos]), np.array([q for _, q in tempos])
    quarters = np.concatenate([[0.0], np.cumsum(np.diff(times) * qpms[:-1] / 60.0)])

    def seconds(q):
        q = np.asarray(q, float)
        i = np.clip(np.searchsorted(quarters, q, side="right") - 1, 0, len(quarters) - 1)
        return times[i] + (q - quarters[i]) * 60.0 / qpms[i]
    return seconds


def melody_setting(sequence, path=None) -> tuple[ChoraleSetting, list]:
    """A monophonic melody as the soprano of a setting (lower voices empty): ``(setting, notes)``.

    ``notes``: the melody's pitched notes, sorted. Raises :class:`~labkit.errors.NoNotesError` (no pitched
    notes) or :class:`~labkit.errors.ConfigError` (a chord, or a melody too long), naming ``path``.
    The key is estimated from the melody (Krumhansl-Schmuckler, :func:`labkit.melody.estimate_key`).

    Notebook: 08_polyphony.ipynb
    """
    from labkit._common import display_name
    from labkit.melody import Melody, estimate_key, quantize
    from labkit.midi_io import require_notes
    from labkit.polyphony.harmony import (HARMONY_STEPS_PER_QUARTER, _time_signature, bar_positions,
                                          frames_per_bar, melody_chord_check, paint_voice)

    require_notes(sequence, path)
    melody_chord_check(sequence, path)
    notes = sorted((n for n in sequence.notes if not n.is_drum), key=lambda n: n.start_time)
    quantized = [n for n in quantize(sequence, HARMONY_STEPS_PER_QUARTER).notes if not n.is_drum]
    frames = max(n.quantized_end_step for n in quantized)
    if frames > MAX_HARMONY_FRAMES:
        raise ConfigError(f"lasts {frames} eighth notes, more than the {MAX_HARMONY_FRAMES} harmonize takes",
                          None if path is None else display_name(path))
    soprano, onset = paint_voice([n.pitch for n in quantized], [n.quantized_start_step for n in quantized],
                                 [n.quantized_end_step for n in quantized], frames)
    voices = np.full((4, frames), VOICE_REST, np.int32)
    voices[0] = soprano
    onsets = np.zeros((4, frames), bool)
    onsets[0] = onset
    runs = _runs(soprano)
    tonic, mode = estimate_key(Melody.from_notes([p for p, _, _ in runs], [s for _, s, _ in runs],
                                                 [e for _, _, e in runs]))
    setting = ChoraleSetting(display_name(path) if path is not None else "", voices, onsets,
                             bar_positions(frames, frames_per_bar(*_time_signature(sequence))), (tonic, mode))
    return setting, notes


def _runs(voice, onset=None) -> list[tuple[int, int, int]]:
    """A voice on the grid as notes ``(pitch, start frame, end frame)``: a run of one pitch (rests skipped)."""
    runs = []
    for t, p in enumerate(np.asarray(voice).tolist()):
        new = onset is not None and bool(onset[t])
        if runs and runs[-1][0] == p and runs[-1][2] == t and not new:
            runs[-1][2] = t + 1
        elif p != VOICE_REST:
            runs.append([p, t, t + 1])
    return [tuple(r) for r in runs]


def harmonize_sequence(sequence, model: HarmonyLSTM, *, seed: int = 0,
                       temperature: float = DEFAULT_HARMONY_TEMPERATURE, rules: bool = True, path=None):
    """A melody (a ``NoteSequence``, one note at a time) set in four parts: ``(four-track sequence, info)``.

    The melody is moved into the soprano range (:func:`soprano_shift`), the model draws alto, tenor and bass,
    (:func:`harmonize_voices`; ``rules``: the textbook rules leave out forbidden pitches while drawing),
    and the lower voices are moved back; the soprano track holds the melody's own notes, unchanged. Tracks
    (instruments 0..3) are named Soprano, Alto, Tenor, Bass; tempos and time signatures are the melody's.
    ``info``: ``{"voices": int [4, T] on the grid, "key": (tonic, mode), "shift": semitones, "frames": T}``.

    Notebook: 08_polyphony.ipynb
    """
    from note_seq.protobuf import music_pb2

    from labkit.polyphony.harmony import HARMONY_STEPS_PER_QUARTER, HARMONY_VOICES

    setting, notes = melody_setting(sequence, path)
    soprano = setting.voices[0]
    shift = soprano_shift(soprano[soprano != VOICE_REST])
    voices = harmonize_voices(model, np.where(soprano == VOICE_REST, VOICE_REST, soprano + shift), setting.onsets[0],
                              setting.bar_position, seed=seed, temperature=temperature, rules=rules)
    voices = np.where(voices == VOICE_REST, VOICE_REST, voices - shift)
    voices[0] = soprano
    voices[1:, :int(np.flatnonzero(soprano != VOICE_REST)[0])] = VOICE_REST           # silent before the melody begins
    out = music_pb2.NoteSequence()
    out.ticks_per_quarter = sequence.ticks_per_quarter or 220
    for t in sequence.tempos:
        out.tempos.add(time=t.time, qpm=t.qpm)
    for t in sequence.time_signatures:
        out.time_signatures.add(time=t.time, numerator=t.numerator, denominator=t.denominator)
    for k in sequence.key_signatures:
        out.key_signatures.add(time=k.time, key=k.key, mode=k.mode)
    for i, name in enumerate(HARMONY_VOICES):
        out.instrument_infos.add(instrument=i, name=name)
    for n in notes:
        out.notes.add(pitch=n.pitch, velocity=n.velocity or 80, start_time=n.start_time, end_time=n.end_time,
                      instrument=0, program=HARMONY_PROGRAM)
    seconds = _quarters_to_seconds(sequence)
    melody_end = max(n.end_time for n in notes)
    for i in range(1, 4):
        for pitch, start, end in _runs(voices[i]):
            end_time = float(seconds(end / HARMONY_STEPS_PER_QUARTER))
            if end == voices.shape[1]:
                end_time = max(end_time, melody_end)      # the last chord lasts as long as the melody's last note
            out.notes.add(pitch=int(pitch), velocity=70, start_time=float(seconds(start / HARMONY_STEPS_PER_QUARTER)),
                          end_time=end_time, instrument=i, program=HARMONY_PROGRAM)
    out.total_time = max(n.end_time for n in out.notes)
    return out, {"voices": voices, "key": setting.key, "shift": shift, "frames": int(voices.shape[1])}


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
