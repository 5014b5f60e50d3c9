"""Tests of labkit.models (the plain code and, by default, the kernels): shapes, step/sequence agreement,
causality, dropout, configs. The kernels against the plain code: tests/test_kernels.py."""
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from labkit.errors import ConfigError
from labkit.models import AttentionMelodyLSTM, MelodyLSTM, ModelConfig, count_params, embed_tokens, make_model

VOCAB = 10


def tiny(attention_length=0, dropout=0.0, num_layers=2):
    return ModelConfig(vocab_size=VOCAB, embed_dim=8, hidden_size=16, num_layers=num_layers,
                       dropout=dropout, attention_length=attention_length)


def random_tokens(shape=(2, 8), seed=0):
    return jax.random.randint(jax.random.key(seed), shape, 0, VOCAB)


# Compiled once per model and shape: eager calls would re-compile their lax.scan every time.
@nnx.jit(static_argnames="deterministic")
def apply(model, tokens, deterministic=True, key=None):
    return model(tokens, deterministic=deterministic, key=key)


@nnx.jit
def run(model, carry, tokens):
    return model.run(carry, tokens)


@pytest.fixture(scope="module", params=[(0, True), (3, True), (0, False), (3, False)],
                ids=["lstm", "attention", "lstm-plain", "attention-plain"])
def model(request):
    attention_length, use_kernels = request.param
    return make_model(tiny(attention_length=attention_length), key=0, use_kernels=use_kernels)


def test_make_model_picks_the_class_and_the_kernels_by_default():
    assert isinstance(make_model(tiny(), 0), MelodyLSTM)
    assert isinstance(make_model(tiny(attention_length=4), 0), AttentionMelodyLSTM)
    assert make_model(tiny(), 0).use_kernels and make_model(tiny(attention_length=4), 0).use_kernels
    assert not make_model(tiny(), 0, use_kernels=False).use_kernels


def test_shapes(model):
    tokens = random_tokens((2, 8))
    assert apply(model, tokens).shape == (2, 8, VOCAB)
    carry = model.init_carry(2)
    carry, logits = model.step(carry, tokens[:, 0])
    assert logits.shape == (2, VOCAB)
    carry2, logits2 = run(model, model.init_carry(2), tokens[:, :4])
    assert logits2.shape == (2, 4, VOCAB)
    assert jax.tree_util.tree_structure(carry) == jax.tree_util.tree_structure(carry2)


def test_embed_tokens_is_the_lookup_with_a_matrix_product_gradient():
    embed = nnx.Embed(VOCAB, 8, rngs=nnx.Rngs(0))
    tokens = random_tokens((3, 7), seed=5)
    np.testing.assert_array_equal(embed_tokens(embed, tokens), embed(tokens))    # the same numbers, exactly

    def lookup(table):
        return embed_tokens(SimpleNamespace(embedding=table), tokens)

    cotangent = jax.random.normal(jax.random.key(1), (3, 7, 8))
    _, pull = jax.vjp(lookup, embed.embedding[...])
    expected = np.zeros((VOCAB, 8), np.float32)                     # each row: the sum of its tokens' cotangents
    np.add.at(expected, np.asarray(tokens).ravel(), np.asarray(cotangent).reshape(-1, 8))
    np.testing.assert_allclose(pull(cotangent)[0], expected, rtol=1e-5, atol=1e-6)
    # and the backward pass has no scatter (which GPUs run with atomic additions, in no fixed order)
    backward = jax.jit(jax.grad(lambda t: jnp.sum(lookup(t) * cotangent))).lower(embed.embedding[...]).as_text()
    assert "scatter" not in backward and "dot_general" in backward


def test_step_by_step_equals_whole_sequence(model):
    tokens = random_tokens(seed=1)
    whole = apply(model, tokens)
    carry, outputs = model.init_carry(2), []
    for t in range(tokens.shape[1]):
        carry, logits = model.step(carry, tokens[:, t])
        outputs.append(logits)
    np.testing.assert_allclose(np.stack(outputs, axis=1), whole, atol=1e-5)


def test_step_function_equals_step(model):
    """The sampler's step (the first layer's input products looked up from a table) is ``step``."""
    model = nnx.clone(model)
    for cell in getattr(model, "cells", []):                      # non-zero biases (they start at zero)
        cell.dense_h.bias[...] = jnp.linspace(-1.0, 1.0, cell.dense_h.bias.shape[0])
    tokens = random_tokens(seed=6)
    fast = model.step_function()
    a = b = model.init_carry(2)
    for t in range(tokens.shape[1]):
        a, logits_a = model.step(a, tokens[:, t])
        b, logits_b = fast(b, tokens[:, t])
        np.testing.assert_allclose(logits_b, logits_a, rtol=1e-5, atol=1e-5)
    for x, y in zip(jax.tree_util.tree_leaves(b), jax.tree_util.tree_leaves(a), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


def test_run_continues_from_a_carry(model):
    tokens = random_tokens(seed=2)
    whole = apply(model, tokens)
    carry, first = run(model, model.init_carry(2), tokens[:, :4])
    _, second = run(model, carry, tokens[:, 4:])
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, atol=1e-5)


