"""labkit: the tested helper package of the course "AI music composition with recurrent neural networks".

Modules, in the order data flows through them (each imports only those above it):

errors, env -> midi_io -> melody -> encoding -> corpus -> data -> models -> train
-> sample -> features/style -> evaluate -> audio/viz/widgets -> cli
"""
from labkit.errors import LabkitError

__version__ = "0.1.0"
__all__ = ["LabkitError", "__version__"]
