"""Tests of labkit.judge (features, distances, densities, overlap and KL) and ``python -m labkit judge``."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import gaussian_kde, norm

from labkit import judge
from labkit.cli import main
from labkit.errors import ConfigError
from labkit.melody import Melody, melody_to_sequence
from labkit.midi_io import write_midi

# C4 quarter, D4 eighth, E4 eighth, C4 half, G4 dotted quarter (4 steps per quarter, 4/4: 16 steps a bar).
TINY = Melody.from_notes([60, 62, 64, 60, 67], [0, 4, 6, 8, 16], [4, 6, 8, 16, 22])


def test_every_feature_by_hand():
    f = judge.tune_features(TINY)
    assert set(f) == set(judge.FEATURES)
    assert f["pitch_count"] == 4                       # 60, 62, 64, 67
    assert f["pitch_range"] == 7                       # 67 - 60
    assert f["note_count"] == 5
    assert f["average_pitch_interval"] == pytest.approx((2 + 2 + 4 + 7) / 4)
    assert f["average_inter_onset_interval"] == pytest.approx((4 + 2 + 2 + 8) / 4 / 4)   # quarter notes
    pch = np.zeros(12)
    pch[[0, 2, 4, 7]] = [2 / 5, 1 / 5, 1 / 5, 1 / 5]
    np.testing.assert_allclose(f["pitch_class_histogram"], pch)
    pctm = np.zeros((12, 12))
    for a, b in [(0, 2), (2, 4), (4, 0), (0, 7)]:
        pctm[a, b] = 1 / 4
    np.testing.assert_allclose(f["pitch_class_transition_matrix"], pctm)
    # classes: quarter (2), 8th (3), 8th (3), half (1), dotted quarter (6)
    nlh = np.zeros(12)
    nlh[[1, 2, 3, 6]] = [1 / 5, 1 / 5, 2 / 5, 1 / 5]
    np.testing.assert_allclose(f["note_length_histogram"], nlh)
    nltm = np.zeros((12, 12))
    for a, b in [(2, 3), (3, 3), (3, 1), (1, 6)]:
        nltm[a, b] = 1 / 4
    np.testing.assert_allclose(f["note_length_transition_matrix"], nltm)
    assert f["scale_consistency"] == 1.0               # all in C major
    entropy = -(0.4 * math.log2(0.4) + 3 * 0.2 * math.log2(0.2))   # pitches 60 x2, 62, 64, 67
    assert f["pitch_entropy"] == pytest.approx(entropy)
    assert f["pitch_class_entropy"] == pytest.approx(entropy)
    # bars (MusPy: end 22 // 16 + 1 = 2): onsets {0, 4, 6, 8} and {0}: 3 of 16 positions differ
    assert f["groove_consistency"] == pytest.approx(1 - 3 / 16)


def test_feature_details_by_hand():
    chromatic = judge.tune_features(Melody.from_notes([60, 61, 62, 63], [0, 2, 4, 6], [2, 4, 6, 8]))
    assert chromatic["scale_consistency"] == pytest.approx(3 / 4)    # C minor holds C, D, Eb
    assert chromatic["pitch_class_entropy"] == pytest.approx(2.0)    # four classes, equally often
    assert math.isnan(chromatic["groove_consistency"])               # shorter than two bars
    # triplets and sixteenths are told apart on the judge's 12-step grid
    m = Melody.from_notes([60, 62, 64, 65], [0, 4, 8, 12], [4, 8, 12, 15], steps_per_quarter=12)
    hist = judge.tune_features(m)["note_length_histogram"]
    assert hist[11] == pytest.approx(3 / 4) and hist[4] == pytest.approx(1 / 4)   # 8th triplets, a 16th
    six_eight = Melody.from_notes([60], [0], [4], numerator=6, denominator=8)
    assert judge.steps_per_bar(six_eight) == 12
    one = judge.tune_features(Melody.from_notes([60], [0], [4]))
    assert math.isnan(one["average_pitch_interval"]) and not one["pitch_class_transition_matrix"].any()


def test_judged_melody_takes_the_skyline_unsplit():
    low = melody_to_sequence(Melody.from_notes([48, 50, 52, 53], [0, 4, 8, 12], [4, 8, 12, 16]))
    high = melody_to_sequence(Melody.from_notes([72, 74, 76, 77], [0, 4, 8, 60], [4, 8, 12, 64]))
    for note in high.notes:
        low.notes.add().CopyFrom(note)
        low.notes[-1].instrument = 1
    m = judge.judged_melody(low)
    # the top line wins where both sound; the long rest (steps 16..60) does not split the tune
    assert m.pitches.tolist() == [72, 74, 76, 53, 77]
    assert m.steps_per_quarter == judge.JUDGE_STEPS_PER_QUARTER


def test_distances_by_hand():
    assert judge.intra_set_distances(np.array([0.0, 1.0, 3.0])).tolist() == [1.0, 3.0, 2.0]
    a = np.array([[0.0, 0.0], [3.0, 4.0]])
    np.testing.assert_allclose(judge.intra_set_distances(a), [5.0])
    np.testing.assert_allclose(judge.inter_set_distances(a, np.array([[0.0, 4.0]])), [4.0, 3.0])
    assert len(judge.intra_set_distances(np.zeros((1, 3)))) == 0


def test_kde_agrees_with_scipy_exact_and_binned():
    rng = np.random.default_rng(1)
    small = rng.gamma(2.0, 1.0, 200)
    grid = np.linspace(-3, 15, judge.GRID_POINTS)
    np.testing.assert_allclose(np.exp(judge.kde_logpdf(small, grid, judge.scott_bandwidth(small))),
                               gaussian_kde(small)(grid), rtol=1e-9, atol=1e-12)
    big = rng.gamma(2.0, 1.0, judge.EXACT_KDE_LIMIT + 1000)      # binned onto the grid first
    h = judge.scott_bandwidth(big)
    binned = np.exp(judge.kde_logpdf(big, grid, h))
    exact = gaussian_kde(big)(grid)
    assert np.max(np.abs(binned - exact)) < 1e-3 * exact.max()
    with pytest.raises(ConfigError):
        judge.kde_logpdf(small, grid, 0.0)


def test_overlap_and_kl_against_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, 3000)
    b = rng.normal(1.0, 1.0, 3000)
    got = judge.compare_distributions(a, b)
    # two unit normals one apart: overlap 2 * Phi(-1/2) = 0.617, KL = 1/2 (the KDE widens both a little)
    assert got["overlap"] == pytest.approx(2 * norm.cdf(-0.5), abs=0.03)
    assert got["kl"] == pytest.approx(0.5, abs=0.2)       # KL of KDEs varies much with the tails' samples
    # and exactly what scipy's KDEs give, integrated on a fine grid of their own
    grid = np.linspace(-8, 9, 8000)
    p, q = gaussian_kde(a)(grid), gaussian_kde(b)(grid)
    assert got["kl"] == pytest.approx(np.trapezoid(p * np.log(p / q), grid), rel=1e-4)
    assert got["overlap"] == pytest.approx(np.trapezoid(np.minimum(p, q), grid), rel=1e-4)
    same = judge.compare_distributions(a, a)
    assert same["overlap"] == pytest.approx(1.0) and same["kl"] == pytest.approx(0.0, abs=1e-12)
    far = judge.compare_distributions(a, a + 20)
    assert far["overlap"] < 1e-3 and far["kl"] > 10
    # all distances equal (a zero bandwidth scipy refuses) still gives densities
    flat = judge.compare_distributions(np.ones(10), np.ones(10))
    assert flat["overlap"] == pytest.approx(1.0) and flat["kl"] == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(judge.compare_distributions(np.zeros(0), a)["overlap"])


def _melodies(seed: int, count: int, *, wide: bool) -> list[Melody]:
    """Stepwise quarter-note tunes in C major, or leaping sixteenth-note tunes over two octaves."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        n = int(rng.integers(16, 24))
        if wide:
            pitches = rng.integers(48, 85, n)
            starts = np.arange(n)
            ends = starts + 1
        else:
            degrees = np.clip(np.cumsum(rng.integers(-1, 2, n)), -7, 7) + 7   # a random walk by steps
            pitches = 48 + np.array([0, 2, 4, 5, 7, 9, 11] * 3)[degrees] + 12 * (degrees // 7)
            starts = np.arange(n) * 4
            ends = starts + 4
        out.append(Melody.from_notes(pitches, starts, ends))
    return out


def test_set_with_itself_overlaps_and_different_sets_do_not():
    narrow = [judge.tune_features(m) for m in _melodies(0, 20, wide=False)]
    narrow2 = [judge.tune_features(m) for m in _melodies(1, 20, wide=False)]
    wide = [judge.tune_features(m) for m in _melodies(2, 20, wide=True)]
    itself = judge.compare_sets(narrow, narrow)
    similar = judge.compare_sets(narrow2, narrow)
    apart = judge.compare_sets(wide, narrow)
    for name in ("pitch_range", "pitch_count", "pitch_class_histogram", "average_pitch_interval", "pitch_entropy"):
        assert itself[name]["overlap"] > 0.85, name
        assert similar[name]["overlap"] > 0.6, name
    for name in ("pitch_range", "average_pitch_interval", "average_inter_onset_interval", "note_length_histogram",
                 "scale_consistency"):
        assert apart[name]["overlap"] < 0.2, name
    for report in (itself, similar, apart):
        for name, entry in report.items():
            assert entry["kl"] is None or entry["kl"] >= 0, name
            assert entry["overlap"] is None or 0 <= entry["overlap"] <= 1, name
    assert apart["pitch_range"]["kl"] > itself["pitch_range"]["kl"]
    assert itself["pitch_range"]["real_mean"] == pytest.approx(np.mean([f["pitch_range"] for f in narrow]))
    assert np.shape(itself["pitch_class_transition_matrix"]["real_mean"]) == (12, 12)
    assert apart["note_count"]["generated"] == 20 and apart["note_count"]["real"] == 20
    # tunes under two bars have no groove figure: left out, and never a NaN in the report
    short = [judge.tune_features(Melody.from_notes([60, 62, 64, 65], [0, 2, 4, 6], [2, 4, 6, 8]))] * 3
    mixed = judge.compare_sets(short, narrow)
    assert mixed["groove_consistency"]["generated"] == 0 and mixed["groove_consistency"]["overlap"] is None
    assert mixed["groove_consistency"]["generated_mean"] is None and mixed["pitch_range"]["generated"] == 3


# --- the command --------------------------------------------------------------------------

def _write(folder: Path, melodies) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, m in enumerate(melodies):
        write_midi(melody_to_sequence(m), folder / f"tune_{i:02d}.mid")
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("judge")
    gen = _write(root / "gen", _melodies(3, 6, wide=False))
    real = _write(root / "real", _melodies(4, 8, wide=False))
    return gen, real


def run(capsys, *args) -> tuple[int, str, str]:
    status = main(["judge", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_json_round_trip(folders, capsys):
    gen, real = folders
    status, out, err = run(capsys, "--generated", gen, "--real", real, "--json")
    assert status == 0 and err == ""
    report = json.loads(out)
    assert report["generated"] == 6 and report["real"] == 8 and report["problems"] == []
    assert list(report["features"]) == list(judge.FEATURES)
    for entry in report["features"].values():
        assert {"overlap", "kl", "generated_mean", "real_mean"} <= set(entry)
    verdicts = report["style_verdicts"]
    assert verdicts["scored"] == 6 and sum(verdicts["shares"].values()) == pytest.approx(1.0)
    assert verdicts["target"] is None and verdicts["mean_index"] is None
    # the same folders give the same report; the library function agrees with the command
    assert json.loads(run(capsys, "--generated", gen, "--real", real, "--json")[1]) == report
    direct = judge.judge_paths([gen], [real])
    assert direct["features"]["pitch_range"]["overlap"] == pytest.approx(report["features"]["pitch_range"]["overlap"])
    status, table, _ = run(capsys, "--generated", gen, "--real", real)
    assert status == 0 and all(name in table for name in judge.FEATURES) and "style model's verdicts" in table


def test_cli_style_takes_the_corpus_test_split(folders, capsys):
    gen, _ = folders
    status, out, _ = run(capsys, "--generated", gen, "--style", "irish", "--json")
    report = json.loads(out)
    assert status == 0 and report["style"] == "irish"
    assert report["real"] == len(judge.corpus_paths("irish")) > 100
    assert report["style_verdicts"]["target"] == "irish" and 0 <= report["style_verdicts"]["mean_index"] <= 1


def test_bad_files_are_reported_and_the_good_kept(folders, tmp_path, capsys):
    gen, real = folders
    mixed = _write(tmp_path / "mixed", _melodies(5, 2, wide=False))
    (mixed / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01")
    _write(tmp_path / "short", [Melody.from_notes([60, 62], [0, 4], [4, 8])])
    status, out, err = run(capsys, "--generated", mixed, tmp_path / "short", "--real", real, "--json")
    assert status == 0 and json.loads(out)["generated"] == 2
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "broken.mid: skipped:" in lines[0] and "tune_00.mid: skipped:" in lines[1]


@pytest.mark.parametrize("case", ["empty", "unreadable", "one_real", "unknown_style", "both", "neither"])
def test_bad_inputs_are_one_line_exit_2(folders, tmp_path, capsys, case):
    gen, real = folders
    empty = tmp_path / "empty"
    empty.mkdir()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.mid").write_text("not midi")
    args = {
        "empty": ["--generated", empty, "--real", real],
        "unreadable": ["--generated", junk, "--real", real],
        "one_real": ["--generated", gen, "--real", _write(tmp_path / "one", _melodies(6, 1, wide=False))],
        "unknown_style": ["--generated", gen, "--style", "klezmer"],
        "both": ["--generated", gen, "--real", real, "--style", "irish"],
        "neither": ["--generated", gen],
    }[case]
    try:
        status, out, err = run(capsys, *args)
    except SystemExit as exc:            # argparse usage errors
        status, out, err = exc.code, *capsys.readouterr()
    assert status == 2 and out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(("labkit:", "python -m labkit judge:", "usage")), err
    if case in ("empty", "unreadable"):
        assert "no tune to judge" in err and ("holds no" in err or "a.mid" in err)
