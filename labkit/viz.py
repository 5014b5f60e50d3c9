"""See what the models make: piano rolls and pitch histograms (matplotlib).

Both plots take a ``note_seq.NoteSequence`` or a :class:`labkit.melody.Melody`
(read through :func:`labkit.melody.as_notes`, so time is in seconds for both)
and draw into a given matplotlib ``Axes`` or a new figure. Each returns the
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
                    pitch_range: tuple[int, int] | None = None):
    """Draw the notes as horizontal bars: time (s) across, pitch up, C's labelled (C4 = 60).

    Args:
        sequence_or_melody: a ``NoteSequence`` or a ``Melody`` (steps -> seconds via its qpm).
        ax: a matplotlib ``Axes`` to draw into; default a new 10 x 4 inch figure.
        title: the plot's title.
        pitch_range: ``(lowest, highest)`` MIDI pitch shown, both inclusive; notes
            outside it are not drawn. Default: the notes' own range, a little wider.

    Every pitched note is one bar (a ``Rectangle`` in a ``BarContainer``, one
    container per part, coloured per part with a General MIDI legend when
    there are several). Drum notes have no pitch to plot and are left out.
    Black-key rows are shaded. Returns the ``Axes``.

    Notebook: 01_midi_and_notesequences.ipynb

    >>> import matplotlib; matplotlib.use("Agg")
    >>> from labkit.melody import Melody
    >>> ax = plot_piano_roll(Melody.from_notes([60, 62, 64], [0, 4, 8], [4, 8, 12]))
    >>> sum(len(c.patches) for c in ax.containers)
    3
    """
    notes = as_notes(sequence_or_melody)
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
    if len(parts) > 1:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    if not pitched.any():
        ax.text(0.5, 0.5, "no pitched notes", transform=ax.transAxes, ha="center", va="center", color="0.4")

    ax.set_ylim(lo - 0.5, hi + 0.5)
    end = float(notes.end.max()) if len(notes.end) else 1.0
    ax.set_xlim(0.0, end)
    c_pitches = [p for p in range(lo, hi + 1) if p % 12 == 0]
    ticks = c_pitches if c_pitches else [lo, hi]
    ax.set_yticks(ticks, [pitch_name(p) for p in ticks])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("pitch")
    if title:
        ax.set_title(title)
    return ax


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
