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
