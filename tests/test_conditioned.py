"""Generation to order (labkit.conditioned): tokens with a prefix, bar lines and an end; training; sampling; the CLI."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from flax import nnx

from labkit import cli
from labkit.checkpoint import save_model
from labkit.conditioned import (COPY_LAGS, DEFAULT_GUIDANCE, DEFAULT_MAX_STEPS, DEFAULT_PLAUSIBILITY, DEFAULT_POSTERIOR,
                                DEFAULT_RHYTHM_SHARE, DEFAULT_TEMPER, NUMBERED_BARS, UNKNOWN_METER,
                                ConditionedEncoding, conditioned_scores, corpus_tunes, load_conditioned_model,
                                parse_key, parse_meter, sample_to_order, shipped_conditioned_path, train_batches,
                                tune_row, valid_batches)
from labkit.data import MelodySet
from labkit.errors import ConfigError
from labkit.melody import Melody
from labkit.midi_io import read_midi
from labkit.models import ModelConfig, make_model
from labkit.train import TrainConfig, fit

ENC = ConditionedEncoding(styles=("irish", "german"), meters=("6/8", "3/4"))
ENC0 = ConditionedEncoding(styles=("irish", "german"), meters=("6/8", "3/4"), copy_lags=())      # no copy tokens


def test_layout_of_the_vocabulary():
    # 90 melody tokens, BAR1..BAR64, END, BEGIN, 2 styles, 2 metres + "?", 24 keys, COPY 1, 2, 4, 8, 16
    assert NUMBERED_BARS == 64
    assert (ENC.bar, ENC.bar_token(2), ENC.bar_token(64), ENC.bar_token(200)) == (90, 91, 153, 153)
    assert (ENC.end, ENC.begin) == (154, 155)
    assert (ENC.style_token("irish"), ENC.style_token("german")) == (156, 157)
    assert (ENC.meter_token("6/8"), ENC.meter_token("3/4"), ENC.meter_token(UNKNOWN_METER)) == (158, 159, 160)
    assert (ENC.key_token(0, "major"), ENC.key_token(2, "major"), ENC.key_token(9, "minor")) == (161, 163, 182)
    assert COPY_LAGS == (1, 2, 4, 8, 16) and ENC.copy_lags == COPY_LAGS
    assert (ENC.copy_base, ENC.copy_token(1), ENC.copy_token(16), ENC.vocab_size) == (185, 185, 189, 190)
    assert ENC0.vocab_size == 185 and ENC0.copy_base == 185
    with pytest.raises(ConfigError, match="no copy token"):
        ENC.copy_token(3)
    assert ENC.bar_steps("6/8") == 12 and ENC.bar_steps("3/4") == 12 and ENC.bar_steps(UNKNOWN_METER) == 0


def test_round_trip_with_prefix_bars_and_end():
    # a 3/4 tune in E minor: two bars and a bit, a pickup rest, a rest inside
    m = Melody.from_notes([64, 67, 71, 69, 64], [2, 4, 12, 16, 24], [4, 12, 16, 20, 28],
                          numerator=3, denominator=4, key=4, mode="minor")
    tokens = ENC.encode(m, "german")
    assert tokens[:4].tolist() == [157, 159, ENC.key_token(4, "minor"), ENC.begin]
    body = tokens[4:]
    assert body[-1] == ENC.end and (body == ENC.end).sum() == 1
    bars = np.flatnonzero((body >= ENC.bar) & (body < ENC.end))
    # bar lines 1, 2, 3 before steps 0, 12 and 24 of the 29 events: at body positions 0, 13 and 26
    assert bars.tolist() == [0, 13, 26] and body[bars].tolist() == [90, 91, 92]
    assert len(body) == m.num_steps + 3 + 1
    back, info = ENC.decode(tokens)
    assert np.array_equal(back.events, m.events)
    assert (back.numerator, back.denominator, back.key, back.mode) == (3, 4, 4, "minor")
    assert info == {"style": "german", "meter": "3/4", "key": "E minor", "ended": True, "bars": 3, "copies": 0}
    # tokens after END are not part of the tune
    cut, _ = ENC.decode(np.concatenate([tokens, ENC.melody.encode(np.array([60]))]))
    assert np.array_equal(cut.events, m.events)


def test_unknown_metre_has_no_bar_lines():
    m = Melody.from_notes([60, 62], [0, 4], [4, 8], numerator=5, denominator=4)
    tokens = ENC.encode(m, "irish")
    assert tokens[1] == ENC.meter_token(UNKNOWN_METER) and not ((tokens >= ENC.bar) & (tokens < ENC.end)).any()
    back, info = ENC.decode(tokens)
    assert info["meter"] == UNKNOWN_METER and (back.numerator, back.denominator) == (4, 4)


@pytest.mark.parametrize("text, expected", [("D", (2, "major")), ("d", (2, "major")), ("F#m", (6, "minor")),
                                            ("Bb major", (10, "major")), ("A minor", (9, "minor")),
                                            ("Ebmaj", (3, "major")), ("A dorian", (9, "minor")),
                                            ("G mixolydian", (7, "major")), ("C#min", (1, "minor"))])
def test_key_names(text, expected):
    assert parse_key(text) == expected


@pytest.mark.parametrize("text", ["H", "", "D flat", "Dx", "6/8", "major"])
def test_bad_key_names(text):
    with pytest.raises(ConfigError, match="not a key name"):
        parse_key(text)


def test_metres():
    assert parse_meter("6/8") == (6, 8) and parse_meter(" 2/2 ") == (2, 2)
    for bad in ("6-8", "6/7", "0/4", "jig", "6/"):
        with pytest.raises(ConfigError, match="not a metre"):
            parse_meter(bad)


# --- training data and a tiny model -----------------------------------------------------------------

def _tiny_tunes():
    """Six short tunes with their manifest rows (metre, key), as corpus_tunes reads them."""
    mels, rows = [], []
    for i in range(6):
        base = 60 + i % 3
        m = Melody.from_notes([base, base + 4, base + 7, base + 4, base], [0, 6, 12, 18, 24], [6, 12, 18, 24, 36])
        mels.append(m)
        rows.append({"id": f"t{i}", "meter": "6/8" if i % 2 else "3/4", "key": ["C major", "C# major", "D minor"][i % 3]})
    mset = MelodySet.from_melodies(mels, ids=[r["id"] for r in rows],
                                   styles=["irish" if i % 2 else "german" for i in range(6)])
    return corpus_tunes(mset, ENC, manifest=pd.DataFrame(rows))


def test_corpus_tunes_take_metre_and_key_from_the_manifest():
    tunes = _tiny_tunes()
    assert len(tunes) == 6
    assert tunes.prefixes[1].tolist() == [156, 158, ENC.key_token(1, "major")]
    assert tunes.prefixes[2].tolist() == [157, 159, ENC.key_token(2, "minor")]
    # the transposed row moves the pitches and the key token together; the prefix is never a target
    tokens, mask = tune_row(tunes, 2, shift=3)
    assert tokens[2] == ENC.key_token(5, "minor") and mask[:3].tolist() == [0, 0, 0] and mask[3:].all()
    plain, _ = tune_row(tunes, 2)
    pitched = (plain >= 2) & (plain < ENC.bar)
    pitched[:3] = False
    assert np.array_equal(tokens[pitched], plain[pitched] + 3)
    assert np.array_equal(tokens[~pitched][3:], plain[~pitched][3:])


def test_tiny_model_trains_reproducibly():
    tunes = _tiny_tunes()
    cfg = TrainConfig(num_steps=3, batch_size=2, seq_len=16, learning_rate=3e-3, warmup_steps=1, eval_every=3,
                      max_eval_batches=2, patience=0, log_every=1, progress=False, seed=4)
    batch = next(iter(train_batches(tunes, cfg)(0)))
    assert batch["tokens"].shape == (2, 17) and batch["mask"][:, :3].sum() == 0
    mcfg = ModelConfig(vocab_size=ENC.vocab_size, embed_dim=8, hidden_size=16, num_layers=1, dropout=0.0)
    runs = [fit(mcfg, cfg, train_batches(tunes, cfg), valid_batches(tunes, cfg)) for _ in range(2)]
    a, b = (nnx.state(model, nnx.Param) for model, _ in runs)
    assert all(np.array_equal(x, y) for x, y in zip(jax_leaves(a), jax_leaves(b)))
    assert runs[0][1][-1]["valid_loss"] == runs[1][1][-1]["valid_loss"]
    scores = conditioned_scores(runs[0][0], tunes)
    # every event after each tune's first: 6 tunes of 37 events
    assert scores["events"] == 6 * 36 and 0 < scores["bits_per_event"] <= scores["bits_per_event_all"]


def jax_leaves(state):
    import jax

    return [np.asarray(x) for x in jax.tree_util.tree_leaves(state)]


# --- sampling --------------------------------------------------------------------------------------

def _ending_model(end_bias: float = 4.0, enc: ConditionedEncoding = ENC):
    """A tiny untrained model whose head favours END, so that its tunes end by themselves."""
    model = make_model(ModelConfig(vocab_size=enc.vocab_size, embed_dim=8, hidden_size=16, num_layers=1), 0)
    bias = np.zeros(enc.vocab_size, np.float32)
    bias[ENC.end] = end_bias
    model.head.bias = nnx.Param(model.head.bias[...] + bias)
    return model


def test_restated_conditions_are_inputs_only_and_move_with_the_key():
    enc = ConditionedEncoding(styles=("irish", "german"), meters=("6/8", "3/4"), restate_bars=2, copy_lags=())
    m = Melody.from_notes([62] * 10, [6 * i for i in range(10)], [6 * i + 6 for i in range(10)],
                          numerator=6, denominator=8, key=2)
    tokens = enc.encode(m, "irish")
    conditions = tokens[:3].tolist()
    # bar lines 3 and 5 (of 6) are followed by the conditions again
    for number in (3, 5):
        at = int(np.flatnonzero(tokens == enc.bar_token(number))[0])
        assert tokens[at + 1:at + 4].tolist() == conditions
    assert [enc.restates(k) for k in range(1, 8)] == [False, False, True, False, True, False, True]
    back, info = enc.decode(tokens)
    assert np.array_equal(back.events, m.events) and info["bars"] == 6
    mset = MelodySet.from_melodies([m], ids=["x"], styles=["irish"])
    tunes = corpus_tunes(mset, enc, manifest=pd.DataFrame([{"id": "x", "meter": "6/8", "key": "D major"}]))
    row, mask = tune_row(tunes, 0, shift=-2)
    restated = row[3:] > enc.begin
    assert restated.sum() == 6 and not mask[3:][restated].any() and mask[3:][~restated].all()
    assert (row == enc.key_token(0, "major")).sum() == 3                # D major -> C major, everywhere


def test_sampling_restates_the_conditions():
    enc = ConditionedEncoding(styles=("irish", "german"), meters=("6/8", "3/4"), restate_bars=2, copy_lags=())
    model = make_model(ModelConfig(vocab_size=enc.vocab_size, embed_dim=8, hidden_size=16, num_layers=1), 0)
    (melody, info), = sample_to_order(model, enc, style="german", meter="3/4", key="Am", num=1, max_steps=60)
    tokens = info["tokens"]
    body = tokens[4:]
    for number in range(3, info["bars"] + 1, 2):
        at = int(np.flatnonzero(body == enc.bar_token(number))[0])
        assert body[at + 1:at + 4].tolist() == tokens[:3].tolist()
    assert melody.num_steps == (body < enc.bar).sum()


# --- copy tokens: a bar that repeats an earlier one ----------------------------------------------------

def _bars_tune(letters: str, numerator: int = 3, denominator: int = 4) -> Melody:
    """A tune of whole bars, one letter per bar: the letter's bar is one note, a rest, a note (each 4 steps)."""
    pitches, starts, ends = [], [], []
    for k, letter in enumerate(letters):
        base = 60 + "abcdefgh".index(letter)
        pitches += [base, base + 12]
        starts += [12 * k, 12 * k + 8]
        ends += [12 * k + 4, 12 * k + 12]
    return Melody.from_notes(pitches, starts, ends, numerator=numerator, denominator=denominator)


