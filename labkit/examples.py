"""Example MIDI files that ship inside labkit (see ``labkit/assets/README.md``).

Notebook: 01_midi_and_notesequences.ipynb
"""
from __future__ import annotations

from pathlib import Path

from labkit.errors import ConfigError

_ASSETS = Path(__file__).resolve().parent / "assets"

#: Example name -> file in ``labkit/assets``.
EXAMPLES = {"mozart": "mozart_k525_short.mid"}


def example_midi(name: str = "mozart") -> Path:
    """Path of a shipped example MIDI file.

    >>> example_midi("mozart").name
    'mozart_k525_short.mid'

    Notebook: 01_midi_and_notesequences.ipynb
    """
    if name not in EXAMPLES:
        raise ConfigError(f"no example called {name!r}; choose one of {', '.join(EXAMPLES)}")
    return _ASSETS / EXAMPLES[name]
