"""Tests of labkit.ngram: PPM probabilities, learning, IDyOM agreement, combination."""
import numpy as np
import pytest

from labkit.errors import ConfigError, EncodingError
from labkit.ngram import PPM, IdyomModel, combine, entropy_bits


def random_tunes(n=12, length=30, alphabet=7, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, alphabet, size=int(rng.integers(1, length))) for _ in range(n)]


@pytest.mark.parametrize("order", [0, 1, 2, 4, None])
@pytest.mark.parametrize("escape", ["A", "B", "C", "D", "AX"])
def test_probabilities_sum_to_one(order, escape):
    tunes = random_tunes()
    for kwargs in ({}, {"update_exclusion": True}, {"exclusion": False}, {"mixtures": False}):
        m = PPM(9, order, escape=escape, **kwargs).fit(tunes)   # symbols 7, 8 never seen
        for context in ([], [3], [1, 2], list(tunes[0][:6]), [8, 8], [0] * 12):
            p = m.distribution(context)
            assert p.shape == (9,)
            assert np.isclose(p.sum(), 1.0, atol=1e-12)
            assert (p > 0).all(), (escape, order, kwargs, context)   # nothing is impossible


def test_untrained_model_is_uniform():
    p = PPM(5, 3).distribution([1, 2])
    assert np.allclose(p, 0.2)


@pytest.mark.parametrize("order", [1, 3, None])
def test_deterministic_sequence_is_learned(order):
    cycle = [0, 3, 1, 4, 2]
    m = PPM(6, order).fit([cycle * 20])
    bits = m.bits(cycle * 3)
    assert bits[0] > 1.0                  # the first symbol has no context
    assert bits[order or 1:].max() < 0.1  # once a context is known, each next symbol is near certain
    assert bits.mean() < 0.5


def test_update_changes_predictions():
    m = PPM(4, 2).fit([[0, 1, 2, 3] * 3])
    before = m.distribution([0, 1])
    assert before.argmax() == 2
    m.update([0, 1, 3] * 10)
    after = m.distribution([0, 1])
    assert after.argmax() == 3 and after[3] > before[3]
    assert m.num_symbols == 12 + 30


@pytest.mark.parametrize("update_exclusion", [False, True])
def test_learning_while_reading_equals_update(update_exclusion):
    tunes = random_tunes(seed=3)
    a = PPM(7, None, update_exclusion=update_exclusion).fit(tunes[:6])
    b = PPM(7, None, update_exclusion=update_exclusion).fit(tunes[:6])
    for t in tunes[6:]:
        a.distributions(t, learn=True)
        b.update(t)
    for context in ([], [1], list(tunes[2][:5])):
        assert np.allclose(a.distribution(context), b.distribution(context))
    # reading without learning changes nothing
    p = a.distribution([2, 3])
    a.distributions(tunes[0])
    assert np.array_equal(p, a.distribution([2, 3]))


def test_fit_forgets_and_contexts_do_not_cross_tunes():
    m = PPM(3, 1).fit([[0, 1], [2, 2]])
    m.fit([[0, 1]])
    assert m.num_symbols == 2
    # "1" ended a tune: it was never followed by anything, so order 1 is absent after it
    assert np.allclose(m.distribution([1]), m.distribution([]))


# IDyOM 1.5 (Pearce 2005) regression values for PPM* over a 15-letter alphabet, reading five
# words in turn and learning each letter after predicting it; as published with the ppm R
# package (P. M. C. Harrison, tests/testthat/data/escape-v2-*.R; update exclusion as fixed in
# IDyOM's development version, 2020). Each row: word, position, {letter: probability}.
LETTERS = "abcdeilmnoprstw"
WORDS = ["abracadabra", "letlettertele", "assanissimassa", "mississippi", "wooloobooloo"]
IDYOM = {
    ("C", False): [(0, 1, {"a": 0.5333332, "b": 0.033333324}),
                   (0, 4, {"a": 0.16571428, "b": 0.5371428, "r": 0.09142857, "e": 0.017142856}),
                   (0, 9, {"r": 0.50157726, "a": 0.15457413, "c": 0.050473183}),
                   (1, 12, {"e": 0.64130443, "t": 0.05434783}),
                   (4, 11, {"o": 0.38476193, "l": 0.114285715, "b": 0.07238095})],
    ("AX", False): [(0, 1, {"a": 0.37777779}),
                    (0, 10, {"a": 0.47188255, "b": 0.122249365}),
                    (3, 7, {"i": 0.70388347, "a": 0.201726, "s": 0.07605177}),
                    (4, 11, {"o": 0.43021584, "l": 0.17266189, "b": 0.09496404})],
    ("AX", True): [(3, 10, {"p": 0.28310502, "a": 0.11872145, "i": 0.063926935}),
                   (4, 4, {"e": 0.52032524, "a": 0.052845534}),
                   (4, 11, {"o": 0.35845897, "l": 0.10217755, "b": 0.0921273, "a": 0.06030151})],
}