def _copies(tokens, enc=ENC) -> list:
    """``[(bar number, lag)]`` of the copy tokens in a token row."""
    out, number = [], 0
    for t in np.asarray(tokens).tolist():
        number += enc.bar <= t < enc.end
        if t >= enc.copy_base:
            out.append((number, enc.copy_lags[t - enc.copy_base]))
    return out


def test_copy_tokens_by_hand():
    # bars a b a b | c d c d | a b a b | c d c d: bars 3-4 repeat 1-2 (lag 2), 9-16 repeat 1-8 (lag 8: the longest
    # that fits, then kept while it fits); bar 7 and 8 repeat bars 5 and 6 (lag 2)
    tune = _bars_tune("ababcdcdababcdcd")
    tokens = ENC.encode(tune, "german")
    assert _copies(tokens) == [(3, 2), (4, 2), (7, 2), (8, 2)] + [(k, 8) for k in range(9, 17)]
    # a copy token follows its bar line; the copied bar's events are still written out, and are forced
    at = int(np.flatnonzero(tokens == ENC.bar_token(9))[0])
    assert tokens[at + 1] == ENC.copy_token(8)
    start = int(np.flatnonzero(tokens == ENC.bar_token(1))[0])
    assert np.array_equal(tokens[at + 2:at + 14], tokens[start + 1:start + 13])
    forced = ENC.forced(tokens)
    assert forced.sum() == 12 * 12 and not forced[(tokens >= ENC.bar)].any()
    assert forced[at + 2:at + 14].all() and not forced[start:start + 13].any()
    back, info = ENC.decode(tokens)
    # 17 bar lines: the last note-off (step 192) begins a 17th bar
    assert np.array_equal(back.events, tune.events) and info["copies"] == 12 and info["bars"] == 17
    # lag 1 (a bar played twice); a partial last bar is never a copy; no copy tokens: none written
    assert _copies(ENC.encode(_bars_tune("aab"), "irish")) == [(2, 1)]
    part = Melody.from_notes([60, 60], [0, 12], [12, 18], numerator=3, denominator=4)
    assert _copies(ENC.encode(part, "irish")) == []
    assert _copies(ENC0.encode(tune, "german"), ENC0) == [] and len(ENC0.encode(tune, "german")) == len(tokens) - 12


