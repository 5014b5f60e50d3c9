"""labkit: the tested helper package of the course "AI music composition with recurrent neural networks".

Modules, in the order data flows through them (each imports only those above it):

errors, env -> midi_io -> melody -> encoding -> corpus -> data -> models -> train
-> sample -> features/style -> evaluate -> audio/viz/widgets -> cli
"""
import warnings

# note_seq imports pydub, which warns at import time when ffmpeg is missing; the course never uses it.
warnings.filterwarnings("ignore", message="Couldn't find ffmpeg or avconv", category=RuntimeWarning)

from labkit.errors import LabkitError  # noqa: E402

__version__ = "0.1.0"
__all__ = ["LabkitError", "__version__"]
