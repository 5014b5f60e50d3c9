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

#: The course repository, set here once: the notebooks' "Open in Colab" badges and their Colab install
#: cells point at it (tests/test_notebook_badges.py checks both). A placeholder until the course has a
#: public home: change it here, then in each notebook's first two cells (the test names any that differ).
REPOSITORY_URL: str = "https://github.com/labkit-course/ai-music-rnn"
#: The branch the badges open.
REPOSITORY_BRANCH: str = "main"


def colab_url(notebook: str) -> str:
    """The "Open in Colab" address of a notebook of the repository, e.g. ``"00_welcome_and_setup.ipynb"``.

    >>> colab_url("00_welcome_and_setup.ipynb").startswith("https://colab.research.google.com/github/")
    True

    Notebook: 00_welcome_and_setup.ipynb
    """
    repo = REPOSITORY_URL.removeprefix("https://github.com/").rstrip("/")
    return f"https://colab.research.google.com/github/{repo}/blob/{REPOSITORY_BRANCH}/notebooks/{notebook}"


def notebook_times() -> dict:
    """The measured run times of the notebooks (``notebooks/timings.json``, written by
    ``scripts/time_notebooks.py``), or ``{}`` where the file is not at hand (an installed wheel, Colab).

    Notebook: 00_welcome_and_setup.ipynb
    """
    import json
    from pathlib import Path

    for folder in (Path(__file__).resolve().parents[1] / "notebooks", Path.cwd()):
        path = folder / "timings.json"
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except (OSError, ValueError):
                return {}
    return {}


def notebook_time(name: str) -> str:
    """One line: how long notebook ``name`` (e.g. ``"04_lstm_melody_model"``) took, fast and full mode.

    Notebook: 00_welcome_and_setup.ipynb
    """
    data = notebook_times()
    entry = data.get("notebooks", {}).get(name)
    if not entry:
        return f"{name}: no measured time here (notebooks/timings.json of the repository has them)"
    parts = []
    if "fast_seconds" in entry:
        parts.append(f"{_minutes(entry['fast_seconds'])} with LABKIT_FAST=1")
    if "full_seconds" in entry:
        kind = "estimated" if entry.get("full_kind") == "estimate" else "measured"
        parts.append(f"{_minutes(entry['full_seconds'])} in the full setting ({kind})")
    return f"{name}: " + ", ".join(parts) + f" on {data.get('machine', 'the course machine')}"


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


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
