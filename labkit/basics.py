"""Recurrent networks from first principles, in plain JAX.

The pieces of the source paper ("AI-Driven Music Composition Using Recursive
Neural Networks"), written out so that each one can be checked by hand:

* eq. 1, the sum-of-squares error ``E = 1/2 * sum_k (t_k - o_k)^2``
  (:func:`sum_of_squares_error`) and the paper's stopping rule "until RMSE < 0.1"
  (:func:`rmse`, :func:`train_until`);
* eq. 2, the delta rule ``dw_ij = -eta * dE/dw_ij = eta * delta_j * o_i``
  (:func:`sgd_update`), generalised through time as backpropagation through
  time (:func:`manual_gradients`);
* eq. 3, the sigmoid ``sigma(x) = 1 / (1 + exp(-x))`` (:func:`sigmoid`).

A vanilla ("Elman") RNN with a tanh (or sigmoid) hidden state and sigmoid
outputs (:func:`init_rnn`, :func:`rnn_forward`), the vanishing gradient
(:func:`gradient_norms_through_time`), and an LSTM cell written out gate by
gate (:func:`lstm_cell_by_hand`) that reproduces Flax's ``nnx.LSTMCell`` and
``nnx.OptimizedLSTMCell`` from their parameters (:func:`lstm_params_from_flax`).

Conventions (row vectors, as in Flax: ``y = x @ W + b``):

* ``inputs`` is ``[T, input_size]``: time first, one sequence (use
  ``jax.vmap`` for a batch);
* the hidden state before the first input is ``h0`` (zeros unless given);
  ``hidden[t]`` is the state *after* reading ``inputs[t]``, so in the maths
  ``h_{t+1} = hidden[t]`` and ``h_T = hidden[-1]``.

Everything is float32 and deterministic: randomness enters only through the
explicit JAX ``key`` of :func:`init_rnn`.

Notebook: 03_rnn_from_first_principles.ipynb
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from labkit.errors import ConfigError

__all__ = [
    "sigmoid",
    "sum_of_squares_error",
    "rmse",
    "next_symbol_pairs",
    "init_rnn",
    "rnn_forward",
    "manual_gradients",
    "sgd_update",
    "sgd_step",
    "train_until",
    "gradient_norms_through_time",
    "lstm_cell_by_hand",
    "lstm_forward",
    "lstm_params_from_flax",
    "RNN_PARAM_NAMES",
    "LSTM_PARAM_NAMES",
    "HIDDEN_ACTIVATIONS",
]

#: Keys of the vanilla RNN's parameter dict, see :func:`init_rnn`.
RNN_PARAM_NAMES = ("W_xh", "W_hh", "b_h", "W_hy", "b_y")

#: Keys of the by-hand LSTM's parameter dict, see :func:`lstm_cell_by_hand`.
LSTM_PARAM_NAMES = (
    "W_ii", "W_if", "W_ig", "W_io",
    "W_hi", "W_hf", "W_hg", "W_ho",
    "b_i", "b_f", "b_g", "b_o",
)

#: Hidden-state activations the vanilla RNN accepts.
HIDDEN_ACTIVATIONS = ("tanh", "sigmoid")


# --------------------------------------------------------------------------
# eq. 1-3
# --------------------------------------------------------------------------

def sigmoid(x):
    r"""The logistic sigmoid of eq. 3, :math:`\sigma(x) = 1/(1+e^{-x})`, elementwise.

    Computed in the numerically stable form of ``jax.nn.sigmoid`` (the naive
    formula gives ``nan`` gradients for ``x`` below about -90 in float32).
    Its derivative is :math:`\sigma'(x) = \sigma(x)(1-\sigma(x)) \le 1/4`.

    Args:
        x: array of any shape (or a Python number).

    Returns:
        array of the same shape, values in (0, 1).

    >>> float(sigmoid(0.0))
    0.5

    Notebook: 03_rnn_from_first_principles.ipynb
    """
    return jax.nn.sigmoid(jnp.asarray(x, dtype=jnp.result_type(float)))


def _check_same_shape(targets, outputs, what: str):
    targets = jnp.asarray(targets)
    outputs = jnp.asarray(outputs)
    if targets.shape != outputs.shape:
        raise ConfigError(
            f"{what}: targets have shape {tuple(targets.shape)} but outputs have shape "
            f"{tuple(outputs.shape)}; they must match"
        )
    if targets.size == 0:
        raise ConfigError(f"{what}: targets and outputs are empty")
    return targets, outputs


def sum_of_squares_error(targets, outputs):
    r"""Eq. 1: :math:`E = \tfrac12 \sum_k (t_k - o_k)^2`, summed over every element.

    Args:
        targets: array ``[...]`` of target values ``t``.
        outputs: array of the same shape, the network's outputs ``o``.

    Returns:
        scalar ``E`` (float32). The ``1/2`` makes ``dE/do_k = -(t_k - o_k)``.

    Raises:
        ConfigError: the shapes differ or are empty.

    >>> float(sum_of_squares_error([1.0, 0.0], [0.5, 0.5]))
    0.25

    Notebook: 03_rnn_from_first_principles.ipynb
    """
    targets, outputs = _check_same_shape(targets, outputs, "sum_of_squares_error")
    diff = targets - outputs
    return 0.5 * jnp.sum(diff * diff)


def rmse(targets, outputs):
    r"""Root-mean-square error :math:`\sqrt{\frac1N \sum_k (t_k-o_k)^2}` over all ``N`` elements.

    This is the paper's stopping criterion ("train until RMSE < 0.1"); note
    ``rmse = sqrt(2 E / N)`` with ``E`` from :func:`sum_of_squares_error`.

    Args:
        targets: array ``[...]``.
        outputs: array of the same shape.

    Returns:
        scalar float32.

    Raises:
        ConfigError: the shapes differ or are empty.

    >>> round(float(rmse([1.0, 0.0], [0.5, 0.5])), 3)
    0.5

    Notebook: 03_rnn_from_first_principles.ipynb
    """
    targets, outputs = _check_same_shape(targets, outputs, "rmse")
    diff = targets - outputs
    return jnp.sqrt(jnp.mean(diff * diff))


# --------------------------------------------------------------------------
# a tiny task
# --------------------------------------------------------------------------

def next_symbol_pairs(symbols, vocab_size: int, repeats: int = 1):
    """One-hot (input, target) pairs for predicting the next symbol of a sequence.

    The sequence is repeated ``repeats`` times end to end, so the last symbol of
    one repetition is followed by the first of the next (a looping motif).

    Args:
        symbols: 1-D ints in ``0..vocab_size-1`` (e.g. pitch classes or tokens), length ``L >= 2``
            (or ``L >= 1`` with ``repeats >= 2``).
        vocab_size: number of distinct symbols ``V``.
        repeats: how many times to loop the sequence (>= 1).

    Returns:
        ``(inputs, targets)``, each float32 ``[L * repeats - 1, V]``: ``targets[t]`` is
        the one-hot of the symbol after ``inputs[t]``.

    Raises:
        ConfigError: bad symbols, vocab_size or repeats.

    >>> x, y = next_symbol_pairs([0, 2, 1], vocab_size=3, repeats=2)
    >>> x.shape, y.argmax(-1).tolist()
    ((5, 3), [2, 1, 0, 2, 1])

    Notebook: 03_rnn_from_first_principles.ipynb
    """
    if int(vocab_size) != vocab_size or vocab_size < 1:
        raise ConfigError(f"next_symbol_pairs: vocab_size must be a positive integer, got {vocab_size!r}")
    if int(repeats) != repeats or repeats < 1:
        raise ConfigError(f"next_symbol_pairs: repeats must be a positive integer, got {repeats!r}")
    arr = np.asarray(symbols)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(f"next_symbol_pairs: symbols must be a 1-D sequence of integers, got {arr.dtype} {arr.shape}")
    bad = arr[(arr < 0) | (arr >= vocab_size)]
    if bad.size:
        raise ConfigError(f"next_symbol_pairs: symbol {int(bad[0])} is outside 0..{vocab_size - 1}")
    seq = np.tile(arr, int(repeats))
    if seq.size < 2:
        raise ConfigError("next_symbol_pairs: need at least two symbols in total")
    eye = np.eye(int(vocab_size), dtype=np.float32)
    return jnp.asarray(eye[seq[:-1]]), jnp.asarray(eye[seq[1:]])


# --------------------------------------------------------------------------
# the vanilla RNN
# --------------------------------------------------------------------------

def _check_activation(activation: str) -> str:
    if activation not in HIDDEN_ACTIVATIONS:
        raise ConfigError(f"hidden activation must be one of {HIDDEN_ACTIVATIONS}, got {activation!r}")
    return activation


def _act(activation: str):
    return jnp.tanh if activation == "tanh" else sigmoid


def _act_derivative_from_output(activation: str, h):
    """act'(a) written in terms of h = act(a): tanh' = 1 - h^2, sigmoid' = h (1 - h)."""
    return 1.0 - h * h if activation == "tanh" else h * (1.0 - h)


