"""Command groups of ``python -m labkit``; see :mod:`labkit.cli`."""
