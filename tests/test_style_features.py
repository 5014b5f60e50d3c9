"""Tests of labkit.style.features: each feature group on hand-made melodies, hashing, batching."""
from __future__ import annotations

import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

from labkit.style import features as F, selection
from labkit.errors import ConfigError, EncodingError
from labkit.melody import Melody, split_phrases, transpose

C_MAJOR = [60, 62, 64, 65, 67, 69, 71, 72]


def scale(spq=4, **kwargs):
    """C major scale in quarter notes."""
    n = len(C_MAJOR)
    return Melody.from_notes(C_MAJOR, np.arange(n) * spq, np.arange(1, n + 1) * spq, steps_per_quarter=spq, **kwargs)


def one(melody, group, variant="raw"):
    return F.melody_features(melody, variant, [group])[group]


def named(group, values):
    names = [n.split(":", 1)[1] for n in F.feature_names([group])]
    return dict(zip(names, np.asarray(values).tolist()))


# --- each group -----------------------------------------------------------------------

def test_group_dims_and_names_agree():
    for g in F.FEATURE_GROUPS:
        assert len(F.feature_names([g])) == F.GROUP_DIMS[g] == F.group_dims(g)
        assert one(scale(), g).shape == (F.GROUP_DIMS[g],)
    assert F.GROUP_DIMS["pitch_class"] == 12 and F.GROUP_DIMS["interval"] == 25
    assert set(g for gs in F.PAPER_GROUPS.values() for g in gs) == set(F.FEATURE_GROUPS)
    assert len(F.PAPER_GROUPS) == 5


def test_pitch_class_histogram_of_c_major_scale():
    raw = one(scale(), "pitch_class")
    assert raw.tolist() == [2, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1]
    processed = one(scale(), "pitch_class", "processed")
    np.testing.assert_allclose(processed, raw / 8, rtol=1e-6)
    # raw pitch classes are absolute: a scale in D puts its notes two classes higher
    assert np.array_equal(one(transpose(scale(), 2), "pitch_class"), np.roll(raw, 2))


def test_processed_features_do_not_depend_on_the_key():
    g_major = transpose(scale(), 7)  # its key field moves to G with it
    assert g_major.key == 7
    for g in ("pitch_class", "scale_degree", "interval", "contour", "duration", "onset_position"):
        np.testing.assert_allclose(one(g_major, g, "processed"), one(scale(), g, "processed"), err_msg=g)
    assert not np.array_equal(one(g_major, "pitch_class", "raw"), one(scale(), "pitch_class", "raw"))


def test_processed_features_do_not_depend_on_a_long_notation():
    # the same tune written in 4/8 eighths and in 4/2 half notes (note values x4, with two bars of
    # 8 notes and a dotted rhythm): the processed features agree, the raw durations do not
    pitches = [60, 62, 64, 65, 67, 65, 64, 62, 60, 64, 67, 72, 67, 64, 62, 60]
    eighths = [2, 2, 2, 2, 3, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 4]
    def tune(unit, denominator):
        ends = np.cumsum(eighths) * unit
        return Melody.from_notes(pitches, ends - np.array(eighths) * unit, ends, num_steps=ends[-1] + unit,
                                 numerator=4, denominator=denominator)
    modern, old = tune(1, 8), tune(4, 2)
    np.testing.assert_allclose(F.melody_features(old, "processed")["duration"],
                               F.melody_features(modern, "processed")["duration"])
    X, _ = F.feature_matrix([modern, old], "processed", paragraph=True, ngram_dims=64)
    np.testing.assert_allclose(X[1], X[0], atol=1e-6)
    raw = F.melody_features(old, "raw")["duration"], F.melody_features(modern, "raw")["duration"]
    assert not np.array_equal(*raw)


def test_scale_degree_uses_the_key_and_the_final_note():
    # G major melody ending on its tonic G: degree 0 is G
    m = Melody.from_notes([67, 71, 74, 67], [0, 4, 8, 12], [4, 8, 12, 20], key=7)
    v = one(m, "scale_degree")
    assert v[:12].tolist() == [3, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0]  # quarters on G, B, D
    assert v[12:].tolist() == [1] + [0] * 11                          # final note on the tonic
    p = one(m, "scale_degree", "processed")
    assert p[:12].sum() == pytest.approx(1.0)