def init_rnn(key, input_size: int, hidden_size: int, output_size: int, *, recurrent_scale: float = 1.0) -> dict:
    r"""Random parameters of a vanilla RNN (one hidden layer, sigmoid outputs).

    The network (:func:`rnn_forward`) computes, for ``t = 1..T``,

    .. math::
        h_t = \tanh(x_t W_{xh} + h_{t-1} W_{hh} + b_h), \qquad
        o_t = \sigma(h_t W_{hy} + b_y).

    Weights are drawn from a normal distribution scaled by ``1/sqrt(fan_in)``
    ("LeCun normal"); ``W_hh`` is further multiplied by ``recurrent_scale``,
    which sets how fast signals (and gradients) grow or shrink through time.
    Biases start at zero.

    Args:
        key: a JAX PRNG key (``jax.random.key(seed)``); the same key gives the same parameters.
        input_size: ``I``, length of each input vector.
        hidden_size: ``H``, number of hidden units.
        output_size: ``O``, length of each output vector.
        recurrent_scale: multiplier of ``W_hh`` (default 1.0).

    Returns:
        dict of float32 arrays: ``W_xh [I, H]``, ``W_hh [H, H]``, ``b_h [H]``,
        ``W_hy [H, O]``, ``b_y [O]``.

    Raises:
        ConfigError: a size is not a positive integer.

    >>> p = init_rnn(jax.random.key(0), 5, 8, 5)
    >>> {k: v.shape for k, v in p.items()}["W_hh"]
    (8, 8)

    Notebook: 03_rnn_from_first_principles.ipynb
    """
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("output_size", output_size)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ConfigError(f"init_rnn: {name} must be a positive integer, got {value!r}")
    k_xh, k_hh, k_hy = jax.random.split(key, 3)
    normal = partial(jax.random.normal, dtype=jnp.float32)
    return {
        "W_xh": normal(k_xh, (input_size, hidden_size)) / np.sqrt(input_size),
        "W_hh": recurrent_scale * normal(k_hh, (hidden_size, hidden_size)) / np.sqrt(hidden_size),
        "b_h": jnp.zeros((hidden_size,), jnp.float32),
        "W_hy": normal(k_hy, (hidden_size, output_size)) / np.sqrt(hidden_size),
        "b_y": jnp.zeros((output_size,), jnp.float32),
    }


