"""Argument types every command shares: numbers checked against their real range when the command line is parsed.

Each helper returns an ``argparse`` ``type=`` function that turns the text of a flag into a number or
raises :class:`argparse.ArgumentTypeError` with one short sentence, so that a bad number (``--num
99999999999999999999``, ``--bias nan``, ``--seed -1``) is refused before anything is loaded or
written, blaming the flag, never a file or a traceback from deep inside. :class:`CommandParser`
prints every usage error as one line, ``labkit: <command>: argument --flag: <problem>``, with exit
status 2 (as argparse's own errors).

The ranges are the real ones where they are known at parse time (a seed is a 32-bit number; a top-p
lies in (0, 1]) and stated caps where a larger value would only cost time and memory (at most
:data:`MAX_MELODIES` melodies of :data:`MAX_GENERATED_STEPS` steps). Floats refuse NaN always and
infinity unless it means something (``--max-gap inf``: never split a melody).

Example:
    >>> integer(1, 10)("7"), number(0, 1, low_open=True)("0.5"), seed("4294967295")
    (7, 0.5, 4294967295)
    >>> seed("4294967296")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be an integer in 0..4294967295 (a 32-bit seed), got '4294967296'

Notebook: 05_sampling_studio.ipynb
"""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable

#: Most melodies one ``generate`` or ``demo`` run writes.
MAX_MELODIES = 1000
#: Most steps generated after the primer (10000 steps: about 21 minutes at 120 qpm and 4 steps per quarter).
MAX_GENERATED_STEPS = 10_000
#: Finest time grid, in steps per quarter note (96: a common MIDI resolution; the course uses 4).
MAX_STEPS_PER_QUARTER = 96
#: Most training steps a command accepts.
MAX_TRAIN_STEPS = 10_000_000
#: The lowest and highest sampling temperatures (below 0.001 the scaled logits overflow float32).
TEMPERATURE_RANGE = (0.001, 1000.0)


def _shown(text: str) -> str:
    """The user's text for a message: quoted, at most 40 characters."""
    return repr(text if len(text) <= 40 else text[:37] + "...")


def integer(low: int, high: int, *, what: str = "", note: str = "") -> Callable[[str], int]:
    """A ``type=`` function: an integer in ``low..high`` (both included).

    ``what`` starts the message (``"num"`` -> ``"num must be ..."``); ``note`` follows the range.

    >>> integer(0, 5)("6")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be an integer in 0..5, got '6'
    """
    rule = f"{what + ' ' if what else ''}must be an integer in {low}..{high}{note}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:   # also a number with thousands of digits
            raise argparse.ArgumentTypeError(f"{rule}, got {_shown(text)}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{rule}, got {_shown(text)}")
        return value

    parse.__name__ = "integer"
    return parse


def number(low: float, high: float, *, low_open: bool = False, high_open: bool = False, what: str = "",
           rule: str = "", infinity: bool = False) -> Callable[[str], float]:
    """A ``type=`` function: a float in the interval from ``low`` to ``high`` (``*_open``: that end excluded).

    NaN is always refused; infinity too unless ``infinity`` (then ``high`` should be ``math.inf``).
    ``rule`` replaces the generated words after "must" (``"be a number > 0"``, ``"lie in (0, 1]"``).

    >>> number(0, math.inf, infinity=True)("inf"), number(0, 1)("1e-3")
    (inf, 0.001)
    >>> number(0, 100)("nan")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be a number in [0, 100], got 'nan'
    """
    if not rule:
        rule = f"be a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    message = f"{what + ' ' if what else ''}must {rule}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{message}, got {_shown(text)}") from None
        if math.isnan(value) or (math.isinf(value) and not infinity):
            raise argparse.ArgumentTypeError(f"{message}, got {_shown(text)}")
        if value < low or value > high or (low_open and value == low) or (high_open and value == high):
            raise argparse.ArgumentTypeError(f"{message}, got {_shown(text)}")
        return value

    parse.__name__ = "number"
    return parse


def seed(text: str) -> int:
    """A ``type=`` function for ``--seed``: an integer in ``0..2**32 - 1`` (:data:`labkit._common.MAX_SEED`).

    JAX keeps only a seed's lower 32 bits, so a larger seed would silently give another seed's music;
    it is refused instead, and the seed recorded is the seed used.
    """
    from labkit._common import MAX_SEED

    return integer(0, MAX_SEED, note=" (a 32-bit seed)")(text)


def temperature(text: str) -> float:
    """A ``type=`` function for ``--temperature``: a number in :data:`TEMPERATURE_RANGE`."""
    low, high = TEMPERATURE_RANGE
    return number(low, high, what="temperature", rule=f"be a number > 0 (from {low:g} to {high:g})")(text)


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr, ``labkit: <command>: <problem>``, exit 2.

    Subparsers made by ``add_subparsers`` are of the same class, so every command's errors look alike.

    >>> CommandParser(prog="python -m labkit demo").error("argument --num: must be an integer in 1..1000, got '0'")
    Traceback (most recent call last):
    ...
    SystemExit: 2
    """

    def error(self, message: str):
        command = self.prog.removeprefix("python -m labkit").strip()
        print(f"labkit: {command + ': ' if command else ''}{' '.join(message.split())}", file=sys.stderr)
        raise SystemExit(2)