def test_interval_histogram_clips_large_leaps():
    m = Melody.from_notes([60, 62, 60, 80, 60], [0, 1, 2, 3, 4], [1, 2, 3, 4, 5])
    v = named("interval", one(m, "interval"))
    assert v["+2"] == 1 and v["-2"] == 1 and v["+12"] == 1 and v["-12"] == 1
    assert sum(v.values()) == 4
    p = one(m, "interval", "processed")
    assert p.sum() == pytest.approx(1.0)


def test_register_and_contour_on_a_hand_made_line():
    m = Melody.from_notes([60, 64, 64, 62, 67], [0, 2, 4, 6, 8], [2, 4, 6, 8, 10])
    lo, hi, mean, std, rng = one(m, "register")
    assert (lo, hi, rng) == (60, 67, 7)
    assert mean == pytest.approx(np.mean([60, 64, 64, 62, 67]))
    assert std == pytest.approx(np.std([60, 64, 64, 62, 67]), rel=1e-5)
    # intervals +4, 0, -2, +5: up 2, down 1, same 1; |.| mean 11/4, max 5; direction up->down->up = 2 changes
    c = named("contour", one(m, "contour"))
    assert (c["up"], c["down"], c["same"]) == (2, 1, 1)
    assert c["mean_abs_interval"] == pytest.approx(11 / 4) and c["max_abs_interval"] == 5
    assert c["direction_changes"] == 2
    p = named("contour", one(m, "contour", "processed"))
    assert p["up"] == pytest.approx(0.5) and p["direction_changes"] == pytest.approx(1.0)  # 2 of 2 possible


def test_duration_bins_are_log_spaced_in_quarters():
    # at 4 steps per quarter: eighth, quarter, dotted quarter, half
    m = Melody.from_notes([60, 62, 64, 65], [0, 2, 6, 12], [2, 6, 12, 20])
    v = named("duration", one(m, "duration"))
    assert v["0.5q"] == 1 and v["1q"] == 1 and v["1.41q"] == 1 and v["2q"] == 1
    # the same rhythm at 12 steps per quarter lands in the same bins
    m12 = Melody.from_notes([60, 62, 64, 65], [0, 6, 18, 36], [6, 18, 36, 60], steps_per_quarter=12)
    assert np.array_equal(one(m12, "duration"), one(m, "duration"))


def test_density_counts_notes_and_rests():
    # two quarter notes, a quarter rest, two quarter notes: 4 notes in 5 quarters, 1 rest
    m = Melody.from_notes([60, 62, 64, 65], [0, 4, 12, 16], [4, 8, 16, 20])
    raw = named("density", one(m, "density"))
    assert raw == {"notes_per_quarter": 4, "rest_fraction": 1, "rests_per_note": 1, "length": 5}
    p = named("density", one(m, "density", "processed"))
    assert p["notes_per_quarter"] == pytest.approx(4 / 5) and p["rest_fraction"] == pytest.approx(1 / 5)
    assert p["rests_per_note"] == pytest.approx(1 / 4) and p["length"] == pytest.approx(np.log2(6))


def test_onset_position_and_metre_follow_the_time_signature():
    # 6/8 at 4 steps/quarter: 12-step bars, notes on every eighth = every 2 steps
    jig = Melody.from_notes([60] * 12, np.arange(12) * 2, np.arange(12) * 2 + 2, numerator=6, denominator=8)
    pos = one(jig, "onset_position")
    assert np.flatnonzero(pos).tolist() == [0, 4, 8, 12, 16, 20] and (pos[pos > 0] == 2).all()
    metre = named("metre", one(jig, "metre"))
    assert metre["num_6"] == 1 and metre["den_8"] == 1 and sum(metre.values()) == 2
    # 4/4: 16-step bars; quarter notes fall on slots 0, 6, 12, 18
    march = scale()
    assert np.flatnonzero(one(march, "onset_position")).tolist() == [0, 6, 12, 18]
    odd = named("metre", one(scale(numerator=7, denominator=16), "metre"))
    assert odd["num_other"] == 1 and odd["den_other"] == 1


# --- n-grams and the stable hash --------------------------------------------------------

def _reference_hash(tokens, family, dims):
    """The documented hash, written again with Python integers."""
    mask = (1 << 64) - 1

    def mix(z):
        z = (z + 0x9E3779B97F4A7C15) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    h = zlib.crc32(f"{family}/{len(tokens)}".encode()) & 0xFFFFFFFF
    for t in tokens:
        h = mix(((h << 16) & mask) | t)
    return h % dims