def _check_rnn(params, inputs, h0, fn: str):
    missing = [k for k in RNN_PARAM_NAMES if k not in params]
    if missing:
        raise ConfigError(f"{fn}: params lack {missing}; build them with init_rnn")
    input_size, hidden_size = params["W_xh"].shape
    inputs = jnp.asarray(inputs, jnp.float32)
    if inputs.ndim != 2 or inputs.shape[1] != input_size:
        raise ConfigError(
            f"{fn}: inputs must have shape [T, {input_size}] (time, input_size), got {tuple(inputs.shape)}"
        )
    if inputs.shape[0] == 0:
        raise ConfigError(f"{fn}: inputs hold no time steps")
    if h0 is None:
        h0 = jnp.zeros((hidden_size,), jnp.float32)
    else:
        h0 = jnp.asarray(h0, jnp.float32)
        if h0.shape != (hidden_size,):
            raise ConfigError(f"{fn}: h0 must have shape [{hidden_size}], got {tuple(h0.shape)}")
    return inputs, h0


def rnn_forward(params: dict, inputs, h0=None, activation: str = "tanh"):
    r"""Run the vanilla RNN over one sequence with ``jax.lax.scan``.

    .. math::
        h_t = f(x_t W_{xh} + h_{t-1} W_{hh} + b_h), \quad
        o_t = \sigma(h_t W_{hy} + b_y) \quad (\text{eq. 3 at the output})

    with ``f = tanh`` (default) or ``f = sigmoid`` (``activation="sigmoid"``,
    as in the paper's all-sigmoid network).

    Args:
        params: dict from :func:`init_rnn`.
        inputs: ``[T, input_size]`` float.
        h0: ``[hidden_size]`` state before the first input; zeros when None.
        activation: ``"tanh"`` or ``"sigmoid"``, the hidden-state activation ``f``.

    Returns:
        ``(outputs, hidden)``: ``outputs [T, output_size]`` in (0, 1) and
        ``hidden [T, hidden_size]``, where ``hidden[t]`` is the state after ``inputs[t]``.

    Raises:
        ConfigError: wrong shapes, missing parameters or an unknown activation.

    >>> p = init_rnn(jax.random.key(0), 3, 4, 2)
    >>> o, h = rnn_forward(p, jnp.ones((6, 3)))
    >>> o.shape, h.shape
    ((6, 2), (6, 4))

    Notebook: 03_rnn_from_first_principles.ipynb
    """
    activation = _check_activation(activation)
    inputs, h0 = _check_rnn(params, inputs, h0, "rnn_forward")
    return _rnn_forward(params, inputs, h0, activation)


