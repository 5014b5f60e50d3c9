"""The speed kernels (labkit.models.kernels) against the plain code they replace.

* the LSTM layer: values, and gradients equal to autodiff of the plain ``lax.scan`` of the cell;
* the models: logits and parameter gradients with and without the kernels;
* byte dropout: its rate (to the nearest 256th) and mean, as the plain ``bernoulli`` dropout's;
* the inverse-CDF draw: the distribution of ``jax.random.categorical`` (chi-square test, fixed seed),
  and the exact token for a given uniform number.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats

from labkit.models import ModelConfig, kernels, make_model
from labkit.models.melody import dropout, lstm_layer_scan
from labkit.sample import draw_token

VOCAB = 10


def _cell_and_inputs():
    cell = nnx.OptimizedLSTMCell(6, 16, rngs=nnx.Rngs(2))
    cell.dense_h.bias[...] = jnp.linspace(-1.0, 1.0, 64)              # biases start at zero
    keys = jax.random.split(jax.random.key(9), 5)
    carry = (0.5 * jax.random.normal(keys[0], (3, 16)), 0.5 * jax.random.normal(keys[1], (3, 16)))
    x = jax.random.normal(keys[2], (7, 3, 6))
    return cell, carry, x, jax.random.normal(keys[3], (7, 3, 16)), jax.random.normal(keys[4], (3, 16))


def test_lstm_layer_values_equal_the_plain_scan():
    cell, carry, x, _, _ = _cell_and_inputs()
    (c1, h1), out1 = jax.jit(lambda c, x: kernels.lstm_layer(cell, c, x))(carry, x)
    (c2, h2), out2 = jax.jit(lambda c, x: lstm_layer_scan(cell, c, x))(carry, x)
    for a, b in ((c1, c2), (h1, h2), (out1, out2)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_hand_written_backward_pass_equals_autodiff_of_the_plain_layer():
    """Weights, bias, the initial carry and the inputs, with cotangents on the outputs and the final carry."""
    cell, carry, x, out_weights, carry_weights = _cell_and_inputs()
    graphdef, params = nnx.split(cell)

    def grads(layer):
        def f(params, carry, x):
            (c, h), outputs = layer(nnx.merge(graphdef, params), carry, x)
            return jnp.sum(outputs * out_weights) + jnp.sum((c + 2 * h) * carry_weights)
        return jax.jit(jax.grad(f, argnums=(0, 1, 2)))(params, carry, x)

    plain, custom = grads(lstm_layer_scan), grads(kernels.lstm_layer)
    for a, b in zip(jax.tree_util.tree_leaves(custom), jax.tree_util.tree_leaves(plain), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert not np.allclose(custom[1][0], 0)                                     # the carry's gradient is there


def test_lstm_cell_equals_the_flax_cell():
    cell, (c, h), x, _, _ = _cell_and_inputs()
    (c1, h1), out1 = kernels.lstm_cell(cell, (c, h), x[0])
    (c2, h2), out2 = cell((c, h), x[0])
    np.testing.assert_allclose(c1, c2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out1, out2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attention_length", [0, 3])
def test_models_with_and_without_kernels_agree(attention_length):
    """Same parameters; the same logits (without dropout) and the same gradient of the loss."""
    cfg = ModelConfig(vocab_size=VOCAB, embed_dim=8, hidden_size=16, num_layers=2, dropout=0.0,
                      attention_length=attention_length)
    fast, plain = make_model(cfg, 3), make_model(cfg, 3, use_kernels=False)
    tokens = jax.random.randint(jax.random.key(1), (2, 9), 0, VOCAB)

    @nnx.jit
    def loss_and_grads(model):
        def loss(model):
            logits = model(tokens[:, :-1])
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[:, 1:, None], -1))
        return nnx.value_and_grad(loss)(model)

    (loss_fast, grad_fast), (loss_plain, grad_plain) = loss_and_grads(fast), loss_and_grads(plain)
    np.testing.assert_allclose(loss_fast, loss_plain, rtol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(grad_fast), jax.tree_util.tree_leaves(grad_plain), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    carry_a, logits_a = fast.step_function()(fast.init_carry(2), tokens[:, 0])
    carry_b, logits_b = plain.step_function()(plain.init_carry(2), tokens[:, 0])
    np.testing.assert_allclose(logits_a, logits_b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rate", [0.1, 0.2, 0.5])
def test_byte_dropout_drops_the_rate_rounded_to_a_256th_and_keeps_the_mean(rate):
    """One random byte per entry: ``round(256 * rate)`` of 256 byte values drop it, and the kept entries are
    scaled so that the mean is unchanged, as the plain dropout does for ``rate`` itself. A width that is no
    multiple of 4 (the bytes come four to a draw)."""
    x = jnp.ones((200, 37, 45))
    for fn, share_expected in ((lambda: kernels.byte_dropout(x, rate, jax.random.key(0)), round(256 * rate) / 256),
                               (lambda: dropout(x, rate, jax.random.key(0)), rate)):
        out = np.asarray(fn())
        share = float((out == 0).mean())
        sigma = (share_expected * (1 - share_expected) / out.size) ** 0.5
        assert abs(share - share_expected) < 5 * sigma
        np.testing.assert_allclose(out[out != 0], 1 / (1 - share_expected), rtol=1e-6)
        assert abs(out.mean() - 1.0) < 5 * sigma / (1 - share_expected)
    # The time-major mask is the batch-major one, transposed (so a row's mask does not depend on T's position).
    out = np.asarray(kernels.byte_dropout(x, rate, jax.random.key(0)))
    time_major = np.asarray(kernels.byte_dropout(jnp.swapaxes(x, 0, 1), rate, jax.random.key(0), time_major=True))
    np.testing.assert_array_equal(np.swapaxes(time_major, 0, 1), out)
    assert kernels.byte_dropout(x, rate, None) is x and kernels.byte_dropout(x, 0.0, jax.random.key(0)) is x
    assert dropout(x, rate, None) is x and dropout(x, 0.0, jax.random.key(0)) is x


def test_inverse_cdf_token_for_a_given_uniform():
    """Probabilities 0.1, 0, 0.3, 0.6: cumulative 0.1, 0.1, 0.4, 1.0; the first token whose sum exceeds u."""
    logits = jnp.log(jnp.array([0.1, 0.0, 0.3, 0.6]))
    u = jnp.array([0.0, 0.05, 0.0999, 0.1001, 0.3, 0.3999, 0.4001, 0.75, 0.99999])
    tokens = kernels.inverse_cdf_token(jnp.broadcast_to(logits, (u.size, 4)), u)
    assert tokens.tolist() == [0, 0, 0, 2, 2, 2, 3, 3, 3]
    # unnormalised logits: the same tokens (the sums are scaled, not the uniform numbers)
    assert kernels.inverse_cdf_token(jnp.broadcast_to(logits + 7.0, (u.size, 4)), u).tolist() == tokens.tolist()
    # draw_token is inverse_cdf_token of the key's uniform numbers
    key = jax.random.key(3)
    many = jnp.broadcast_to(logits, (50, 4))
    expected = kernels.inverse_cdf_token(many, jax.random.uniform(key, (50, 1))[:, 0])
    np.testing.assert_array_equal(kernels.inverse_cdf_draw(key, many), expected)
    np.testing.assert_array_equal(draw_token(key, many), expected)


def test_inverse_cdf_draw_has_the_distribution_of_jax_random_categorical():
    """200,000 draws each, from one softmax with a zero-probability token: both pass a chi-square test against
    the softmax (fixed seeds), and their counts pass a two-sample chi-square test against each other."""
    logits = jnp.array([0.5, -1.0, 2.0, 0.0, -jnp.inf, 1.0, -3.0, 0.7])
    probs = np.asarray(jax.nn.softmax(logits), np.float64)
    draws = 200_000
    rows = jnp.broadcast_to(logits, (draws, logits.size))
    counts = {}
    for use_kernels in (True, False):
        tokens = np.asarray(draw_token(jax.random.key(11), rows, use_kernels=use_kernels))
        counts[use_kernels] = np.bincount(tokens, minlength=logits.size)
        assert counts[use_kernels][4] == 0                                # probability 0: never drawn
        live = probs > 0
        expected = probs[live] / probs[live].sum() * draws
        assert stats.chisquare(counts[use_kernels][live], expected).pvalue > 1e-3
    table = np.stack([counts[True], counts[False]])[:, probs > 0]
    assert stats.chi2_contingency(table).pvalue > 1e-3
    # the plain draw is jax.random.categorical itself
    np.testing.assert_array_equal(draw_token(jax.random.key(5), rows[:100], use_kernels=False),
                                  jax.random.categorical(jax.random.key(5), rows[:100]))
