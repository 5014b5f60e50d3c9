"""Tests of labkit.listening: the listening-test panel driven by clicks, its answers file, and the analysis.

Runs under ipywidgets 8 (.venv) and 7.7.1 (.venv-colab, Colab's pins).
"""
from __future__ import annotations

import csv
import math

import numpy as np
import pandas as pd
import pytest

from labkit.audio import write_wav
from labkit.errors import ConfigError
from labkit.listening import (CSV_COLUMNS, ListeningTest, krippendorff_alpha, krippendorff_alpha_from_units,
                              make_clips, mean_ratings, preference_rate, read_answers, trial_order,
                              wilson_interval)


def tone(freq: float) -> np.ndarray:
    return 0.3 * np.sin(2 * np.pi * freq * np.arange(1600) / 16000).astype(np.float32)


CLIPS = [("real/r1", tone(220)), ("real/r2", tone(330)), ("lstm/g1", tone(440)), ("lstm/g2", tone(550))]


def visible_text(widget) -> str:
    """Every text a listener can see in a widget tree: HTML values, descriptions, placeholders."""
    parts = [str(getattr(widget, name, "")) for name in ("description", "placeholder")]
    if not isinstance(getattr(widget, "value", None), (bytes, memoryview)):
        parts.append(str(getattr(widget, "value", "")))
    return " ".join(parts + [visible_text(child) for child in getattr(widget, "children", ())])


