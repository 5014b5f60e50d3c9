"""Run settings read once at import, and an environment report for notebooks.

``LABKIT_FAST=1`` shrinks data and training steps so that the whole course
runs in minutes under CI; the full setting is what a student runs.

Notebook: 00_welcome_and_setup.ipynb
"""
from __future__ import annotations

import os
import platform
import sys

#: True when the environment variable ``LABKIT_FAST`` is set to 1/true/yes.
FAST: bool = os.environ.get("LABKIT_FAST", "").strip().lower() in {"1", "true", "yes", "on"}


def fast(full, quick):
    """Return ``quick`` when ``LABKIT_FAST`` is on, else ``full``.

    >>> fast(1000, 10) == (10 if FAST else 1000)
    True

    Notebook: 00_welcome_and_setup.ipynb
    """
    return quick if FAST else full


def versions() -> dict[str, str]:
    """Versions of Python and of the packages the course relies on.

    Notebook: 00_welcome_and_setup.ipynb
    """
    out = {"python": platform.python_version()}
    for name in ("jax", "flax", "optax", "note_seq", "symusic", "numpy", "ipywidgets", "matplotlib"):
        try:
            module = __import__(name)
            out[name] = getattr(module, "__version__", "?")
        except Exception:  # pragma: no cover - a missing optional package
            out[name] = "not installed"
    return out


def devices() -> list[str]:
    """The JAX devices this process sees, e.g. ``['cpu:0']`` or ``['cuda:0', 'cuda:1']``.

    Notebook: 00_welcome_and_setup.ipynb
    """
    import jax

    return [f"{d.platform}:{d.id}" for d in jax.devices()]


def in_colab() -> bool:
    """True inside Google Colab.

    Notebook: 00_welcome_and_setup.ipynb
    """
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def info(print_it: bool = True) -> dict:
    """Versions, JAX devices and the LABKIT_FAST setting; printed by every notebook's setup cell.

    Notebook: 00_welcome_and_setup.ipynb
    """
    report = {"versions": versions(), "devices": devices(), "fast": FAST, "colab": in_colab()}
    if print_it:
        v = report["versions"]
        print("labkit environment")
        print("  " + ", ".join(f"{k} {val}" for k, val in v.items()))
        print(f"  JAX devices: {', '.join(report['devices'])}")
        print(f"  LABKIT_FAST: {'on (small data, few steps)' if FAST else 'off (full course settings)'}")
        if report["colab"]:
            print("  running in Google Colab")
    return report