@pytest.mark.parametrize("escape,update_exclusion", list(IDYOM))
def test_agrees_with_idyom(escape, update_exclusion):
    m = PPM(len(LETTERS), None, escape=escape, update_exclusion=update_exclusion)
    dists = [m.distributions([LETTERS.index(c) for c in w], learn=True) for w in WORDS]
    for word, pos, expected in IDYOM[(escape, update_exclusion)]:
        for letter, p in expected.items():
            assert dists[word][pos, LETTERS.index(letter)] == pytest.approx(p, rel=2e-6), (word, pos, letter)


def test_bad_input_is_reported():
    with pytest.raises(EncodingError, match="outside the alphabet"):
        PPM(4).fit([[0, 4]])
    with pytest.raises(EncodingError):
        PPM(4).distribution([[0, 1]])
    with pytest.raises(ConfigError, match="escape"):
        PPM(4, escape="Q")
    with pytest.raises(ConfigError):
        PPM(0)
    with pytest.raises(ConfigError):
        IdyomModel(4, models="ltm++")


def test_combine_trusts_the_surer_model():
    sure = np.array([0.85, 0.05, 0.05, 0.05])
    flat = np.full(4, 0.25)
    for method in ("geometric", "arithmetic"):
        out = combine([sure, flat], method=method, bias=7)
        assert np.isclose(out.sum(), 1.0)
        assert out[0] > combine([sure, flat], method=method, bias=0)[0] > 0.25
    # bias 0: equal weights
    assert np.allclose(combine([sure, flat], "arithmetic", bias=0), (sure + flat) / 2)
    g = np.sqrt(sure * flat)
    assert np.allclose(combine([sure, flat], "geometric", bias=0), g / g.sum())
    # works row-wise on [T, A] arrays
    rows = combine([np.stack([sure, flat]), np.stack([flat, sure])])
    assert rows.shape == (2, 4) and np.allclose(rows.sum(axis=1), 1)
    assert np.allclose(entropy_bits(flat), 2.0)


def test_idyom_models_learn_as_configured():
    motif = [0, 2, 4, 5, 4, 2]
    train = random_tunes(n=20, alphabet=8, seed=5)
    tune = np.array(motif * 4)
    ltm = IdyomModel(8, "ltm").fit(train)
    first = ltm.bits(tune).sum()
    assert np.isclose(ltm.bits(tune).sum(), first)            # LTM: fixed
    ltm_plus = IdyomModel(8, "ltm+").fit(train)
    assert ltm_plus.bits(tune).sum() < first                    # learns the repeats while reading
    assert ltm_plus.bits(tune).sum() < 0.5 * first              # and keeps what it learned
    stm = IdyomModel(8, "stm")
    bits = stm.bits(tune)
    assert bits[-6:].mean() < 0.5 * bits[:6].mean()             # STM: learns the tune itself
    assert np.isclose(stm.bits(tune).sum(), bits.sum())         # ... and forgets it afterwards
    both = IdyomModel(8, "both+").fit(train)
    assert np.isfinite(both.bits(tune)).all()


def test_component_distributions_are_what_is_combined():
    train = random_tunes(n=20, alphabet=8, seed=6)
    tune = np.array([0, 2, 4, 5, 4, 2] * 3)
    parts = IdyomModel(8, "both").fit(train).component_distributions(tune)
    assert len(parts) == 2 and all(p.shape == (len(tune), 8) for p in parts)
    assert np.allclose(combine(parts), IdyomModel(8, "both").fit(train).distributions(tune))
    assert len(IdyomModel(8, "stm").component_distributions(tune)) == 1
    assert not np.allclose(parts[0], parts[1])                   # the LTM and the STM differ
