"""Generating melodies: batched sampling and beam search, compiled whole with ``jax.jit`` + ``lax.scan``.

A trained model gives, after each token, a distribution over the next one. Generation
feeds a *primer* (a few tokens that set the start) through the model, then repeats
"pick a token from the distribution, feed it back" for ``length`` steps. Everything after
the primer, all samples of the batch and all steps, is one compiled XLA program: there is no
Python loop per step.

How a token is picked (:func:`filter_logits`, applied in this order):

* ``temperature`` ``T``: logits are divided by ``T``. ``T < 1`` sharpens the distribution
  (``T -> 0`` tends to the arg-max), ``T > 1`` flattens it.
* ``top_k`` ``k``: only the ``k`` most likely tokens stay (``0`` = off; ``1`` = greedy arg-max).
* ``top_p`` ``p`` (nucleus sampling, Holtzman et al. 2020): only the smallest set of most likely
  tokens whose probability adds up to at least ``p`` stays (``1`` = off; a tiny ``p`` = greedy).

then a token is drawn by :func:`draw_token` from one key per step, split from the key (or
``seed``) you give: the same key, model, primer and settings give the same melodies. The plain
draw is ``jax.random.categorical``; by default the sampler uses the faster inverse-CDF draw of
:mod:`labkit.models.kernels` (the same distribution; other tokens for the same key). The loop
steps the model through ``model.step_function()``, which is ``step`` with what stays the same at
every step computed once (see :meth:`labkit.models.MelodyLSTM.step_function`).

:func:`beam_search` keeps instead the ``beam_size`` most probable continuations. Every
continuation has the same length (the vocabulary has no end token), so dividing the score by
the length ("length normalisation") would not change which one wins: the scores returned are
plain total log-probabilities (nats) of the generated tokens given the primer.

Only the shapes (``num_samples``, primer length, ``length``, ``beam_size``) and whether top-k
and top-p are on are compiled in: changing the values of ``temperature``, ``top_k``, ``top_p``
or the seed reuses the compiled sampler.

About invalid transitions: the model may pick a note-off (token 1) while nothing sounds,
e.g. right after another note-off. :meth:`~labkit.encoding.MelodyEncoding.decode` keeps it,
and it is harmless: a note-off in silence ends nothing, and the melody's notes
(:meth:`~labkit.melody.Melody.notes`) and any MIDI written from it are the same as without it.

Notebook: 05_sampling_studio.ipynb
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from labkit._common import MAX_SEED
from labkit.encoding import NO_EVENT_TOKEN, MelodyEncoding
from labkit.errors import ConfigError, EncodingError
from labkit.melody import Melody
from labkit.models import kernels

#: The pitch of the default primer: a single middle C.
DEFAULT_PRIMER_PITCH = 60



@dataclass(frozen=True)
class SampleConfig:
    """How to sample (checked by :meth:`validate`; see the module docstring for the meaning).

    Attributes:
        num_samples: melodies generated at once (``N``).
        length: tokens generated after the primer (steps; 64 = 4 bars of 4/4 at 4 steps per quarter).
        temperature: > 0.
        top_k: keep the ``k`` most likely tokens; ``0`` = off.
        top_p: nucleus threshold in ``(0, 1]``; ``1`` = off.
        seed: the key is ``jax.random.key(seed)`` unless one is passed to :func:`sample`;
            an integer in ``0..MAX_SEED`` (each gives its own melodies).

    Notebook: 05_sampling_studio.ipynb

    Example:
        >>> SampleConfig(temperature=0.8, top_k=10).validate(vocab_size=90).top_k
        10
    """

    num_samples: int = 8
    length: int = 128
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0

    def validate(self, vocab_size: int | None = None) -> "SampleConfig":
        """Return ``self`` if every value is usable, else raise :class:`ConfigError` naming it."""
        for name in ("num_samples", "length"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"SampleConfig.{name} must be a positive integer, got {value!r}")
        temperature = self.temperature
        if not isinstance(temperature, (int, float, np.floating)) or not math.isfinite(temperature) or temperature <= 0:
            raise ConfigError(f"SampleConfig.temperature must be a finite number > 0, got {temperature!r} "
                              "(for the most likely token, use top_k=1)")
        if not isinstance(self.top_k, (int, np.integer)) or self.top_k < 0:
            raise ConfigError(f"SampleConfig.top_k must be an integer >= 0 (0 = off), got {self.top_k!r}")
        if vocab_size is not None and self.top_k > vocab_size:
            raise ConfigError(f"SampleConfig.top_k={self.top_k} exceeds the vocabulary size {vocab_size}")
        top_p = self.top_p
        if not isinstance(top_p, (int, float, np.floating)) or not (0.0 < top_p <= 1.0):
            raise ConfigError(f"SampleConfig.top_p must lie in (0, 1] (1 = off), got {top_p!r}")
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool) \
                or not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"SampleConfig.seed must be an integer in 0..{MAX_SEED} (2**32 - 1), got {self.seed!r}")
        return self


def filter_logits(logits: jax.Array, temperature=1.0, top_k=0, top_p=1.0) -> jax.Array:
    """Logits ``[..., V]`` after temperature, top-k and top-p; excluded tokens get ``-inf``.

    ``top_k = 0`` and ``top_p >= 1`` switch those filters off; given as Python numbers, a
    switched-off filter costs nothing, while traced JAX scalars are always applied (so that
    changing them does not recompile a jitted sampler). At least the most likely token always
    survives; tokens tied with the last one kept are kept too.

    Notebook: 05_sampling_studio.ipynb

    Example:
        >>> out = filter_logits(jnp.array([1.0, 3.0, 2.0]), top_k=2)
        >>> [bool(x) for x in jnp.isfinite(out)]
        [False, True, True]
    """
    logits = logits.astype(jnp.float32) / temperature
    use_top_k = not (isinstance(top_k, (int, np.integer)) and top_k <= 0)
    use_top_p = not (isinstance(top_p, (int, float, np.floating)) and top_p >= 1.0)
    if not (use_top_k or use_top_p):
        return logits
    vocab = logits.shape[-1]
    ordered = jax.lax.top_k(logits, vocab)[0]          # sorted, most likely first (faster than a sort on CPU)
    if use_top_k:
        top_k = jnp.asarray(top_k, jnp.int32)
        kth = jnp.take(ordered, jnp.clip(top_k - 1, 0, vocab - 1), axis=-1)[..., None]
        off = top_k <= 0
        logits = jnp.where(off | (logits >= kth), logits, -jnp.inf)
        ordered = jnp.where(off | (ordered >= kth), ordered, -jnp.inf)
    if use_top_p:
        probs = jax.nn.softmax(ordered, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs                 # mass of the more likely tokens
        in_nucleus = (before < top_p) & (probs > 0)                 # the first token: 0 < top_p
        cutoff = jnp.min(jnp.where(in_nucleus, ordered, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where((jnp.asarray(top_p) >= 1.0) | (logits >= cutoff), logits, -jnp.inf)
    return logits


def draw_token(key: jax.Array, logits: jax.Array, *, use_kernels: bool = True) -> jax.Array:
    """One token per row of ``logits [..., V]`` (``-inf`` = excluded), drawn from their softmax: int32 ``[...]``.

    The plain draw is ``jax.random.categorical(key, logits)``: it adds a Gumbel variable to every
    logit and takes the arg-max (``V`` random numbers per row). ``use_kernels=True`` (the default)
    draws from the same distribution by inverse-CDF sampling, one uniform number per row
    (:func:`labkit.models.kernels.inverse_cdf_draw`), which is faster; the two give different tokens
    for the same key. A token of probability 0 is never drawn either way.

    Notebook: 05_sampling_studio.ipynb

    Example:
        >>> logits = jnp.array([-jnp.inf, 0.0, -jnp.inf])
        >>> int(draw_token(jax.random.key(0), logits)), int(draw_token(jax.random.key(0), logits, use_kernels=False))
        (1, 1)
    """
    if use_kernels:
        return kernels.inverse_cdf_draw(key, logits)
    return jax.random.categorical(key, logits.astype(jnp.float32), axis=-1).astype(jnp.int32)


def _check_model(model) -> int:
    for name in ("init_carry", "step", "run", "vocab_size"):
        if not hasattr(model, name):
            raise ConfigError(f"sampling needs a labkit melody model (MelodyLSTM, AttentionMelodyLSTM), "
                              f"got {type(model).__name__} without {name!r}")
    return int(model.vocab_size)


def default_primer(encoding: MelodyEncoding | None = None) -> np.ndarray:
    """The primer used when none is given: one note-on of middle C (or the lowest pitch of the range).

    Notebook: 05_sampling_studio.ipynb

    Example:
        >>> default_primer().tolist()
        [41]
    """
    encoding = encoding or MelodyEncoding()
    pitch = DEFAULT_PRIMER_PITCH if encoding.min_pitch <= DEFAULT_PRIMER_PITCH <= encoding.max_pitch \
        else encoding.min_pitch
    return np.asarray([int(encoding.pitch_to_token(pitch))], dtype=np.int32)


def _default_primer_for(vocab_size: int, encoding: MelodyEncoding | None) -> np.ndarray:
    encoding = encoding or MelodyEncoding()
    if encoding.vocab_size != vocab_size:
        raise ConfigError(f"the model has {vocab_size} tokens but the encoding {encoding} has "
                          f"{encoding.vocab_size}: pass the encoding the model was trained with, or a primer")
    return default_primer(encoding)


def primer_from_melody(melody: Melody, encoding: MelodyEncoding | None = None,
                       num_steps: int | None = None) -> np.ndarray:
    """Primer tokens (int32 ``[P]``) from a melody: ``num_steps`` steps (default: all) from its first event.

    Leading no-event steps are dropped first (a primer starting with a hold tells the model
    nothing); raises :class:`EncodingError` when the melody has no event at all or a pitch is
    outside the encoding.

    Notebook: 05_sampling_studio.ipynb

    Example:
        >>> primer_from_melody(Melody.from_notes([60, 62], [0, 2], [2, 4])).tolist()
        [41, 0, 43, 0, 1]
    """
    encoding = encoding or MelodyEncoding()
    if num_steps is not None and num_steps < 1:
        raise ConfigError(f"num_steps must be at least 1, got {num_steps}")
    tokens = encoding.encode(melody)
    first = np.flatnonzero(tokens != NO_EVENT_TOKEN)
    if first.size == 0:
        raise EncodingError("the primer melody has no note-on or note-off",
                            getattr(melody, "source", None) or None)
    tokens = tokens[first[0]:]
    return (tokens if num_steps is None else tokens[:num_steps]).astype(np.int32)


def primer_from_midi(path, encoding: MelodyEncoding | None = None, num_steps: int | None = None,
                     steps_per_quarter: int = 4) -> np.ndarray:
    """Primer tokens from the melody of a MIDI file: its first pitched instrument, made monophonic
    (``labkit.midi_io.read_midi`` then ``labkit.melody.tune_melody``), first ``num_steps`` steps.

    Raises the :class:`~labkit.errors.LabkitError` of those readers for a bad file (naming it),
    and :class:`EncodingError` for pitches outside the encoding's range.

    Notebook: 05_sampling_studio.ipynb
    """
    from labkit import melody as melody_lib
    from labkit import midi_io

    melody = melody_lib.tune_melody(midi_io.read_midi(path), steps_per_quarter=steps_per_quarter)
    return primer_from_melody(melody, encoding, num_steps)


def _primer_batch(primer, num: int, vocab_size: int) -> np.ndarray:
    """Primer as int32 ``[num, P]`` from ``[P]`` (shared) or ``[num, P]``; checks the tokens."""
    primer = np.asarray(primer)
    if primer.size == 0:
        raise ConfigError("the primer is empty; give at least one token (see default_primer)")
    if not np.issubdtype(primer.dtype, np.integer):
        raise EncodingError(f"primer tokens must be integers, got dtype {primer.dtype}")
    if primer.min() < 0 or primer.max() >= vocab_size:
        bad = int(primer.min()) if primer.min() < 0 else int(primer.max())
        raise EncodingError(f"primer token {bad} is outside the model's vocabulary 0..{vocab_size - 1}")
    if primer.ndim == 1:
        return np.broadcast_to(primer.astype(np.int32), (num, primer.shape[0])).copy()
    if primer.ndim == 2 and primer.shape[0] == num:
        return primer.astype(np.int32)
    raise ConfigError(f"primer must be [P] or [{num}, P] tokens, got shape {primer.shape}")


@partial(jax.jit, static_argnames=("graphdef", "length", "use_top_k", "use_top_p", "use_kernels"))
def _sample_jit(graphdef, state, primer, key, temperature, top_k, top_p, *, length, use_top_k, use_top_p,
                use_kernels):
    model = nnx.merge(graphdef, state)
    top_k = top_k if use_top_k else 0          # a Python 0 / 1.0 compiles the filter away
    top_p = top_p if use_top_p else 1.0
    carry, logits = model.run(model.init_carry(primer.shape[0]), primer)
    step = model.step_function()

    def body(loop, step_key):
        carry, logits = loop
        token = draw_token(step_key, filter_logits(logits, temperature, top_k, top_p), use_kernels=use_kernels)
        carry, logits = step(carry, token)
        return (carry, logits), token

    _, tokens = jax.lax.scan(body, (carry, logits[:, -1]), jax.random.split(key, length))
    return jnp.concatenate([primer, tokens.T], axis=1)


def sample(model, config: SampleConfig = SampleConfig(), primer=None, *, key: jax.Array | None = None,
           encoding: MelodyEncoding | None = None, use_kernels: bool | None = None) -> np.ndarray:
    """Sample ``config.num_samples`` continuations of ``primer``.

    Args:
        model: a :class:`~labkit.models.MelodyLSTM` or :class:`~labkit.models.AttentionMelodyLSTM`.
        config: :class:`SampleConfig` (validated here).
        primer: int tokens ``[P]`` (shared by all samples) or ``[N, P]``; default
            :func:`default_primer` (one middle C).
        key: JAX key; default ``jax.random.key(config.seed)``.
        encoding: only for the default primer.
        use_kernels: draw tokens with the inverse-CDF kernel (``True``) or ``jax.random.categorical``
            (``False``; see :func:`draw_token`); default: the model's ``use_kernels`` (``True`` unless
            built with ``make_model(..., use_kernels=False)``).

    Returns int32 ``[N, P + length]``: the primer followed by the generated tokens.

    Notebook: 05_sampling_studio.ipynb

    Example:
        >>> from labkit.models import ModelConfig, make_model
        >>> model = make_model(ModelConfig(embed_dim=8, hidden_size=16, num_layers=1), 0)
        >>> sample(model, SampleConfig(num_samples=2, length=5)).shape
        (2, 6)
    """
    vocab = _check_model(model)
    if not isinstance(config, SampleConfig):
        raise ConfigError(f"sample needs a SampleConfig, got {type(config).__name__}")
    config.validate(vocab)
    primer = _default_primer_for(vocab, encoding) if primer is None else primer
    primer = _primer_batch(primer, int(config.num_samples), vocab)
    key = jax.random.key(int(config.seed)) if key is None else key
    graphdef, state = nnx.split(model)
    tokens = _sample_jit(graphdef, state, primer, key, np.float32(config.temperature), np.int32(config.top_k),
                         np.float32(config.top_p), length=int(config.length),
                         use_top_k=config.top_k > 0, use_top_p=config.top_p < 1.0,
                         use_kernels=bool(getattr(model, "use_kernels", True) if use_kernels is None else use_kernels))
    return np.asarray(tokens)


@partial(jax.jit, static_argnames=("graphdef", "length", "beam_size"))
def _beam_jit(graphdef, state, primer, *, length, beam_size):
    model = nnx.merge(graphdef, state)
    n, k = primer.shape[0], beam_size
    carry, logits = model.run(model.init_carry(n), primer)
    vocab = logits.shape[-1]
    carry = jax.tree_util.tree_map(lambda x: jnp.repeat(x, k, axis=0), carry)       # [N*K, ...]
    log_probs = jnp.repeat(jax.nn.log_softmax(logits[:, -1]), k, axis=0).reshape(n, k, vocab)
    scores = jnp.where(jnp.arange(k) == 0, 0.0, -jnp.inf)[None].repeat(n, axis=0)    # only beam 0 alive

    def body(loop, _):
        carry, log_probs, scores = loop
        candidates = (scores[..., None] + log_probs).reshape(n, k * vocab)
        scores, index = jax.lax.top_k(candidates, k)                                    # sorted, best first
        parent, token = index // vocab, (index % vocab).astype(jnp.int32)
        rows = (jnp.arange(n)[:, None] * k + parent).reshape(-1)
        carry = jax.tree_util.tree_map(lambda x: x[rows], carry)
        carry, logits = model.step(carry, token.reshape(-1))
        log_probs = jax.nn.log_softmax(logits).reshape(n, k, vocab)
        return (carry, log_probs, scores), (parent, token)

    (_, _, scores), (parents, tokens) = jax.lax.scan(body, (carry, log_probs, scores), None, length=length)

    def backtrack(beam, step):                       # from the last step to the first
        parent, token = step
        return jnp.take_along_axis(parent, beam, axis=1), jnp.take_along_axis(token, beam, axis=1)

    start = jnp.broadcast_to(jnp.arange(k), (n, k))
    _, path = jax.lax.scan(backtrack, start, (parents, tokens), reverse=True)          # [L, N, K]
    generated = jnp.transpose(path, (1, 2, 0))
    prefix = jnp.broadcast_to(primer[:, None, :], (n, k, primer.shape[1]))
    return jnp.concatenate([prefix, generated], axis=2), scores


def beam_search(model, primer=None, length: int = 64, beam_size: int = 4, *,
                num_primers: int | None = None, encoding: MelodyEncoding | None = None):
    """The ``beam_size`` most probable continuations of each primer (batched, one compiled program).

    Args:
        model: a labkit melody model.
        primer: int tokens ``[P]`` or ``[N, P]`` (``N`` primers searched at once); default :func:`default_primer`.
        length: tokens generated after the primer.
        beam_size: hypotheses kept per primer (``1`` = greedy arg-max decoding).
        num_primers: ``N`` when ``primer`` is 1-D (default 1).

    Returns ``(tokens, scores)``: int32 ``[N, beam_size, P + length]`` (the primer followed by
    the continuation, best first) and float32 ``[N, beam_size]`` total log-probabilities in nats
    of the continuations. No length normalisation: all continuations have the same length.
    Deterministic: no key.

    Notebook: 05_sampling_studio.ipynb

    Example:
        >>> from labkit.models import ModelConfig, make_model
        >>> model = make_model(ModelConfig(embed_dim=8, hidden_size=16, num_layers=1), 0)
        >>> tokens, scores = beam_search(model, length=6, beam_size=3)
        >>> tokens.shape, bool(scores[0, 0] >= scores[0, 2])
        ((1, 3, 7), True)
    """
    vocab = _check_model(model)
    if not isinstance(length, (int, np.integer)) or isinstance(length, bool) or length < 1:
        raise ConfigError(f"beam_search length must be a positive integer, got {length!r}")
    if not isinstance(beam_size, (int, np.integer)) or not (1 <= beam_size <= vocab):
        raise ConfigError(f"beam_size must be an integer in 1..{vocab} (the vocabulary size), got {beam_size!r}")
    primer = _default_primer_for(vocab, encoding) if primer is None else primer
    primer_array = np.asarray(primer)
    num = primer_array.shape[0] if primer_array.ndim == 2 else (num_primers or 1)
    primer = _primer_batch(primer_array, int(num), vocab)
    graphdef, state = nnx.split(model)
    tokens, scores = _beam_jit(graphdef, state, primer, length=int(length), beam_size=int(beam_size))
    return np.asarray(tokens), np.asarray(scores)


def tokens_to_melodies(tokens, encoding: MelodyEncoding | None = None, **melody_kwargs) -> list[Melody]:
    """One :class:`~labkit.melody.Melody` per row of ``tokens`` ``[N, L]`` (or one for ``[L]``).

    ``melody_kwargs`` (``steps_per_quarter``, ``qpm``, ...) go to every melody.
    A note-off after silence is kept; it is harmless (see the module docstring).

    Notebook: 05_sampling_studio.ipynb

    Example:
        >>> [m.pitches.tolist() for m in tokens_to_melodies([[41, 0, 1, 43]])]
        [[60, 62]]
    """
    encoding = encoding or MelodyEncoding()
    tokens = np.asarray(tokens)
    rows = tokens[None] if tokens.ndim == 1 else tokens
    if rows.ndim != 2:
        raise EncodingError(f"tokens must be [L] or [N, L], got shape {tokens.shape}")
    return [encoding.decode(row, **melody_kwargs) for row in rows]


def tokens_to_sequences(tokens, encoding: MelodyEncoding | None = None, **melody_kwargs) -> list:
    """One ``note_seq.NoteSequence`` per row of ``tokens`` ``[N, L]`` (via ``labkit.melody.melody_to_sequence``).

    ``melody_kwargs`` (``steps_per_quarter``, ``qpm``) set the timing of the sequences.

    Notebook: 05_sampling_studio.ipynb

    Example:
        >>> [len(s.notes) for s in tokens_to_sequences([[41, 0, 1, 43]])]
        [2]
    """
    from labkit.melody import melody_to_sequence

    return [melody_to_sequence(m) for m in tokens_to_melodies(tokens, encoding, **melody_kwargs)]
