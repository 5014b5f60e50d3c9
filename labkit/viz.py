"""See what the models make: piano rolls and pitch histograms (matplotlib).

Both plots take a ``note_seq.NoteSequence`` or a :class:`labkit.melody.Melody`
(read through :func:`labkit.melody.as_notes`, so time is in seconds for both;
``time_unit="beats"`` counts quarter notes through the tempo map and draws bar
lines, as a musician reads a score) and draw into a given matplotlib ``Axes``
or a new figure. Pitch rows are named by note (C4 = 60), every row when the
range is small. Each returns the
``Axes``, so a notebook can add to it or a test can count what was drawn.

Notebook: 01_midi_and_notesequences.ipynb
"""
from __future__ import annotations

import numpy as np

from labkit._common import PITCH_CLASS_NAMES, pitch_name
from labkit.errors import ConfigError
from labkit.melody import as_notes

_BLACK_KEYS = {1, 3, 6, 8, 10}


def _axes(ax, figsize):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


def _program_name(program: int) -> str:
    try:
        import pretty_midi  # installed with note-seq; only used for the General MIDI names

        return pretty_midi.program_to_instrument_name(int(program))
    except Exception:  # pragma: no cover - pretty_midi missing or a newer API
        return f"program {program}"


def plot_piano_roll(sequence_or_melody, ax=None, *, title: str | None = None,
                    pitch_range: tuple[int, int] | None = None, time_unit: str = "seconds",
                    bar_lines: bool | None = None, pitch_labels: str = "auto", legend: str | None = "outside"):
    """Draw the notes as horizontal bars: time across, pitch up, rows named by note (C4 = 60).

    Args:
        sequence_or_melody: a ``NoteSequence`` or a ``Melody`` (steps -> seconds via its qpm).
        ax: a matplotlib ``Axes`` to draw into; default a new 10 x 4 inch figure.
        title: the plot's title.
        pitch_range: ``(lowest, highest)`` MIDI pitch shown, both inclusive; notes
            outside it are not drawn. Default: the notes' own range, a little wider.
        time_unit: ``"seconds"`` (the default) or ``"beats"``: quarter notes from the
            start, through the tempo map (a sequence's tempos, a melody's qpm).
        bar_lines: draw a line at every bar (bars of the first time signature, from
            time 0; 4/4 when there is none). Default: on when ``time_unit="beats"``.
            In seconds the bar lines follow the tempo map too.
        pitch_labels: ``"all"`` (every row named), ``"white"`` (the white keys),
            ``"ceg"`` (C, E and G: a name every 3 or 4 rows), ``"c"`` (the C's only)
            or ``"auto"``: all for a range of up to 24 semitones, C/E/G up to 60,
            else the C's.
        legend: where the parts' legend goes when there are several parts:
            ``"outside"`` (right of the axes), ``"inside"`` (upper right, within
            the axes: use it for side-by-side panels) or ``None`` (no legend).

    Every pitched note is one bar (a ``Rectangle`` in a ``BarContainer``, one
    container per part, coloured per part with a General MIDI legend when
    there are several). Drum notes have no pitch to plot and are left out.
    Black-key rows are shaded. Returns the ``Axes``; bar lines are the axes'
    ``lines`` with the gid ``"bar line"`` (their labels start with "_": no legend shows them).

    Notebook: 01_midi_and_notesequences.ipynb

    >>> import matplotlib; matplotlib.use("Agg")
    >>> from labkit.melody import Melody
    >>> ax = plot_piano_roll(Melody.from_notes([60, 62, 64], [0, 4, 8], [4, 8, 12]))
    >>> sum(len(c.patches) for c in ax.containers)
    3
    >>> ax = plot_piano_roll(Melody.from_notes([60, 62, 64], [0, 8, 16], [8, 16, 20]), time_unit="beats")
    >>> [line.get_xdata()[0] for line in ax.lines if line.get_gid() == "bar line"]
    [4.0]
    """
    if time_unit not in ("seconds", "beats"):
        raise ConfigError(f"time_unit must be 'seconds' or 'beats', not {time_unit!r}")
    if pitch_labels not in ("auto", "all", "white", "ceg", "c"):
        raise ConfigError(f"pitch_labels must be 'auto', 'all', 'white', 'ceg' or 'c', not {pitch_labels!r}")
    if legend not in ("outside", "inside", None):
        raise ConfigError(f"legend must be 'outside', 'inside' or None, not {legend!r}")
    notes = as_notes(sequence_or_melody)
    tempos, bar_quarters = _tempo_map_and_bar(sequence_or_melody)
    if time_unit == "beats":
        notes = notes._replace(start=_seconds_to_beats(notes.start, tempos), end=_seconds_to_beats(notes.end, tempos))
    pitched = ~notes.is_drum
    if pitch_range is not None:
        lo, hi = (int(p) for p in pitch_range)
        if not 0 <= lo <= hi <= 127:
            raise ConfigError(f"pitch_range must be (lowest, highest) within 0..127, not {pitch_range!r}")
        pitched &= (notes.pitch >= lo) & (notes.pitch <= hi)
    elif pitched.any():
        lo, hi = int(notes.pitch[pitched].min()) - 2, int(notes.pitch[pitched].max()) + 2
    else:
        lo, hi = 57, 72
    ax = _axes(ax, (10, 4))

    for p in range(lo, hi + 1):  # shade the black keys, as on a piano roll
        if p % 12 in _BLACK_KEYS:
            ax.axhspan(p - 0.5, p + 0.5, color="0.93", zorder=0, linewidth=0)

    parts = sorted({(int(i), int(g)) for i, g in zip(notes.instrument[pitched], notes.program[pitched])})
    colors = [f"C{k % 10}" for k in range(len(parts))]
    for (instrument, program), color in zip(parts, colors):
        mask = pitched & (notes.instrument == instrument) & (notes.program == program)
        label = f"{instrument}: {_program_name(program)}" if len(parts) > 1 else None
        ax.barh(notes.pitch[mask], (notes.end - notes.start)[mask], left=notes.start[mask], height=0.8,
                color=color, edgecolor="0.2", linewidth=0.4, label=label, zorder=2)
    if len(parts) > 1 and legend == "outside":
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    elif len(parts) > 1 and legend == "inside":
        ax.legend(loc="upper right", fontsize="x-small", framealpha=0.8)
    if not pitched.any():
        ax.text(0.5, 0.5, "no pitched notes", transform=ax.transAxes, ha="center", va="center", color="0.4")

    ax.set_ylim(lo - 0.5, hi + 0.5)
    end = float(notes.end.max()) if len(notes.end) else 1.0
    ax.set_xlim(0.0, end)
    span = hi - lo
    if pitch_labels == "auto":
        pitch_labels = "all" if span <= 24 else "ceg" if span <= 60 else "c"
    keep = {"all": lambda p: True, "white": lambda p: p % 12 not in _BLACK_KEYS,
            "ceg": lambda p: p % 12 in (0, 4, 7), "c": lambda p: p % 12 == 0}
    ticks = [p for p in range(lo, hi + 1) if keep[pitch_labels](p)] or [lo, hi]
    ax.set_yticks(ticks, [pitch_name(p) for p in ticks], fontsize=7 if len(ticks) > 14 else None)
    if bar_lines is None:
        bar_lines = time_unit == "beats"
    if bar_lines:
        bar = np.arange(bar_quarters, _seconds_to_beats(np.array([end]), tempos)[0] if time_unit == "seconds" else end,
                        bar_quarters)
        at = bar if time_unit == "beats" else _beats_to_seconds(bar, tempos)
        for x in at:
            ax.axvline(float(x), color="0.35", linewidth=0.8, zorder=1, label="_bar line", gid="bar line")   # "_": kept out of legends
    if time_unit == "beats":
        from matplotlib.ticker import MultipleLocator

        bars_per_tick = max(1, int(np.ceil(end / bar_quarters / 12)))   # at most about 12 labelled bar lines
        ax.xaxis.set_major_locator(MultipleLocator(bar_quarters * bars_per_tick))
        ax.set_xlabel(f"time (quarter-note beats; bars of {bar_quarters:g})")
    else:
        ax.set_xlabel("time (s)")
    ax.set_ylabel("pitch")
    if title:
        ax.set_title(title)
    return ax