def rows_of(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_pairs_panel_writes_a_row_after_every_click(tmp_path):
    path = tmp_path / "answers.csv"
    test = ListeningTest(CLIPS, path, mode="pairs", seed=3, rater="ann")
    assert len(test.trials) == 4                      # every pair of clips of different systems
    assert not path.exists()                           # nothing written before an answer
    shown = []
    for i, button in enumerate([test.prefer_a, test.prefer_b, test.prefer_a, test.prefer_b]):
        a, b = test.trials[i]
        assert test.player_a.value == a.wav and test.player_b.value == b.wav
        assert f"Pair {i + 1} of 4" in test.progress.value
        assert a.id not in visible_text(test.widget) and b.id not in visible_text(test.widget)   # blind: no names shown
        shown.append((a.id, b.id))
        button.click()
        rows = rows_of(path)
        assert len(rows) == i + 1                      # on disk after every answer
        last = rows[-1]
        assert (last["rater"], last["seed"], last["trial"]) == ("ann", "3", str(i + 1))
        assert (last["clip_a"], last["clip_b"]) == (a.id, b.id)
        assert last["system_a"] == a.system and last["answer"] == ("A" if i % 2 == 0 else "B")
        assert last["time"].endswith("+00:00") and "T" in last["time"]
    assert test.done and "Done" in test.progress.value and test.prefer_a.disabled
    assert test.answer("A") is None and len(rows_of(path)) == 4     # nothing after the end
    assert path.read_text().splitlines()[0] == ",".join(CSV_COLUMNS)


def test_second_panel_appends_and_the_header_is_written_once(tmp_path):
    path = tmp_path / "answers.csv"
    first = ListeningTest(CLIPS, path, mode="ratings", seed=1, rater="ann")
    first.rate_buttons[4].click()
    first.rate_buttons[0].click()
    second = ListeningTest(CLIPS, path, mode="ratings", seed=2, rater="bob")
    second.rate_buttons[2].click()
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and lines.count(",".join(CSV_COLUMNS)) == 1
    rows = rows_of(path)
    assert [(r["rater"], r["answer"]) for r in rows] == [("ann", "5"), ("ann", "1"), ("bob", "3")]
    assert all(r["clip_b"] == "" for r in rows)
    assert "Clip 2 of 4" in second.progress.value


def test_same_seed_same_order_other_seed_other_order():
    clips = make_clips(CLIPS + [("lstm/g3", tone(660)), ("real/r3", tone(770))])
    ids = lambda trials: [(a.id, b.id if b else None) for a, b in trials]  # noqa: E731
    assert ids(trial_order(clips, "pairs", 5)) == ids(trial_order(clips, "pairs", 5))
    assert ids(trial_order(clips, "pairs", 5)) != ids(trial_order(clips, "pairs", 6))
    assert ids(trial_order(clips, "ratings", 5)) == ids(trial_order(clips, "ratings", 5))
    assert sorted(ids(trial_order(clips, "ratings", 5))) == sorted((c.id, None) for c in clips)
    # every pair once, sides drawn: both orders happen across the 9 pairs
    pairs = ids(trial_order(clips, "pairs", 5))
    assert len(pairs) == 9 and len({frozenset(p) for p in pairs}) == 9
    assert {clips_system(a, clips) for a, _ in pairs} == {"real", "lstm"}
    explicit = ids(trial_order(clips, "pairs", 0, pairs=[("real/r1", "lstm/g1")]))
    assert sorted(explicit[0]) == ["lstm/g1", "real/r1"]


def clips_system(clip_id, clips):
    return next(c.system for c in clips if c.id == clip_id)


def test_wav_files_and_refusals(tmp_path):
    for system, freq in (("real", 220), ("lstm", 440)):
        write_wav(tmp_path / system / "x.wav", tone(freq), 16000)
    clips = make_clips([tmp_path / "real" / "x.wav", tmp_path / "lstm" / "x.wav"])
    assert [(c.id, c.system) for c in clips] == [("real/x", "real"), ("lstm/x", "lstm")]
    assert clips[0].wav == (tmp_path / "real" / "x.wav").read_bytes()
    (tmp_path / "notes.wav").write_text("not audio")
    with pytest.raises(ConfigError, match="not a WAV file"):
        make_clips([tmp_path / "notes.wav"])
    with pytest.raises(ConfigError, match="used twice"):
        make_clips([("a/1", tone(1)), ("a/1", tone(2))])
    with pytest.raises(ConfigError, match="two different systems"):
        trial_order(make_clips([("a/1", tone(1)), ("a/2", tone(2))]), "pairs", 0)
    with pytest.raises(ConfigError, match="mode"):
        ListeningTest(CLIPS, tmp_path / "x.csv", mode="mushra")
    other = tmp_path / "other.csv"
    other.write_text("name,score\nx,1\n")
    with pytest.raises(ConfigError, match="not an answers file"):
        ListeningTest(CLIPS, other)
    assert other.read_text() == "name,score\nx,1\n"            # never written to


def test_no_rater_no_answer_and_wrong_values(tmp_path):
    path = tmp_path / "a.csv"
    test = ListeningTest(CLIPS, path, mode="pairs", seed=0)
    assert test.rater in test.widget.children                  # asked for, since none was given
    test.prefer_a.click()
    assert not path.exists() and test.trial == 0 and "rater" in test.last_error
    test.rater.value = "  cy "
    test.prefer_b.click()
    assert rows_of(path)[0]["rater"] == "cy" and test.trial == 1
    with pytest.raises(ConfigError):
        test.answer(3)
    ratings = ListeningTest(CLIPS, tmp_path / "r.csv", mode="ratings", rater="cy")
    for bad in (0, 6, "5", True):
        with pytest.raises(ConfigError):
            ratings.answer(bad)


# --- analysis -------------------------------------------------------------------------------

def table(rows) -> pd.DataFrame:
    """Answers as read_answers gives them, from (rater, clip_a, clip_b, answer) tuples."""
    out = []
    for i, (rater, a, b, answer) in enumerate(rows):
        out.append({"rater": rater, "seed": 0, "trial": i + 1, "clip_a": a, "system_a": a.split("/")[0],
                    "clip_b": b, "system_b": b.split("/")[0] if b else "", "answer": answer, "time": ""})
    return pd.DataFrame(out, columns=list(CSV_COLUMNS))


def test_wilson_interval_by_hand():
    p, n, z = 0.8, 10, 1.959963984540054
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert wilson_interval(8, 10) == pytest.approx((centre - half, centre + half))
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    low, high = wilson_interval(0, 5)
    assert low == 0 and high == pytest.approx(z * z / (5 + z * z))
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_preference_rate_counts_the_side_chosen():
    answers = table([
        ("ann", "real/1", "lstm/1", "A"),     # real wins
        ("ann", "lstm/2", "real/2", "B"),     # real wins (B)
        ("bob", "lstm/1", "real/1", "A"),     # lstm wins
        ("bob", "real/2", "lstm/2", "A"),     # real wins
        ("bob", "real/1", "real/2", "A"),     # not real against another system: left out
        ("bob", "mark/1", "lstm/1", "A"),     # no real clip: left out
        ("ann", "r/1", "", "4"),              # a rating: left out
    ])
    got = preference_rate(answers, "real")
    assert (got["wins"], got["n"], got["rate"]) == (3, 4, 0.75)
    assert (got["low"], got["high"]) == pytest.approx(wilson_interval(3, 4))
    lstm = preference_rate(answers, "lstm")
    assert (lstm["wins"], lstm["n"]) == (1, 5)                  # won 1 of 4 against real, lost to mark
    assert (preference_rate(answers, "lstm", against="real")["wins"],
            preference_rate(answers, "lstm", against="real")["n"]) == (1, 4)
    assert preference_rate(answers, "nobody")["rate"] is None


def test_mean_ratings_by_hand():
    answers = table([("ann", "real/1", "", "3"), ("bob", "real/1", "", "4"), ("cy", "real/2", "", "5"),
                     ("ann", "lstm/1", "", "2"), ("ann", "x/1", "y/1", "A")])
    got = mean_ratings(answers)
    half = 4.302652729911275 / math.sqrt(3)                      # t(0.975, 2) * sd 1 / sqrt(3)
    assert got["real"]["mean"] == 4.0 and got["real"]["sd"] == pytest.approx(1.0) and got["real"]["n"] == 3
    assert (got["real"]["low"], got["real"]["high"]) == pytest.approx((4 - half, 4 + half))
    assert got["lstm"] == {"mean": 2.0, "low": None, "high": None, "n": 1, "sd": None}
    assert set(got) == {"real", "lstm"}


def test_krippendorff_alpha_by_hand():
    # two raters, four units: coincidences o_aa = 2, o_ab = o_ba = 1, o_bb = 4; n_a = 3, n_b = 5, n = 8
    assert krippendorff_alpha_from_units([["a", "a"], ["a", "b"], ["b", "b"], ["b", "b"]]) == \
        pytest.approx(1 - 7 * 2 / (2 * 3 * 5))
    assert krippendorff_alpha_from_units([["a", "a"], ["b", "b"], ["a", "a", "a"]]) == pytest.approx(1.0)
    # interval: units (1, 2) and (4, 5), one value alone (left out); o_12 = o_21 = o_45 = o_54 = 1
    # D_o term: 4 * 1; expected: sum n_c n_k (c - k)^2 over the values 1, 2, 4, 5 (each n_c = 1)
    values = [1, 2, 4, 5]
    expected = sum((c - k) ** 2 for c in values for k in values)
    assert krippendorff_alpha_from_units([[1, 2], [4, 5], [3]], "interval") == pytest.approx(1 - 3 * 4 / expected)
    assert math.isnan(krippendorff_alpha_from_units([["a"], ["b"]]))
    # from answers: raters who heard a pair in other orders but chose the same clip agree
    answers = table([("ann", "real/1", "lstm/1", "A"), ("bob", "lstm/1", "real/1", "B"),
                     ("ann", "real/2", "lstm/2", "B"), ("bob", "real/2", "lstm/2", "B"),
                     ("ann", "real/3", "lstm/3", "A"), ("bob", "real/3", "lstm/3", "B")])
    # units: {real/1: both real/1}, {lstm/2: both}, {real/3 vs lstm/3}: labels real/1, lstm/2, real/3, lstm/3
    # o: real/1 2, lstm/2 2, real/3-lstm/3 1 and 1; n = 6; D_o sum 2; expected sum_{c != k} n_c n_k = 36 - 10
    assert krippendorff_alpha(answers, "pairs") == pytest.approx(1 - 5 * 2 / 26)
    ratings = table([("ann", "a/1", "", "1"), ("bob", "a/1", "", "2"), ("ann", "a/2", "", "4"),
                     ("bob", "a/2", "", "5"), ("ann", "a/3", "", "3")])
    assert krippendorff_alpha(ratings, "ratings") == pytest.approx(1 - 3 * 4 / expected)


def test_read_answers_round_trip(tmp_path):
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    t1 = ListeningTest(CLIPS, one, mode="pairs", seed=4, rater="ann")
    for _ in range(4):
        t1.prefer_a.click()
    t2 = ListeningTest(CLIPS, two, mode="pairs", seed=4, rater="bob")
    for _ in range(4):
        t2.prefer_a.click()
    answers = read_answers([one, two])
    assert len(answers) == 8 and list(answers.columns) == list(CSV_COLUMNS) + ["file"]
    assert answers["trial"].tolist() == [1, 2, 3, 4] * 2
    # the same seed gave both raters the same pairs and sides, and both always chose A: full agreement
    assert krippendorff_alpha(answers, "pairs") == pytest.approx(1.0)
    real = preference_rate(answers, "real")
    a_real = sum(a.system == "real" for a, _ in t1.trials)
    assert (real["wins"], real["n"]) == (2 * a_real, 8)
    with pytest.raises(ConfigError, match="no such answers file"):
        read_answers(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text(",".join(CSV_COLUMNS) + "\nann,notanumber,1,a,a,,,3,\n")
    with pytest.raises(ConfigError, match="bad.csv"):
        read_answers(bad)