@partial(jax.jit, static_argnames=("activation",))
def _rnn_forward(params, inputs, h0, activation):
    f = _act(activation)

    def step(h_prev, x_t):
        h = f(x_t @ params["W_xh"] + h_prev @ params["W_hh"] + params["b_h"])
        return h, h

    _, hidden = jax.lax.scan(step, h0, inputs)
    outputs = sigmoid(hidden @ params["W_hy"] + params["b_y"])
    return outputs, hidden


def _loss(params, inputs, targets, h0, activation):
    outputs, _ = rnn_forward(params, inputs, h0, activation)
    return sum_of_squares_error(targets, outputs)


def manual_gradients(params: dict, inputs, targets, h0=None, activation: str = "tanh") -> dict:
    r"""Gradients of eq. 1 by backpropagation through time, written out by hand.

    The delta rule of eq. 2 (:math:`\Delta w_{ij} = \eta\,\delta_j\,o_i`) applied
    to the network unrolled in time. With the paper's sign convention
    :math:`\delta = -\partial E/\partial(\text{net input})`:

    .. math::
        \delta^{o}_t = (y_t - o_t)\odot o_t \odot (1 - o_t) \\
        \delta^{h}_t = \big(\delta^{o}_t W_{hy}^\top + \delta^{h}_{t+1} W_{hh}^\top\big)
                        \odot f'(a_t), \qquad \delta^{h}_{T+1} = 0

    (``f'(a) = 1 - h^2`` for tanh, ``h(1-h)`` for sigmoid) and every gradient
    is minus "delta times the signal that entered the weight", summed over time:
    ``dE/dW_hy = -sum_t h_t^T delta^o_t``, ``dE/dW_hh = -sum_t h_{t-1}^T delta^h_t``,
    ``dE/dW_xh = -sum_t x_t^T delta^h_t``, ``dE/db = -sum_t delta_t``.

    Args:
        params: dict from :func:`init_rnn`.
        inputs: ``[T, input_size]``.
        targets: ``[T, output_size]``, the wanted outputs ``y_t``.
        h0: ``[hidden_size]`` initial state (zeros when None); treated as a constant.
        activation: ``"tanh"`` or ``"sigmoid"``, as in :func:`rnn_forward`.

    Returns:
        dict with the same keys and shapes as ``params``: ``dE/dparam``. It equals
        ``jax.grad`` of ``sum_of_squares_error(targets, rnn_forward(...)[0])`` to float32 rounding.

    Raises:
        ConfigError: wrong shapes, missing parameters or an unknown activation.

    Notebook: 03_rnn_from_first_principles.ipynb
    """
    activation = _check_activation(activation)
    inputs, h0 = _check_rnn(params, inputs, h0, "manual_gradients")
    targets = jnp.asarray(targets, jnp.float32)
    _check_same_shape(targets, jnp.zeros((inputs.shape[0], params["W_hy"].shape[1])), "manual_gradients")
    return _manual_gradients(params, inputs, targets, h0, activation)


@partial(jax.jit, static_argnames=("activation",))
def _manual_gradients(params, inputs, targets, h0, activation):
    outputs, hidden = _rnn_forward(params, inputs, h0, activation)

    # Output layer: eq. 2's delta for a sigmoid unit under eq. 1.
    delta_o = (targets - outputs) * outputs * (1.0 - outputs)          # [T, O]
    # Error reaching each hidden state from its own output.
    from_output = delta_o @ params["W_hy"].T                            # [T, H]
    f_prime = _act_derivative_from_output(activation, hidden)           # [T, H]

    def back_step(delta_next, xs):
        from_out_t, f_prime_t = xs
        delta_t = (from_out_t + delta_next @ params["W_hh"].T) * f_prime_t
        return delta_t, delta_t

    _, delta_h = jax.lax.scan(back_step, jnp.zeros_like(h0), (from_output, f_prime), reverse=True)  # [T, H]
    h_prev = jnp.concatenate([h0[None, :], hidden[:-1]], axis=0)       # [T, H]
    return {
        "W_xh": -inputs.T @ delta_h,
        "W_hh": -h_prev.T @ delta_h,
        "b_h": -jnp.sum(delta_h, axis=0),
        "W_hy": -hidden.T @ delta_o,
        "b_y": -jnp.sum(delta_o, axis=0),
    }