def _tempo_map_and_bar(sequence_or_melody) -> tuple[list[tuple[float, float]], float]:
    """``([(seconds, qpm), ...], quarters per bar)`` of a melody or a sequence (120 qpm, 4/4 by default)."""
    num, den = getattr(sequence_or_melody, "numerator", None), getattr(sequence_or_melody, "denominator", None)
    qpm = getattr(sequence_or_melody, "qpm", None)
    if qpm is not None and num is not None:                      # a Melody: one tempo, one metre
        return [(0.0, float(qpm))], 4.0 * num / den
    tempos = sorted((float(t.time), float(t.qpm)) for t in getattr(sequence_or_melody, "tempos", []) if t.qpm > 0)
    if not tempos or tempos[0][0] > 0:
        tempos.insert(0, (0.0, tempos[0][1] if tempos else 120.0))
    signatures = sorted(getattr(sequence_or_melody, "time_signatures", []), key=lambda t: t.time)
    bar = 4.0 * signatures[0].numerator / signatures[0].denominator if signatures else 4.0
    return tempos, bar if bar > 0 else 4.0


def _seconds_to_beats(seconds, tempos) -> np.ndarray:
    """Quarter notes elapsed at each time, through a piecewise-constant tempo map ``[(seconds, qpm), ...]``."""
    seconds = np.asarray(seconds, dtype=np.float64)
    starts = np.array([t for t, _ in tempos])
    qpms = np.array([q for _, q in tempos])
    beats_at = np.concatenate([[0.0], np.cumsum(np.diff(starts) * qpms[:-1] / 60.0)])
    k = np.clip(np.searchsorted(starts, seconds, side="right") - 1, 0, len(starts) - 1)
    return beats_at[k] + (seconds - starts[k]) * qpms[k] / 60.0


