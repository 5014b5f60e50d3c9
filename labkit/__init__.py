"""labkit: the tested helper package of the course "AI music composition with recurrent neural networks".

Modules, in the order data flows through them (each imports only those above it):

errors, env -> midi_io -> melody -> encoding -> corpus -> data -> models -> train
-> sample -> features/style -> evaluate -> audio/viz/widgets -> cli
"""
import warnings

# note_seq imports pydub, which warns at import time when ffmpeg is missing; the course never uses it.
warnings.filterwarnings("ignore", message="Couldn't find ffmpeg or avconv", category=RuntimeWarning)

from labkit.errors import LabkitError  # noqa: E402

try:  # one version number: pyproject.toml's, read from the installed package's metadata
    from importlib.metadata import PackageNotFoundError, version as _version

    __version__ = _version("labkit")
except PackageNotFoundError:  # pragma: no cover - a source tree on sys.path without any install
    __version__ = "0+unknown"
__all__ = ["LabkitError", "__version__"]
