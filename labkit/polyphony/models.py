"""Flax NNX models of piano-roll frames: 88 independent sigmoids, and the keys of a frame one after another.

Both read the frames before ``t`` with an LSTM (the frame ``x_{t-1}`` in, state ``h_t`` out; a silent
frame before the first) and give the probability of frame ``x_t`` (``K`` keys, 88 for a piano):

* :class:`SigmoidLSTM` (the source paper's sigmoid; the LSTM of Bai, Kolter and Koltun 2018): the keys are
  independent given the past, ``p(x_t) = prod_k s(z_k)^{x_k} (1 - s(z_k))^{1 - x_k}`` with ``z = W h_t + b``
  and ``s`` the logistic sigmoid; the loss is the binary cross-entropy summed over the keys.
* :class:`NadeLSTM` (RNN-NADE, Boulanger-Lewandowski, Bengio and Vincent 2012): the keys of a frame are
  decided from the lowest up, each conditioned on the keys already decided,

  .. math::

      p(x_t) = \\prod_k p(x_{t,k} \\mid x_{t,<k}, h_t), \\quad
      p(x_{t,k} = 1 \\mid \\cdot) = s\\Big(b_k(h_t)
      + V_k \\cdot s\\big(c(h_t) + \\textstyle\\sum_{j<k} x_{t,j} W_j\\big)
      + \\textstyle\\sum_{j<k} A_{kj} x_{t,j}\\Big)

  a NADE whose biases ``b`` (``[K]``) and ``c`` (``[key_hidden]``) are read from the LSTM state, plus a
  direct strictly-lower-triangular connection ``A`` between the keys (a masked linear layer). The product is
  a joint distribution over the ``2^K`` chords: it sums to one exactly (``tests/test_polyphony.py`` checks it).
* :class:`MadeLSTM` (the default): the same chain rule over the keys, with a MADE (Germain et al. 2015) in
  place of the NADE: one hidden layer whose masked weights let key ``k``'s logit read only keys ``j < k``.
  Its hidden layer is computed once per frame (the NADE's once per key), so it trains about three times
  faster per step, and on Nottingham it reaches a lower loss (``benchmarks/README.md``).

The LSTM reads, besides the previous frame, a clock: ``cos`` and ``sin`` of the frame's index in its tune
for periods of 2..32 frames (:attr:`PianoRollConfig.clock_periods`), from which it learns where beats and
bars fall; the carry holds the index, so a window read from the middle of a tune gets its true clock.

Both report the negative log-likelihood of each frame in nats (:meth:`frame_nll`, ``[B, T]``; the sum over
keys) and draw frames (:meth:`sample_frame`: the sigmoid model all keys at once, the NADE one key after
another). Dropout (rate ``dropout``, on the LSTM's output) runs only with ``deterministic=False`` and a key.

Notebook: 08_polyphony.ipynb
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from labkit._common import ConfigDict
from labkit.errors import ConfigError
from labkit.models import kernels

_ModuleList = getattr(nnx, "List", list)   # flax 0.11 (Colab) has no nnx.List; both give the same state paths

#: The model kinds :func:`make_pianoroll_model` builds.
PIANOROLL_MODELS: tuple[str, ...] = ("sigmoid", "nade", "made")
#: Hidden units across the keys of a frame when :class:`PianoRollConfig` is given none.
DEFAULT_KEY_HIDDEN: dict[str, int] = {"sigmoid": 0, "nade": 32, "made": 512}   # the sigmoid model has none


@dataclass(frozen=True)
class PianoRollConfig(ConfigDict):
    """Sizes of a piano-roll model.

    Attributes:
        model: ``"sigmoid"`` (:class:`SigmoidLSTM`), ``"nade"`` (:class:`NadeLSTM`) or ``"made"``
            (:class:`MadeLSTM`).
        num_keys: keys per frame (88 for a piano; small for exact checks).
        hidden_size: units per LSTM layer.
        num_layers: stacked LSTM layers.
        key_hidden: hidden units of the model across the keys of a frame (``"nade"`` and ``"made"``; ``None``:
            32 for the NADE, whose cost grows with ``K`` times this, 512 for the MADE).
        dropout: dropout rate on the LSTM's output while training, in ``[0, 1)``.
        clock_periods: the LSTM also reads, for the frame it predicts (index ``t`` from a tune's start),
            ``cos(2 pi t / p)`` and ``sin(2 pi t / p)`` for each period ``p`` (in frames): a clock from which it
            tells where beats and bars fall, as Johnson's (2015) biaxial network reads the beat. ``()``: none.

    Example:
        >>> PianoRollConfig(model="nade", hidden_size=8).key_hidden
        32

    Notebook: 08_polyphony.ipynb
    """

    model: str = "made"
    num_keys: int = 88
    hidden_size: int = 256
    num_layers: int = 1
    key_hidden: int | None = None
    dropout: float = 0.5
    clock_periods: tuple[int, ...] = (2, 3, 4, 6, 8, 12, 16, 24, 32)

    def __post_init__(self):
        periods = self.clock_periods
        if not isinstance(periods, (tuple, list)) or not all(
                isinstance(p, int) and not isinstance(p, bool) and 2 <= p <= 10_000 for p in periods):
            raise ConfigError(f"PianoRollConfig.clock_periods must be periods of 2..10000 frames, got {periods!r}")
        object.__setattr__(self, "clock_periods", tuple(periods))   # JSON gives a list back
        if self.model not in PIANOROLL_MODELS:
            raise ConfigError(f"PianoRollConfig.model must be one of {', '.join(PIANOROLL_MODELS)}, got {self.model!r}")
        if self.key_hidden is None:
            object.__setattr__(self, "key_hidden", DEFAULT_KEY_HIDDEN[self.model])
        for name in ("num_keys", "hidden_size", "num_layers") + (("key_hidden",) if self.model != "sigmoid" else ()):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 100_000:
                raise ConfigError(f"PianoRollConfig.{name} must be a positive integer, got {value!r}")
        if not (0.0 <= float(self.dropout) < 1.0):
            raise ConfigError(f"PianoRollConfig.dropout must lie in [0, 1), got {self.dropout!r}")




def bernoulli_nll(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """``-log p(target)`` of Bernoulli variables with ``p(1) = sigmoid(logits)``, in nats, elementwise.

    ``softplus(z) - x z``: the binary cross-entropy, computed without overflow for large ``|z|``.

    Example:
        >>> round(float(bernoulli_nll(jnp.array(0.0), jnp.array(1.0))), 4)   # log 2
        0.6931

    Notebook: 08_polyphony.ipynb
    """
    return jax.nn.softplus(logits) - targets * logits


class _FrameLSTM(nnx.Module):
    """The recurrent part both models share: previous frames ``[B, T, K]`` -> states ``[B, T, H]``."""

    def __init__(self, config: PianoRollConfig, rngs: nnx.Rngs):
        self.config = config
        sizes = [config.num_keys + 2 * len(config.clock_periods)] + [config.hidden_size] * config.num_layers
        self.cells = _ModuleList([nnx.OptimizedLSTMCell(sizes[i], config.hidden_size, rngs=rngs)
                                  for i in range(config.num_layers)])

    def init_carry(self, batch: int, start=0):
        """The state before a tune: ``(LSTM states, previous frame [B, K], frame index [B])``: zero states, a
        silent previous frame, and index ``start`` (a window that begins ``start`` frames into its tune)."""
        zeros = jnp.zeros((batch, self.config.hidden_size), jnp.float32)
        return (tuple((zeros, zeros) for _ in range(self.config.num_layers)),
                jnp.zeros((batch, self.config.num_keys), jnp.float32),
                jnp.broadcast_to(jnp.asarray(start, jnp.int32), (batch,)))

    def clock(self, index: jax.Array) -> jax.Array:
        """The clock features ``[..., 2 * len(clock_periods)]`` of frame indices ``index`` ``[...]``."""
        periods = jnp.asarray(self.config.clock_periods or (1,), jnp.float32)
        angle = 2 * jnp.pi * (index[..., None] % periods) / periods
        features = jnp.concatenate([jnp.cos(angle), jnp.sin(angle)], axis=-1)
        return features[..., :2 * len(self.config.clock_periods)]

    def states(self, frames: jax.Array, carry=None, *, deterministic: bool = True, key=None):
        """``(h [B, T, H], carry)``: ``h[:, t]`` has read every frame before ``frames[:, t]`` (not that one)."""
        batch, length = frames.shape[:2]
        lstm_carry, previous, index = carry if carry is not None else self.init_carry(batch)
        inputs = jnp.concatenate([previous[:, None], frames[:, :-1]], axis=1)
        indices = index[:, None] + jnp.arange(length, dtype=jnp.int32)
        inputs = jnp.concatenate([inputs, self.clock(indices)], axis=-1)
        x = jnp.swapaxes(inputs, 0, 1)                                   # time-major [T, B, K]
        new = []
        for cell, layer_carry in zip(self.cells, lstm_carry):
            layer_carry, x = kernels.lstm_layer(cell, layer_carry, x)
            new.append(layer_carry)
        h = jnp.swapaxes(x, 0, 1)
        if not deterministic and self.config.dropout > 0:
            if key is None:
                raise ConfigError("deterministic=False with dropout needs a JAX key")
            h = kernels.byte_dropout(h, self.config.dropout, key)
        return h, (tuple(new), frames[:, -1], index + length)

    def step(self, carry, frame: jax.Array):
        """Read one frame ``[B, K]``: ``(carry, h [B, H])``, the state that predicts the next frame."""
        lstm_carry, _, index = carry
        x, new = jnp.concatenate([frame, self.clock(index)], axis=-1), []
        for cell, layer_carry in zip(self.cells, lstm_carry):
            layer_carry, x = kernels.lstm_cell(cell, layer_carry, x)
            new.append(layer_carry)
        return (tuple(new), frame, index + 1), x


class SigmoidLSTM(nnx.Module):
    """An LSTM over frames with ``num_keys`` independent sigmoid outputs (binary cross-entropy).

    Example:
        >>> m = SigmoidLSTM(PianoRollConfig(model="sigmoid", num_keys=4, hidden_size=8), nnx.Rngs(0))
        >>> m.frame_nll(jnp.ones((2, 3, 4)))[0].shape
        (2, 3)

    Notebook: 08_polyphony.ipynb
    """

    def __init__(self, config: PianoRollConfig, rngs: nnx.Rngs):
        self.config = config
        self.rnn = _FrameLSTM(config, rngs)
        self.out = nnx.Linear(config.hidden_size, config.num_keys, rngs=rngs)

    def init_carry(self, batch: int, start=0):
        return self.rnn.init_carry(batch, start)

    def key_bias(self) -> nnx.Param:
        """The bias ``[K]`` of the keys' logits (training starts it at each key's frequency)."""
        return self.out.bias

    def logits(self, h: jax.Array) -> jax.Array:
        """Logits ``[..., K]`` of the keys from LSTM states ``[..., H]``."""
        return self.out(h)

    def frame_nll(self, frames: jax.Array, carry=None, *, deterministic: bool = True, key=None):
        """``(nll [B, T], carry)``: ``-log p(frames[:, t] | frames before)`` in nats (the sum over keys)."""
        h, carry = self.rnn.states(frames, carry, deterministic=deterministic, key=key)
        return bernoulli_nll(self.logits(h), frames).sum(-1), carry

    def sample_frame(self, h: jax.Array, key: jax.Array, temperature: float = 1.0) -> jax.Array:
        """One frame ``[B, K]`` (0/1 floats) given states ``[B, H]``: every key drawn at once."""
        p = jax.nn.sigmoid(self.logits(h) / temperature)
        return jax.random.bernoulli(key, p).astype(jnp.float32)


class _KeyByKeyLSTM(nnx.Module):
    """What :class:`NadeLSTM` and :class:`MadeLSTM` share: an LSTM over frames whose state sets the biases of a
    hidden layer across the keys (``c(h)``) and of the keys' logits (``b(h)``), weights from the keys to the hidden
    layer and back, and a strictly-lower-triangular direct connection ``A`` between the keys. A subclass says how
    the hidden layer reads the keys below ``k`` (:meth:`key_logits`, all keys at once) and, for drawing one key
    after another, which weights and activation a step uses (:meth:`_draw_weights`)."""

    def __init__(self, config: PianoRollConfig, rngs: nnx.Rngs, init, out_shape: tuple[int, int]):
        self.config = config
        k, n = config.num_keys, config.key_hidden
        self.rnn = _FrameLSTM(config, rngs)
        self.visible_bias = nnx.Linear(config.hidden_size, k, rngs=rngs)     # b(h): [K]
        self.hidden_bias = nnx.Linear(config.hidden_size, n, rngs=rngs)      # c(h): [key_hidden]
        self.w_in = nnx.Param(init(rngs.params(), (k, n)))                   # W: key j -> hidden
        self.w_out = nnx.Param(init(rngs.params(), out_shape))               # V: hidden -> key k
        self.direct = nnx.Param(jnp.zeros((k, k)))                            # A (strictly lower part used)

    def init_carry(self, batch: int, start=0):
        return self.rnn.init_carry(batch, start)

    def key_bias(self) -> nnx.Param:
        """The bias ``[K]`` of the keys' logits, ``b(h)``'s (training starts it at each key's frequency)."""
        return self.visible_bias.bias

    def _direct(self) -> jax.Array:
        return jnp.tril(self.direct[...], -1)

    def frame_nll(self, frames: jax.Array, carry=None, *, deterministic: bool = True, key=None):
        """``(nll [B, T], carry)``: ``-log p(frames[:, t] | frames before)`` in nats, the chain rule over keys."""
        h, carry = self.rnn.states(frames, carry, deterministic=deterministic, key=key)
        return bernoulli_nll(self.key_logits(h, frames), frames).sum(-1), carry

    def sample_frame(self, h: jax.Array, key: jax.Array, temperature: float = 1.0) -> jax.Array:
        """One frame ``[B, K]`` given states ``[B, H]``: key 0 first, each drawn given the keys below it."""
        batch, k = h.shape[0], self.config.num_keys
        b, c = self.visible_bias(h), self.hidden_bias(h)
        w_in, w_out, activation = self._draw_weights()        # w_in [K, n], w_out [K, n]: key k's row
        direct = self._direct()

        def body(state, inputs):
            a, frame = state        # a: the hidden pre-activations given the keys drawn so far
            i, key_i = inputs
            logit = b[:, i] + activation(a) @ w_out[i] + frame @ direct[i]
            on = jax.random.bernoulli(key_i, jax.nn.sigmoid(logit / temperature)).astype(jnp.float32)
            return (a + on[:, None] * w_in[i], frame.at[:, i].set(on)), None

        (_, frame), _ = jax.lax.scan(body, (c, jnp.zeros((batch, k), jnp.float32)),
                                     (jnp.arange(k), jax.random.split(key, k)))
        return frame


class NadeLSTM(_KeyByKeyLSTM):
    """RNN-NADE: an LSTM over frames, and a NADE across the keys of each frame (see the module docstring).

    Example:
        >>> m = NadeLSTM(PianoRollConfig(model="nade", num_keys=4, hidden_size=8, key_hidden=3), nnx.Rngs(0))
        >>> m.frame_nll(jnp.ones((2, 3, 4)))[0].shape
        (2, 3)

    Notebook: 08_polyphony.ipynb
    """

    def __init__(self, config: PianoRollConfig, rngs: nnx.Rngs):
        k, n = config.num_keys, config.key_hidden
        super().__init__(config, rngs, nnx.initializers.normal(0.05), (k, n))

    def key_logits(self, h: jax.Array, frames: jax.Array) -> jax.Array:
        """Logits ``[..., K]``: entry ``k`` is the logit of key ``k`` given states ``h`` ``[..., H]`` and the keys
        below ``k`` of ``frames`` ``[..., K]`` (the teacher-forced, all-keys-at-once form of the NADE)."""
        w_in, w_out = self.w_in[...], self.w_out[...]
        k, n = w_in.shape
        # before[..., k, :] = sum_{j<k} frames[..., j] W_j, as one matrix product with M[j, (k, n)] = [j < k] W[j, n]
        # (a cumulative sum over the keys gives the same numbers, three times slower on a CPU)
        below = jnp.triu(jnp.ones((k, k), w_in.dtype), 1)                     # below[j, k] = [j < k]
        before = (frames @ (below[:, :, None] * w_in[:, None, :]).reshape(k, k * n)).reshape(
            frames.shape[:-1] + (k, n))
        hidden = jax.nn.sigmoid(self.hidden_bias(h)[..., None, :] + before)
        return (self.visible_bias(h) + jnp.sum(hidden * w_out, axis=-1)
                + frames @ self._direct().T)

    def _draw_weights(self):
        return self.w_in[...], self.w_out[...], jax.nn.sigmoid


class MadeLSTM(_KeyByKeyLSTM):
    """LSTM-MADE: an LSTM over frames, and a MADE across the keys of each frame (see the module docstring).

    A MADE (Germain, Gregor, Murray and Larochelle 2015) is a one-hidden-layer network whose weights are masked
    so that output ``k`` depends only on keys ``j < k``: hidden unit ``d`` has a degree ``m(d)`` in
    ``0..K-2`` and reads the keys ``j <= m(d)``; key ``k``'s logit reads the hidden units with ``m(d) < k``.
    Here the LSTM state sets the biases of both layers, and a masked linear layer (``A``) joins the keys
    directly, as in :class:`NadeLSTM`. Unlike the NADE, whose ``K x key_hidden`` hidden pre-activations are
    recomputed for every key, the MADE's hidden layer is computed once per frame, so a step costs little more
    than the sigmoid model's.

    Example:
        >>> m = MadeLSTM(PianoRollConfig(model="made", num_keys=4, hidden_size=8, key_hidden=6), nnx.Rngs(0))
        >>> m.frame_nll(jnp.ones((2, 3, 4)))[0].shape
        (2, 3)

    Notebook: 08_polyphony.ipynb
    """

    def __init__(self, config: PianoRollConfig, rngs: nnx.Rngs):
        k, n = config.num_keys, config.key_hidden
        super().__init__(config, rngs, nnx.initializers.lecun_normal(), (n, k))

    def masks(self) -> tuple[jax.Array, jax.Array]:
        """``(mask_in [K, n], mask_out [n, K])``: which key each hidden unit reads, and which hidden units
        each key's logit reads (``degree[d] = d (K - 1) // n``, spread evenly over ``0..K-2``)."""
        k, n = self.config.num_keys, self.config.key_hidden
        degree = (jnp.arange(n) * (k - 1)) // n
        keys = jnp.arange(k)
        return ((keys[:, None] <= degree[None, :]).astype(jnp.float32),
                (degree[:, None] < keys[None, :]).astype(jnp.float32))

    def key_logits(self, h: jax.Array, frames: jax.Array) -> jax.Array:
        """Logits ``[..., K]``: entry ``k`` is the logit of key ``k`` given states ``h`` and the keys below
        ``k`` of ``frames`` (all keys at once: the masks keep each logit from reading its own key or above)."""
        mask_in, mask_out = self.masks()
        hidden = jax.nn.relu(self.hidden_bias(h) + frames @ (self.w_in[...] * mask_in))
        return (self.visible_bias(h) + hidden @ (self.w_out[...] * mask_out)
                + frames @ self._direct().T)

    def _draw_weights(self):
        mask_in, mask_out = self.masks()
        return self.w_in[...] * mask_in, (self.w_out[...] * mask_out).T, jax.nn.relu


PianoRollModel = SigmoidLSTM | NadeLSTM | MadeLSTM


def make_pianoroll_model(config: PianoRollConfig, key: int | jax.Array = 0):
    """A fresh :class:`SigmoidLSTM` or :class:`NadeLSTM` (``config.model``), parameters drawn from ``key``.

    Example:
        >>> type(make_pianoroll_model(PianoRollConfig(model="sigmoid", hidden_size=8))).__name__
        'SigmoidLSTM'

    Notebook: 08_polyphony.ipynb
    """
    if not isinstance(config, PianoRollConfig):
        raise ConfigError(f"make_pianoroll_model needs a PianoRollConfig, got {type(config).__name__}")
    rngs = nnx.Rngs(params=key)
    return {"sigmoid": SigmoidLSTM, "nade": NadeLSTM, "made": MadeLSTM}[config.model](config, rngs)


def sample_frames(model, num_frames: int, key: jax.Array, *, num: int = 1, temperature: float = 1.0,
                  primer=None) -> jax.Array:
    """Draw ``num`` piano rolls of ``num_frames`` frames: float32 ``[num, num_frames, K]`` of 0/1.

    Each frame is drawn from the model given the frames before it (after the optional ``primer``,
    ``[num or 1, P, K]``, read first), with ``jax.random.fold_in(key, t)`` for frame ``t``: the same key
    gives the same rolls. The NADE model draws each frame key by key.

    Example:
        >>> m = make_pianoroll_model(PianoRollConfig(model="nade", num_keys=5, hidden_size=8, key_hidden=4))
        >>> sample_frames(m, 6, jax.random.key(0), num=2).shape
        (2, 6, 5)

    Notebook: 08_polyphony.ipynb
    """
    if num_frames < 1 or num < 1:
        raise ConfigError(f"num_frames and num must be >= 1, got {num_frames} and {num}")
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    graphdef, state = nnx.split(model)
    k = model.config.num_keys
    if primer is None:
        primer = jnp.zeros((num, 0, k), jnp.float32)
    primer = jnp.broadcast_to(jnp.asarray(primer, jnp.float32), (num,) + tuple(jnp.shape(primer))[1:])
    return _sampler(graphdef, int(num_frames), float(temperature))(state, primer, key)


_SAMPLERS: dict = {}


def _sampler(graphdef, num_frames: int, temperature: float):
    cache_key = (graphdef, num_frames, temperature)
    if cache_key not in _SAMPLERS:
        def run(state, primer, key):
            model = nnx.merge(graphdef, state)
            carry = model.init_carry(primer.shape[0])
            if primer.shape[1]:
                _, carry = model.rnn.states(primer, carry)
            carry, h = model.rnn.step(carry, carry[1])

            def body(state_t, t):
                carry_t, h_t = state_t
                frame = model.sample_frame(h_t, jax.random.fold_in(key, t), temperature)
                carry_t, h_t = model.rnn.step(carry_t, frame)
                return (carry_t, h_t), frame

            _, frames = jax.lax.scan(body, (carry, h), jnp.arange(num_frames))
            return jnp.swapaxes(frames, 0, 1)

        _SAMPLERS[cache_key] = jax.jit(run)
    return _SAMPLERS[cache_key]