def test_hash_ngrams_matches_the_documented_formula():
    grams = np.array([[26, 26], [24, 36], [0, 48], [13, 2]])
    got = F.hash_ngrams(grams, "interval", 2048)
    assert got.tolist() == [_reference_hash(g, "interval", 2048) for g in grams.tolist()]
    tri = np.array([[1, 2, 3]])
    assert F.hash_ngrams(tri, "duration", 4096)[0] == _reference_hash([1, 2, 3], "duration", 4096)
    # families separate equal token numbers
    assert F.hash_ngrams(grams, "duration", 1 << 30).tolist() != F.hash_ngrams(grams, "interval", 1 << 30).tolist()


def test_hash_is_stable_across_processes():
    code = ("import numpy as np; from labkit.style.features import hash_ngrams; "
            "print(hash_ngrams(np.array([[26, 28], [24, 20, 31]][0:1]), 'interval', 2048).tolist(), "
            "hash_ngrams(np.array([[24, 20, 31]]), 'interval', 2048).tolist())")
    outs = set()
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        outs.add(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                check=True).stdout)
    here = f"{F.hash_ngrams(np.array([[26, 28]]), 'interval', 2048).tolist()} " \
           f"{F.hash_ngrams(np.array([[24, 20, 31]]), 'interval', 2048).tolist()}\n"
    assert outs == {here}


def test_ngram_counts():
    m = scale()  # 7 intervals: 6 bigrams and 5 trigrams; 8 durations: 7 + 6
    v = F.melody_features(m, "raw", ["interval_ngram", "duration_ngram"], ngram_dims=512)
    assert v["interval_ngram"].shape == (512,) and v["interval_ngram"].sum() == 6 + 5
    assert v["duration_ngram"].sum() == 7 + 6
    # the scale's intervals (+2 +2 +1 +2 +2 +2 +1): bigram (+2, +2) occurs 3 times
    bucket = F.hash_ngrams(np.array([[2 + 24, 2 + 24]]), "interval", 512)[0]
    assert v["interval_ngram"][bucket] >= 3
    p = F.melody_features(m, "processed", ["interval_ngram"], ngram_dims=512)["interval_ngram"]
    assert p.sum() == pytest.approx(1.0)


def _buckets(group, tokens, dims=512):
    family = {"interval_duration_ngram": "interval_duration", "metric_ngram": "metric", "bar_rhythm": "bar_rhythm"}[group]
    return F.hash_ngrams(np.asarray(tokens, dtype=np.int64), family, dims)


def test_interval_duration_ngrams_pair_each_interval_with_the_next_length():
    # C (1q) E (1/2q) G (1/2q): intervals +4, +3; lengths of the notes reached: bins of 0.5q, 0.5q
    m = Melody.from_notes([60, 64, 67], [0, 4, 6], [4, 6, 8])
    v = one(m, "interval_duration_ngram").copy()
    half = int(F._duration_bin(np.array([0.5]))[0])
    t1, t2 = (4 + 24) * F.DURATION_BINS + half, (3 + 24) * F.DURATION_BINS + half
    assert v.sum() == 2 + 1                            # two unigrams, one bigram, no trigram
    for gram in ([t1], [t2]):
        v[_buckets("interval_duration_ngram", [gram], 2048)[0]] -= 1
    v[_buckets("interval_duration_ngram", [[t1, t2]], 2048)[0]] -= 1
    assert np.all(v == 0)
    # the same pitches in another rhythm give other tokens
    assert not np.array_equal(one(Melody.from_notes([60, 64, 67], [0, 4, 8], [4, 8, 12]),
                                  "interval_duration_ngram"), one(m, "interval_duration_ngram"))


def test_metric_ngrams_see_where_in_the_bar_a_note_falls():
    # The same two eighth notes, on the beat or off it: equal durations, other metric tokens.
    on = Melody.from_notes([60, 62], [0, 2], [2, 4])
    off = Melody.from_notes([60, 62], [2, 4], [4, 6])
    assert np.array_equal(one(on, "duration"), one(off, "duration"))
    assert not np.array_equal(one(on, "metric_ngram"), one(off, "metric_ngram"))
    # the documented token: (slot * DURATION_BINS + duration bin) * 2 + rest before
    eighth = int(F._duration_bin(np.array([0.5]))[0])
    tokens = [(0 * F.DURATION_BINS + eighth) * 2, (2 * F.DURATION_BINS + eighth) * 2]   # 4/4 bar: 16 steps, 16 slots
    v = one(on, "metric_ngram").copy()
    for gram in ([tokens[0]], [tokens[1]], tokens):
        v[_buckets("metric_ngram", [gram], 2048)[0]] -= 1
    assert np.all(v == 0)
    # a rest before the second note is a different token
    rested = Melody.from_notes([60, 62], [0, 2], [1, 4])
    assert not np.array_equal(one(rested, "metric_ngram"), one(on, "metric_ngram"))