def test_causal(model):
    tokens = random_tokens(seed=3)
    changed = tokens.at[:, 5:].set((tokens[:, 5:] + 1) % VOCAB)
    a, b = apply(model, tokens), apply(model, changed)
    np.testing.assert_allclose(a[:, :5], b[:, :5], atol=1e-6)
    assert not np.allclose(a[:, 5:], b[:, 5:])


def test_scan_matches_nnx_rnn():
    """The fused-input scan gives what nnx.RNN over the same OptimizedLSTMCell gives."""
    model = make_model(tiny(), 4)
    tokens = random_tokens(seed=4)
    x = model.embed(tokens)
    for cell in model.cells:
        x = nnx.RNN(cell)(x)
    np.testing.assert_allclose(model.head(x), apply(model, tokens), atol=1e-5)


def test_same_key_same_parameters_other_key_other():
    def params(key):
        return jax.tree_util.tree_leaves(nnx.state(make_model(tiny(), key), nnx.Param))

    for x, y in zip(params(7), params(jax.random.key(7))):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(params(7), params(8)))


@pytest.mark.parametrize("use_kernels", [True, False])
@pytest.mark.parametrize("attention_length", [0, 3])
def test_dropout_needs_a_key_and_is_reproducible(attention_length, use_kernels):
    model = make_model(tiny(attention_length=attention_length, dropout=0.5), 0, use_kernels=use_kernels)
    tokens = random_tokens(seed=5)
    plain = apply(model, tokens)
    np.testing.assert_array_equal(apply(model, tokens, deterministic=True, key=jax.random.key(1)), plain)
    a = apply(model, tokens, deterministic=False, key=jax.random.key(1))
    b = apply(model, tokens, deterministic=False, key=jax.random.key(1))
    c = apply(model, tokens, deterministic=False, key=jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, plain)
    assert not np.allclose(a, c)
    with pytest.raises(ConfigError, match="key"):
        model(tokens, deterministic=False)


@pytest.mark.parametrize("attention_length", [0, 3])
def test_dropout_of_a_row_does_not_depend_on_padding_rows(attention_length):
    """Padding a batch (as training does for several devices) must not change the real rows' masks."""
    model = make_model(tiny(attention_length=attention_length, dropout=0.5), 0)
    tokens = random_tokens(seed=6)
    padded = jnp.concatenate([tokens, jnp.zeros_like(tokens)], axis=0)
    key = jax.random.key(3)
    np.testing.assert_allclose(apply(model, padded, deterministic=False, key=key)[:2],
                               apply(model, tokens, deterministic=False, key=key), atol=1e-6)


def test_attention_ignores_unfilled_window_slots():
    model = make_model(tiny(attention_length=4), 0)
    token = jnp.array([3, 5])
    carry = model.init_carry(2)
    noisy = dict(carry, window=jax.random.normal(jax.random.key(0), carry["window"].shape),
                 keys=jax.random.normal(jax.random.key(1), carry["keys"].shape))
    np.testing.assert_allclose(model.step(carry, token)[1], model.step(noisy, token)[1], atol=1e-6)
    # ... but once a slot is valid, its content matters.
    filled = dict(noisy, valid=carry["valid"].at[:, -1].set(1.0))
    assert not np.allclose(model.step(carry, token)[1], model.step(filled, token)[1])


def test_attention_window_slides():
    model = make_model(tiny(attention_length=3), 0)
    carry = model.init_carry(1)
    tops = []
    for t in range(5):
        carry, _ = model.step(carry, jnp.array([t % VOCAB]))
        tops.append(carry["lstm"][-1][1])   # h of the top layer = what enters the window
    np.testing.assert_array_equal(carry["valid"], [[1.0, 1.0, 1.0]])
    np.testing.assert_allclose(carry["window"][0], np.concatenate(tops[-3:]), atol=1e-6)


def test_count_params_matches_the_formula():
    cfg = ModelConfig(vocab_size=VOCAB, embed_dim=8, hidden_size=16, num_layers=2, dropout=0.0)
    e, h, v = 8, 16, VOCAB
    lstm = lambda d: d * 4 * h + h * 4 * h + 4 * h  # noqa: E731
    expected = v * e + lstm(e) + lstm(h) + h * v + v
    assert count_params(make_model(cfg, 0)) == expected == cfg.num_params()


@pytest.mark.parametrize("changes", [dict(vocab_size=0), dict(hidden_size=-1), dict(num_layers=1.5),
                                     dict(dropout=1.0), dict(dropout=-0.1), dict(attention_length=-2)])
def test_bad_config_raises(changes):
    with pytest.raises(ConfigError):
        ModelConfig(**changes)


def test_config_round_trip():
    cfg = tiny(attention_length=5, dropout=0.25)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="no field"):
        ModelConfig.from_dict({**cfg.to_dict(), "hiden_size": 3})