def sgd_update(params, grads, learning_rate: float):
    r"""Eq. 2 for every weight: :math:`w \leftarrow w - \eta\, \partial E/\partial w`.

    Works on any pytree (dict of arrays from :func:`init_rnn`, LSTM dicts, ...).

    Args:
        params: pytree of arrays.
        grads: pytree of the same structure, ``dE/dparams``.
        learning_rate: ``eta > 0``.

    Returns:
        the updated pytree (new arrays; the inputs are not changed).

    Raises:
        ConfigError: the two pytrees differ in structure (a non-positive
        learning rate is caught by :func:`train_until`; here it may be traced).

    >>> sgd_update({"w": jnp.ones(2)}, {"w": jnp.ones(2)}, 0.5)["w"].tolist()
    [0.5, 0.5]

    Notebook: 03_rnn_from_first_principles.ipynb
    """
    if jax.tree.structure(params) != jax.tree.structure(grads):
        raise ConfigError("sgd_update: params and grads have different structures")
    return jax.tree.map(lambda p, g: p - learning_rate * g, params, grads)


def _grads(params, inputs, targets, h0, activation, manual):
    if manual:
        return manual_gradients(params, inputs, targets, h0, activation)
    return jax.grad(_loss)(params, inputs, targets, h0, activation)


def _step(params, inputs, targets, learning_rate, h0, activation, manual):
    outputs, _ = rnn_forward(params, inputs, h0, activation)
    grads = _grads(params, inputs, targets, h0, activation, manual)
    return sgd_update(params, grads, learning_rate), rmse(targets, outputs)


_jit_step = jax.jit(_step, static_argnames=("activation", "manual"))


def sgd_step(params: dict, inputs, targets, learning_rate: float, *, h0=None,
             activation: str = "tanh", manual: bool = False):
    """One jitted gradient-descent step on eq. 1 (full sequence, eq. 2 update).

    Args:
        params: dict from :func:`init_rnn`.
        inputs: ``[T, input_size]``; targets: ``[T, output_size]``.
        learning_rate: ``eta``.
        h0: initial hidden state ``[hidden_size]`` or None (zeros).
        activation: ``"tanh"`` or ``"sigmoid"``.
        manual: use :func:`manual_gradients` instead of ``jax.grad``.

    Returns:
        ``(new_params, rmse_before)``: the updated parameters and the RMSE of the
        parameters *before* the update (a float32 scalar).

    Notebook: 03_rnn_from_first_principles.ipynb
    """
    _check_activation(activation)
    inputs, h0 = _check_rnn(params, inputs, h0, "sgd_step")
    return _jit_step(params, inputs, jnp.asarray(targets, jnp.float32), learning_rate, h0, activation, bool(manual))


@partial(jax.jit, static_argnames=("max_steps", "activation", "manual"))
def _train_loop(params, inputs, targets, learning_rate, rmse_target, h0, max_steps, activation, manual):
    def measure(p):
        outputs, _ = rnn_forward(p, inputs, h0, activation)
        return rmse(targets, outputs)

    history = jnp.full((max_steps + 1,), jnp.nan, jnp.float32)
    first = measure(params)
    history = history.at[0].set(first)

    def cond(state):
        step, _, current, _ = state
        return (current >= rmse_target) & (step < max_steps)

    def body(state):
        step, p, _, hist = state
        p = sgd_update(p, _grads(p, inputs, targets, h0, activation, manual), learning_rate)
        current = measure(p)
        return step + 1, p, current, hist.at[step + 1].set(current)

    steps, params, _, history = jax.lax.while_loop(cond, body, (jnp.int32(0), params, first, history))
    return params, history, steps