def _beats_to_seconds(beats, tempos) -> np.ndarray:
    """The inverse of :func:`_seconds_to_beats`."""
    beats = np.asarray(beats, dtype=np.float64)
    starts = np.array([t for t, _ in tempos])
    qpms = np.array([q for _, q in tempos])
    beats_at = np.concatenate([[0.0], np.cumsum(np.diff(starts) * qpms[:-1] / 60.0)])
    k = np.clip(np.searchsorted(beats_at, beats, side="right") - 1, 0, len(starts) - 1)
    return starts[k] + (beats - beats_at[k]) * 60.0 / qpms[k]


def plot_histogram(sequence_or_melody, ax=None, *, kind: str = "pitch_class", title: str | None = None):
    """Bar chart of how often each pitch class (C..B) or each pitch occurs, as fractions of the notes.

    ``kind``: ``"pitch_class"`` (12 bars, C to B: the key shows) or ``"pitch"``
    (one bar per MIDI pitch from the lowest to the highest note). Drum notes are
    left out. Returns the ``Axes``; its one ``BarContainer`` holds the bars.

    Notebook: 01_midi_and_notesequences.ipynb

    >>> import matplotlib; matplotlib.use("Agg")
    >>> from labkit.melody import Melody
    >>> ax = plot_histogram(Melody.from_notes([60, 64, 72], [0, 4, 8], [4, 8, 12]))
    >>> [round(float(b.get_height()), 2) for b in ax.containers[0]][:5]
    [0.67, 0.0, 0.0, 0.0, 0.33]
    """
    if kind not in ("pitch_class", "pitch"):
        raise ConfigError(f"kind must be 'pitch_class' or 'pitch', not {kind!r}")
    notes = as_notes(sequence_or_melody)
    pitches = notes.pitch[~notes.is_drum]
    ax = _axes(ax, (7, 3))
    if kind == "pitch_class":
        counts = np.bincount(pitches % 12, minlength=12)
        labels = list(PITCH_CLASS_NAMES)
        x = np.arange(12)
    else:
        lo, hi = (int(pitches.min()), int(pitches.max())) if len(pitches) else (60, 60)
        counts = np.bincount(pitches - lo, minlength=hi - lo + 1) if len(pitches) else np.zeros(1, int)
        x = np.arange(lo, hi + 1)
        labels = None
    freq = counts / max(1, counts.sum())
    ax.bar(x, freq, color="C0", edgecolor="0.2", linewidth=0.4)
    if labels is not None:
        ax.set_xticks(x, labels)
    else:
        c_pitches = [p for p in x if p % 12 == 0] or [int(x[0])]
        ax.set_xticks(c_pitches, [pitch_name(p) for p in c_pitches])
    ax.set_xlabel("pitch class" if kind == "pitch_class" else "pitch")
    ax.set_ylabel("fraction of notes")
    if title:
        ax.set_title(title)
    return ax