def test_copied_events_are_never_targets_and_copies_do_not_move_with_the_key():
    mset = MelodySet.from_melodies([_bars_tune("abab")], ids=["x"], styles=["german"])
    tunes = corpus_tunes(mset, ENC, manifest=pd.DataFrame([{"id": "x", "meter": "3/4", "key": "C major"}]))
    row, mask = tune_row(tunes, 0, shift=2)
    plain, _ = tune_row(tunes, 0)
    copy = row >= ENC.copy_base
    assert copy.sum() == 2 and np.array_equal(row[copy], plain[copy]) and mask[copy].all()   # a copy is a target
    forced = np.zeros(len(row), bool)
    forced[3:] = ENC.forced(row[3:])
    assert forced.sum() == 24 and not mask[forced].any() and mask[3:][~forced[3:]].all()
    # a window that starts inside a copied bar keeps its events forced
    at = int(np.flatnonzero(plain == ENC.copy_token(2))[0]) - 3
    window, window_mask = tune_row(tunes, 0, start=at + 3, length=6)
    assert not window_mask[3:].any()


def _copying_model(copy_bias: float = 6.0):
    """A tiny untrained model whose head favours every copy token (and END a little less than the rest)."""
    model = _ending_model(-1.5)
    bias = np.zeros(ENC.vocab_size, np.float32)
    bias[ENC.copy_base:] = copy_bias
    model.head.bias = nnx.Param(model.head.bias[...] + bias)
    return model