def train_until(params: dict, inputs, targets, *, learning_rate: float, max_steps: int,
                rmse_target: float = 0.1, h0=None, activation: str = "tanh", manual: bool = False):
    """Full-batch gradient descent on eq. 1 until RMSE < ``rmse_target`` (the paper's rule).

    The whole loop runs as one compiled ``jax.lax.while_loop`` (no Python per
    step); it stops as soon as the RMSE falls below the target or after
    ``max_steps`` updates, whichever comes first. Deterministic: the same
    parameters and data give the same result.

    Args:
        params: dict from :func:`init_rnn` (not modified).
        inputs: ``[T, input_size]``; targets: ``[T, output_size]`` in [0, 1].
        learning_rate: ``eta > 0`` of eq. 2 (on the *summed* error, so it scales with T).
        max_steps: most updates to make (>= 0). Each new value compiles the loop once.
        rmse_target: stop when RMSE < this (default 0.1).
        h0: initial hidden state ``[hidden_size]`` or None (zeros).
        activation: ``"tanh"`` or ``"sigmoid"`` hidden state.
        manual: use :func:`manual_gradients` instead of ``jax.grad`` (same numbers).

    Returns:
        ``(params, history)``: the trained parameters and a float32 numpy array
        ``[n + 1]`` of RMSE after ``0, 1, ..., n`` updates, ``n <= max_steps``.
        The target was reached iff ``history[-1] < rmse_target``.

    Raises:
        ConfigError: a non-positive learning rate or target, a negative
        ``max_steps``, wrong shapes or an unknown activation.

    >>> x, y = next_symbol_pairs([0, 1], 2, repeats=3)
    >>> p, hist = train_until(init_rnn(jax.random.key(0), 2, 4, 2), x, y,
    ...                       learning_rate=1.0, max_steps=3000)
    >>> bool(hist[-1] < 0.1)
    True

    Notebook: 03_rnn_from_first_principles.ipynb
    """
    _check_activation(activation)
    if not (np.isfinite(learning_rate) and learning_rate > 0):
        raise ConfigError(f"train_until: learning_rate must be a positive number, got {learning_rate!r}")
    if not (np.isfinite(rmse_target) and rmse_target > 0):
        raise ConfigError(f"train_until: rmse_target must be a positive number, got {rmse_target!r}")
    if isinstance(max_steps, bool) or int(max_steps) != max_steps or max_steps < 0:
        raise ConfigError(f"train_until: max_steps must be a non-negative integer, got {max_steps!r}")
    inputs, h0 = _check_rnn(params, inputs, h0, "train_until")
    targets = jnp.asarray(targets, jnp.float32)
    _check_same_shape(targets, jnp.zeros((inputs.shape[0], params["W_hy"].shape[1])), "train_until")
    params, history, steps = _train_loop(
        params, inputs, targets, jnp.float32(learning_rate), jnp.float32(rmse_target), h0,
        int(max_steps), activation, bool(manual),
    )
    return params, np.asarray(history)[: int(steps) + 1]


# --------------------------------------------------------------------------
# vanishing gradients
# --------------------------------------------------------------------------

def gradient_norms_through_time(params: dict, inputs, h0=None, activation: str = "tanh",
                                norm: str = "spectral"):
    r"""How much the last hidden state still depends on earlier ones: :math:`\|\partial h_T/\partial h_t\|`.

    By the chain rule the Jacobian is a product of one factor per step,

    .. math::
        \frac{\partial h_T}{\partial h_t} = \prod_{s=T}^{t+1} \operatorname{diag}(f'(a_s))\, W_{hh}^\top,

    so its norm is at most :math:`(\gamma\,\|W_{hh}\|_2)^{T-t}` with ``gamma = 1``
    for tanh and ``1/4`` for sigmoid: it shrinks (vanishes) or grows (explodes)
    geometrically with the distance ``T - t``.

    Args:
        params: dict from :func:`init_rnn`.
        inputs: ``[T, input_size]``.
        h0: initial state ``[hidden_size]`` (zeros when None).
        activation: ``"tanh"`` or ``"sigmoid"``.
        norm: ``"spectral"`` (largest singular value, default) or ``"frobenius"``.

    Returns:
        float32 ``[T]``: entry ``t`` is ``||dh_T/dh_t||`` for ``t = 0..T-1``, where
        ``h_0 = h0`` is the state before ``inputs[0]`` and ``h_T = hidden[-1]``;
        entry ``t`` is ``T - t`` steps away from the end (entry ``T-1`` is one step).

    Raises:
        ConfigError: wrong shapes, unknown activation or norm.

    >>> p = init_rnn(jax.random.key(0), 2, 8, 2)
    >>> g = gradient_norms_through_time(p, jnp.zeros((20, 2)), activation="sigmoid")
    >>> bool(g[0] < g[-1])
    True

    Notebook: 03_rnn_from_first_principles.ipynb
    """
    activation = _check_activation(activation)
    if norm not in ("spectral", "frobenius"):
        raise ConfigError(f"gradient_norms_through_time: norm must be 'spectral' or 'frobenius', got {norm!r}")
    inputs, h0 = _check_rnn(params, inputs, h0, "gradient_norms_through_time")
    return _gradient_norms(params, inputs, h0, activation, norm)


