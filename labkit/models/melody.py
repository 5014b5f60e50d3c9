"""Flax NNX melody models: a stacked LSTM language model over event tokens, and its attention variant.

Both models read event tokens (:class:`labkit.encoding.MelodyEncoding`: ``0`` hold,
``1`` note-off, ``2+`` note-on) and give, at every step, logits over the next token:

.. math::

    x_t = E[\\text{token}_t], \\quad (c^l_t, h^l_t) = \\mathrm{LSTM}^l(c^l_{t-1}, h^l_{t-1}, h^{l-1}_t),
    \\quad p(\\text{token}_{t+1} \\mid \\text{token}_{\\le t}) = \\mathrm{softmax}(W h^L_t + b)

* :class:`MelodyLSTM` is Magenta's Basic/Lookback-free "melody RNN" with a learned
  embedding instead of one-hot inputs. Its layers are :class:`flax.nnx.OptimizedLSTMCell`
  (one fused matrix product for the four gates), each run over time by a ``lax.scan``
  (:func:`lstm_layer_scan`).
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
so the same key gives the same dropout masks (:func:`dropout`).

The plain code above is what this module shows. By default (``use_kernels=True``) the models run the
same functions through the speed kernels of :mod:`labkit.models.kernels`: an LSTM layer with a
hand-written backward pass, one-``tanh`` gates, dropout masks from random bytes and a
precomputed first-layer table for sampling. Values and gradients agree with the plain code to
float32 rounding, and dropout keeps the same rate and mean but draws other masks (see
``tests/test_kernels.py``). ``make_model(config, use_kernels=False)`` (or setting
``model.use_kernels = False``) runs the plain code.

Both models offer three entry points with the same parameters:

* ``model(tokens)``: logits ``[B, T, V]`` of a whole batch (training, evaluation);
* ``model.run(carry, tokens)``: the same, from and to an explicit carry (priming);
* ``model.step(carry, token)``: one step, ``[B] -> [B, V]`` (sampling).

Notebook: 04_lstm_melody_model.ipynb
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from labkit._common import ConfigDict
from labkit.errors import ConfigError
from labkit.models import kernels

# flax >= 0.12 wants lists of sub-modules wrapped in nnx.List; flax 0.11 (Colab) has no nnx.List
# and takes a plain list. Both give the same state paths ('cells', 0, ...).
_ModuleList = getattr(nnx, "List", list)

Carry = Any  # a pytree of [B, ...] arrays; see each model's init_carry


@dataclass(frozen=True)
class ModelConfig(ConfigDict):
    """Sizes of a melody model.

    Attributes:
        vocab_size: number of event tokens (90 for the default :class:`~labkit.encoding.MelodyEncoding`).
        embed_dim: size of the learned token embedding.
        hidden_size: units per LSTM layer.
        num_layers: stacked LSTM layers.
        dropout: dropout rate on each layer's output during training, in ``[0, 1)``.
        attention_length: ``0`` for a plain :class:`MelodyLSTM`; ``n > 0`` for an
            :class:`AttentionMelodyLSTM` attending over the last ``n`` outputs (Magenta used 40).
        condition_tokens: ``0`` for a plain model; ``k > 0`` for a :class:`ConditionedMelodyLSTM`, whose every
            input step also gets the embeddings of the sequence's first ``k`` tokens (its conditions).

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
    condition_tokens: int = 0

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
        if not isinstance(self.condition_tokens, int) or self.condition_tokens < 0:
            raise ConfigError(f"ModelConfig.condition_tokens must be an integer >= 0, got {self.condition_tokens!r}")
        if self.condition_tokens and self.attention_length:
            raise ConfigError("ModelConfig: condition_tokens and attention_length cannot both be set")


    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


    def num_params(self) -> int:
        """Number of trainable parameters of the model this config builds."""
        model = nnx.eval_shape(lambda: make_model(self, 0))
        return count_params(model)


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout: zero each entry with probability ``rate`` (``jax.random.bernoulli``), scale the
    rest by ``1 / (1 - rate)`` so that every entry keeps its expected value. ``key=None`` or
    ``rate=0``: ``x`` unchanged. (The models' default is the faster
    :func:`labkit.models.kernels.byte_dropout`, the same up to drawing other masks.)

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> sorted(set(dropout(jnp.ones(8), 0.5, jax.random.key(0)).tolist()))
        [0.0, 2.0]
    """
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def lstm_layer_scan(cell: nnx.OptimizedLSTMCell, carry, x: jax.Array):
    """Run one LSTM cell over time-major ``x`` ``[T, B, D]`` from ``carry`` ``(c, h)``: ``((c, h), hs [T, B, H])``.

    A plain ``lax.scan`` of the cell (``cell(carry, x_t) -> (carry, h_t)``); ``jax.grad`` differentiates
    it step by step. (The models' default is :func:`labkit.models.kernels.lstm_layer`: the same values,
    a hand-written backward pass.)

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> cell = nnx.OptimizedLSTMCell(3, 4, rngs=nnx.Rngs(0))
        >>> (c, h), hs = lstm_layer_scan(cell, (jnp.zeros((2, 4)), jnp.zeros((2, 4))), jnp.ones((5, 2, 3)))
        >>> hs.shape, bool(jnp.all(hs[-1] == h))
        ((5, 2, 4), True)
    """
    return jax.lax.scan(lambda state, x_t: cell(state, x_t), carry, x)


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


def _layer(use_kernels: bool, cell, carry, x):
    return kernels.lstm_layer(cell, carry, x) if use_kernels else lstm_layer_scan(cell, carry, x)


def _cell(use_kernels: bool, cell, carry, x):
    return kernels.lstm_cell(cell, carry, x) if use_kernels else cell(carry, x)


def _drop(use_kernels: bool, x, rate, key, time_major=False):
    if use_kernels:
        return kernels.byte_dropout(x, rate, key, time_major=time_major)
    return dropout(x, rate, key)


class MelodyLSTM(nnx.Module):
    """Token embedding -> ``num_layers`` stacked LSTMs -> dropout -> logits over the next token.

    Args:
        vocab_size: tokens in and out (``V``).
        embed_dim: embedding size.
        hidden_size: units per layer (``H``).
        num_layers: stacked layers.
        dropout: rate on each layer's output when training.
        use_kernels: run the speed kernels (:mod:`labkit.models.kernels`; default) or the plain code.
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
                 dropout: float = 0.0, *, use_kernels: bool = True, rngs: nnx.Rngs):
        self.vocab_size = vocab_size
        self.use_kernels = bool(use_kernels)
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
            layer_carry, x = _layer(self.use_kernels, cell, carry[layer], x)
            new_carry.append(layer_carry)
            x = _drop(self.use_kernels, x, self.dropout, None if key is None else jax.random.fold_in(key, layer),
                      time_major=True)
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
        :func:`labkit.style.features.melody_model_features` summarises it as style features.
        """
        x = embed_tokens(self.embed, jnp.swapaxes(tokens, 0, 1))     # time-major: [T, B, E]
        carry = self.init_carry(tokens.shape[0])
        for layer, cell in enumerate(self.cells):
            _, x = _layer(self.use_kernels, cell, carry[layer], x)
        return jnp.swapaxes(x, 0, 1)

    def step(self, carry: Carry, token: jax.Array) -> tuple[Carry, jax.Array]:
        """One step without dropout: ``token`` int ``[B]`` -> ``(carry, logits [B, V])``."""
        x = self.embed(token)
        new_carry = []
        for layer, cell in enumerate(self.cells):
            layer_carry, x = _cell(self.use_kernels, cell, carry[layer], x)
            new_carry.append(layer_carry)
        return tuple(new_carry), self.head(x)

    def step_function(self) -> Callable[[Carry, jax.Array], tuple[Carry, jax.Array]]:
        """:meth:`step` for a loop over many steps (the sampler's), with what stays the same computed once.

        With the kernels: :func:`labkit.models.kernels.table_step_function` (the first layer's input
        products looked up in a precomputed table; the same numbers to float32 rounding); else :meth:`step`.
        """
        if not self.use_kernels:
            return self.step
        return kernels.table_step_function(self.embed, self.cells, self.head)


class ConditionedMelodyLSTM(MelodyLSTM):
    """A :class:`MelodyLSTM` that hears its conditions at every step, not only at the start.

    A sequence's first ``condition_tokens`` tokens are its conditions (for
    :mod:`labkit.conditioned`: style, metre, key). Their embeddings, summed, are added to the
    embedding of every input token, so the LSTM's gates get a bias per sequence that it cannot
    forget, however long the tune (a prefix read once must be carried in the state). It is causal:
    step ``t`` adds the embeddings of the conditions read so far, ``c_t = sum_{j <= min(t, k-1)} e_j``,
    so :meth:`run` over a sequence and :meth:`step` token by token give the same logits. No new
    parameters: the conditions' own embeddings are the conditioning vector.

    The carry is a dict: ``"lstm"`` (as in :class:`MelodyLSTM`), ``"cond"`` ``[B, E]`` (the sum so far)
    and ``"pos"`` ``[B]`` int32 (tokens read).

    Notebook: 09_judging_generated_music.ipynb

    Example:
        >>> model = ConditionedMelodyLSTM(20, 8, 16, 1, 0.0, condition_tokens=2, rngs=nnx.Rngs(0))
        >>> tokens = jnp.array([[3, 4, 5, 6, 7]])
        >>> carry = model.init_carry(1)
        >>> steps = []
        >>> for t in range(5):
        ...     carry, logits = model.step(carry, tokens[:, t])
        ...     steps.append(logits)
        >>> bool(jnp.allclose(jnp.stack(steps, 1), model(tokens), atol=1e-5))
        True
    """

    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, num_layers: int = 2,
                 dropout: float = 0.0, *, condition_tokens: int, use_kernels: bool = True, rngs: nnx.Rngs):
        if condition_tokens < 1:
            raise ConfigError(f"condition_tokens must be at least 1, got {condition_tokens}")
        super().__init__(vocab_size, embed_dim, hidden_size, num_layers, dropout, use_kernels=use_kernels, rngs=rngs)
        self.condition_tokens = int(condition_tokens)
        self.embed_dim = embed_dim

    def init_carry(self, batch: int) -> Carry:
        """Zero LSTM state, no conditions read: ``{"lstm", "cond" [B, E], "pos" [B]}``."""
        return {"lstm": _zeros_carry(batch, self.hidden_size, self.num_layers),
                "cond": jnp.zeros((batch, self.embed_dim), jnp.float32), "pos": jnp.zeros((batch,), jnp.int32)}

    def _inputs(self, carry: Carry, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Time-major inputs ``[T, B, E]`` (embedding + conditions so far) and the conditions after the last."""
        e = embed_tokens(self.embed, jnp.swapaxes(tokens, 0, 1))                   # [T, B, E]
        position = carry["pos"][None, :] + jnp.arange(tokens.shape[1])[:, None]    # [T, B]
        is_condition = (position < self.condition_tokens)[..., None]
        cond = carry["cond"][None] + jnp.cumsum(jnp.where(is_condition, e, 0.0), axis=0)
        return e + cond, cond[-1]

    def _stack(self, carry: Carry, x: jax.Array, key: jax.Array | None, drop: bool):
        new_lstm = []
        for layer, cell in enumerate(self.cells):
            layer_carry, x = _layer(self.use_kernels, cell, carry["lstm"][layer], x)
            new_lstm.append(layer_carry)
            if drop:
                x = _drop(self.use_kernels, x, self.dropout,
                          None if key is None else jax.random.fold_in(key, layer), time_major=True)
        return tuple(new_lstm), x

    def run(self, carry: Carry, tokens: jax.Array, *, deterministic: bool = True,
            key: jax.Array | None = None) -> tuple[Carry, jax.Array]:
        """Read ``tokens`` int ``[B, T]`` from ``carry``; return ``(carry, logits [B, T, V])``."""
        key = _dropout_keys(deterministic, self.dropout, key, "ConditionedMelodyLSTM")
        x, cond = self._inputs(carry, tokens)
        new_lstm, x = self._stack(carry, x, key, drop=True)
        new_carry = {"lstm": new_lstm, "cond": cond, "pos": carry["pos"] + tokens.shape[1]}
        return new_carry, jnp.swapaxes(self.head(x), 0, 1)

    def hidden_states(self, tokens: jax.Array) -> jax.Array:
        """The top layer's output after each of ``tokens [B, T]`` from the zero state: float32 ``[B, T, H]``."""
        carry = self.init_carry(tokens.shape[0])
        x, _ = self._inputs(carry, tokens)
        _, x = self._stack(carry, x, None, drop=False)
        return jnp.swapaxes(x, 0, 1)

    def step(self, carry: Carry, token: jax.Array) -> tuple[Carry, jax.Array]:
        """One step without dropout: ``token`` int ``[B]`` -> ``(carry, logits [B, V])``."""
        e = self.embed(token)
        cond = carry["cond"] + jnp.where((carry["pos"] < self.condition_tokens)[:, None], e, 0.0)
        x = e + cond
        new_lstm = []
        for layer, cell in enumerate(self.cells):
            layer_carry, x = _cell(self.use_kernels, cell, carry["lstm"][layer], x)
            new_lstm.append(layer_carry)
        return {"lstm": tuple(new_lstm), "cond": cond, "pos": carry["pos"] + 1}, self.head(x)

    def step_function(self) -> Callable[[Carry, jax.Array], tuple[Carry, jax.Array]]:
        """:meth:`step` (the input changes with the conditions, so no table of input products is precomputed)."""
        return self.step


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
                 dropout: float = 0.0, *, attention_length: int = 40, use_kernels: bool = True,
                 rngs: nnx.Rngs):
        if attention_length < 1:
            raise ConfigError(f"attention_length must be at least 1, got {attention_length}")
        self.vocab_size = vocab_size
        self.use_kernels = bool(use_kernels)
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
            layer_carry, x = _cell(self.use_kernels, cell, carry["lstm"][layer], x)
            new_lstm.append(layer_carry)
            x = _drop(self.use_kernels, x, self.dropout, None if key is None else jax.random.fold_in(key, layer))
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