def test_bar_rhythm_counts_whole_bar_onset_patterns():
    # Two 6/8 bars of six eighths (a jig bar) and one bar of dotted pairs: two patterns.
    jig_bar = list(range(0, 12, 2))                     # 6/8 bar = 12 steps, an onset every 2 steps
    starts = jig_bar + [12 + s for s in jig_bar] + [24, 27, 30, 33]
    ends = starts[1:] + [36]
    m = Melody.from_notes([60] * len(starts), starts, ends, numerator=6, denominator=8)
    v = one(m, "bar_rhythm")
    assert v.sum() == 3                                  # three bars
    jig_mask = sum(1 << (s * 16 // 12) for s in jig_bar)
    dotted_mask = sum(1 << (s * 16 // 12) for s in (0, 3, 6, 9))
    assert v[_buckets("bar_rhythm", [[jig_mask]], 2048)[0]] == 2
    assert v[_buckets("bar_rhythm", [[dotted_mask]], 2048)[0]] >= 1
    p = F.melody_features(m, "processed", ["bar_rhythm"])["bar_rhythm"]
    assert p.sum() == pytest.approx(1.0)
    # transposing changes no rhythm group
    for g in ("bar_rhythm", "metric_ngram"):
        assert np.array_equal(one(transpose(m, 5), g), one(m, g))


def bars(patterns, numerator=4, denominator=4):
    """A melody of whole bars: each pattern is one bar's pitches, one note per quarter of a 4/4 bar."""
    pitches = [p for bar in patterns for p in bar]
    starts = np.arange(len(pitches)) * 4
    return Melody.from_notes(pitches, starts, starts + 4, numerator=numerator, denominator=denominator)


def test_form_sees_repeated_bars_and_repeated_sections():
    a, b, c, d = [60, 62, 64, 65], [67, 65, 64, 62], [60, 64, 67, 72], [72, 71, 69, 67]
    same = named("form", one(bars([a] * 8), "form"))
    assert same["bars_log"] == pytest.approx(np.log1p(8))
    assert same["repeated_bars"] == pytest.approx(7 / 8) and same["same_bar_lag_1"] == 1.0
    assert same["bars_multiple_of_8"] == 1.0 and same["pickup"] == 0.0
    # an 8-bar strain played twice: every bar from the ninth on repeats the one 8 bars before
    strain = [a, b, c, d, b, a, d, c]
    twice = named("form", one(bars(strain * 2), "form"))
    assert twice["same_bar_lag_8"] == 1.0 and twice["alike_bar_lag_8"] == 1.0
    assert twice["repeated_bars"] == pytest.approx(12 / 16)   # four distinct bars among sixteen
    assert twice["same_bar_lag_1"] == 0.0 and twice["same_bar_lag_half_tune"] == 1.0
    assert twice["ending_rhyme_8"] == 1.0 and twice["ending_rhyme_2"] < 1.0
    # the same strain then a new one: nothing repeats at 8 bars
    other = [[p + 1 for p in bar] for bar in strain]
    new = named("form", one(bars(strain + other), "form"))
    assert new["same_bar_lag_8"] == 0.0 and new["alike_bar_lag_8"] == 0.0
    assert new["repeated_bar_intervals"] == pytest.approx(12 / 16)  # transposed bars keep their intervals
    assert new["repeated_bar_rhythms"] == pytest.approx(15 / 16)    # one rhythm throughout
    # the highest note (73) falls in the second half, in the last quarter of the tune
    assert new["highest_at"] >= 0.5 and new["pitch_quarter_4"] > new["pitch_quarter_1"]


def test_form_pickup_ending_and_key_invariance():
    tune = Melody.from_notes([67, 60, 64, 67, 72], [12, 16, 20, 24, 28], [16, 20, 24, 28, 40])
    form = named("form", one(tune, "form"))
    assert form["pickup"] == pytest.approx(12 / 16)          # starts on the last quarter of bar 1
    assert form["last_onset_in_bar"] == pytest.approx(12 / 16)
    assert form["last_note_quarters"] == pytest.approx(3.0)
    for variant in ("raw", "processed"):
        np.testing.assert_allclose(one(transpose(tune, 5), "form", variant), one(tune, "form"), atol=1e-6)
    assert not one(Melody(np.zeros(0, np.int32)), "form").any()


def test_form_by_metre_puts_the_form_in_the_block_of_the_numerator():
    labels = F.feature_names(["form"])
    jig = bars([[60, 62, 64, 65, 67, 69]] * 4, numerator=6, denominator=8)
    values = one(jig, "form_by_metre").reshape(len(F.FORM_METRE_NUMERATORS), len(labels))
    k = F.FORM_METRE_NUMERATORS.index(6)
    np.testing.assert_allclose(values[k], one(jig, "form"))
    assert not np.delete(values, k, axis=0).any()
    five = bars([[60, 62, 64, 65, 67]] * 4, numerator=5, denominator=4)
    assert not one(five, "form_by_metre").any()          # no block for 5/4
    assert F.feature_names(["form_by_metre"])[0] == "form_by_metre:num_2:bars_log"


def test_standardizer_roots_and_shares_the_scale_of_hashed_groups():
    rng = np.random.default_rng(0)
    dense = rng.normal(3.0, 2.0, size=(200, 2))
    common = rng.uniform(0, 1, size=200)
    rare = np.where(rng.uniform(size=200) < 0.02, 0.04, 0.0)    # a bucket that is almost always empty
    X = np.column_stack([dense, common, rare])
    names = ["interval:+1", "register:min", "metric_ngram:0000", "metric_ngram:0001"]
    plain = F.Standardizer.fit(X)
    Z = plain.transform(X)
    assert Z[:, 3].max() > 5                               # per-column: the rare bucket is blown up
    s = F.Standardizer.fit(X, names)
    assert s.root.tolist() == [False, False, True, True]
    assert s.scale[2] == s.scale[3]                        # one scale for the group
    Zs = s.transform(X)
    np.testing.assert_allclose(Zs[:, :2], Z[:, :2], rtol=1e-5, atol=1e-5)   # dense columns unchanged
    assert Zs[:, 3].max() < 2 and abs(Zs[:, 3]).max() < abs(Zs[:, 2]).max()
    np.testing.assert_allclose(Zs[:, 2], (np.sqrt(common) - np.sqrt(common).mean()) / s.scale[2], atol=1e-4)
    assert {g: c.tolist() for g, c in F.hashed_columns(names).items()} == {"metric_ngram": [2, 3]}
    with pytest.raises(ConfigError, match="names"):
        F.Standardizer.fit(X, names[:3])


# --- matrices, paragraphs, edge cases -----------------------------------------------------

def test_feature_matrix_rows_match_melody_features_and_order():
    melodies = [scale(), transpose(scale(), 3), Melody.from_notes([70, 60], [0, 3], [2, 9], numerator=3)]
    X, names = F.feature_matrix(melodies, "raw", ngram_dims=256)
    assert X.dtype == np.float32 and X.shape == (3, len(names))
    assert names == F.feature_names(None, False, 256)
    for i, m in enumerate(melodies):
        row = np.concatenate(list(F.melody_features(m, "raw", ngram_dims=256).values()))
        np.testing.assert_array_equal(X[i], row)
    # a subset of groups is a subset of columns; group order is canonical
    Xs, sub = F.feature_matrix(melodies, "raw", ["contour", "interval"], ngram_dims=256)
    assert sub == F.feature_names(["interval", "contour"])
    np.testing.assert_array_equal(Xs, X[:, [names.index(n) for n in sub]])


def test_empty_and_single_note_melodies_give_finite_rows():
    empty = Melody(np.array([-2, -2, -2]))
    single = Melody.from_notes([60], [0], [4])
    X, names = F.feature_matrix([empty, single, scale()], "processed", paragraph=True, ngram_dims=64)
    assert np.isfinite(X).all()
    nonzero = {names[i] for i in np.flatnonzero(X[0])}
    # an empty melody has only its time signature (and one empty phrase)
    assert nonzero == {"metre:num_4", "metre:den_4", "phrase_mean:metre:num_4", "phrase_mean:metre:den_4",
                       "phrase:count", "phrase:length_mean"}
    single_row = dict(zip(names, X[1].tolist()))
    assert single_row["pitch_class:C"] == 1.0 and single_row["contour:up"] == 0.0


def test_bad_input_errors():
    with pytest.raises(ConfigError, match="variant"):
        F.feature_matrix([scale()], "cooked")
    with pytest.raises(ConfigError, match="unknown feature group"):
        F.feature_matrix([scale()], "raw", ["melody"])
    with pytest.raises(EncodingError, match="Melody"):
        F.feature_matrix([[60, 62]], "raw")
    with pytest.raises(ConfigError):
        F.hash_ngrams(np.array([1, 2]), "interval", 8)


def test_paragraph_features_summarise_phrases():
    # two two-bar phrases (4/4, 16 steps a bar) separated by a half-note rest: a rising and a falling one
    m = Melody.from_notes([60, 62, 64, 64, 62, 60], [0, 8, 16, 40, 48, 56], [8, 16, 32, 48, 56, 72])
    phrases = split_phrases(m)
    assert len(phrases) == 2
    X, names = F.feature_matrix([m], "raw", ["contour", "interval_ngram"], paragraph=True, ngram_dims=64)
    row = dict(zip(names, X[0].tolist()))
    assert row["phrase:count"] == 2
    assert row["phrase_mean:contour:up"] == pytest.approx(1.0)    # phrase 1: 2 up; phrase 2: 0 up
    assert row["phrase_std:contour:up"] == pytest.approx(1.0)
    assert row["phrase:notes_mean"] == pytest.approx(3.0)
    assert not any(n.startswith("phrase_mean:interval_ngram") for n in names)
    # tune-level columns are unchanged by paragraph mode
    Xt, tnames = F.feature_matrix([m], "raw", ["contour", "interval_ngram"], ngram_dims=64)
    np.testing.assert_array_equal(X[0, : len(tnames)], Xt[0])


def test_jobs_give_the_same_matrix():
    melodies = [transpose(scale(), k) for k in range(6)]
    X1, _ = F.feature_matrix(melodies, "processed", ["interval", "pitch_class"], paragraph=True)
    X2, _ = F.feature_matrix(melodies, "processed", ["interval", "pitch_class"], paragraph=True, jobs=2,
                             chunk_size=3)
    np.testing.assert_array_equal(X1, X2)


def test_group_columns():
    names = F.feature_names(["interval", "contour"], paragraph=True)
    cols = F.group_columns(names, ["contour"])
    assert all("contour" in names[i] for i in cols)
    assert len(cols) == 3 * F.GROUP_DIMS["contour"]


# --- standardizer and selection ---------------------------------------------------------

def test_standardizer_uses_training_statistics():
    rng = np.random.default_rng(0)
    train = rng.normal(3.0, 2.0, size=(500, 3)).astype(np.float32)
    train[:, 2] = 7.0  # constant column
    s = F.Standardizer.fit(train)
    z = s.transform(train)
    np.testing.assert_allclose(z[:, :2].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z[:, :2].std(0), 1, atol=1e-4)
    assert (z[:, 2] == 0).all()
    test = np.full((2, 3), 3.0, np.float32)
    np.testing.assert_allclose(s.transform(test)[:, 0], (3.0 - s.mean[0]) / s.scale[0])
    with pytest.raises(ConfigError):
        s.transform(np.zeros((2, 4)))


def test_mutual_information_finds_the_informative_columns():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 600)
    X = rng.normal(size=(600, 10))
    X[:, 7] += 2.0 * y
    X[:, 2] += 0.7 * y
    idx, scores = selection.select_mutual_information(X, y, 2)
    assert idx.tolist() == [7, 2]
    assert scores.shape == (10,) and (scores >= 0).all()
    assert scores[7] > 0.3 and np.median(scores) < 0.05


# --- what the melody model hears ------------------------------------------------------

def _small_melody_model(num_layers=2):
    from flax import nnx

    from labkit.models import MelodyLSTM

    return MelodyLSTM(90, 8, 12, num_layers, 0.0, rngs=nnx.Rngs(3))


def test_hidden_states_are_what_the_head_turns_into_logits():
    import jax.numpy as jnp

    model = _small_melody_model()
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 90, (3, 17)), jnp.int32)
    h = model.hidden_states(tokens)
    assert h.shape == (3, 17, 12)
    np.testing.assert_allclose(np.asarray(model.head(h)), np.asarray(model(tokens)), rtol=1e-5, atol=1e-5)


def test_melody_model_features_summarise_the_hidden_state_over_the_tune():
    import jax.numpy as jnp

    from labkit.encoding import MelodyEncoding

    model = _small_melody_model()
    tune = Melody.from_notes([60, 62, 64, 65, 67, 65, 64, 62], range(0, 32, 4), range(4, 36, 4), key=0)
    other = Melody.from_notes([57, 60, 64, 69], [0, 6, 8, 16], [4, 8, 12, 30], key=9, mode="minor")
    X, names = F.melody_model_features([tune, other, Melody.from_notes([], [], [])], model, batch_size=2)
    assert X.shape == (3, 24) and X.dtype == np.float32
    assert names[0] == "lstm_mean:000" and names[12] == "lstm_std:000" and len(names) == 24
    # by hand: the mean and standard deviation over the tune's steps of the top layer's output
    h = np.asarray(model.hidden_states(jnp.asarray(MelodyEncoding().encode(tune))[None]))[0]
    np.testing.assert_allclose(X[0], np.r_[h.mean(0), h.std(0)], rtol=1e-5, atol=1e-6)
    # alone or beside a longer tune in one padded batch: the same row
    np.testing.assert_allclose(F.melody_model_features([other], model)[0][0], X[1], rtol=1e-5, atol=1e-6)
    assert not X[2].any()                                          # no notes: zeros
    assert np.abs(X[0] - X[1]).max() > 1e-3                        # two tunes, two rows


def test_melody_model_features_do_not_depend_on_key_grid_octave_or_what_lies_past_max_steps():
    model = _small_melody_model(1)
    tune = Melody.from_notes([62, 64, 66, 67, 69, 71, 73, 74], range(0, 32, 4), range(4, 36, 4), key=2)
    in_c = Melody.from_notes([60, 62, 64, 65, 67, 69, 71, 72], range(0, 32, 4), range(4, 36, 4), key=0)
    on_eighths = Melody.from_notes(tune.notes()[0], range(0, 64, 8), range(8, 72, 8), key=2, steps_per_quarter=8)
    too_high = Melody.from_notes([114, 116], [0, 4], [4, 8], key=2)            # above the encoding's 108
    octave_down = Melody.from_notes([102, 104], [0, 4], [4, 8], key=2)
    longer = Melody.from_notes([62, 64, 66, 67, 69, 71, 73, 74, 50], [*range(0, 32, 4), 40], [*range(4, 36, 4), 44],
                               key=2)
    X, _ = F.melody_model_features([tune, in_c, on_eighths, too_high, octave_down], model)
    np.testing.assert_allclose(X[1], X[0], atol=1e-6)              # key-normalised first
    np.testing.assert_allclose(X[2], X[0], atol=1e-6)              # read on the model's grid of 4 steps a quarter
    np.testing.assert_allclose(X[3], X[4], atol=1e-6)              # out of range: moved by octaves into it
    cut = F.melody_model_features([longer], model, max_steps=33)[0][0]
    np.testing.assert_allclose(cut, F.melody_model_features([tune], model, max_steps=33)[0][0], atol=1e-6)


def test_melody_model_features_need_an_lstm_with_the_default_vocabulary():
    from flax import nnx

    from labkit.models import AttentionMelodyLSTM, MelodyLSTM

    tune = [Melody.from_notes([60, 62], [0, 4], [4, 8])]
    with pytest.raises(ConfigError, match="hidden_states"):
        F.melody_model_features(tune, AttentionMelodyLSTM(90, 8, 12, 1, 0.0, attention_length=4, rngs=nnx.Rngs(0)))
    with pytest.raises(ConfigError, match="reads 40 tokens"):
        F.melody_model_features(tune, MelodyLSTM(40, 8, 12, 1, 0.0, rngs=nnx.Rngs(0)))
    with pytest.raises(ConfigError, match="max_steps"):
        F.melody_model_features(tune, MelodyLSTM(90, 8, 12, 1, 0.0, rngs=nnx.Rngs(0)), max_steps=0)


def test_a_melody_without_notes_gives_features_not_an_error():
    from labkit.melody import Melody
    from labkit.style.model import load_style_model

    probabilities = load_style_model().predict_proba([Melody(np.full(32, -2))])   # 32 steps of rest
    assert probabilities.shape[0] == 1 and abs(float(probabilities.sum()) - 1.0) < 1e-6