@partial(jax.jit, static_argnames=("activation", "norm"))
def _gradient_norms(params, inputs, h0, activation, norm):
    _, hidden = _rnn_forward(params, inputs, h0, activation)
    f_prime = _act_derivative_from_output(activation, hidden)     # [T, H], f'(a_s) for s = 1..T
    w_t = params["W_hh"].T
    ord_ = 2 if norm == "spectral" else "fro"

    def back_step(m, f_prime_s):
        # m = dh_T/dh_s; one more factor gives dh_T/dh_{s-1} = m @ diag(f'(a_s)) W_hh^T.
        m = m @ (f_prime_s[:, None] * w_t)
        return m, jnp.linalg.norm(m, ord=ord_)

    eye = jnp.eye(h0.shape[0], dtype=jnp.float32)
    _, norms = jax.lax.scan(back_step, eye, f_prime, reverse=True)
    return norms


# --------------------------------------------------------------------------
# the LSTM cell, gate by gate
# --------------------------------------------------------------------------

def lstm_cell_by_hand(params: dict, carry, x):
    r"""One LSTM step written out gate by gate (Hochreiter & Schmidhuber 1997, with a forget gate).

    .. math::
        i = \sigma(x W_{ii} + h W_{hi} + b_i) \quad \text{(input gate)} \\
        f = \sigma(x W_{if} + h W_{hf} + b_f) \quad \text{(forget gate)} \\
        g = \tanh(x W_{ig} + h W_{hg} + b_g) \quad \text{(cell candidate)} \\
        o = \sigma(x W_{io} + h W_{ho} + b_o) \quad \text{(output gate)} \\
        c' = f \odot c + i \odot g, \qquad h' = o \odot \tanh(c')

    The same equations, argument order and ``(c, h)`` carry as Flax's
    ``nnx.LSTMCell.__call__``, so ``lstm_cell_by_hand(lstm_params_from_flax(cell), carry, x)``
    equals ``cell(carry, x)``.

    Args:
        params: dict with ``W_ii, W_if, W_ig, W_io`` ``[input_size, H]``,
            ``W_hi, W_hf, W_hg, W_ho`` ``[H, H]`` and ``b_i, b_f, b_g, b_o`` ``[H]``
            (see :data:`LSTM_PARAM_NAMES`, :func:`lstm_params_from_flax`).
        carry: ``(c, h)``, each ``[..., H]`` (cell memory and hidden state).
        x: ``[..., input_size]`` input at this step (leading axes are a batch).

    Returns:
        ``((c_new, h_new), h_new)``, each ``[..., H]``.

    Raises:
        ConfigError: missing parameters.

    Notebook: 03_rnn_from_first_principles.ipynb
    """
    missing = [k for k in LSTM_PARAM_NAMES if k not in params]
    if missing:
        raise ConfigError(f"lstm_cell_by_hand: params lack {missing}; see lstm_params_from_flax")
    c, h = carry
    i = sigmoid(x @ params["W_ii"] + h @ params["W_hi"] + params["b_i"])
    f = sigmoid(x @ params["W_if"] + h @ params["W_hf"] + params["b_f"])
    g = jnp.tanh(x @ params["W_ig"] + h @ params["W_hg"] + params["b_g"])
    o = sigmoid(x @ params["W_io"] + h @ params["W_ho"] + params["b_o"])
    c_new = f * c + i * g
    h_new = o * jnp.tanh(c_new)
    return (c_new, h_new), h_new


def lstm_forward(params: dict, inputs, carry=None):
    """Run :func:`lstm_cell_by_hand` over a sequence with ``jax.lax.scan``.

    Args:
        params: LSTM dict (see :func:`lstm_cell_by_hand`).
        inputs: ``[T, input_size]`` (or ``[T, B, input_size]``: time first).
        carry: initial ``(c, h)``, each ``[H]`` (or ``[B, H]``); zeros when None.

    Returns:
        ``(carry, outputs)``: the final ``(c, h)`` and ``outputs [T, H]`` (``[T, B, H]``), the ``h`` of each step.

    Raises:
        ConfigError: ``inputs`` do not match ``W_ii`` or have no time axis.

    Notebook: 03_rnn_from_first_principles.ipynb
    """
    if "W_ii" not in params:
        raise ConfigError("lstm_forward: params lack 'W_ii'; see lstm_params_from_flax")
    input_size, hidden_size = params["W_ii"].shape
    inputs = jnp.asarray(inputs, jnp.float32)
    if inputs.ndim < 2 or inputs.shape[-1] != input_size or inputs.shape[0] == 0:
        raise ConfigError(
            f"lstm_forward: inputs must have shape [T, ..., {input_size}] with T >= 1, got {tuple(inputs.shape)}"
        )
    if carry is None:
        zeros = jnp.zeros(inputs.shape[1:-1] + (hidden_size,), jnp.float32)
        carry = (zeros, zeros)
    return _lstm_scan(params, carry, inputs)


