"""Tests of labkit.sample: filters, greedy agreement, beam search, reproducibility, primers, errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from labkit.encoding import MelodyEncoding
from labkit.errors import ConfigError, EncodingError, LabkitError
from labkit.melody import Melody
from labkit.models import ModelConfig, make_model
from labkit.sample import (SampleConfig, beam_search, default_primer, draw_token, filter_logits, primer_from_melody, sample,
                           tokens_to_melodies, tokens_to_sequences)

VOCAB = 10
PRIMER = np.array([4, 0, 7], np.int32)


def peaked_model(attention_length):
    # A random but not-too-flat model: scale up the output layer so that the arg-max is clear.
    m = make_model(ModelConfig(vocab_size=VOCAB, embed_dim=8, hidden_size=16, num_layers=2,
                               attention_length=attention_length), key=1)
    m.head.kernel[...] = m.head.kernel[...] * 8.0
    return m


@pytest.fixture(scope="module")
def model():
    """The sampler does not care which model it drives: most tests use the plain LSTM..."""
    return peaked_model(0)


@pytest.fixture(scope="module", params=[0, 3], ids=["lstm", "attention"])
def any_model(request):
    """... and the ones that pin the decoding down run on both (the attention carry is a dict)."""
    return peaked_model(request.param)


def greedy_reference(model, primer, length):
    """Arg-max decoding with a plain Python loop over model.step: the independent reference."""
    carry = model.init_carry(1)
    for token in primer:
        carry, logits = model.step(carry, jnp.array([token]))
    out = list(primer)
    for _ in range(length):
        token = int(jnp.argmax(logits[0]))
        out.append(token)
        carry, logits = model.step(carry, jnp.array([token]))
    return np.array(out)


def test_top_k_1_is_greedy_and_keeps_the_primer(any_model):
    model = any_model
    tokens = sample(model, SampleConfig(num_samples=4, length=12, top_k=1), PRIMER)
    assert tokens.shape == (4, 15) and tokens.dtype == np.int32
    expected = greedy_reference(model, PRIMER, 12)
    for row in tokens:
        np.testing.assert_array_equal(row, expected)


def test_tiny_top_p_is_greedy(model):
    greedy = sample(model, SampleConfig(num_samples=4, length=12, top_k=1), PRIMER)
    nucleus = sample(model, SampleConfig(num_samples=4, length=12, top_p=1e-6, seed=5), PRIMER)
    np.testing.assert_array_equal(nucleus, greedy)


def test_beam_of_one_is_greedy(model):
    tokens, scores = beam_search(model, PRIMER, length=8, beam_size=1)
    np.testing.assert_array_equal(tokens[0, 0], greedy_reference(model, PRIMER, 8))
    assert scores.shape == (1, 1)


def sequence_log_probs(model, tokens, primer_length):
    """Log-probability (nats) of each row of ``tokens`` [N, L] after its first ``primer_length`` tokens."""
    log_probs = np.asarray(jax.nn.log_softmax(model(jnp.asarray(tokens[:, :-1]))))
    steps = np.arange(primer_length - 1, tokens.shape[1] - 1)
    return np.array([log_probs[i, steps, tokens[i, steps + 1]].sum() for i in range(len(tokens))])


def test_beam_search_scores_are_the_log_probabilities(any_model):
    model = any_model
    tokens, scores = beam_search(model, PRIMER, length=8, beam_size=4)
    assert tokens.shape == (1, 4, 11)
    assert np.all(np.diff(scores[0]) <= 1e-6)                     # best first
    np.testing.assert_array_equal(tokens[0, :, :3], np.tile(PRIMER, (4, 1)))
    rescored = sequence_log_probs(model, np.vstack([tokens[0], greedy_reference(model, PRIMER, 8)]), 3)
    np.testing.assert_allclose(rescored[:4], scores[0], atol=1e-3)
    assert len({tuple(row) for row in tokens[0]}) == 4             # distinct hypotheses
    assert scores[0, 0] >= rescored[4] - 1e-4                       # at least as good as greedy


def test_beam_search_batches_primers(model):
    primers = np.array([[4, 0, 7], [9, 1, 2]], np.int32)
    tokens, _ = beam_search(model, primers, length=8, beam_size=4)
    assert tokens.shape == (2, 4, 11)
    alone, _ = beam_search(model, primers[1], length=8, beam_size=4)
    np.testing.assert_array_equal(tokens[1], alone[0])


def test_same_seed_same_samples_other_seed_other(model):
    cfg = SampleConfig(num_samples=4, length=12, seed=3)
    a = sample(model, cfg, PRIMER)
    np.testing.assert_array_equal(a, sample(model, cfg, PRIMER))
    np.testing.assert_array_equal(a, sample(model, SampleConfig(num_samples=4, length=12), PRIMER,
                                            key=jax.random.key(3)))
    assert not np.array_equal(a, sample(model, SampleConfig(num_samples=4, length=12, seed=4), PRIMER))
    assert len({tuple(row) for row in a}) > 1                      # the samples of a batch differ


def test_per_sample_primers_are_kept(model):
    primers = np.array([[4, 0, 7], [9, 1, 2], [2, 2, 2], [5, 6, 1]], np.int32)
    tokens = sample(model, SampleConfig(num_samples=4, length=12), primers)
    np.testing.assert_array_equal(tokens[:, :3], primers)
    assert tokens.min() >= 0 and tokens.max() < VOCAB


def test_filter_logits_top_k_and_top_p():
    logits = jnp.log(jnp.array([0.5, 0.3, 0.15, 0.05]))
    kept = lambda out: np.flatnonzero(np.isfinite(np.asarray(out))).tolist()  # noqa: E731
    assert kept(filter_logits(logits, top_k=2)) == [0, 1]
    assert kept(filter_logits(logits, top_p=0.5)) == [0]          # 0.5 alone reaches 0.5
    assert kept(filter_logits(logits, top_p=0.6)) == [0, 1]
    assert kept(filter_logits(logits, top_p=0.9)) == [0, 1, 2]
    assert kept(filter_logits(logits, top_p=1.0)) == [0, 1, 2, 3]
    assert kept(filter_logits(logits, top_k=3, top_p=0.6)) == [0, 1]
    # traced values (as inside the compiled sampler) give the same, and 0 / 1.0 still mean "off"
    traced = jax.jit(filter_logits)
    assert kept(traced(logits, 1.0, 2, 0.9)) == [0, 1]
    assert kept(traced(logits, 1.0, 0, 0.6)) == [0, 1]
    assert kept(traced(logits, 1.0, 0, 1.0)) == [0, 1, 2, 3]
    np.testing.assert_allclose(traced(logits, 2.0, 0, 1.0), logits / 2.0)


def test_low_temperature_concentrates_on_the_arg_max():
    logits = jnp.array([1.0, 0.6, 0.2, 0.0])
    keys = jax.random.split(jax.random.key(0), 4000)

    def share_of_argmax(temperature):
        draws = jax.vmap(lambda k: draw_token(k, filter_logits(logits, temperature)))(keys)
        return float(jnp.mean(draws == 0))

    shares = [share_of_argmax(t) for t in (2.0, 1.0, 0.3, 0.05)]
    assert all(a < b for a, b in zip(shares, shares[1:])), shares
    assert shares[-1] > 0.99 and shares[1] < 0.5


def test_top_k_never_samples_outside_the_k_best(model):
    tokens = sample(model, SampleConfig(num_samples=4, length=12, top_k=2, temperature=3.0, seed=1),
                    np.tile(PRIMER, (4, 1)))
    carry, logits = model.run(model.init_carry(1), jnp.asarray(PRIMER[None]))
    best_two = set(np.argsort(np.asarray(logits[0, -1]))[-2:].tolist())
    assert set(tokens[:, 3].tolist()) <= best_two
    logits = np.asarray(model(jnp.asarray(tokens[:, :-1])))
    for row, row_logits in zip(tokens, logits):   # every token is one of the two best after its history
        for t in range(3, tokens.shape[1]):
            assert row[t] in np.argsort(row_logits[t - 1])[-2:]


@pytest.mark.parametrize("changes, message", [
    (dict(temperature=0.0), "temperature"), (dict(temperature=-1.0), "temperature"),
    (dict(temperature=float("nan")), "temperature"), (dict(top_k=-1), "top_k"), (dict(top_k=VOCAB + 1), "top_k"),
    (dict(top_p=0.0), "top_p"), (dict(top_p=1.5), "top_p"), (dict(length=0), "length"),
    (dict(num_samples=0), "num_samples")])
def test_bad_sample_config_raises(model, changes, message):
    with pytest.raises(ConfigError, match=message):
        sample(model, SampleConfig(**changes), PRIMER)


def test_bad_primers_and_beams_raise(model):
    with pytest.raises(EncodingError, match="outside"):
        sample(model, SampleConfig(length=2), [3, VOCAB])
    with pytest.raises(EncodingError, match="outside"):
        sample(model, SampleConfig(length=2), [-1])
    with pytest.raises(ConfigError, match="empty"):
        sample(model, SampleConfig(length=2), [])
    with pytest.raises(ConfigError, match="encoding"):            # default primer, vocab 90 != 12
        sample(model, SampleConfig(length=2))
    with pytest.raises(ConfigError, match="beam_size"):
        beam_search(model, PRIMER, length=3, beam_size=0)
    with pytest.raises(ConfigError, match="beam_size"):
        beam_search(model, PRIMER, length=3, beam_size=VOCAB + 1)
    with pytest.raises(ConfigError, match="length"):
        beam_search(model, PRIMER, length=0)


def test_default_primer_and_primer_from_melody():
    enc = MelodyEncoding()
    assert enc.decode(default_primer(enc)).pitches.tolist() == [60]
    melody = Melody(np.array([-2, -2, 60, -2, 62, -1], np.int32))
    np.testing.assert_array_equal(primer_from_melody(melody, enc), enc.encode(melody)[2:])
    np.testing.assert_array_equal(primer_from_melody(melody, enc, num_steps=3), enc.encode(melody)[2:5])
    with pytest.raises(EncodingError):
        primer_from_melody(Melody(np.array([-2, -2], np.int32)), enc)


def test_tokens_to_melodies_and_harmless_note_off_after_silence():
    enc = MelodyEncoding()
    c4, d4 = int(enc.pitch_to_token(60)), int(enc.pitch_to_token(62))
    plain, doubled = tokens_to_melodies([[c4, 0, 1, 0, d4, 1], [c4, 0, 1, 1, d4, 1]], enc)
    assert plain.pitches.tolist() == [60, 62]
    for a, b in zip(plain.notes(), doubled.notes()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(EncodingError):
        tokens_to_melodies([[0, 95]], enc)
    sequences = tokens_to_sequences([[c4, 0, 1, 0, d4, 1], [c4, 0, 1, 1, d4, 1]], enc, qpm=60.0)
    assert [[n.pitch for n in s.notes] for s in sequences] == [[60, 62], [60, 62]]
    assert [n.end_time for n in sequences[0].notes] == [n.end_time for n in sequences[1].notes]


def test_default_model_samples_a_decodable_melody():
    model = make_model(ModelConfig(embed_dim=8, hidden_size=16, num_layers=1), 0)
    tokens = sample(model, SampleConfig(num_samples=2, length=8, temperature=0.8, top_k=10, top_p=0.9))
    assert tokens.shape == (2, 9)
    melodies = tokens_to_melodies(tokens, steps_per_quarter=4)
    assert [m.num_steps for m in melodies] == [9, 9] and melodies[0].pitches[0] == 60


def test_primer_from_midi_round_trip(tmp_path):
    from labkit.melody import melody_to_sequence
    from labkit.midi_io import write_midi
    from labkit.sample import primer_from_midi

    melody = Melody.from_notes([62, 64, 66], [2, 4, 8], [4, 8, 10])   # a two-step rest first
    path = write_midi(melody_to_sequence(melody), tmp_path / "primer.mid")
    enc = MelodyEncoding()
    np.testing.assert_array_equal(primer_from_midi(path, enc), enc.encode(melody)[2:])
    np.testing.assert_array_equal(primer_from_midi(path, enc, num_steps=3), enc.encode(melody)[2:5])
    (tmp_path / "bad.mid").write_text("not midi")
    with pytest.raises(LabkitError, match="bad.mid"):
        primer_from_midi(tmp_path / "bad.mid", enc)


@pytest.mark.parametrize("use_kernels", [True, False], ids=["inverse-cdf", "categorical"])
@pytest.mark.parametrize("top_k", [0, 5])
def test_draw_token_follows_the_softmax(top_k, use_kernels):
    """Both draws: frequencies match the probabilities (chi-square), excluded tokens never come."""
    from scipy import stats

    logits = filter_logits(2.0 * jax.random.normal(jax.random.key(3), (12,)), 1.0, top_k)
    draws = 50_000
    tokens = np.asarray(draw_token(jax.random.key(4), jnp.broadcast_to(logits, (draws, 12)), use_kernels=use_kernels))
    probs = np.asarray(jax.nn.softmax(logits))
    counts = np.bincount(tokens, minlength=12)
    support = probs > 0
    assert counts[~support].sum() == 0 and support.sum() == (top_k or 12)
    expected = probs[support] * draws
    chi2 = float(((counts[support] - expected) ** 2 / expected).sum())
    assert stats.chi2.sf(chi2, support.sum() - 1) > 1e-3, (counts, expected)
    # a batch of rows with their own distributions, and one key per row gives one token per row
    assert draw_token(jax.random.key(0), jnp.zeros((3, 4, 12)), use_kernels=use_kernels).shape == (3, 4)
    assert int(draw_token(jax.random.key(1), jnp.array([-jnp.inf, -jnp.inf, 5.0]), use_kernels=use_kernels)) == 2


def test_the_plain_sampler_is_reproducible_and_follows_the_model():
    """``use_kernels=False`` draws with jax.random.categorical: other tokens than the default for the same
    seed, the same tokens for the same seed; a model built without kernels samples the plain way."""
    cfg = ModelConfig(vocab_size=VOCAB, embed_dim=8, hidden_size=16, num_layers=1, dropout=0.0)
    settings = SampleConfig(num_samples=4, length=24, seed=2)
    fast, plain = make_model(cfg, 0), make_model(cfg, 0, use_kernels=False)
    a = sample(fast, settings, PRIMER)
    b = sample(fast, settings, PRIMER, use_kernels=False)
    np.testing.assert_array_equal(b, sample(fast, settings, PRIMER, use_kernels=False))
    np.testing.assert_array_equal(b, sample(plain, settings, PRIMER))
    np.testing.assert_array_equal(a, sample(plain, settings, PRIMER, use_kernels=True))
    assert not np.array_equal(a, b)