def test_sampled_copies_repeat_the_bar_they_name():
    tunes = sample_to_order(_copying_model(), ENC, style="irish", meter="6/8", key="D", num=6, max_steps=240, seed=3)
    copies = 0
    for melody, info in tunes:
        tokens = info["tokens"]
        found = _copies(tokens)
        copies += len(found)
        assert info["copies"] == len(found)
        bars = melody.events[:len(melody.events) // 12 * 12].reshape(-1, 12)
        for number, lag in found:
            assert number > lag                                         # there is a bar to copy
            if number <= len(bars):
                assert np.array_equal(bars[number - 1], bars[number - 1 - lag]), (number, lag)
        # a copy token only right after a bar line
        after = np.flatnonzero(tokens >= ENC.copy_base) - 1
        assert ((tokens[after] >= ENC.bar) & (tokens[after] < ENC.end)).all()
    assert copies >= 10
    # the first bar can copy nothing: never a copy token before bar 2
    assert all(number >= 2 for _, info in tunes for number, _ in _copies(info["tokens"]))


def test_scores_count_copied_events_and_charge_the_copy_tokens():
    mset = MelodySet.from_melodies([_bars_tune("abab"), _bars_tune("abcd")], ids=["x", "y"], styles=["german"] * 2)
    manifest = pd.DataFrame([{"id": i, "meter": "3/4", "key": "C major"} for i in "xy"])
    with_copies, without = (corpus_tunes(mset, enc, manifest=manifest) for enc in (ENC, ENC0))
    model = make_model(ModelConfig(vocab_size=ENC.vocab_size, embed_dim=8, hidden_size=16, num_layers=1), 0)
    scores = conditioned_scores(model, with_copies)
    # the same events as without copies (every event after each tune's first), though 24 of them are forced
    assert scores["events"] == 2 * (49 - 1)                              # 4 bars and the last note-off
    plain = conditioned_scores(make_model(ModelConfig(vocab_size=ENC0.vocab_size, embed_dim=8, hidden_size=16,
                                                      num_layers=1), 0), without)
    assert plain["events"] == scores["events"]
    # an untrained model pays about log2(V) bits per drawn token: the copied bars cost one token each, not 12
    drawn = 2 * 48 - 24 + 2
    assert scores["bits_per_event"] == pytest.approx(drawn * np.log2(ENC.vocab_size) / scores["events"], rel=0.05)


# --- guidance towards the style asked for ---------------------------------------------------------------

def _styled_model(copy_bias: float = 0.0, hold_bias: float = 0.0, style_scale: float = 6.0):
    """A tiny untrained model that hears its conditions at every step, so that the style changes every next token."""
    cfg = ModelConfig(vocab_size=ENC.vocab_size, embed_dim=16, hidden_size=16, num_layers=1, dropout=0.0,
                      condition_tokens=3)
    model = make_model(cfg, 5)
    embed = np.asarray(model.embed.embedding[...]).copy()
    embed[ENC.style_token("irish")] *= style_scale                         # a style that matters
    model.embed.embedding = nnx.Param(jnp.asarray(embed))
    bias = np.zeros(ENC.vocab_size, np.float32)
    bias[ENC.copy_base:] = copy_bias
    bias[0] = hold_bias
    model.head.bias = nnx.Param(model.head.bias[...] + bias)
    return model


def _first_event_distribution(model, guidance, style="irish"):
    """By hand: the distribution of a tune's first event (after the prefix and BAR1) with this guidance."""
    from labkit.conditioned import guided_logits

    rows = [style] + [s for s in ENC.styles if s != style]
    tokens = np.array([ENC.prefix(s, "6/8", 2, "major").tolist() + [ENC.bar_token(1)] for s in rows], np.int32)
    logits = np.asarray(model(jnp.asarray(tokens)))[:, -1]
    guided = np.array(guided_logits(jnp.asarray(logits[None]), guidance))[0]
    guided[ENC.bar:] = -np.inf                                           # only melody events may come first
    p = np.exp(guided - guided[np.isfinite(guided)].max())
    return p / p.sum()


def test_guided_sampling_draws_from_the_guided_distribution():
    model = _styled_model()
    plain, guided = _first_event_distribution(model, 0.0), _first_event_distribution(model, 2.0)
    assert 0.5 * np.abs(plain - guided).sum() > 0.1                      # guidance changes the distribution
    gap = 0.5 * np.abs(plain - guided).sum()
    tunes = sample_to_order(model, ENC, style="irish", meter="6/8", key="D", num=20000, max_steps=1, temperature=1.0,
                            guidance=2.0, rhythm_share=1.0, plausibility=0.0, seed=7)
    first = np.array([info["tokens"][5] for _, info in tunes])
    seen = np.bincount(first, minlength=ENC.vocab_size) / len(first)
    # what was drawn is that distribution (20,000 draws over ~90 tokens: a total variation of about 0.03 by chance)
    assert 0.5 * np.abs(seen - guided).sum() < 0.045
    assert 0.5 * np.abs(seen - plain).sum() > gap - 0.045
    # rhythm_share 0: whether a note begins is the unguided model's choice, which pitch the guided one's
    model = _styled_model(hold_bias=float(np.log(ENC.bar - 2)))         # a hold about as likely as any note
    plain, guided = _first_event_distribution(model, 0.0), _first_event_distribution(model, 2.0)
    tunes = sample_to_order(model, ENC, style="irish", meter="6/8", key="D", num=20000, max_steps=1, temperature=1.0,
                            guidance=2.0, rhythm_share=0.0, plausibility=0.0, seed=7)
    first = np.array([info["tokens"][5] for _, info in tunes])
    seen = np.bincount(first, minlength=ENC.vocab_size) / len(first)
    on = slice(2, ENC.bar)
    expected = plain.copy()
    expected[on] = plain[on].sum() * guided[on] / guided[on].sum()
    assert abs(seen[on].sum() - plain[on].sum()) < 0.015 and abs(guided[on].sum() - plain[on].sum()) > 0.03
    assert 0.5 * np.abs(seen - expected).sum() < 0.045


def _second_event_distribution(model, guidance, posterior):
    """By hand: the distribution of a tune's second event, over every first event, when guidance's contrast
    weighs each style by exp(posterior x its log-probability of the first event)."""
    from labkit.conditioned import guided_logits

    rows = list(ENC.styles)                                              # "irish" (asked for) first
    start = [ENC.prefix(s, "6/8", 2, "major").tolist() + [ENC.bar_token(1)] for s in rows]
    first = _first_event_distribution(model, guidance)
    logp_first = np.asarray(jax.nn.log_softmax(model(jnp.asarray(np.array(start, np.int32)))[:, -1], axis=-1))
    events = np.arange(ENC.bar)
    tokens = np.array([start[s] + [int(f)] for f in events for s in range(len(rows))], np.int32)
    logits = np.asarray(model(jnp.asarray(tokens)))[:, -1].reshape(len(events), len(rows), -1)
    weights = jax.nn.log_softmax(posterior * logp_first[:, events].T, axis=1)        # [first event, style]
    guided = np.array(guided_logits(jnp.asarray(logits), guidance, weights))
    ids = np.arange(ENC.vocab_size)
    guided[:, (ids >= ENC.bar) & (ids != ENC.end)] = -np.inf             # an event or the end may come second
    second = np.exp(guided - guided.max(axis=1, keepdims=True))
    second /= second.sum(axis=1, keepdims=True)
    return first[events] @ second


def test_posterior_contrast_weighs_the_styles_by_what_they_make_of_the_tune():
    from labkit.conditioned import guided_logits

    # by hand: equal weights are the default mixture; all the weight on the asked style leaves no guidance
    logits = jnp.log(jnp.array([[[0.5, 0.5], [0.9, 0.1]]]))
    even = jnp.log(jnp.array([[0.5, 0.5]]))
    assert np.allclose(guided_logits(logits, 1.0, even), guided_logits(logits, 1.0))
    own = jnp.log(jnp.array([[1.0, 0.0]]))
    assert np.allclose(jax.nn.softmax(guided_logits(logits, 3.0, own))[0], [0.5, 0.5])
    # sampled: the second event follows the distribution by hand, and the posterior weighting changes it
    model = _styled_model()
    expected, prior = _second_event_distribution(model, 4.0, 10.0), _second_event_distribution(model, 4.0, 0.0)
    assert 0.5 * np.abs(expected - prior).sum() > 0.1
    for posterior, want in ((10.0, expected), (0.0, prior)):
        tunes = sample_to_order(model, ENC, style="irish", meter="6/8", key="D", num=20000, max_steps=2,
                                temperature=1.0, guidance=4.0, rhythm_share=1.0, plausibility=0.0, seed=11,
                                posterior=posterior)
        second = np.array([info["tokens"][6] for _, info in tunes])
        seen = np.bincount(second, minlength=ENC.vocab_size) / len(second)
        assert 0.5 * np.abs(seen - want).sum() < 0.045
    with pytest.raises(ConfigError, match="posterior"):
        sample_to_order(model, ENC, style="irish", meter="6/8", key="D", num=2, max_steps=4, posterior=-1.0)


def test_guidance_zero_is_plain_sampling_and_guided_tunes_keep_the_grammar():
    model = _styled_model(copy_bias=4.0)
    kwargs = dict(style="irish", meter="6/8", key="D", num=4, max_steps=120, seed=3)
    plain = sample_to_order(model, ENC, guidance=0.0, **kwargs)
    alone = sample_to_order(model, ENC, guidance=3.0, contrast=["irish"], **kwargs)    # nothing to push away from
    default = sample_to_order(model, ENC, **kwargs)
    assert DEFAULT_GUIDANCE > 0
    assert all(np.array_equal(a[1]["tokens"], b[1]["tokens"]) for a, b in zip(plain, alone))
    assert any(not np.array_equal(a[1]["tokens"], b[1]["tokens"]) for a, b in zip(plain, default))
    guided = sample_to_order(model, ENC, guidance=3.0, **kwargs)
    again = sample_to_order(model, ENC, guidance=3.0, **kwargs)
    assert all(np.array_equal(a[1]["tokens"], b[1]["tokens"]) for a, b in zip(guided, again))
    assert any(not np.array_equal(a[1]["tokens"], b[1]["tokens"]) for a, b in zip(plain, guided))
    for melody, info in guided:
        tokens = info["tokens"]
        assert tokens[:4].tolist() == ENC.prefix("irish", "6/8", 2, "major").tolist()
        bars = melody.events[:len(melody.events) // 12 * 12].reshape(-1, 12)
        for number, lag in _copies(tokens):
            if number <= len(bars):
                assert np.array_equal(bars[number - 1], bars[number - 1 - lag])
    for bad in (-1.0, float("nan"), 25.0):
        with pytest.raises(ConfigError, match="guidance"):
            sample_to_order(model, ENC, guidance=bad, **kwargs)


def test_temper_pitch_by_hand():
    from labkit.conditioned import temper_pitch

    p = np.array([[0.4, 0.1, 0.2, 0.2, 0.1, 0.0]]) + 1e-12                # hold, off, three note-ons, a bar line
    for temperature in (0.5, 1.0, 2.0):
        out = np.exp(np.asarray(temper_pitch(jnp.log(jnp.asarray(p)), temperature, first=2, stop=5)))[0]
        assert out[[0, 1, 5]] == pytest.approx(p[0, [0, 1, 5]], abs=1e-6)      # not the rhythm: holds and note-offs
        assert out[2:5].sum() == pytest.approx(0.5, abs=1e-6)                 # a note begins as often as before
        tempered = p[0, 2:5] ** (1 / temperature)
        assert out[2:5] == pytest.approx(0.5 * tempered / tempered.sum(), abs=1e-6)
    # the plausibility floor: note-ons under 0.6 x the likeliest's probability (under `own`) are left out
    own = jnp.log(jnp.asarray([[0.4, 0.1, 0.3, 0.15, 0.05, 0.0]]) + 1e-12)
    out = np.exp(np.asarray(temper_pitch(jnp.log(jnp.asarray(p)), 1.0, first=2, stop=5, own=own, plausibility=0.6)))[0]
    assert out[3] == out[4] == 0 and out[2] == pytest.approx(0.5)
    # no note-on allowed at all (a full bar): nothing changes, nothing is NaN
    bar_only = jnp.log(jnp.asarray([[0.0, 0.0, 0.0, 0.0, 0.0, 1.0]]))
    out = np.asarray(temper_pitch(bar_only, 0.5, first=2, stop=5))[0]
    assert not np.isnan(out).any() and np.exp(out[5]) == pytest.approx(1.0)


def test_pitch_temperature_leaves_the_rhythm_to_the_model():
    # a model whose first event is a hold (the likeliest token) or one of many note-ons: with temper="pitch" the
    # share of tunes that begin with a note does not depend on the temperature; with temper="all" a low
    # temperature makes the hold win (longer notes)
    model = _styled_model()
    bias = np.zeros(ENC.vocab_size, np.float32)
    bias[0] = np.log(ENC.bar - 2)                                        # a hold about as likely as any note at all
    model.head.bias = nnx.Param(model.head.bias[...] + bias)
    kwargs = dict(style="german", meter="3/4", key="C", num=4000, max_steps=1, seed=11, guidance=0.0)
    def onset_share(temperature, temper):
        tunes = sample_to_order(model, ENC, temperature=temperature, temper=temper, **kwargs)
        first = np.array([info["tokens"][5] for _, info in tunes])
        return np.mean((first >= 2) & (first < ENC.bar))
    plain = onset_share(1.0, "pitch")
    assert plain == onset_share(1.0, "all")                              # at T = 1 the two are the same draw
    assert abs(onset_share(0.3, "pitch") - plain) < 0.04
    assert abs(onset_share(0.3, "all") - plain) > 0.1
    with pytest.raises(ConfigError, match="temper"):
        sample_to_order(model, ENC, temper="rhythm", **kwargs)
    with pytest.raises(ConfigError, match="plausibility"):
        sample_to_order(model, ENC, plausibility=1.5, **kwargs)


def test_copy_lags_are_checked_and_round_trip():
    for bad in [(0,), (2, 2), (-1,)]:
        with pytest.raises(ConfigError, match="copy_lags"):
            ConditionedEncoding(copy_lags=bad)
    with pytest.raises(ConfigError, match="cannot be combined"):
        ConditionedEncoding(restate_bars=2)
    assert ConditionedEncoding.from_dict(ENC.to_dict()) == ENC
    old = ENC.to_dict()
    del old["copy_lags"]                                                 # a checkpoint written before copies
    assert ConditionedEncoding.from_dict(old).copy_lags == ()


def test_sampling_obeys_the_grammar_and_ends_at_end():
    model = _ending_model(2.0, ENC0)
    tunes = sample_to_order(model, ENC0, style="irish", meter="6/8", key="D", num=6, max_steps=200, seed=1)
    again = sample_to_order(model, ENC0, style="irish", meter="6/8", key="D", num=6, max_steps=200, seed=1)
    other = sample_to_order(model, ENC0, style="irish", meter="6/8", key="D", num=6, max_steps=200, seed=2)
    assert all(np.array_equal(a[1]["tokens"], b[1]["tokens"]) for a, b in zip(tunes, again))
    assert any(not np.array_equal(a[1]["tokens"], b[1]["tokens"]) for a, b in zip(tunes, other))
    for melody, info in tunes:
        tokens = info["tokens"]
        assert tokens[:4].tolist() == ENC.prefix("irish", "6/8", 2, "major").tolist()
        assert info["ended"] and tokens[-1] == ENC.end and (tokens == ENC.end).sum() == 1
        body = tokens[4:-1]
        events = body[body < ENC.bar]
        assert melody.num_steps == len(events) >= 1          # the tune is what came before END
        # a numbered bar line before every 12 events, nowhere else; no condition token inside the tune
        bars = np.flatnonzero((body >= ENC.bar) & (body < ENC.end))
        assert bars.tolist() == [k * 13 for k in range((len(events) - 1) // 12 + 1)]
        assert body[bars].tolist() == [ENC.bar_token(k + 1) for k in range(len(bars))]
        assert not (body >= ENC.end).any()
        assert (melody.numerator, melody.denominator, melody.key, melody.mode) == (6, 8, 2, "major")


def test_the_cap_stops_a_tune_that_does_not_end():
    model = _ending_model(-30.0)
    (melody, info), = sample_to_order(model, ENC, style="german", meter="3/4", key="Am", num=1, max_steps=30)
    assert not info["ended"] and melody.num_steps == 30
    assert (melody.key, melody.mode, melody.numerator) == (9, "minor", 3)


def test_sampling_refuses_unknown_conditions():
    model = _ending_model()
    with pytest.raises(ConfigError, match="unknown style"):
        sample_to_order(model, ENC, style="klezmer", meter="6/8", key="D")
    with pytest.raises(ConfigError, match="unknown metre"):
        sample_to_order(model, ENC, style="irish", meter="4/4", key="D")
    with pytest.raises(ConfigError, match="tokens"):
        sample_to_order(make_model(ModelConfig(embed_dim=8, hidden_size=16, num_layers=1), 0), ENC,
                        style="irish", meter="6/8", key="D")


# --- the command line -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("cond") / "cond.npz"
    model = _ending_model(1.0)
    save_model(path, model, ModelConfig(vocab_size=ENC.vocab_size, embed_dim=8, hidden_size=16, num_layers=1),
               {"conditioning": ENC.to_dict(), "typical": {"german": {"meter": "3/4", "key": "F major"}}})
    return path


def test_cli_generates_to_order_with_time_and_key_signatures(tmp_path, checkpoint, capsys):
    out = tmp_path / "jigs"
    assert cli.main(["generate", "--checkpoint", str(checkpoint), "--style", "irish", "--meter", "6/8",
                     "--key", "Bm", "--num", "3", "--length", "300", "--qpm", "100", "--seed", "5",
                     "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all("irish, 6/8, B minor" in line and "ended" in line for line in lines)
    summary = json.loads((out / "generation.json").read_text())
    assert summary["settings"]["style"] == "irish" and summary["settings"]["ended"] == [True] * 3
    for record in summary["melodies"]:
        seq = read_midi(out / record["midi"])
        ts, ks = seq.time_signatures[0], seq.key_signatures[0]
        assert (ts.numerator, ts.denominator) == (6, 8)
        assert (ks.key, ks.mode) == (11, 1)          # B, minor
        assert abs(seq.tempos[0].qpm - 100) < 1e-6
        # the notes end where the tune ends: at END, record["steps"] steps after the start
        assert max(n.end_time for n in seq.notes) <= record["steps"] * 60 / (100 * 4) + 1e-9
        assert len(seq.notes) == record["notes"] > 0


def test_cli_defaults_come_from_the_style(tmp_path, checkpoint):
    out = tmp_path / "g"
    assert cli.main(["generate", "--checkpoint", str(checkpoint), "--style", "german", "--num", "1",
                     "--out", str(out)]) == 0
    settings = json.loads((out / "generation.json").read_text())["settings"]
    assert (settings["meter"], settings["key"], settings["max_steps"]) == ("3/4", "F major", DEFAULT_MAX_STEPS)
    assert settings["guidance"] == DEFAULT_GUIDANCE
    seq = read_midi(out / "melody_001.mid")
    assert (seq.time_signatures[0].numerator, seq.key_signatures[0].key) == (3, 5)


@pytest.mark.parametrize("args, flag, allowed", [
    (["--style", "klezmer"], "--style", "irish, german"),
    (["--meter", "6-8"], "--meter", "N/D"),
    (["--meter", "5/4"], "--meter", "6/8, 3/4"),
    (["--key", "H"], "--key", "C, C#"),
    (["--key", "D", "--unconditioned"], "--unconditioned", "cannot"),
    (["--style", "irish", "--primer", "x.mid"], "--primer", "not available"),
    (["--style", "irish", "--beam", "2"], "--beam", "not available"),
    (["--guidance", "1", "--unconditioned"], "--unconditioned", "--guidance"),
])
def test_cli_bad_values_one_line_exit_2(tmp_path, checkpoint, capsys, args, flag, allowed):
    assert cli.main(["generate", "--checkpoint", str(checkpoint), *args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"labkit: {flag}: ") and allowed in err[0], err
    assert not (tmp_path / "o").exists()


def test_cli_guidance_is_passed_on_and_recorded(tmp_path, checkpoint, monkeypatch):
    import labkit.conditioned

    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs["guidance"])
        return sample_to_order(*args, **kwargs)

    monkeypatch.setattr(labkit.conditioned, "sample_to_order", spy)
    for guidance in ("0", "2.5", None):
        out = tmp_path / str(guidance)
        flag = ["--guidance", guidance] if guidance is not None else ["--style", "irish"]
        assert cli.main(["generate", "--checkpoint", str(checkpoint), *flag, "--num", "2", "--meter", "6/8",
                         "--seed", "1", "--out", str(out)]) == 0
        summary = json.loads((out / "generation.json").read_text())
        expected = DEFAULT_GUIDANCE if guidance is None else float(guidance)
        assert summary["settings"]["guidance"] == seen[-1] == expected and summary["settings"]["style"] == "irish"
        # the rest of the sampling is sample_to_order's defaults, and the file says which
        assert {k: summary["settings"][k] for k in ("posterior", "rhythm_share", "plausibility", "temper")} == {
            "posterior": DEFAULT_POSTERIOR, "rhythm_share": DEFAULT_RHYTHM_SHARE, "plausibility": DEFAULT_PLAUSIBILITY,
            "temper": DEFAULT_TEMPER}
    assert seen == [0.0, 2.5, DEFAULT_GUIDANCE]


def test_cli_refuses_an_unconditioned_checkpoint_to_order(tmp_path, capsys):
    path = tmp_path / "plain.npz"
    cfg = ModelConfig(embed_dim=8, hidden_size=16, num_layers=1)
    save_model(path, make_model(cfg, 0), cfg)
    assert cli.main(["generate", "--checkpoint", str(path), "--style", "irish", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a conditioned melody model" in err[0]


def test_the_command_cap_is_the_module_default():
    from labkit.commands.generate import TUNE_CAP_STEPS

    assert TUNE_CAP_STEPS == DEFAULT_MAX_STEPS


# --- the shipped asset ------------------------------------------------------------------------------

def test_the_shipped_conditioned_model_loads_and_knows_the_five_styles():
    from labkit.style.experiments import FIVE_STYLES

    assert shipped_conditioned_path().is_file(), "run `make model`"
    model, config, enc, meta = load_conditioned_model()
    assert config.vocab_size == enc.vocab_size == model.vocab_size
    assert set(FIVE_STYLES) <= set(enc.styles) and set(FIVE_STYLES) <= set(meta["typical"])
    doc = json.loads(shipped_conditioned_path().with_suffix(".json").read_text())
    # the conditioned model is no worse than the unconditioned one on the same test tunes
    assert doc["scores"]["test_folk"]["events"] == doc["unconditioned"]["test_folk"]["events"]
    assert doc["scores"]["test_folk"]["bits_per_event"] <= doc["unconditioned"]["test_folk"]["bits_per_event"]
    (melody, info), = sample_to_order(model, enc, style="irish", meter="6/8", key="D", num=1, max_steps=64)
    assert (melody.numerator, melody.denominator, melody.key) == (6, 8, 2) and melody.num_steps <= 64


# --- conditions heard at every step (ConditionedMelodyLSTM) -------------------------------------------

def _every_step_config(**kw):
    values = dict(vocab_size=ENC.vocab_size, embed_dim=8, hidden_size=16, num_layers=2, dropout=0.0,
                  condition_tokens=3)
    values.update(kw)
    return ModelConfig(**values)


def test_every_step_model_adds_the_conditions_to_every_input_by_hand():
    from labkit.models import ConditionedMelodyLSTM

    model = make_model(_every_step_config(), 0)
    assert isinstance(model, ConditionedMelodyLSTM)
    tokens = np.array([ENC.prefix("irish", "6/8", 2, "major").tolist() + [ENC.bar, 43, 0, 1, 47]], np.int32)
    table = np.asarray(model.embed.embedding[...])
    e = table[tokens[0]]
    expected = e + np.cumsum(np.where(np.arange(len(e))[:, None] < 3, e, 0.0), axis=0)
    inputs, cond = model._inputs(model.init_carry(1), tokens)
    np.testing.assert_allclose(np.asarray(inputs)[:, 0], expected, atol=1e-6)
    np.testing.assert_allclose(np.asarray(cond)[0], e[:3].sum(0), atol=1e-6)   # style + metre + key
    # the same conditions at step 7 as at step 3: e_t + (e_style + e_metre + e_key)
    np.testing.assert_allclose(expected[7] - e[7], expected[3] - e[3], atol=1e-6)


@pytest.mark.parametrize("use_kernels", [True, False])
def test_every_step_model_run_equals_steps_and_chunks(use_kernels):
    model = make_model(_every_step_config(), 1, use_kernels=use_kernels)
    rng = np.random.default_rng(0)
    tokens = np.concatenate([np.tile(ENC.prefix("german", "3/4", 9, "minor")[:3], (2, 1)),
                             rng.integers(0, ENC.bar, (2, 9))], axis=1).astype(np.int32)
    whole = np.asarray(model(tokens))
    carry, steps = model.init_carry(2), []
    for t in range(tokens.shape[1]):
        carry, logits = model.step_function()(carry, tokens[:, t])
        steps.append(np.asarray(logits))
    np.testing.assert_allclose(np.stack(steps, 1), whole, atol=2e-5)
    carry, first = model.run(model.init_carry(2), tokens[:, :2])          # a chunk that ends inside the conditions
    _, rest = model.run(carry, tokens[:, 2:])
    np.testing.assert_allclose(np.concatenate([first, rest], 1), whole, atol=2e-5)


def test_every_step_model_hears_the_style_far_into_a_tune():
    # the same 200 events under two styles: the plain LSTM's state may forget the first token, the
    # conditioned one's input still carries it, so the logits at the last step differ by a fixed bias
    model = make_model(_every_step_config(num_layers=1), 2)
    events = np.random.default_rng(1).integers(0, ENC.bar, 200)
    rows = np.array([ENC.prefix(s, "6/8", 2, "major")[:3].tolist() + events.tolist() for s in ("irish", "german")],
                    np.int32)
    inputs, _ = model._inputs(model.init_carry(2), rows)
    gap = np.asarray(inputs[-1, 0] - inputs[-1, 1])
    table = np.asarray(model.embed.embedding[...])
    np.testing.assert_allclose(gap, table[ENC.style_token("irish")] - table[ENC.style_token("german")], atol=1e-6)


def test_every_step_model_config_checks_and_checkpoint_round_trip(tmp_path):
    from labkit.checkpoint import load_melody_model

    with pytest.raises(ConfigError, match="condition_tokens"):
        _every_step_config(condition_tokens=-1)
    with pytest.raises(ConfigError, match="cannot both"):
        _every_step_config(attention_length=4)
    cfg = _every_step_config()
    # no new parameters: the conditions' own embeddings are the conditioning vector
    assert cfg.num_params() == ModelConfig(**{**cfg.to_dict(), "condition_tokens": 0}).num_params()
    model = make_model(cfg, 3)
    save_model(tmp_path / "m.npz", model, cfg, {"conditioning": ENC.to_dict()})
    loaded, loaded_cfg = load_melody_model(tmp_path / "m.npz")
    assert loaded_cfg.condition_tokens == 3 and type(loaded).__name__ == "ConditionedMelodyLSTM"
    tokens = np.array([ENC.prefix("irish", "6/8", 2, "major").tolist() + [ENC.bar, 43, 0]], np.int32)
    np.testing.assert_array_equal(np.asarray(loaded(tokens)), np.asarray(model(tokens)))
    tunes = sample_to_order(loaded, ENC, style="irish", meter="6/8", key="D", num=2, max_steps=40, seed=0)
    again = sample_to_order(loaded, ENC, style="irish", meter="6/8", key="D", num=2, max_steps=40, seed=0)
    assert all(np.array_equal(a[1]["tokens"], b[1]["tokens"]) for a, b in zip(tunes, again))
    assert all((m.numerator, m.denominator, m.key) == (6, 8, 2) for m, _ in tunes)


def test_training_windows_hold_the_end_of_long_tunes_often():
    # a start uniform on 0..L-w shows a long tune's END in 1 window of L-w+1; window_start about w/(L+w-1)
    from labkit.conditioned import window_start

    rng = np.random.default_rng(3)
    length, window = 900, 300
    starts = np.array([window_start(rng, length, window) for _ in range(6000)])
    assert starts.min() == 0 and starts.max() == length - window
    holds_end = np.mean(starts + window >= length)
    assert abs(holds_end - window / (length + window - 1)) < 0.02          # 0.25, not 1/601
    middle = np.mean((starts <= 450) & (starts + window > 450))
    assert abs(middle - holds_end) < 0.03                                   # the end as often as the middle
    assert window_start(rng, 50, window) == 0