@jax.jit
def _lstm_scan(params, carry, inputs):
    return jax.lax.scan(lambda cr, x: lstm_cell_by_hand(params, cr, x), carry, inputs)


def lstm_params_from_flax(cell) -> dict:
    """Read the parameters of a Flax ``nnx.LSTMCell`` or ``nnx.OptimizedLSTMCell`` into the by-hand dict.

    Flax's layout (the same in flax 0.11.2, Colab's version, and 0.12):

    * ``nnx.LSTMCell`` holds eight ``nnx.Linear`` layers: ``ii, if_, ig, io``
      (input -> gate, kernel ``[input_size, H]``, no bias) and ``hi, hf, hg, ho``
      (hidden -> gate, kernel ``[H, H]``, with the gate's only bias ``[H]``).
    * ``nnx.OptimizedLSTMCell`` holds two: ``dense_i`` (kernel ``[input_size, 4H]``, no bias)
      and ``dense_h`` (kernel ``[H, 4H]``, bias ``[4H]``); the ``4H`` axis is split
      into the gates in the order ``i, f, g, o``.

    Both use sigmoid gates, a tanh candidate and output, and a carry ``(c, h)``.

    Args:
        cell: an ``nnx.LSTMCell`` or ``nnx.OptimizedLSTMCell`` with the default
            ``gate_fn`` (sigmoid) and ``activation_fn`` (tanh).

    Returns:
        dict keyed by :data:`LSTM_PARAM_NAMES`, float arrays (copies).

    Raises:
        ConfigError: ``cell`` is another kind of object, or uses other gate/activation functions.

    >>> from flax import nnx
    >>> p = lstm_params_from_flax(nnx.LSTMCell(3, 4, rngs=nnx.Rngs(0)))
    >>> p["W_ii"].shape, p["W_hf"].shape, p["b_o"].shape
    ((3, 4), (4, 4), (4,))

    Notebook: 03_rnn_from_first_principles.ipynb
    """
    from flax import nnx  # only this function needs Flax

    if not isinstance(cell, (nnx.LSTMCell, nnx.OptimizedLSTMCell)):
        raise ConfigError(
            f"lstm_params_from_flax: expected a flax.nnx.LSTMCell or OptimizedLSTMCell, got {type(cell).__name__}"
        )
    sigmoids = {jax.nn.sigmoid, nnx.sigmoid}
    tanhs = {jnp.tanh, jax.nn.tanh if hasattr(jax.nn, "tanh") else jnp.tanh, nnx.tanh}
    if cell.gate_fn not in sigmoids or cell.activation_fn not in tanhs:
        raise ConfigError(
            "lstm_params_from_flax: the by-hand cell uses sigmoid gates and tanh; this cell uses "
            f"gate_fn={getattr(cell.gate_fn, '__name__', cell.gate_fn)}, "
            f"activation_fn={getattr(cell.activation_fn, '__name__', cell.activation_fn)}"
        )

    def arr(variable):
        return jnp.array(variable[...])  # `[...]` reads a Variable in flax 0.11 and 0.12 alike

    gates = ("i", "f", "g", "o")
    if isinstance(cell, nnx.OptimizedLSTMCell):
        w_x = jnp.split(arr(cell.dense_i.kernel), 4, axis=-1)
        w_h = jnp.split(arr(cell.dense_h.kernel), 4, axis=-1)
        b = jnp.split(arr(cell.dense_h.bias), 4, axis=-1)
        out = {}
        for n, gate in enumerate(gates):
            out[f"W_i{gate}"] = w_x[n]
            out[f"W_h{gate}"] = w_h[n]
            out[f"b_{gate}"] = b[n]
        return out
    x_layers = {"i": cell.ii, "f": cell.if_, "g": cell.ig, "o": cell.io}
    h_layers = {"i": cell.hi, "f": cell.hf, "g": cell.hg, "o": cell.ho}
    out = {}
    for gate in gates:
        out[f"W_i{gate}"] = arr(x_layers[gate].kernel)
        out[f"W_h{gate}"] = arr(h_layers[gate].kernel)
        out[f"b_{gate}"] = arr(h_layers[gate].bias)
    return out
