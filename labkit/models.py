"""Flax NNX melody models: a stacked LSTM language model over event tokens, and its attention variant.

Both models read event tokens (:class:`labkit.encoding.MelodyEncoding`: ``0`` hold,
``1`` note-off, ``2+`` note-on) and give, at every step, logits over the next token:

.. math::

    x_t = E[\\text{token}_t], \\quad (c^l_t, h^l_t) = \\mathrm{LSTM}^l(c^l_{t-1}, h^l_{t-1}, h^{l-1}_t),
    \\quad p(\\text{token}_{t+1} \\mid \\text{token}_{\\le t}) = \\mathrm{softmax}(W h^L_t + b)

* :class:`MelodyLSTM` is Magenta's Basic/Lookback-free "melody RNN" with a learned
  embedding instead of one-hot inputs. Its layers are :class:`flax.nnx.OptimizedLSTMCell`
  (one fused matrix product for the four gates; measured about 20% faster than
  ``nnx.LSTMCell`` on a 2-core CPU), each run over time by a ``lax.scan`` whose backward pass
  is written by hand (:func:`_lstm_layer_scan`: the same gradients, faster).
* :class:`AttentionMelodyLSTM` adds an attention window over the last ``attention_length``
  outputs of the top layer, after Magenta's Attention RNN (E. Waite, "Generating Long-Term
  Structure in Songs and Stories", Magenta blog, 2016; attention as in Bahdanau, Cho and
  Bengio, "Neural Machine Translation by Jointly Learning to Align and Translate", ICLR 2015).
  At step ``t`` the top output ``h_t`` queries the stored outputs ``h_{t-n} .. h_{t-1}``:

  .. math::

      u_i = v^\\top \\tanh(W_k h_i + W_q h_t), \\quad a = \\mathrm{softmax}(u), \\quad
      d_t = \\textstyle\\sum_i a_i h_i

  the output is ``W_o [h_t; d_t]`` and ``d_t`` is also mixed into the next step's input
  (``W_x [x_{t+1}; d_t]``), as in Magenta's ``AttentionCellWrapper``. Slots of the window that
  have not been filled yet (the first ``n`` steps) are masked out.

Dropout (rate ``dropout``) is applied to the output of every LSTM layer, i.e. on the
non-recurrent connections only (Zaremba, Sutskever and Vinyals 2014), and only when the
caller passes ``deterministic=False`` and a JAX ``key``: the models hold no random state,
so the same key gives the same dropout masks.

Both models offer three entry points with the same parameters:

* ``model(tokens)``: logits ``[B, T, V]`` of a whole batch (training, evaluation);
* ``model.run(carry, tokens)``: the same, from and to an explicit carry (priming);
* ``model.step(carry, token)``: one step, ``[B] -> [B, V]`` (sampling).

Notebook: 04_lstm_melody_model.ipynb
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from labkit.errors import ConfigError

# flax >= 0.12 wants lists of sub-modules wrapped in nnx.List; flax 0.11 (Colab) has no nnx.List
# and takes a plain list. Both give the same state paths ('cells', 0, ...).
_ModuleList = getattr(nnx, "List", list)

Carry = Any  # a pytree of [B, ...] arrays; see each model's init_carry


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of a melody model.

    Attributes:
        vocab_size: number of event tokens (90 for the default :class:`~labkit.encoding.MelodyEncoding`).
        embed_dim: size of the learned token embedding.
        hidden_size: units per LSTM layer.
        num_layers: stacked LSTM layers.
        dropout: dropout rate on each layer's output during training, in ``[0, 1)``.
        attention_length: ``0`` for a plain :class:`MelodyLSTM`; ``n > 0`` for an
            :class:`AttentionMelodyLSTM` attending over the last ``n`` outputs (Magenta used 40).

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> ModelConfig(hidden_size=64, num_layers=1).num_params() > 0
        True
    """

    vocab_size: int = 90
    embed_dim: int = 64
    hidden_size: int = 256
    num_layers: int = 2
    dropout: float = 0.2
    attention_length: int = 0

    def __post_init__(self):
        for name in ("vocab_size", "embed_dim", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if self.vocab_size < 2:
            raise ConfigError(f"ModelConfig.vocab_size must be at least 2, got {self.vocab_size}")
        if not (0.0 <= float(self.dropout) < 1.0):
            raise ConfigError(f"ModelConfig.dropout must lie in [0, 1), got {self.dropout!r}")
        if not isinstance(self.attention_length, int) or self.attention_length < 0:
            raise ConfigError(f"ModelConfig.attention_length must be an integer >= 0, got {self.attention_length!r}")

    def to_dict(self) -> dict:
        """The config as a JSON-ready dict."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"ModelConfig has no field(s) {', '.join(unknown)}")
        return cls(**values)

    def num_params(self) -> int:
        """Number of trainable parameters of the model this config builds."""
        model = nnx.eval_shape(lambda: make_model(self, 0))
        return count_params(model)


def _dropout(x: jax.Array, rate: float, key: jax.Array | None, time_major: bool = False) -> jax.Array:
    """Inverted dropout: zero each entry with probability ``rate``, scale the rest to keep the mean.

    Each entry's draw is one byte of JAX's random bits (four entries per 32-bit number, a
    quarter of the random numbers ``jax.random.bernoulli`` would draw): the entry is dropped
    when its byte is below ``k = round(256 * rate)``, so the rate is applied to the nearest
    1/256 (0.2 drops 51/256 = 19.9% of the entries), and kept entries are scaled by
    ``256 / (256 - k)``, which keeps the expected value of every entry equal to ``x``. Measured
    with benchmarks/lstm_train.py: a training step about 6% faster on a 2-core CPU than with
    ``bernoulli``, whose random bits were 5% of the step.

    The bits are drawn batch-major (``[B, ...]``) even for time-major ``x`` ``[T, B, ...]``, so the
    mask of sequence ``b`` does not depend on how many (padding) rows follow it, nor on how the
    batch is split over devices (JAX's default partitionable threefry).
    """
    if key is None or rate == 0.0:
        return x
    shape = (x.shape[1], x.shape[0], *x.shape[2:]) if time_major else x.shape
    width = shape[-1]
    words = jax.random.bits(key, (*shape[:-1], -(-width // 4)), jnp.uint32)
    draws = jax.lax.bitcast_convert_type(words, jnp.uint8).reshape(*shape[:-1], -1)[..., :width]
    dropped = min(round(256 * rate), 255)
    keep = draws >= dropped
    if time_major:
        keep = jnp.swapaxes(keep, 0, 1)
    return jnp.where(keep, x * (256.0 / (256 - dropped)), jnp.zeros_like(x))


def _dropout_keys(deterministic: bool, rate: float, key: jax.Array | None, what: str):
    """The dropout key to use (None: no dropout); an explicit error when training lacks a key."""
    if deterministic or rate == 0.0:
        return None
    if key is None:
        raise ConfigError(f"{what}: deterministic=False with dropout {rate} needs a JAX key "
                          "(pass key=jax.random.key(seed))")
    return key


def _zeros_carry(batch: int, hidden: int, num_layers: int):
    zeros = jnp.zeros((batch, hidden), jnp.float32)
    return tuple((zeros, zeros) for _ in range(num_layers))


def _lstm_gates(y: jax.Array) -> jax.Array:
    """Gate activations of the pre-activations ``y [..., 4H]`` (order i, f, g, o, as in
    ``nnx.OptimizedLSTMCell``) with one ``tanh`` over all four: ``sigmoid(z) = (1 + tanh(z / 2)) / 2``
    for i, f, o and ``tanh(z)`` for g. One vectorized op instead of four on slices; the values
    are those of ``jax.nn.sigmoid`` / ``jnp.tanh`` (JAX computes the sigmoid through tanh too).
    """
    hidden = y.shape[-1] // 4
    scale = jnp.repeat(jnp.asarray([0.5, 0.5, 1.0, 0.5], y.dtype), hidden)
    shift = jnp.repeat(jnp.asarray([0.5, 0.5, 0.0, 0.5], y.dtype), hidden)
    return scale * jnp.tanh(scale * y) + shift


def _cell_weights(cell: nnx.OptimizedLSTMCell):
    """``(W_i [D, 4H], W_h [H, 4H], b [4H])`` of an ``OptimizedLSTMCell``."""
    return cell.dense_i.kernel[...], cell.dense_h.kernel[...], cell.dense_h.bias[...]


def _cell_update(c, pre_activations):
    """The LSTM update from the gates' pre-activations ``[B, 4H]``: ``((c, h), gates [B, 4H])``."""
    gates = _lstm_gates(pre_activations)
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = f * c + i * g
    return (c, o * jnp.tanh(c)), gates


def _cell_step(w_i, w_h, b, carry, x):
    """One LSTM step: ``((c, h), gates [B, 4H])``; the same result as ``OptimizedLSTMCell``."""
    c, h = carry
    return _cell_update(c, x @ w_i + h @ w_h + b)


def _lstm_cell(cell: nnx.OptimizedLSTMCell, carry, x: jax.Array):
    """``cell(carry, x)`` computed by :func:`_cell_step`: ``((c, h), h)``."""
    new_carry, _ = _cell_step(*_cell_weights(cell), carry, x)
    return new_carry, new_carry[1]


def _lstm_layer_forward(w_i, w_h, b, carry, x, *, slopes: bool = False):
    """The layer over time: ``((c, h), hs [T, B, H])``, and with ``slopes=True`` also what the
    backward pass needs, ``(hs, slopes [T, B, 4H], dc_dh [T, B, H], f [T, B, H])``.

    ``slopes`` are the factors by which each gate's pre-activation gradient follows from the
    gradient of the cell state ``dc`` (gates i, f, g) or of the output ``dh`` (gate o):
    ``g i (1-i)``, ``c_{t-1} f (1-f)``, ``i (1-g^2)``, ``tanh(c_t) o (1-o)``; ``dc_dh`` is
    ``o (1 - tanh^2(c_t))`` and ``f`` the forget gate. Computed here, where the gates and
    ``tanh(c_t)`` are at hand, they leave the backward loop only multiplications to do.
    """
    def body(state, x_t):           # the step of _cell_update, written out to keep tanh(c_t) at hand
        c, h = state
        gates = _lstm_gates(x_t @ w_i + h @ w_h + b)
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        c_new = f * c + i * g
        tanh_c = jnp.tanh(c_new)
        h_new = o * tanh_c
        if not slopes:
            return (c_new, h_new), h_new
        factors = jnp.concatenate([g * i * (1 - i), c * f * (1 - f), i * (1 - g * g), tanh_c * o * (1 - o)], axis=-1)
        return (c_new, h_new), (h_new, factors, o * (1 - tanh_c * tanh_c), f)

    return jax.lax.scan(body, carry, x)


@jax.custom_vjp
def _lstm_layer(w_i, w_h, b, carry, x):
    return _lstm_layer_forward(w_i, w_h, b, carry, x)


def _lstm_layer_fwd(w_i, w_h, b, carry, x):
    new_carry, (hs, slopes, dc_dh, f) = _lstm_layer_forward(w_i, w_h, b, carry, x, slopes=True)
    return (new_carry, hs), (w_i, w_h, carry, x, hs, slopes, dc_dh, f)


def _lstm_layer_bwd(residuals, cotangents):
    """Backward pass through time. Only what the recurrence needs stays in the loop (the gate
    gradients ``dy_t`` and ``dh_{t-1} = dy_t W_h^T``); the weight gradients and the input gradient
    are then one matrix product each over all ``T * B`` rows, instead of ``T`` small products
    accumulated step by step (what autodiff of ``lax.scan`` does). ``dy_t`` overwrites the slopes
    of step ``t``, which are not needed again: one ``[T, B, 4H]`` buffer instead of two, so less
    fresh memory per training step."""
    w_i, w_h, (c0, h0), x, hs, slopes, dc_dh, f = residuals
    (dc_last, dh_last), dhs = cotangents
    steps = x.shape[0]

    def body(k, state):
        dc, dh, dy = state
        t = steps - 1 - k
        dh = dh + dhs[t]
        dc = dc + dh * dc_dh[t]
        dy_t = jnp.concatenate([dc, dc, dc, dh], axis=-1) * dy[t]
        return dc * f[t], dy_t @ w_h.T, jax.lax.dynamic_update_index_in_dim(dy, dy_t, t, 0)

    dc0, dh0, dy = jax.lax.fori_loop(0, steps, body, (dc_last, dh_last, slopes))
    h_prev = jnp.concatenate([h0[None], hs[:-1]])
    dy2 = dy.reshape(-1, dy.shape[-1])                                   # [T * B, 4H]
    dw_h = h_prev.reshape(-1, h_prev.shape[-1]).T @ dy2
    dw_i = x.reshape(-1, x.shape[-1]).T @ dy2
    dx = (dy2 @ w_i.T).reshape(x.shape)
    return dw_i, dw_h, dy2.sum(axis=0), (dc0, dh0), dx


_lstm_layer.defvjp(_lstm_layer_fwd, _lstm_layer_bwd)


def _lstm_layer_scan(cell: nnx.OptimizedLSTMCell, carry, x: jax.Array):
    """Run one ``OptimizedLSTMCell`` over time-major ``x`` ``[T, B, D]`` from ``carry`` ``(c, h)``.

    The same function as ``nnx.RNN(cell)`` (gradients equal to float32 rounding), as a
    ``lax.scan`` with a hand-written backward pass (:func:`_lstm_layer_bwd`). Autodiff of the
    scan would make four small weight-gradient products at every step inside the sequential
    loop; here they are one large product each after it. Measured with benchmarks/lstm_train.py:
    a training step 1.0 to 1.1x as fast on a 2-core CPU and 1.75x on a GPU (an H200, where the
    loop's kernel launches are the cost). The forward pass saves each gate's derivative, and the
    backward loop overwrites them with the gate gradients: on the CPU another 1.18x (less
    arithmetic in the loop, less fresh memory per step). Hoisting ``x @ W_i`` out of the forward
    loop was slower on the CPU (one large fresh buffer instead of small products that stay in
    cache). No forward-mode
    autodiff (``jax.jvp``) through this function (a ``jax.custom_vjp``). Returns
    ``((c, h), outputs [T, B, H])``.
    """
    return _lstm_layer(*_cell_weights(cell), carry, x)


class MelodyLSTM(nnx.Module):
    """Token embedding -> ``num_layers`` stacked LSTMs -> dropout -> logits over the next token.

    Args:
        vocab_size: tokens in and out (``V``).
        embed_dim: embedding size.
        hidden_size: units per layer (``H``).
        num_layers: stacked layers.
        dropout: rate on each layer's output when training.
        rngs: ``nnx.Rngs`` for the initial parameters (only ``params`` is used).

    The carry is a tuple with one ``(c, h)`` pair of float32 ``[B, H]`` arrays per layer.

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> model = MelodyLSTM(90, 16, 32, 2, 0.0, rngs=nnx.Rngs(0))
        >>> model(jnp.zeros((3, 7), jnp.int32)).shape
        (3, 7, 90)
        >>> carry, logits = model.step(model.init_carry(3), jnp.zeros(3, jnp.int32))
        >>> logits.shape
        (3, 90)
    """

    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, num_layers: int = 2,
                 dropout: float = 0.0, *, rngs: nnx.Rngs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = float(dropout)
        self.embed = nnx.Embed(vocab_size, embed_dim, rngs=rngs)
        sizes = [embed_dim] + [hidden_size] * num_layers
        self.cells = _ModuleList([nnx.OptimizedLSTMCell(sizes[i], hidden_size, rngs=rngs)
                                  for i in range(num_layers)])
        self.head = nnx.Linear(hidden_size, vocab_size, rngs=rngs)

    def init_carry(self, batch: int) -> Carry:
        """Zero state for ``batch`` sequences: ``((c, h),) * num_layers``, each ``[batch, H]``."""
        return _zeros_carry(batch, self.hidden_size, self.num_layers)

    def run(self, carry: Carry, tokens: jax.Array, *, deterministic: bool = True,
            key: jax.Array | None = None) -> tuple[Carry, jax.Array]:
        """Read ``tokens`` int ``[B, T]`` from ``carry``; return ``(carry, logits [B, T, V])``."""
        key = _dropout_keys(deterministic, self.dropout, key, "MelodyLSTM")
        x = embed_tokens(self.embed, jnp.swapaxes(tokens, 0, 1))     # time-major: [T, B, E]
        new_carry = []
        for layer, cell in enumerate(self.cells):
            layer_carry, x = _lstm_layer_scan(cell, carry[layer], x)
            new_carry.append(layer_carry)
            x = _dropout(x, self.dropout, None if key is None else jax.random.fold_in(key, layer), time_major=True)
        return tuple(new_carry), jnp.swapaxes(self.head(x), 0, 1)

    def __call__(self, tokens: jax.Array, *, deterministic: bool = True,
                 key: jax.Array | None = None) -> jax.Array:
        """Logits ``[B, T, V]`` (float32, natural-log units) of the token after each of ``tokens [B, T]``.

        ``deterministic=False`` with a ``key`` applies dropout (training).
        """
        _, logits = self.run(self.init_carry(tokens.shape[0]), tokens, deterministic=deterministic, key=key)
        return logits

    def hidden_states(self, tokens: jax.Array) -> jax.Array:
        """The top layer's output ``h_t`` after each of ``tokens [B, T]``: float32 ``[B, T, H]``.

        From the zero state, without dropout: what the model "hears" at each step,
        before the head turns it into logits (``self.head(h)`` gives ``self(tokens)``).
        :func:`labkit.features.melody_model_features` summarises it as style features.
        """
        x = embed_tokens(self.embed, jnp.swapaxes(tokens, 0, 1))     # time-major: [T, B, E]
        carry = self.init_carry(tokens.shape[0])
        for layer, cell in enumerate(self.cells):
            _, x = _lstm_layer_scan(cell, carry[layer], x)
        return jnp.swapaxes(x, 0, 1)

    def step(self, carry: Carry, token: jax.Array) -> tuple[Carry, jax.Array]:
        """One step without dropout: ``token`` int ``[B]`` -> ``(carry, logits [B, V])``."""
        x = self.embed(token)
        new_carry = []
        for layer, cell in enumerate(self.cells):
            layer_carry, x = _lstm_cell(cell, carry[layer], x)
            new_carry.append(layer_carry)
        return tuple(new_carry), self.head(x)

    def step_function(self) -> Callable[[Carry, jax.Array], tuple[Carry, jax.Array]]:
        """:meth:`step` for a loop over many steps (the sampler's), with its fixed part computed once.

        The first layer's input product depends only on the token: ``E[token] @ W_i + b`` is row
        ``token`` of the table ``E @ W_i + b`` (``[V, 4H]``), computed here once, so each step
        looks the row up instead of multiplying. The same numbers up to float32 rounding (the
        products are summed in another order); about 1.1x faster sampling on a 2-core CPU
        (benchmarks/lstm_sample.py).
        """
        first, rest = self.cells[0], self.cells[1:]
        w_i, w_h, b = _cell_weights(first)
        table = self.embed.embedding[...] @ w_i + b

        def step(carry: Carry, token: jax.Array) -> tuple[Carry, jax.Array]:
            c, h = carry[0]
            (c, x), _ = _cell_update(c, table[token] + h @ w_h)
            new_carry = [(c, x)]
            for layer, cell in enumerate(rest, start=1):
                layer_carry, x = _lstm_cell(cell, carry[layer], x)
                new_carry.append(layer_carry)
            return tuple(new_carry), self.head(x)

        return step


class AttentionMelodyLSTM(nnx.Module):
    """A :class:`MelodyLSTM` whose top output attends over its own last ``attention_length`` outputs.

    After Magenta's Attention RNN (Waite 2016; see the module docstring for the equations).
    Every step depends on the previous step's attention, so the whole stack runs inside one
    ``lax.scan`` over time (slower to train than :class:`MelodyLSTM`).

    The carry is a dict: ``"lstm"`` (as in :class:`MelodyLSTM`), ``"window"`` ``[B, n, H]``
    (past top-layer outputs, oldest first), ``"keys"`` ``[B, n, H]`` (their projections
    ``W_k h_i``), ``"valid"`` ``[B, n]`` (1 where a slot holds an output) and ``"context"``
    ``[B, H]`` (the last attention read-out ``d_t``).

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> model = AttentionMelodyLSTM(90, 16, 32, 1, 0.0, attention_length=8, rngs=nnx.Rngs(0))
        >>> model(jnp.zeros((2, 5), jnp.int32)).shape
        (2, 5, 90)
    """

    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, num_layers: int = 2,
                 dropout: float = 0.0, *, attention_length: int = 40, rngs: nnx.Rngs):
        if attention_length < 1:
            raise ConfigError(f"attention_length must be at least 1, got {attention_length}")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = float(dropout)
        self.attention_length = attention_length
        self.embed = nnx.Embed(vocab_size, embed_dim, rngs=rngs)
        self.input_mix = nnx.Linear(embed_dim + hidden_size, embed_dim, rngs=rngs)
        sizes = [embed_dim] + [hidden_size] * num_layers
        self.cells = _ModuleList([nnx.OptimizedLSTMCell(sizes[i], hidden_size, rngs=rngs)
                                  for i in range(num_layers)])
        self.attn_key = nnx.Linear(hidden_size, hidden_size, use_bias=False, rngs=rngs)
        self.attn_query = nnx.Linear(hidden_size, hidden_size, rngs=rngs)
        self.attn_score = nnx.Linear(hidden_size, 1, use_bias=False, rngs=rngs)
        self.output_mix = nnx.Linear(2 * hidden_size, hidden_size, rngs=rngs)
        self.head = nnx.Linear(hidden_size, vocab_size, rngs=rngs)

    def init_carry(self, batch: int) -> Carry:
        """Zero LSTM state, an empty attention window and a zero context (see the class docstring)."""
        n, h = self.attention_length, self.hidden_size
        return {
            "lstm": _zeros_carry(batch, h, self.num_layers),
            "window": jnp.zeros((batch, n, h), jnp.float32),
            "keys": jnp.zeros((batch, n, h), jnp.float32),
            "valid": jnp.zeros((batch, n), jnp.float32),
            "context": jnp.zeros((batch, h), jnp.float32),
        }

    def _step(self, carry: Carry, x: jax.Array, key: jax.Array | None) -> tuple[Carry, jax.Array]:
        """One step from an embedded input ``x [B, E]``; returns ``(carry, logits [B, V])``."""
        x = self.input_mix(jnp.concatenate([x, carry["context"]], axis=-1))
        new_lstm = []
        for layer, cell in enumerate(self.cells):
            layer_carry, x = _lstm_cell(cell, carry["lstm"][layer], x)
            new_lstm.append(layer_carry)
            x = _dropout(x, self.dropout, None if key is None else jax.random.fold_in(key, layer))
        top = x
        # Attend over the previous outputs (not including this one), then push this one.
        scores = self.attn_score(jnp.tanh(carry["keys"] + self.attn_query(top)[:, None, :]))[..., 0]
        valid = carry["valid"] > 0
        scores = jnp.where(valid, scores, -jnp.inf)
        weights = jax.nn.softmax(jnp.where(valid.any(-1, keepdims=True), scores, 0.0), axis=-1)
        weights = jnp.where(valid, weights, 0.0)
        context = jnp.einsum("bn,bnh->bh", weights, carry["window"])
        output = self.output_mix(jnp.concatenate([top, context], axis=-1))

        def push(buffer, item):
            return jnp.concatenate([buffer[:, 1:], item[:, None]], axis=1)

        new_carry = {
            "lstm": tuple(new_lstm),
            "window": push(carry["window"], top),
            "keys": push(carry["keys"], self.attn_key(top)),
            "valid": push(carry["valid"], jnp.ones_like(carry["valid"][:, 0])),
            "context": context,
        }
        return new_carry, self.head(output)

    def run(self, carry: Carry, tokens: jax.Array, *, deterministic: bool = True,
            key: jax.Array | None = None) -> tuple[Carry, jax.Array]:
        """Read ``tokens`` int ``[B, T]`` from ``carry``; return ``(carry, logits [B, T, V])``."""
        key = _dropout_keys(deterministic, self.dropout, key, "AttentionMelodyLSTM")
        x = jnp.swapaxes(embed_tokens(self.embed, tokens), 0, 1)       # [T, B, E]
        steps = jnp.arange(x.shape[0])

        def body(state, inputs):
            x_t, t = inputs
            return self._step(state, x_t, None if key is None else jax.random.fold_in(key, t))

        carry, logits = jax.lax.scan(body, carry, (x, steps))
        return carry, jnp.swapaxes(logits, 0, 1)

    def __call__(self, tokens: jax.Array, *, deterministic: bool = True,
                 key: jax.Array | None = None) -> jax.Array:
        """Logits ``[B, T, V]`` of the token after each of ``tokens [B, T]`` (see :class:`MelodyLSTM`)."""
        _, logits = self.run(self.init_carry(tokens.shape[0]), tokens, deterministic=deterministic, key=key)
        return logits

    def step(self, carry: Carry, token: jax.Array) -> tuple[Carry, jax.Array]:
        """One step without dropout: ``token`` int ``[B]`` -> ``(carry, logits [B, V])``."""
        return self._step(carry, self.embed(token), None)

    def step_function(self) -> Callable[[Carry, jax.Array], tuple[Carry, jax.Array]]:
        """:meth:`step` for a loop over many steps (the interface of :meth:`MelodyLSTM.step_function`;
        here nothing is precomputed: the embedding is mixed with the attention context first)."""
        return self.step


MelodyModel = MelodyLSTM | AttentionMelodyLSTM


def embed_tokens(embed: nnx.Embed, tokens: jax.Array) -> jax.Array:
    """``embed(tokens)``, computed as a one-hot matrix product: the same numbers, a reproducible gradient.

    The gradient of a table lookup is a scatter-add, which GPUs run with atomic additions whose
    order changes from run to run; the gradient of this product is a matrix product, which does
    not. So the same seed trains the same parameters on a GPU as it does on a CPU. (The product
    asks for full float32 precision: GPUs would otherwise round the table to TensorFloat-32.)
    ``step`` keeps the plain lookup, which needs no gradient.
    """
    table = embed.embedding[...]
    one_hot = jax.nn.one_hot(tokens, table.shape[0], dtype=table.dtype)
    return jnp.dot(one_hot, table, precision=jax.lax.Precision.HIGHEST)


def make_model(config: ModelConfig, key: jax.Array | int = 0) -> MelodyModel:
    """Build the model ``config`` describes, with parameters drawn from ``key`` (a JAX key or an int seed).

    ``attention_length > 0`` gives an :class:`AttentionMelodyLSTM`, else a :class:`MelodyLSTM`.
    The same config and key always give the same parameters.

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> model = make_model(ModelConfig(embed_dim=8, hidden_size=16, num_layers=1), key=0)
        >>> type(model).__name__, count_params(model)
        ('MelodyLSTM', 3850)
    """
    if not isinstance(config, ModelConfig):
        raise ConfigError(f"make_model needs a ModelConfig, got {type(config).__name__}")
    if isinstance(key, int):
        key = jax.random.key(key)
    rngs = nnx.Rngs(params=key)
    args = (config.vocab_size, config.embed_dim, config.hidden_size, config.num_layers, config.dropout)
    if config.attention_length > 0:
        return AttentionMelodyLSTM(*args, attention_length=config.attention_length, rngs=rngs)
    return MelodyLSTM(*args, rngs=rngs)


def count_params(model: nnx.Module) -> int:
    """Total number of scalar parameters (``nnx.Param``) in ``model``.

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> count_params(make_model(ModelConfig(vocab_size=5, embed_dim=2, hidden_size=3, num_layers=1), 0))
        102
    """
    state = nnx.state(model, nnx.Param)
    return int(sum(x.size for x in jax.tree_util.tree_leaves(state)))
