"""Speed kernels of the melody models and the sampler: the same functions as the plain code, faster.

The code students read is :mod:`labkit.models.melody` (``nnx.OptimizedLSTMCell`` run by a plain
``lax.scan``, autodiff, ``jax.random.bernoulli`` dropout) and :mod:`labkit.sample`
(``jax.random.categorical``). The models and the sampler use the kernels below by default
(``make_model(config, kernels=False)`` and ``sample(..., kernels=False)`` switch to the plain
code); each kernel is tested equal to the plain code in ``tests/test_kernels.py``:

* :func:`lstm_layer`: one LSTM layer over time with a hand-written backward pass
  (a ``jax.custom_vjp``): the forward pass saves each gate's derivative, the backward loop keeps
  only the recurrence, and the weight and input gradients are then one matrix product each over
  all ``T * B`` rows, instead of ``T`` small products accumulated inside the loop (what autodiff of
  ``lax.scan`` does). Gradients equal autodiff of the plain layer to float32 rounding.
* :func:`lstm_cell` / :func:`lstm_gates`: one step, the four gate activations computed by one
  ``tanh`` (``sigmoid(z) = (1 + tanh(z / 2)) / 2``) instead of four ops on slices.
* :func:`table_step_function`: the sampler's step, with the first layer's input product looked
  up in a precomputed ``[V, 4H]`` table.
* :func:`byte_dropout`: inverted dropout drawing one random byte per entry instead of one
  32-bit number (a quarter of the random bits of ``jax.random.bernoulli``).
* :func:`inverse_cdf_draw`: inverse-CDF sampling, one uniform number per row where
  ``jax.random.categorical`` (the Gumbel trick) draws ``V`` numbers and takes two logarithms each.

Speed figures of each kernel against the plain code are in ``benchmarks/README.md``
("LSTM speed: what limits it and what helps").

Notebook: 04_lstm_melody_model.ipynb
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["byte_dropout", "cell_update", "cell_weights", "inverse_cdf_draw", "inverse_cdf_token", "lstm_cell",
           "lstm_gates", "lstm_layer", "table_step_function"]


# --- dropout -------------------------------------------------------------------------------------

def byte_dropout(x: jax.Array, rate: float, key: jax.Array | None, time_major: bool = False) -> jax.Array:
    """Inverted dropout: zero each entry with probability ``rate``, scale the rest to keep the mean.

    Each entry's draw is one byte of JAX's random bits (four entries per 32-bit number): the entry
    is dropped when its byte is below ``k = round(256 * rate)``, so the rate is applied to the
    nearest 1/256 (0.2 drops 51/256 = 19.9% of the entries), and kept entries are scaled by
    ``256 / (256 - k)``, which keeps the expected value of every entry equal to ``x``.
    The plain version is :func:`labkit.models.melody.dropout` (``jax.random.bernoulli``).

    The bits are drawn batch-major (``[B, ...]``) even for time-major ``x`` ``[T, B, ...]``, so the
    mask of sequence ``b`` does not depend on how many (padding) rows follow it, nor on how the
    batch is split over devices (JAX's default partitionable threefry).

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> x = jnp.ones((2, 8))
        >>> byte_dropout(x, 0.0, jax.random.key(0)) is x
        True
        >>> sorted(set(byte_dropout(x, 0.5, jax.random.key(0)).ravel().tolist()) - {0.0})
        [2.0]
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


# --- one LSTM step -------------------------------------------------------------------------------

def lstm_gates(y: jax.Array) -> jax.Array:
    """Gate activations of the pre-activations ``y [..., 4H]`` (order i, f, g, o, as in
    ``nnx.OptimizedLSTMCell``) with one ``tanh`` over all four: ``sigmoid(z) = (1 + tanh(z / 2)) / 2``
    for i, f, o and ``tanh(z)`` for g. One vectorized op instead of four on slices; the values
    are those of ``jax.nn.sigmoid`` / ``jnp.tanh`` to float32 rounding.

    Example:
        >>> [round(float(v), 4) for v in lstm_gates(jnp.array([0.0, 0.0, 1.0, 2.0]))]
        [0.5, 0.5, 0.7616, 0.8808]
    """
    hidden = y.shape[-1] // 4
    scale = jnp.repeat(jnp.asarray([0.5, 0.5, 1.0, 0.5], y.dtype), hidden)
    shift = jnp.repeat(jnp.asarray([0.5, 0.5, 0.0, 0.5], y.dtype), hidden)
    return scale * jnp.tanh(scale * y) + shift


def cell_weights(cell: nnx.OptimizedLSTMCell):
    """``(W_i [D, 4H], W_h [H, 4H], b [4H])`` of an ``OptimizedLSTMCell``."""
    return cell.dense_i.kernel[...], cell.dense_h.kernel[...], cell.dense_h.bias[...]


def cell_update(c, pre_activations):
    """The LSTM update from the gates' pre-activations ``[B, 4H]``: ``((c, h), gates [B, 4H])``."""
    gates = lstm_gates(pre_activations)
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = f * c + i * g
    return (c, o * jnp.tanh(c)), gates


def _cell_step(w_i, w_h, b, carry, x):
    c, h = carry
    return cell_update(c, x @ w_i + h @ w_h + b)


def lstm_cell(cell: nnx.OptimizedLSTMCell, carry, x: jax.Array):
    """``cell(carry, x)`` with :func:`lstm_gates`: ``((c, h), h)``, as ``OptimizedLSTMCell`` returns.

    Notebook: 04_lstm_melody_model.ipynb
    """
    new_carry, _ = _cell_step(*cell_weights(cell), carry, x)
    return new_carry, new_carry[1]


def table_step_function(embed: nnx.Embed, cells, head: nnx.Linear) -> Callable:
    """A melody LSTM's ``step(carry, token) -> (carry, logits)`` with its fixed part computed once.

    The first layer's input product depends only on the token: ``E[token] @ W_i + b`` is row
    ``token`` of the table ``E @ W_i + b`` (``[V, 4H]``), computed here once, so each step looks
    the row up instead of multiplying. The same numbers as ``MelodyLSTM.step`` up to float32
    rounding (the products are summed in another order).

    Notebook: 05_sampling_studio.ipynb
    """
    first, rest = cells[0], list(cells[1:])
    w_i, w_h, b = cell_weights(first)
    table = embed.embedding[...] @ w_i + b

    def step(carry, token: jax.Array):
        c, h = carry[0]
        (c, x), _ = cell_update(c, table[token] + h @ w_h)
        new_carry = [(c, x)]
        for layer, cell in enumerate(rest, start=1):
            layer_carry, x = lstm_cell(cell, carry[layer], x)
            new_carry.append(layer_carry)
        return tuple(new_carry), head(x)

    return step


# --- one LSTM layer over time, with a hand-written backward pass ----------------------------------

def _layer_forward(w_i, w_h, b, carry, x, *, slopes: bool = False):
    """The layer over time: ``((c, h), hs [T, B, H])``, and with ``slopes=True`` also what the
    backward pass needs, ``(hs, slopes [T, B, 4H], dc_dh [T, B, H], f [T, B, H])``.

    ``slopes`` are the factors by which each gate's pre-activation gradient follows from the
    gradient of the cell state ``dc`` (gates i, f, g) or of the output ``dh`` (gate o):
    ``g i (1-i)``, ``c_{t-1} f (1-f)``, ``i (1-g^2)``, ``tanh(c_t) o (1-o)``; ``dc_dh`` is
    ``o (1 - tanh^2(c_t))`` and ``f`` the forget gate. Computed here, where the gates and
    ``tanh(c_t)`` are at hand, they leave the backward loop only multiplications to do.
    """
    def body(state, x_t):           # the step of cell_update, written out to keep tanh(c_t) at hand
        c, h = state
        gates = lstm_gates(x_t @ w_i + h @ w_h + b)
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
def _layer(w_i, w_h, b, carry, x):
    return _layer_forward(w_i, w_h, b, carry, x)


def _layer_fwd(w_i, w_h, b, carry, x):
    new_carry, (hs, slopes, dc_dh, f) = _layer_forward(w_i, w_h, b, carry, x, slopes=True)
    return (new_carry, hs), (w_i, w_h, carry, x, hs, slopes, dc_dh, f)


def _layer_bwd(residuals, cotangents):
    """Backward pass through time. Only what the recurrence needs stays in the loop (the gate
    gradients ``dy_t`` and ``dh_{t-1} = dy_t W_h^T``); the weight gradients and the input gradient
    are then one matrix product each over all ``T * B`` rows. ``dy_t`` overwrites the slopes of
    step ``t``, which are not needed again: one ``[T, B, 4H]`` buffer instead of two."""
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


_layer.defvjp(_layer_fwd, _layer_bwd)


def lstm_layer(cell: nnx.OptimizedLSTMCell, carry, x: jax.Array):
    """Run one ``OptimizedLSTMCell`` over time-major ``x`` ``[T, B, D]`` from ``carry`` ``(c, h)``.

    The same function as ``jax.lax.scan(cell, carry, x)`` (:func:`labkit.models.melody.lstm_layer_scan`;
    values and gradients equal to float32 rounding), with the hand-written backward pass
    described in the module docstring. No forward-mode autodiff (``jax.jvp``) through this
    function (a ``jax.custom_vjp``). Returns ``((c, h), outputs [T, B, H])``.

    Notebook: 04_lstm_melody_model.ipynb
    """
    return _layer(*cell_weights(cell), carry, x)


# --- drawing a token -----------------------------------------------------------------------------

def inverse_cdf_token(logits: jax.Array, u: jax.Array) -> jax.Array:
    """The token whose cumulative-probability interval holds ``u`` in ``[0, 1)``: int32 ``[...]``.

    ``logits [..., V]`` (``-inf`` = excluded), ``u [...]``. The softmax's cumulative sums split
    ``[0, 1)`` into one interval per token, as long as its probability; the token returned is the
    first whose cumulative probability exceeds ``u``, so a uniform ``u`` gives a draw from the
    softmax, and a token of probability 0 is never returned. The running sums are taken of
    ``exp(z - max z)`` (``u`` is scaled by their total instead of dividing), as one product with a
    triangular matrix of ones (XLA's CPU ``cumsum`` is a slower reduce-window).

    Notebook: 05_sampling_studio.ipynb

    Example:
        >>> logits = jnp.log(jnp.array([0.2, 0.3, 0.5]))
        >>> [int(inverse_cdf_token(logits, jnp.float32(u))) for u in (0.1, 0.25, 0.49, 0.51, 0.99)]
        [0, 1, 1, 2, 2]
    """
    logits = logits.astype(jnp.float32)
    weights = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
    size = logits.shape[-1]
    upper = (jnp.arange(size)[:, None] <= jnp.arange(size)[None, :]).astype(jnp.float32)
    cdf = jnp.dot(weights, upper, precision=jax.lax.Precision.HIGHEST)         # running sums
    scaled = jnp.asarray(u, cdf.dtype)[..., None] * cdf[..., -1:]
    return jnp.minimum(jnp.sum(cdf <= scaled, axis=-1), size - 1).astype(jnp.int32)


def inverse_cdf_draw(key: jax.Array, logits: jax.Array) -> jax.Array:
    """One token per row of ``logits [..., V]`` (``-inf`` = excluded): int32 ``[...]``.

    :func:`inverse_cdf_token` of one uniform number per row: the same distribution as
    ``jax.random.categorical(key, logits)`` (the plain draw, :mod:`labkit.sample`), from one
    random number per row instead of ``V``.

    Notebook: 05_sampling_studio.ipynb

    Example:
        >>> int(inverse_cdf_draw(jax.random.key(0), jnp.array([-jnp.inf, 0.0, -jnp.inf])))
        1
    """
    u = jax.random.uniform(key, logits.shape[:-1] + (1,), jnp.float32)
    return inverse_cdf_token(logits, u[..., 0])
