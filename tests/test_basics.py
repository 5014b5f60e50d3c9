"""Tests of labkit.basics: eq. 1-3, the vanilla RNN, hand-written BPTT, vanishing gradients, the LSTM cell."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from labkit import basics as B
from labkit.errors import ConfigError, LabkitError

# "Frère Jacques", first two phrases, as indices of C D E F G: the next note after
# E or G depends on notes further back, so the task needs the recurrent state.
MOTIF = [0, 1, 2, 0, 0, 1, 2, 0, 2, 3, 4, 2, 3, 4]


def _random_problem(seed=0, T=10, I=4, H=6, O=3, scale=1.3):
    kx, kp, ky = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(kx, (T, I))
    y = jax.random.uniform(ky, (T, O))
    return B.init_rnn(kp, I, H, O, recurrent_scale=scale), x, y


# ---------------------------------------------------------------- eq. 1-3

def test_sigmoid_properties():
    x = jnp.linspace(-8.0, 8.0, 161)
    s = B.sigmoid(x)
    assert float(B.sigmoid(0.0)) == pytest.approx(0.5)
    assert bool(jnp.all((s > 0) & (s < 1)))
    assert bool(jnp.all(jnp.diff(s) > 0))                       # strictly increasing
    np.testing.assert_allclose(B.sigmoid(-x), 1.0 - s, atol=1e-6)  # symmetry
    np.testing.assert_allclose(s, 1.0 / (1.0 + np.exp(-np.asarray(x))), rtol=1e-6)  # eq. 3
    grad = jax.vmap(jax.grad(B.sigmoid))(x)
    np.testing.assert_allclose(grad, s * (1 - s), atol=1e-6)    # sigma' = sigma (1 - sigma)
    assert float(jnp.max(grad)) == pytest.approx(0.25)          # reached at 0
    # stable at the extremes: no nan values or gradients
    big = jnp.array([-200.0, 200.0])
    assert jnp.allclose(B.sigmoid(big), jnp.array([0.0, 1.0]))
    assert bool(jnp.all(jnp.isfinite(jax.vmap(jax.grad(B.sigmoid))(big))))


def test_sum_of_squares_and_rmse():
    t = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    o = jnp.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1]])
    expected = 0.5 * np.sum((np.asarray(t) - np.asarray(o)) ** 2)
    assert float(B.sum_of_squares_error(t, o)) == pytest.approx(expected, rel=1e-6)
    assert float(B.rmse(t, o)) == pytest.approx(np.sqrt(2 * expected / t.size), rel=1e-6)
    assert float(B.rmse(t, t)) == 0.0
    # dE/do = -(t - o): the reason for the 1/2
    np.testing.assert_allclose(jax.grad(B.sum_of_squares_error, argnums=1)(t, o), -(t - o), atol=1e-7)


def test_error_functions_reject_mismatched_shapes():
    with pytest.raises(ConfigError, match="shape"):
        B.sum_of_squares_error(jnp.zeros((2, 3)), jnp.zeros((3, 2)))
    with pytest.raises(LabkitError):
        B.rmse(jnp.zeros(0), jnp.zeros(0))


def test_next_symbol_pairs():
    x, y = B.next_symbol_pairs([0, 2, 1], vocab_size=3, repeats=2)
    assert x.shape == y.shape == (5, 3)
    assert x.argmax(-1).tolist() == [0, 2, 1, 0, 2]
    assert y.argmax(-1).tolist() == [2, 1, 0, 2, 1]
    assert np.allclose(np.asarray(x).sum(-1), 1.0)
    with pytest.raises(ConfigError, match="outside"):
        B.next_symbol_pairs([0, 3], vocab_size=3)
    with pytest.raises(ConfigError):
        B.next_symbol_pairs([0], vocab_size=3)
    with pytest.raises(ConfigError):
        B.next_symbol_pairs([0.5, 1.0], vocab_size=3)


# ---------------------------------------------------------------- vanilla RNN

def test_init_rnn_shapes_and_seed():
    p = B.init_rnn(jax.random.key(0), 5, 8, 3)
    assert {k: v.shape for k, v in p.items()} == {
        "W_xh": (5, 8), "W_hh": (8, 8), "b_h": (8,), "W_hy": (8, 3), "b_y": (3,)}
    q = B.init_rnn(jax.random.key(0), 5, 8, 3)
    r = B.init_rnn(jax.random.key(1), 5, 8, 3)
    assert all(np.array_equal(p[k], q[k]) for k in p)
    assert not np.array_equal(p["W_hh"], r["W_hh"])
    with pytest.raises(ConfigError, match="hidden_size"):
        B.init_rnn(jax.random.key(0), 5, 0, 3)


def test_rnn_forward_matches_python_loop():
    for activation, f in (("tanh", np.tanh), ("sigmoid", lambda a: 1 / (1 + np.exp(-a)))):
        p, x, _ = _random_problem()
        h0 = jnp.linspace(-0.5, 0.5, 6)
        out, hid = B.rnn_forward(p, x, h0, activation=activation)
        assert out.shape == (10, 3) and hid.shape == (10, 6)
        P = {k: np.asarray(v, np.float64) for k, v in p.items()}
        h = np.asarray(h0, np.float64)
        for t in range(10):
            h = f(np.asarray(x[t]) @ P["W_xh"] + h @ P["W_hh"] + P["b_h"])
            o = 1 / (1 + np.exp(-(h @ P["W_hy"] + P["b_y"])))
            np.testing.assert_allclose(hid[t], h, atol=1e-5)
            np.testing.assert_allclose(out[t], o, atol=1e-5)
    # tanh and sigmoid really differ
    assert not np.allclose(B.rnn_forward(p, x)[1], B.rnn_forward(p, x, activation="sigmoid")[1])


def test_rnn_forward_rejects_bad_input():
    p, x, _ = _random_problem()
    with pytest.raises(ConfigError, match=r"\[T, 4\]"):
        B.rnn_forward(p, x[:, :3])
    with pytest.raises(ConfigError, match="h0"):
        B.rnn_forward(p, x, jnp.zeros(5))
    with pytest.raises(ConfigError, match="activation"):
        B.rnn_forward(p, x, activation="relu")
    with pytest.raises(ConfigError, match="lack"):
        B.rnn_forward({"W_xh": p["W_xh"]}, x)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_manual_gradients_equal_jax_grad(activation):
    for seed in range(3):
        p, x, y = _random_problem(seed)
        h0 = 0.3 * jnp.ones(6) if seed == 2 else None
        manual = B.manual_gradients(p, x, y, h0=h0, activation=activation)

        def loss(params):
            return B.sum_of_squares_error(y, B.rnn_forward(params, x, h0, activation)[0])

        auto = jax.grad(loss)(p)
        assert set(manual) == set(auto) == set(p)
        for k in p:
            assert manual[k].shape == p[k].shape
            np.testing.assert_allclose(manual[k], auto[k], atol=1e-5, err_msg=k)
            assert float(jnp.max(jnp.abs(auto[k]))) > 1e-4  # a non-trivial gradient


def test_sgd_update_is_eq2():
    p, x, y = _random_problem()
    g = B.manual_gradients(p, x, y)
    q = B.sgd_update(p, g, 0.1)
    for k in p:
        np.testing.assert_allclose(q[k], p[k] - 0.1 * g[k], atol=1e-7)
    # a small step against the gradient lowers the error
    e0 = B.sum_of_squares_error(y, B.rnn_forward(p, x)[0])
    e1 = B.sum_of_squares_error(y, B.rnn_forward(B.sgd_update(p, g, 1e-3), x)[0])
    assert float(e1) < float(e0)
    with pytest.raises(ConfigError):
        B.sgd_update(p, {"W_xh": g["W_xh"]}, 0.1)


def test_sgd_step_changes_every_parameter():
    p, x, y = _random_problem()
    q, r = B.sgd_step(p, x, y, 0.05)
    assert float(r) == pytest.approx(float(B.rmse(y, B.rnn_forward(p, x)[0])), rel=1e-5)
    for k in p:
        assert not np.allclose(q[k], p[k]), k
    q2, _ = B.sgd_step(p, x, y, 0.05, manual=True)
    for k in p:
        np.testing.assert_allclose(q[k], q2[k], atol=1e-6)


def _melody_task():
    return B.next_symbol_pairs(MOTIF, vocab_size=5, repeats=2)


def test_train_until_reaches_rmse_target_on_melody():
    x, y = _melody_task()
    p0 = B.init_rnn(jax.random.key(0), 5, 16, 5)
    p, history = B.train_until(p0, x, y, learning_rate=0.05, max_steps=2000)
    assert history[0] > 0.3                          # untrained: far from the target
    assert history[-1] < 0.1 and np.all(history[:-1] >= 0.1)  # stops at the first step below 0.1
    assert len(history) - 1 < 2000
    out, _ = B.rnn_forward(p, x)
    assert float(B.rmse(y, out)) == pytest.approx(float(history[-1]), rel=1e-5)
    # every next note predicted (argmax), including the ones that need context
    assert np.array_equal(np.asarray(out.argmax(-1)), np.asarray(y.argmax(-1)))
    # the input params are untouched
    assert np.array_equal(p0["W_hh"], B.init_rnn(jax.random.key(0), 5, 16, 5)["W_hh"])


def test_train_until_same_seed_same_params_and_manual_agrees():
    x, y = _melody_task()
    runs = [B.train_until(B.init_rnn(jax.random.key(7), 5, 8, 5), x, y, learning_rate=0.05, max_steps=60)
            for _ in range(2)]
    (pa, ha), (pb, hb) = runs
    assert np.array_equal(ha, hb) and len(ha) == 61
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)
    pm, hm = B.train_until(B.init_rnn(jax.random.key(7), 5, 8, 5), x, y, learning_rate=0.05, max_steps=60,
                           manual=True)
    np.testing.assert_allclose(hm, ha, atol=1e-4)
    other, _ = B.train_until(B.init_rnn(jax.random.key(8), 5, 8, 5), x, y, learning_rate=0.05, max_steps=60)
    assert not np.allclose(other["W_hh"], pa["W_hh"])


def test_train_until_respects_max_steps_and_validates():
    x, y = _melody_task()
    p0 = B.init_rnn(jax.random.key(0), 5, 4, 5)
    p, h = B.train_until(p0, x, y, learning_rate=0.01, max_steps=5)
    assert len(h) == 6 and h[-1] >= 0.1
    p, h = B.train_until(p0, x, y, learning_rate=0.01, max_steps=0)
    assert len(h) == 1 and all(np.array_equal(p[k], p0[k]) for k in p0)
    with pytest.raises(ConfigError, match="learning_rate"):
        B.train_until(p0, x, y, learning_rate=0.0, max_steps=5)
    with pytest.raises(ConfigError, match="max_steps"):
        B.train_until(p0, x, y, learning_rate=0.1, max_steps=-1)
    with pytest.raises(ConfigError, match="shape"):
        B.train_until(p0, x, y[:, :3], learning_rate=0.1, max_steps=5)


# ---------------------------------------------------------------- vanishing gradients

@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_gradient_norms_match_jacobians(activation):
    p, x, _ = _random_problem(seed=3, T=9)
    h0 = jnp.full((6,), 0.1)
    norms = B.gradient_norms_through_time(p, x, h0=h0, activation=activation)
    fro = B.gradient_norms_through_time(p, x, h0=h0, activation=activation, norm="frobenius")
    assert norms.shape == (9,)
    # Independent check: nudge the state h_t (before inputs[t] is read) by d[t] and
    # differentiate the final state with respect to all nudges at once.
    f = jnp.tanh if activation == "tanh" else jax.nn.sigmoid

    @jax.jit
    def final_state(d):
        def step(h, xs):
            x_t, d_t = xs
            h = f(x_t @ p["W_xh"] + (h + d_t) @ p["W_hh"] + p["b_h"])
            return h, None
        return jax.lax.scan(step, h0, (x, d))[0]

    np.testing.assert_allclose(final_state(jnp.zeros((9, 6))), B.rnn_forward(p, x, h0, activation)[1][-1],
                               atol=1e-6)
    jac = jax.jacrev(final_state)(jnp.zeros((9, 6)))       # [H, T, H]
    for t in range(9):
        np.testing.assert_allclose(norms[t], jnp.linalg.norm(jac[:, t, :], 2), rtol=1e-4)
        np.testing.assert_allclose(fro[t], jnp.linalg.norm(jac[:, t, :]), rtol=1e-4)


def test_sigmoid_gradients_vanish_faster_than_tanh():
    p = B.init_rnn(jax.random.key(0), 3, 16, 3)
    x = jax.random.normal(jax.random.key(1), (30, 3))
    g_tanh = B.gradient_norms_through_time(p, x, activation="tanh")
    g_sig = B.gradient_norms_through_time(p, x, activation="sigmoid")
    assert float(g_sig[0]) < 1e-6 * float(g_sig[-1])    # 30 steps back: vanished
    assert float(g_sig[0]) < float(g_tanh[0])
    # the bound (1/4 ||W_hh||)^(T-t) holds for sigmoid
    w = float(jnp.linalg.norm(p["W_hh"], 2))
    distance = np.arange(30, 0, -1)
    assert np.all(np.asarray(g_sig) <= (0.25 * w) ** distance * (1 + 1e-4))


# ---------------------------------------------------------------- LSTM

@pytest.mark.parametrize("cell_name", ["LSTMCell", "OptimizedLSTMCell"])
def test_lstm_by_hand_equals_flax(cell_name):
    from flax import nnx

    cell = getattr(nnx, cell_name)(4, 5, rngs=nnx.Rngs(3))
    # non-zero biases, so that a gate-order mistake in the biases would show
    params = B.lstm_params_from_flax(cell)
    assert set(params) == set(B.LSTM_PARAM_NAMES)
    assert params["W_ii"].shape == (4, 5) and params["W_hf"].shape == (5, 5) and params["b_g"].shape == (5,)
    if cell_name == "LSTMCell":
        for n, layer in enumerate((cell.hi, cell.hf, cell.hg, cell.ho)):
            layer.bias[...] = jnp.linspace(-1.0, 1.0, 5) * (n + 1)
    else:
        cell.dense_h.bias[...] = jnp.linspace(-2.0, 2.0, 20)
    params = B.lstm_params_from_flax(cell)
    assert not np.allclose(params["b_i"], params["b_f"])

    x = jax.random.normal(jax.random.key(0), (10, 4))
    carry = (jnp.full((5,), 0.2), jnp.full((5,), -0.1))
    flax_carry, flax_out = carry, []
    for t in range(10):
        flax_carry, h = cell(flax_carry, x[t])
        flax_out.append(h)
    (c, h), outs = B.lstm_forward(params, x, carry)
    np.testing.assert_allclose(outs, jnp.stack(flax_out), atol=1e-5)
    np.testing.assert_allclose(c, flax_carry[0], atol=1e-5)
    np.testing.assert_allclose(h, flax_carry[1], atol=1e-5)
    # one step, batched
    xb = x[:3]
    cb = (jnp.zeros((3, 5)), jnp.zeros((3, 5)))
    (c1, h1), y1 = B.lstm_cell_by_hand(params, cb, xb)
    (c2, h2), y2 = cell(cb, xb)
    np.testing.assert_allclose(y1, y2, atol=1e-5)
    np.testing.assert_allclose(c1, c2, atol=1e-5)


def test_lstm_params_from_flax_rejects_other_cells():
    from flax import nnx

    with pytest.raises(ConfigError, match="LSTMCell"):
        B.lstm_params_from_flax(nnx.GRUCell(3, 4, rngs=nnx.Rngs(0)))
    with pytest.raises(ConfigError, match="gate_fn"):
        B.lstm_params_from_flax(nnx.LSTMCell(3, 4, gate_fn=nnx.relu, rngs=nnx.Rngs(0)))
    with pytest.raises(ConfigError, match="lack"):
        B.lstm_cell_by_hand({}, (jnp.zeros(4), jnp.zeros(4)), jnp.zeros(3))
