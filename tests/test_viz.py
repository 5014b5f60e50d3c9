"""Tests of labkit.viz: piano rolls and histograms draw one bar per note, on an Agg canvas."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import note_seq  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from labkit import viz  # noqa: E402
from labkit.errors import ConfigError  # noqa: E402
from labkit.melody import Melody  # noqa: E402


def bars(ax):
    return [patch for container in ax.containers for patch in container.patches]


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


@pytest.fixture
def band():
    """Two pitched parts (piano, bass) and drums."""
    seq = note_seq.NoteSequence()
    for i, pitch in enumerate([60, 64, 67, 72, 71]):
        seq.notes.add(pitch=pitch, start_time=0.5 * i, end_time=0.5 * i + 0.4, velocity=90, instrument=0)
    for i, pitch in enumerate([36, 43]):
        seq.notes.add(pitch=pitch, start_time=1.0 * i, end_time=1.0 * i + 0.9, velocity=90, instrument=1,
                      program=33)
    for i in range(4):
        seq.notes.add(pitch=42, start_time=0.5 * i, end_time=0.5 * i + 0.1, velocity=90, instrument=9,
                      is_drum=True)
    seq.total_time = 2.4
    return seq


def test_piano_roll_draws_one_bar_per_pitched_note(ax, band):
    viz.plot_piano_roll(band, ax, title="band")
    drawn = bars(ax)
    assert len(drawn) == 7  # 5 piano + 2 bass; the 4 drum notes are left out
    assert len(ax.containers) == 2  # one per part, each with its own colour
    assert ax.get_title() == "band"
    ax.figure.canvas.draw()  # renders on Agg without error
    # each bar sits on its pitch and spans its note
    spans = sorted((round(b.get_y() + b.get_height() / 2), round(b.get_x(), 3), round(b.get_width(), 3))
                   for b in drawn)
    assert spans[0] == (36, 0.0, 0.9) and spans[-1] == (72, 1.5, 0.4)


def test_piano_roll_of_a_melody_uses_seconds_and_labels_c4(ax):
    m = Melody.from_notes([60, 62, 64, 65], [0, 4, 8, 12], [4, 8, 12, 14], qpm=120)  # a step is 0.125 s
    viz.plot_piano_roll(m, ax)
    assert len(bars(ax)) == 4
    assert ax.get_xlim() == pytest.approx((0.0, 14 * 0.125))
    assert "C4" in [t.get_text() for t in ax.get_yticklabels()]


def test_piano_roll_pitch_range_limits_the_axis_and_the_bars(ax, band):
    viz.plot_piano_roll(band, ax, pitch_range=(60, 71))
    assert len(bars(ax)) == 4  # 60, 64, 67, 71
    assert ax.get_ylim() == pytest.approx((59.5, 71.5))


def test_piano_roll_makes_its_own_figure_and_handles_no_notes():
    ax = viz.plot_piano_roll(note_seq.NoteSequence())
    try:
        assert bars(ax) == [] and any("no pitched notes" in t.get_text() for t in ax.texts)
    finally:
        plt.close(ax.figure)


def test_histogram_of_pitch_classes(ax):
    m = Melody.from_notes([60, 64, 67, 72, 62], [0, 2, 4, 6, 8], [2, 4, 6, 8, 10])
    viz.plot_histogram(m, ax)
    heights = np.array([b.get_height() for b in bars(ax)])
    assert len(heights) == 12 and heights.sum() == pytest.approx(1.0)
    assert heights[0] == pytest.approx(0.4) and heights[2] == heights[4] == heights[7] == pytest.approx(0.2)
    assert [t.get_text() for t in ax.get_xticklabels()][:2] == ["C", "C#"]


def test_histogram_of_pitches_spans_lowest_to_highest(ax, band):
    viz.plot_histogram(band, ax, kind="pitch")
    drawn = bars(ax)
    assert len(drawn) == 72 - 36 + 1  # drums left out
    assert sum(b.get_height() for b in drawn) == pytest.approx(1.0)


@pytest.mark.parametrize("pitch, name", [(60, "C4"), (69, "A4"), (61, "C#4"), (21, "A0"), (0, "C-1"), (127, "G9")])
def test_pitch_name(pitch, name):
    assert viz.pitch_name(pitch) == name


def test_bad_arguments_raise_config_error(ax, band):
    with pytest.raises(ConfigError):
        viz.plot_piano_roll(band, ax, pitch_range=(80, 60))
    with pytest.raises(ConfigError):
        viz.plot_histogram(band, ax, kind="rhythm")
    with pytest.raises(ConfigError):
        viz.plot_piano_roll("song.mid", ax)


def bar_line_positions(ax):
    return sorted(round(float(line.get_xdata()[0]), 6) for line in ax.lines if line.get_gid() == "bar line")


def test_piano_roll_names_every_row_of_a_small_range(ax):
    m = Melody.from_notes([60, 62, 64, 65, 67], [0, 4, 8, 12, 16], [4, 8, 12, 16, 20])
    viz.plot_piano_roll(m, ax)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [viz.pitch_name(p) for p in range(58, 70)]  # 60..67, two rows wider each side
    assert "D4" in labels and "F#4" in labels


def test_piano_roll_pitch_labels_options(ax, band):
    viz.plot_piano_roll(band, ax, pitch_labels="c")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["C2", "C3", "C4", "C5"]
    ax.clear()
    viz.plot_piano_roll(band, ax, pitch_labels="white")
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert "D3" in labels and not any("#" in x for x in labels)
    ax.clear()
    viz.plot_piano_roll(band, ax)  # 34..74: a wide range, so "auto" names the C, E and G rows
    assert [t.get_text() for t in ax.get_yticklabels()][:4] == ["C2", "E2", "G2", "C3"]


def test_piano_roll_in_beats_draws_bar_lines_at_multiples_of_the_bar(ax):
    # 3/4 at 90 qpm, 4 steps per quarter: 10 bars of 3 quarters, notes of a dotted half each
    m = Melody.from_notes(list(range(60, 70)), [12 * k for k in range(10)], [12 * k + 12 for k in range(10)],
                          qpm=90, numerator=3, denominator=4)
    viz.plot_piano_roll(m, ax, time_unit="beats")
    assert bar_line_positions(ax) == [3.0 * k for k in range(1, 10)]
    assert ax.get_xlim() == pytest.approx((0.0, 30.0))  # 120 steps = 30 quarter notes
    starts = sorted(round(b.get_x(), 6) for b in bars(ax))
    assert starts == [3.0 * k for k in range(10)]
    assert "beats" in ax.get_xlabel()


def test_piano_roll_bar_lines_follow_a_tempo_change(ax):
    seq = note_seq.NoteSequence()
    seq.tempos.add(time=0.0, qpm=120)   # 4 beats = 2 s
    seq.tempos.add(time=2.0, qpm=60)    # then a beat per second
    seq.time_signatures.add(time=0.0, numerator=2, denominator=4)
    seq.notes.add(pitch=60, start_time=0.0, end_time=6.0, velocity=80)  # 4 + 4 = 8 beats
    seq.total_time = 6.0
    viz.plot_piano_roll(seq, ax, time_unit="beats")
    assert bar_line_positions(ax) == [2.0, 4.0, 6.0]
    assert [round(b.get_width(), 6) for b in bars(ax)] == [8.0]
    ax.clear()
    viz.plot_piano_roll(seq, ax, bar_lines=True)  # in seconds: bars of 2 beats are 1 s, then 2 s
    assert bar_line_positions(ax) == [1.0, 2.0, 4.0]


def test_piano_roll_in_seconds_has_no_bar_lines_by_default(ax, band):
    viz.plot_piano_roll(band, ax)
    assert bar_line_positions(ax) == [] and ax.get_xlabel() == "time (s)"


def test_piano_roll_legend_inside_stays_within_the_axes(band):
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3))
    try:
        viz.plot_piano_roll(band, left, legend="inside")
        fig.canvas.draw()
        box = left.get_legend().get_window_extent()
        assert box.x1 <= left.get_window_extent().x1 + 1 < right.get_window_extent().x0
        viz.plot_piano_roll(band, right, legend=None)
        assert right.get_legend() is None
    finally:
        plt.close(fig)


def test_piano_roll_bad_options_raise_config_error(ax, band):
    for kwargs in ({"time_unit": "bars"}, {"pitch_labels": "some"}, {"legend": "left"}):
        with pytest.raises(ConfigError):
            viz.plot_piano_roll(band, ax, **kwargs)


def test_bar_lines_stay_out_of_the_legend():
    from note_seq.protobuf import music_pb2

    sequence = music_pb2.NoteSequence()
    sequence.tempos.add(qpm=120.0)
    for instrument, pitch in enumerate((60, 64)):
        sequence.notes.add(pitch=pitch, velocity=80, start_time=0.0, end_time=4.0, instrument=instrument)
    sequence.total_time = 4.0
    ax = viz.plot_piano_roll(sequence, time_unit="beats")
    assert bar_line_positions(ax)                                   # the bar lines are drawn
    labels = ax.get_legend_handles_labels()[1]
    assert len(labels) == 2 and not any("bar" in label for label in labels)   # one entry per part, nothing else