MelodyModel = MelodyLSTM | AttentionMelodyLSTM | ConditionedMelodyLSTM


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


def make_model(config: ModelConfig, key: jax.Array | int = 0, *, use_kernels: bool = True) -> MelodyModel:
    """Build the model ``config`` describes, with parameters drawn from ``key`` (a JAX key or an int seed).

    ``condition_tokens > 0`` gives a :class:`ConditionedMelodyLSTM`, ``attention_length > 0`` an
    :class:`AttentionMelodyLSTM`, else a :class:`MelodyLSTM`.
    The same config and key always give the same parameters. ``use_kernels=False`` runs the plain
    code of this module instead of :mod:`labkit.models.kernels` (same parameters).

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
    if config.condition_tokens > 0:
        return ConditionedMelodyLSTM(*args, condition_tokens=config.condition_tokens, use_kernels=use_kernels,
                                     rngs=rngs)
    if config.attention_length > 0:
        return AttentionMelodyLSTM(*args, attention_length=config.attention_length, use_kernels=use_kernels,
                                   rngs=rngs)
    return MelodyLSTM(*args, use_kernels=use_kernels, rngs=rngs)


def count_params(model: nnx.Module) -> int:
    """Total number of scalar parameters (``nnx.Param``) in ``model``.

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> count_params(make_model(ModelConfig(vocab_size=5, embed_dim=2, hidden_size=3, num_layers=1), 0))
        102
    """
    state = nnx.state(model, nnx.Param)
    return int(sum(x.size for x in jax.tree_util.tree_leaves(state)))
