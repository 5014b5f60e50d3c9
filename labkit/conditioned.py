"""Generation to order: a melody model conditioned on style, metre and key that writes whole tunes.

folk-rnn (B. L. Sturm, J. F. Santos, O. Ben-Tal and I. Korshunova, "Music transcription modelling and
composition using deep learning", CSMC 2016) learns tunes as token sequences that begin with the
metre and the key (``M:6/8 K:Dmaj``), mark every bar line and end with an end token: asked for a
metre and a key, it writes a whole tune, bar by bar, and stops by itself. This module does the same
with the course's event tokens (:class:`labkit.encoding.MelodyEncoding`: ``0`` hold, ``1`` note-off,
``2 + pitch - 21`` note-on), adding the corpus's style labels as a third condition.

**Tokens** (:class:`ConditionedEncoding`). The first ``90`` tokens are exactly the melody tokens, then::

    BAR1 ... BAR64  END  BEGIN  <style> ... <meter> ... <meter ?>  <key C major> ... <key B minor>  COPY1 ... COPY16

A tune is ``[style, meter, key, BEGIN, BAR1, e0, e1, ..., BAR2, ..., e_n, END]``: the three
conditioning tokens (the *prefix*), ``BEGIN``, then the melody's events with a bar line before
every bar's first step (bars start at step 0: the corpus pads a pickup with a rest; a bar lasts
``numerator * 4 / denominator`` quarters), then ``END``. The bar-line token carries the bar's
number (:data:`NUMBERED_BARS` of them, the last one for every later bar): folk-rnn's tunes are
learned whole, ours in windows of ``seq_len`` tokens, and a numbered bar line tells a window where
in the tune it is, so that the model learns where phrases cadence and when a tune ends (after 8,
16, 32 bars), which a plain bar line cut out of context cannot tell it.

**Copy tokens.** Folk tunes repeat themselves: a strain is played twice, a bar comes back two or four
bars on (in the training split, 51% of the fiddle tunes' bars and 37% of the Irish tunes' repeat a bar 1, 2, 4,
8 or 16 bars before them). An LSTM writing note after note almost never repeats a whole bar exactly
(the first conditioned models: 1% of bars), and the style model hears the difference. So a bar equal to the bar ``k``
bars before it (``k`` in :data:`COPY_LAGS`) is written ``BAR, COPY k`` and then its events, as folk-rnn
writes repeat signs (``|:`` ... ``:|``) instead of the strain twice: the model decides *that* a bar
repeats, one token, and the sampler writes the copied events, which the model reads but is never
trained to predict (:meth:`ConditionedEncoding.forced`). The encoder chooses the lag of the bar before
when it fits (a strain repeated), else the longest that fits.

**Heard at every step.** The shipped model is a :class:`labkit.models.ConditionedMelodyLSTM`
(``ModelConfig.condition_tokens = 3``): the embeddings of the three conditioning tokens are added to
every input, so the style is never left to the LSTM's memory of a prefix read hundreds of steps
before (read once, the prefix's style faded: the style model called 12% of the generated chorales
chorales and 60% of the Irish tunes Irish; heard at every step, 60% and 100%). Three more choices, each measured with ``benchmarks/conditioned_table.py`` (50 tunes
per style; the tables are in benchmarks/README.md, "Generation to order"): training windows of 320 tokens,
which hold most tunes whole; windows drawn with weight ``n_style ** -STYLE_BALANCE`` (1.0: every style as
often as any other) per tune, so that the small styles (chorales, fiddle tunes) are not drowned by the German songs; and window starts drawn
by :func:`window_start`, so that a long tune's ``END`` is in a window as often as its middle (drawn
uniformly, a 600-token tune showed its end in about one window in 280, and the model stopped ending long tunes).
``restate_bars = k`` (off) states the three conditioning tokens again after every ``k``-th bar line
(inputs only; forced when sampling): it raised the agreement less than hearing the conditions at every step. A tune whose metre is missing or rare
gets the metre token ``?`` and no bar lines. Keys are a tonic and major/minor (24 tokens; the
church modes of the manifest go by the quality of their third: dorian -> minor, mixolydian -> major).

Why a prefix and a vector made of it: the prefix can be read in a token listing and is folk-rnn's
own design, and the conditioning vector is the sum of the prefix tokens' own embeddings, so the model
has no parameter more than a :class:`labkit.models.MelodyLSTM` with the larger vocabulary, and
checkpoints and training are reused unchanged. Training windows (``seq_len`` tokens) are cut anywhere in the tune and the prefix is put in
front of every window, so the model always sees what it is asked for; ``BEGIN`` tells a window
that starts with the tune from one cut in the middle. The prefix's own tokens are inputs, never
targets (their mask is 0). Transposition augmentation moves the key token with the melody.

**Sampling** (:func:`sample_to_order`) feeds the prefix and ``BEGIN``, then draws token after
token (temperature, top-k, top-p as :mod:`labkit.sample`) in one compiled ``lax.scan``, with
the grammar enforced, not left to chance: where a bar is full only ``BAR`` or ``END`` may come, and
``BAR`` nowhere else (so bar lines always fall where the metre puts them), ``COPY k`` only right after the
line of a bar that has ``k`` bars before it, and then the bar ``k`` back is copied event by event;
conditioning tokens and ``BEGIN`` are never drawn, and the tune stops at the first ``END`` (or at the length cap, reported as not
ended). Nothing is selected or reranked afterwards.

Two choices of the sampler, measured with ``benchmarks/conditioned_table.py`` (benchmarks/README.md):
**guidance** (:func:`guided_logits`, default :data:`DEFAULT_GUIDANCE`): the model also runs under every
other style, and each token's log-probability under the style asked for is pushed away from the mixture
of all styles, which makes a tune more recognisably of its style (the model's own belief that it is);
only the pitches the style's own distribution finds plausible (:data:`DEFAULT_PLAUSIBILITY`) may win.
**A temperature on pitch only** (:func:`temper_pitch`, ``temper="pitch"``): in step tokens a hold is the
likeliest token at most steps, so a temperature below 1 over every token makes every note longer (the
German 4/4 tunes' inter-onset intervals drifted from the real ones); the temperature shapes which pitch
begins a note, and when notes begin and end is drawn as the model has it.

**The shipped model** (``labkit/assets/melody_conditioned.npz`` and ``.json``, trained by
:func:`train_conditioned_model`, ``make model``) learns every corpus style (the folk styles and the
chorale sopranos); its ``.json`` records the test-split cross-entropy next to the unconditioned
shipped model's on the same tunes (bits per melody event; the conditioned model is also charged
for its ``BAR``/``END`` tokens in ``bits_per_event_all``), and each style's typical metre and key
(the defaults of ``generate --style``).

Notebook: 09_judging_generated_music.ipynb
"""
from __future__ import annotations

import json
import math
import os
import platform
import re
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from labkit._common import KEY_TONIC_NAMES, MAX_SEED, atomic_write
from labkit.data import MelodySet, pad_batch
from labkit.encoding import MelodyEncoding
from labkit.errors import CheckpointError, ConfigError, EncodingError
from labkit.melody import DEFAULT_QPM, Melody
from labkit.models import ModelConfig
from labkit.train import AUGMENT_SEMITONES, TrainConfig

#: Every style label of the corpus, the conditions the shipped model knows.
CONDITIONED_STYLES: tuple[str, ...] = ("chinese", "chorale", "fiddle", "german", "irish", "lorraine",
                                       "luxembourg", "scottish")
#: Metres with a token (each at least 7 tunes in the corpus); any other metre gets the token ``?``.
CONDITIONED_METERS: tuple[str, ...] = ("2/4", "3/4", "4/4", "2/2", "3/8", "6/8", "9/8", "12/8", "6/4", "3/2",
                                       "4/2", "4/1", "3/1", "6/2")
UNKNOWN_METER = "?"
#: Modes of the manifest's keys, by the quality of their third.
MODE_QUALITY = {"major": "major", "ionian": "major", "mixolydian": "major", "lydian": "major",
                "minor": "minor", "aeolian": "minor", "dorian": "minor", "phrygian": "minor",
                "locrian": "minor"}
#: Bar-line tokens: ``BAR1`` .. ``BAR64`` (every bar after the 63rd gets the last one).
NUMBERED_BARS = 64
#: Copy tokens: ``COPY k`` after a bar line says "this bar is bar ``n - k`` again", for these ``k``.
COPY_LAGS: tuple[int, ...] = (1, 2, 4, 8, 16)
#: File names of the shipped conditioned model, in ``labkit/assets``.
SHIPPED_CONDITIONED_FILE = "melody_conditioned.npz"
#: :func:`sample_to_order`'s default guidance towards the style asked for (:func:`guided_logits`).
DEFAULT_GUIDANCE = 2.0
#: With guidance, only tokens at least this share as likely as the style's most likely one may be drawn.
DEFAULT_PLAUSIBILITY = 0.1
#: What the temperature shapes when sampling to order: ``"pitch"`` (:func:`temper_pitch`) or ``"all"`` tokens.
DEFAULT_TEMPER = "pitch"
#: The guidance on the rhythm (and copies, the end) is this share of the guidance on pitch.
DEFAULT_RHYTHM_SHARE = 1.0
#: Guidance's contrast weighs each style by exp(this x its log-likelihood of the tune so far); 0: equal weights.
DEFAULT_POSTERIOR = 0.2
#: The longest tune :func:`sample_to_order` writes by default, in steps (64 bars of 4/4).
DEFAULT_MAX_STEPS = 1024

_TONICS = {name.lower(): i for i, name in enumerate(KEY_TONIC_NAMES)}
_TONICS.update({"db": 1, "d#": 3, "e#": 5, "fb": 4, "gb": 6, "g#": 8, "a#": 10, "cb": 11, "b#": 0})


def parse_key(text: str) -> tuple[int, str]:
    """``(tonic pitch class 0..11, "major" | "minor")`` of a key name.

    Accepts ``D``, ``D major``, ``Dmaj``, ``Dm``, ``D minor``, ``F#m``, ``Bb``, ``A dorian`` (a mode
    goes by its third); case does not matter. Raises :class:`ConfigError` for anything else.

    Notebook: 09_judging_generated_music.ipynb

    Example:
        >>> parse_key("D"), parse_key("F#m"), parse_key("Bb major"), parse_key("A dorian")
        ((2, 'major'), (6, 'minor'), (10, 'major'), (9, 'minor'))
    """
    match = re.fullmatch(r"\s*([A-Ga-g][#b]?)\s*(m|maj|min|[a-z]+)?\s*", str(text))
    if not match or match.group(1).lower() not in _TONICS:
        raise ConfigError(f"{text!r} is not a key name: give a tonic C, C#, Db, D, ..., B, then optionally "
                          "major/minor or m (e.g. D, F#m, Bb major, A minor)")
    tonic = _TONICS[match.group(1).lower()]
    mode = (match.group(2) or "major").lower()
    mode = {"m": "minor", "min": "minor", "maj": "major"}.get(mode, mode)
    if mode not in MODE_QUALITY:
        raise ConfigError(f"{text!r} is not a key name: the mode {mode!r} is none of "
                          f"{', '.join(sorted(MODE_QUALITY))} (or m)")
    return tonic, MODE_QUALITY[mode]


def key_name(tonic: int, mode: str) -> str:
    """``"Eb major"``: the name of a key.

    >>> key_name(3, "major"), key_name(9, "minor")
    ('Eb major', 'A minor')
    """
    return f"{KEY_TONIC_NAMES[int(tonic) % 12]} {mode}"


def parse_meter(text: str) -> tuple[int, int]:
    """``(numerator, denominator)`` of ``"N/D"`` (``D`` a power of two, both positive); else ConfigError.

    >>> parse_meter("6/8")
    (6, 8)
    """
    match = re.fullmatch(r"\s*(\d{1,2})\s*/\s*(\d{1,2})\s*", str(text))
    if not match or int(match.group(1)) < 1 or int(match.group(2)) not in (1, 2, 4, 8, 16):
        raise ConfigError(f"{text!r} is not a metre: write N/D, like 6/8 or 4/4 (D one of 1, 2, 4, 8, 16)")
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True)
class ConditionedEncoding:
    """Tokens of whole tunes with a conditioning prefix, bar lines and an end (see the module docstring).

    Attributes:
        styles: the style labels, in token order.
        meters: the metres ``"N/D"`` with a token of their own (then one for ``?``, any other metre).
        min_pitch, max_pitch: the melody tokens' pitch range (as :class:`MelodyEncoding`).
        steps_per_quarter: the grid, needed to place the bar lines.
        restate_bars: the conditioning tokens follow the bar line before bars ``1 + k * restate_bars``
            (k >= 1) again; ``0``: never.
        copy_lags: the lags ``k`` of the copy tokens (``()``: none): a bar equal to the bar ``k`` bars before it
            is written ``BAR, COPY k`` and then its events, which are forced (see :meth:`body`).

    Notebook: 09_judging_generated_music.ipynb

    Example:
        >>> enc = ConditionedEncoding(styles=("irish",), meters=("6/8",), copy_lags=())
        >>> enc.vocab_size, enc.bar, enc.end
        (183, 90, 154)
        >>> tokens = enc.encode(Melody.from_notes([62, 66], [0, 6], [6, 12], numerator=6, denominator=8, key=2),
        ...                     "irish")
        >>> tokens.tolist()
        [156, 157, 161, 155, 90, 43, 0, 0, 0, 0, 0, 47, 0, 0, 0, 0, 0, 91, 1, 154]
        >>> m, info = enc.decode(tokens)
        >>> m.pitches.tolist(), (m.numerator, m.denominator, m.key, m.mode), info["style"], info["ended"]
        ([62, 66], (6, 8, 2, 'major'), 'irish', True)
    """

    styles: tuple[str, ...] = CONDITIONED_STYLES
    meters: tuple[str, ...] = CONDITIONED_METERS
    min_pitch: int = 21
    max_pitch: int = 108
    steps_per_quarter: int = 4
    restate_bars: int = 0
    copy_lags: tuple[int, ...] = COPY_LAGS

    def __post_init__(self):
        object.__setattr__(self, "styles", tuple(self.styles))
        object.__setattr__(self, "meters", tuple(self.meters))
        object.__setattr__(self, "copy_lags", tuple(int(k) for k in self.copy_lags))
        if any(k < 1 for k in self.copy_lags) or len(set(self.copy_lags)) != len(self.copy_lags):
            raise ConfigError(f"copy_lags must be distinct whole numbers of bars >= 1, got {self.copy_lags}")
        if self.copy_lags and self.restate_bars:
            raise ConfigError("restate_bars and copy_lags cannot be combined: give one of them")
        for meter in self.meters:
            parse_meter(meter)
        if len(set(self.styles)) != len(self.styles) or not self.styles:
            raise ConfigError(f"styles must be distinct and at least one, got {self.styles}")

    # --- layout -----------------------------------------------------------------------------
    @property
    def melody(self) -> MelodyEncoding:
        return MelodyEncoding(self.min_pitch, self.max_pitch)

    @property
    def bar(self) -> int:
        """The first bar line's token (``BAR1``); bar ``k`` (1-based) is :meth:`bar_token`."""
        return self.melody.vocab_size

    def bar_token(self, number) -> int:
        """The bar line before bar ``number`` (1-based; numbers past :data:`NUMBERED_BARS` share the last)."""
        return self.bar + np.minimum(number, NUMBERED_BARS) - 1

    @property
    def end(self) -> int:
        return self.bar + NUMBERED_BARS

    @property
    def begin(self) -> int:
        return self.end + 1

    def style_token(self, style: str) -> int:
        if style not in self.styles:
            raise ConfigError(f"unknown style {style!r}; the model knows {', '.join(self.styles)}")
        return self.begin + 1 + self.styles.index(style)

    def meter_token(self, meter: str) -> int:
        """The metre's token; ``?`` (or a metre without a token, in :meth:`encode`) is the last metre token."""
        base = self.begin + 1 + len(self.styles)
        if meter == UNKNOWN_METER:
            return base + len(self.meters)
        if meter not in self.meters:
            raise ConfigError(f"unknown metre {meter!r}; the model knows {', '.join(self.meters)}")
        return base + self.meters.index(meter)

    def key_token(self, tonic: int, mode: str) -> int:
        return self.begin + 2 + len(self.styles) + len(self.meters) + int(tonic) % 12 + 12 * (mode == "minor")

    @property
    def copy_base(self) -> int:
        """The first copy token (``COPY copy_lags[0]``); the copy tokens are the last of the vocabulary."""
        return self.key_token(0, "major") + 24

    def copy_token(self, lag: int) -> int:
        if lag not in self.copy_lags:
            raise ConfigError(f"no copy token for a lag of {lag} bars; this encoding has {self.copy_lags}")
        return self.copy_base + self.copy_lags.index(lag)

    @property
    def vocab_size(self) -> int:
        return self.copy_base + len(self.copy_lags)

    def bar_steps(self, meter: str) -> int:
        """Steps per bar of a metre (0 for ``?``: no bar lines)."""
        if meter == UNKNOWN_METER:
            return 0
        num, den = parse_meter(meter)
        steps = num * 4 * self.steps_per_quarter / den
        if steps != int(steps):
            raise ConfigError(f"a bar of {meter} is not a whole number of steps at {self.steps_per_quarter} per quarter")
        return int(steps)

    # --- encode / decode -----------------------------------------------------------------------
    def prefix(self, style: str, meter: str, tonic: int, mode: str) -> np.ndarray:
        """The conditioning tokens and ``BEGIN``: int32 ``[4]``."""
        return np.array([self.style_token(style), self.meter_token(meter), self.key_token(tonic, mode),
                         self.begin], dtype=np.int32)

    def restates(self, number) -> bool:
        """Whether the conditioning tokens follow the bar line before bar ``number`` (1-based)."""
        return bool(self.restate_bars) and number > 1 and (number - 1) % self.restate_bars == 0

    def copy_lag(self, bars: list, n: int, previous: int = 0) -> int:
        """The copy token's lag for bar ``n`` (0-based) of ``bars`` (each bar's event tokens), 0 for none.

        A whole bar equal to the bar ``k`` bars before it, for ``k`` in :attr:`copy_lags`, is a copy: of the
        lag ``previous`` (the bar before was a copy with that lag, as in a repeated strain) when it fits, else
        of the longest lag that fits (a strain repeated 8 bars on, rather than a bar repeated 4 bars on).
        """
        bar = bars[n]
        if len(bar) != len(bars[0]):                    # the last bar, cut short: never a copy
            return 0
        fits = [k for k in self.copy_lags if k <= n and np.array_equal(bars[n - k], bar)]
        if not fits:
            return 0
        return previous if previous in fits else max(fits)

    def body(self, events: np.ndarray, meter: str, conditions=None) -> np.ndarray:
        """``[BAR1, e0, ..., BAR2, ..., END]``: the melody tokens of ``events``, a numbered bar line before each bar,
        the three ``conditions`` tokens (style, metre, key) after every :meth:`restates` bar line, and after
        the bar line of a whole bar that repeats an earlier one (:meth:`copy_lag`) its copy token, before
        its events (the events stay: a model reads them, but they are forced, never targets, :meth:`forced`)."""
        tokens = self.melody.encode(np.asarray(events, dtype=np.int32))
        step = self.bar_steps(meter)
        if not step:
            return np.append(tokens, self.end).astype(np.int32)
        bars = [tokens[first:first + step] for first in range(0, len(tokens), step)]
        pieces, lag = [], 0
        for n, bar in enumerate(bars):
            pieces.append([int(self.bar_token(n + 1))])
            if self.restates(n + 1):
                if conditions is None:
                    raise ConfigError("this encoding restates the conditions: body() needs them")
                pieces.append(np.asarray(conditions, dtype=np.int32)[:3])
            lag = self.copy_lag(bars, n, lag) if self.copy_lags else 0
            if lag:
                pieces.append([self.copy_token(lag)])
            pieces.append(bar)
        pieces.append([self.end])
        return np.concatenate(pieces).astype(np.int32)

    def forced(self, tokens) -> np.ndarray:
        """Bool per token of a token row: a melody event of a copied bar (after a copy token, before the next bar
        line or ``END``), which the copy token decides, so it is never a training target.

        >>> enc = ConditionedEncoding(styles=("irish",), meters=("2/4",), steps_per_quarter=1, copy_lags=(1, 2))
        >>> body = enc.body(np.array([60, 62, 60, 62, 64]), "2/4")      # bars C D | C D | E
        >>> body.tolist() == [enc.bar_token(1), 41, 43, enc.bar_token(2), enc.copy_token(1), 41, 43,
        ...                   enc.bar_token(3), 45, enc.end]
        True
        >>> enc.forced(body).astype(int).tolist()
        [0, 0, 0, 0, 0, 1, 1, 0, 0, 0]
        """
        tokens = np.asarray(tokens)
        marker = ((tokens >= self.bar) & (tokens <= self.end)) | (tokens >= self.copy_base)
        last = np.maximum.accumulate(np.where(marker, np.arange(len(tokens)), -1))
        return (tokens < self.bar) & (last >= 0) & (tokens[np.maximum(last, 0)] >= self.copy_base)

    def meter_of(self, numerator: int, denominator: int) -> str:
        """The metre name a melody's time signature gets: ``"N/D"`` if it has a token, else ``?``."""
        meter = f"{numerator}/{denominator}"
        return meter if meter in self.meters else UNKNOWN_METER

    def encode(self, melody: Melody, style: str) -> np.ndarray:
        """A whole tune: ``prefix + BEGIN + body`` (int32), metre and key from the melody's fields."""
        meter = self.meter_of(melody.numerator, melody.denominator)
        conditions = self.prefix(style, meter, melody.key, melody.mode)[:3]
        return np.concatenate([conditions, [self.begin], self.body(melody.events, meter, conditions)]).astype(np.int32)

    def decode(self, tokens, *, qpm: float = DEFAULT_QPM, source: str = "") -> tuple[Melody, dict]:
        """``(melody, info)`` of a token row: condition tokens set the melody's fields, ``BAR`` and
        ``BEGIN`` are dropped, the tune stops at the first ``END``.

        ``info``: ``{"style", "meter", "key", "ended" (an END was found), "bars" (bar-line tokens), "copies"
        (copy tokens: the copied bars' events are in the row)}``.
        """
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise EncodingError(f"token outside 0..{self.vocab_size - 1}")
        style_base = self.begin + 1
        meter_base = style_base + len(self.styles)
        key_base = meter_base + len(self.meters) + 1
        info = {"style": None, "meter": UNKNOWN_METER, "key": None, "ended": False, "bars": 0, "copies": 0}
        tonic, mode = 0, "major"
        kept = []
        for t in tokens.tolist():
            if t < self.bar:
                kept.append(t)
            elif t < self.end:
                info["bars"] += 1
            elif t == self.end:
                info["ended"] = True
                break
            elif t >= self.copy_base:
                info["copies"] += 1
            elif style_base <= t < meter_base:
                info["style"] = self.styles[t - style_base]
            elif meter_base <= t < key_base:
                index = t - meter_base
                info["meter"] = self.meters[index] if index < len(self.meters) else UNKNOWN_METER
            elif key_base <= t < self.copy_base:
                tonic, mode = (t - key_base) % 12, ("minor" if t - key_base >= 12 else "major")
                info["key"] = key_name(tonic, mode)
        num, den = parse_meter(info["meter"]) if info["meter"] != UNKNOWN_METER else (4, 4)
        melody = self.melody.decode(np.array(kept, dtype=np.int32), steps_per_quarter=self.steps_per_quarter,
                                    qpm=float(qpm), key=tonic, mode=mode, numerator=num, denominator=den,
                                    source=source)
        return melody, info

    def to_dict(self) -> dict:
        return {"styles": list(self.styles), "meters": list(self.meters), "min_pitch": self.min_pitch,
                "max_pitch": self.max_pitch, "steps_per_quarter": self.steps_per_quarter,
                "restate_bars": self.restate_bars, "copy_lags": list(self.copy_lags)}

    @classmethod
    def from_dict(cls, d: dict) -> "ConditionedEncoding":
        return cls(styles=tuple(d["styles"]), meters=tuple(d["meters"]), min_pitch=int(d["min_pitch"]),
                   max_pitch=int(d["max_pitch"]), steps_per_quarter=int(d["steps_per_quarter"]),
                   restate_bars=int(d.get("restate_bars", 0)), copy_lags=tuple(d.get("copy_lags", ())))


# =====================================================================================
# Training data: the corpus's tunes with their style, metre and key.
# =====================================================================================

@dataclass(frozen=True)
class ConditionedTunes:
    """Tunes ready for training: per tune its prefix (int32 ``[3]``: style, metre, key) and body tokens.

    ``tonic`` / ``mode_minor`` are kept apart so that transposition can move the key token.
    """

    encoding: ConditionedEncoding
    prefixes: list
    bodies: list
    tonics: np.ndarray
    minor: np.ndarray
    styles: np.ndarray
    meters: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.bodies)


def corpus_tunes(mels: MelodySet, encoding: ConditionedEncoding, root=None, *, manifest=None) -> ConditionedTunes:
    """The tunes of ``mels`` (from :func:`labkit.data.load_melodies`) with the manifest's metre and key.

    A missing or rare metre gets ``?`` (no bar lines); a missing key is estimated
    (:func:`labkit.melody.estimate_key`); styles the encoding does not know are left out.

    Notebook: 09_judging_generated_music.ipynb
    """
    from labkit.corpus import load_manifest
    from labkit.melody import estimate_key

    manifest = load_manifest(root) if manifest is None else manifest
    rows = manifest.set_index("id")[["meter", "key"]].to_dict("index")
    keep = [i for i in range(len(mels)) if mels.styles[i] in encoding.styles]
    prefixes, bodies, tonics, minor, meters = [], [], [], [], []
    for i in keep:
        events = mels.events_of(i)
        row = rows.get(str(mels.ids[i]), {"meter": "", "key": ""})
        meter = row["meter"] if row["meter"] in encoding.meters else UNKNOWN_METER
        try:
            tonic, mode = parse_key(row["key"])
        except ConfigError:
            tonic, mode = estimate_key(mels.melody(i))[:2]
        prefixes.append(encoding.prefix(str(mels.styles[i]), meter, tonic, mode)[:3])
        bodies.append(encoding.body(events, meter, prefixes[-1]))
        tonics.append(tonic)
        minor.append(mode == "minor")
        meters.append(meter)
    return ConditionedTunes(encoding, prefixes, bodies, np.array(tonics, np.int32), np.array(minor, bool),
                            mels.styles[keep], np.array(meters, dtype=str), mels.ids[keep])


def _shift_range(body: np.ndarray, encoding: ConditionedEncoding, max_semitones: int) -> tuple[int, int]:
    pitched = body[(body >= 2) & (body < encoding.bar)]
    if not pitched.size or max_semitones == 0:
        return 0, 0
    lo = max(-max_semitones, 2 - int(pitched.min()))
    hi = min(max_semitones, encoding.bar - 1 - int(pitched.max()))
    return (lo, hi) if lo <= hi else (0, 0)


def tune_row(tunes: ConditionedTunes, i: int, *, shift: int = 0, start: int = 0,
             length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tokens and mask of tune ``i``: its prefix (transposed by ``shift``), then ``length`` body tokens
    from ``start`` (all when None). The mask is 0 on the conditioning tokens and on the events of copied
    bars (:meth:`ConditionedEncoding.forced`; never a target), 1 elsewhere.

    Notebook: 09_judging_generated_music.ipynb
    """
    enc = tunes.encoding
    body = tunes.bodies[i]
    forced = enc.forced(body) if enc.copy_lags else np.zeros(len(body), bool)
    stop = len(body) if length is None else start + length
    body, forced = body[start:stop], forced[start:stop]
    prefix = tunes.prefixes[i].copy()
    if shift:
        new_key = enc.key_token(tunes.tonics[i] + shift, "minor" if tunes.minor[i] else "major")
        body = np.where((body >= 2) & (body < enc.bar), body + shift, np.where(body == prefix[2], new_key, body))
        prefix[2] = new_key
    tokens = np.concatenate([prefix, body]).astype(np.int32)
    mask = np.ones(len(tokens), np.float32)
    mask[:3] = 0.0
    mask[3:][(body > enc.begin) & (body < enc.copy_base)] = 0.0
    mask[3:][forced] = 0.0
    return tokens, mask


def _batch(rows, width=None) -> dict:
    batch = pad_batch([r[0] for r in rows], width)
    for j, (_, mask) in enumerate(rows):
        batch["mask"][j, :len(mask)] = mask
    return batch


def window_start(rng: np.random.Generator, length: int, window: int) -> int:
    """Where a training window of ``window`` tokens starts in a tune body of ``length`` tokens.

    ``clip(u, 0, length - window)`` with ``u`` uniform on ``-(window - 1) .. length - 1``: every token, the
    first and the last (``END``) included, lies in a window about equally often. (A start uniform on
    ``0 .. length - window`` puts a long tune's ``END`` in one window out of ``length - window + 1``, and a
    model trained so rarely learns to end a long tune.)

    Notebook: 09_judging_generated_music.ipynb

    Example:
        >>> rng = np.random.default_rng(0)
        >>> starts = [window_start(rng, 600, 200) for _ in range(4000)]
        >>> min(starts), max(starts), bool(0.2 < np.mean([s == 400 for s in starts]) < 0.3)
        (0, 400, True)
    """
    if length <= window:
        return 0
    return int(np.clip(rng.integers(-(window - 1), length), 0, length - window))


#: Training windows are drawn with weight ``n_style ** -STYLE_BALANCE`` per tune (the shipped model: 1.0,
#: every style as often as any other);
#: 0: every tune once per epoch, shuffled (see the module docstring).
STYLE_BALANCE = 1.0


def train_batches(tunes: ConditionedTunes, config: TrainConfig, augment_semitones: int = AUGMENT_SEMITONES,
                  balance: float = STYLE_BALANCE):
    """``epoch -> batches`` for :func:`labkit.train.fit`: per tune a window of ``seq_len - 2`` body tokens at
    a random place (the tune's start included), its prefix in front, the whole transposed by a random shift
    of up to ``augment_semitones`` (key token with it). An epoch draws as many windows as there are tunes,
    tune ``i`` with probability proportional to ``n_style(i) ** -balance`` (``0``: every tune once, shuffled).
    Deterministic in ``config.seed`` and the epoch.

    Notebook: 09_judging_generated_music.ipynb
    """
    window = config.seq_len + 1 - 3
    _, inverse, counts = np.unique(tunes.styles, return_inverse=True, return_counts=True)
    weights = counts[inverse].astype(np.float64) ** -float(balance)
    weights /= weights.sum()

    def source(epoch: int):
        rng = np.random.default_rng([config.seed, epoch, 31])
        order = rng.choice(len(tunes), size=len(tunes), p=weights) if balance else rng.permutation(len(tunes))
        for first in range(0, len(order) - config.batch_size + 1, config.batch_size):
            rows = []
            for i in order[first:first + config.batch_size]:
                body = tunes.bodies[i]
                start = window_start(rng, len(body), window)
                lo, hi = _shift_range(body, tunes.encoding, augment_semitones)
                rows.append(tune_row(tunes, i, shift=int(rng.integers(lo, hi + 1)), start=start, length=window))
            yield _batch(rows, config.seq_len + 1)
    return source


def valid_batches(tunes: ConditionedTunes, config: TrainConfig, max_tunes: int | None = 384) -> list:
    """Validation batches: the prefix and the first ``2 * seq_len - 2`` body tokens of each tune, unaltered.

    Notebook: 09_judging_generated_music.ipynb
    """
    index = np.arange(len(tunes))
    if max_tunes is not None and len(tunes) > max_tunes:
        index = np.sort(np.random.default_rng([config.seed, 7]).permutation(len(tunes))[:max_tunes])
    rows = [tune_row(tunes, int(i), length=2 * config.seq_len - 2) for i in index]
    return [_batch(rows[j:j + config.batch_size]) for j in range(0, len(rows), config.batch_size)]


@partial(jax.jit, static_argnames=("graphdef",))
def _nll_jit(graphdef, state, tokens):
    model = nnx.merge(graphdef, state)
    logp = jax.nn.log_softmax(model(tokens[:, :-1]).astype(jnp.float32), axis=-1)
    nll = -jnp.sum(jax.nn.one_hot(tokens[:, 1:], logp.shape[-1], dtype=logp.dtype) * logp, axis=-1)
    hit = jnp.argmax(logp, axis=-1) == tokens[:, 1:]
    return nll, hit


def conditioned_scores(model, tunes: ConditionedTunes, *, batch_size: int = 32) -> dict:
    """Cross-entropy of a conditioned model on whole tunes, comparable with :func:`labkit.train.split_scores`.

    ``bits_per_event``: the bits the model spends on the melody events, every event after each tune's first
    (as ``split_scores`` scores the unconditioned model: the same events), divided by their count; the
    events of a copied bar are forced, and paid for by their copy token's bits, which are counted here.
    ``bits_per_event_all``: all the bits the model spends on the tune (those, the first event, every ``BAR``
    and the ``END``) divided by the same count of events, the stricter figure. ``accuracy``: arg-max hits
    on the events the model draws (copied bars' events left out).

    Notebook: 09_judging_generated_music.ipynb
    """
    enc = tunes.encoding
    graphdef, state = nnx.split(model)
    order = np.argsort([len(b) for b in tunes.bodies], kind="stable")
    events_bits = all_bits = 0.0
    events = hits = drawn = 0
    for first in range(0, len(order), batch_size):
        rows = [tune_row(tunes, int(i)) for i in order[first:first + batch_size]]
        width = max(len(r[0]) for r in rows)
        width = int(math.ceil(width / 64) * 64) + 1
        batch = _batch(rows, width)
        nll, hit = (np.asarray(a) for a in _nll_jit(graphdef, state, jnp.asarray(batch["tokens"])))
        targets, mask = batch["tokens"][:, 1:], batch["mask"][:, 1:]
        is_event = (targets < enc.bar) & (mask > 0)
        first_event = np.zeros_like(is_event)
        has = is_event.any(axis=1)
        first_event[np.flatnonzero(has), np.argmax(is_event, axis=1)[has]] = True
        scored = is_event & ~first_event
        is_copy = (targets >= enc.copy_base) & (mask > 0)
        events_bits += float((nll * (scored | is_copy)).sum())
        all_bits += float((nll * (mask > 0)).sum())
        events += sum(int((row[0][3:] < enc.bar).sum()) - 1 for row in rows if (row[0][3:] < enc.bar).any())
        hits += int((hit & scored).sum())
        drawn += int(scored.sum())
    ln2 = math.log(2)
    return {"bits_per_event": events_bits / ln2 / max(events, 1), "bits_per_event_all": all_bits / ln2 / max(events, 1),
            "accuracy": hits / max(drawn, 1), "events": events, "tunes": len(tunes)}


# =====================================================================================
# Sampling to order.
# =====================================================================================

def guided_logits(logits, guidance, log_weights=None):
    """Log-probabilities ``[N, V]`` of the style asked for, pushed away from the other styles.

    ``logits [N, S, V]``: the model's logits for each tune under the style asked for (``[:, 0]``) and
    under each other style of the encoding (``S`` styles in all), the same tokens read.
    With ``log p_s`` their log-softmax and ``log p`` the mixture ``log mean_s p_s`` (a tune of any style),
    the result is ``log p_0 + guidance * (log p_0 - log p)``: by Bayes' rule ``log p_0(x) - log p(x)`` is
    ``log P(style | x)`` up to a constant, the model's own belief that what it writes is in the style asked
    for, so ``guidance > 0`` favours the tokens that make the tune more recognisably of its style
    (classifier-free guidance: J. Ho and T. Salimans 2022; for music, MusicGen, Copet et al. 2023).
    ``guidance = 0`` is plain sampling. Not normalised: :func:`labkit.sample.filter_logits` follows.
    ``log_weights [N, S]`` (log-weights summing to 1 per tune): the mixture's weights, equal by default;
    :func:`sample_to_order` passes its belief in each style given the tune so far (its ``posterior``).

    >>> two = jnp.log(jnp.array([[[0.5, 0.5], [0.9, 0.1]]]))      # the asked style is even, the other is not
    >>> [round(float(x), 2) for x in jax.nn.softmax(guided_logits(two, 1.0))[0]]
    [0.3, 0.7]
    """
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    if log_weights is None:
        mixture = jax.nn.logsumexp(logp, axis=1) - jnp.log(logp.shape[1])
    else:
        mixture = jax.nn.logsumexp(logp + log_weights[:, :, None], axis=1)
    return logp[:, 0] + guidance * (logp[:, 0] - mixture)


def with_pitches(logits, pitch_logits, *, first: int, stop: int):
    """Log-probabilities ``[N, V]``: every token as ``logits`` has it, the choice among the note-ons
    (tokens ``first .. stop - 1``) as ``pitch_logits`` has it.

    The note-ons keep their total probability under ``logits`` (that a note begins now) and share it in
    proportion to ``exp(pitch_logits)``; holds, note-offs, bar lines, copies and ``END`` keep theirs.
    Where no note-on is allowed (all ``-inf``), ``logits`` is returned normalised, with no NaN.

    >>> rhythm = jnp.log(jnp.array([[0.5, 0.1, 0.3, 0.1]]))          # hold, note-off, two note-ons
    >>> pitch = jnp.log(jnp.array([[0.0, 0.0, 0.2, 0.8]]))
    >>> [round(float(x), 3) for x in jnp.exp(with_pitches(rhythm, pitch, first=2, stop=4))[0]]
    [0.5, 0.1, 0.08, 0.32]
    """
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    on = (jnp.arange(logp.shape[-1]) >= first) & (jnp.arange(logp.shape[-1]) < stop)
    onset = jax.nn.logsumexp(jnp.where(on, logp, -jnp.inf), axis=-1, keepdims=True)     # log P(a note begins)
    pitch = jnp.where(on, pitch_logits.astype(jnp.float32), -jnp.inf)
    any_on = jnp.isfinite(onset) & jnp.isfinite(jnp.max(pitch, axis=-1, keepdims=True))
    pitch = jax.nn.log_softmax(jnp.where(any_on, pitch, 0.0), axis=-1)
    return jnp.where(on & any_on, jnp.where(any_on, onset, 0.0) + pitch, logp)


def temper_pitch(logits, temperature, *, first: int, stop: int, own=None, plausibility=0.0):
    """Log-probabilities ``[N, V]`` with the temperature applied to the choice of pitch only.

    Tokens ``first .. stop - 1`` are the note-ons. Their total probability (that a note begins now) is
    kept as the model has it, and so is every other token's (a hold, a note-off, a bar line, ``END``);
    only the distribution *among* the note-ons is tempered, ``p(pitch | a note begins) ** (1 / T)``,
    renormalised (:func:`with_pitches`). Why: in step tokens a hold is the likeliest token at most steps,
    so a temperature below 1 over the whole vocabulary makes every note longer (measured on the German
    4/4 tunes, see benchmarks/README.md); here it makes the melody surer and leaves the rhythm alone.
    ``own`` (default ``logits``) and ``plausibility``: only the note-ons with ``own``'s probability at
    least ``plausibility`` times its likeliest note-on's may be drawn (with guidance, ``own`` is the
    unguided model's: see :func:`sample_to_order`).

    >>> logits = jnp.log(jnp.array([[0.5, 0.1, 0.3, 0.1]]))         # hold, note-off, two note-ons
    >>> [round(float(x), 3) for x in jnp.exp(temper_pitch(logits, 0.5, first=2, stop=4))[0]]
    [0.5, 0.1, 0.36, 0.04]
    """
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    own = logp if own is None else own
    on = (jnp.arange(logp.shape[-1]) >= first) & (jnp.arange(logp.shape[-1]) < stop)
    own_on = jnp.where(on, own, -jnp.inf)
    keep = own_on >= jnp.max(own_on, axis=-1, keepdims=True) + jnp.log(jnp.maximum(plausibility, 0.0))
    return with_pitches(logp, jnp.where(keep, logp / temperature, -jnp.inf), first=first, stop=stop)


@partial(jax.jit, static_argnames=("graphdef", "length", "use_top_k", "use_top_p", "special", "group",
                                   "pitch_only"))
def _sample_jit(graphdef, state, prefix, bar_steps, max_events, key, temperature, top_k, top_p, guidance,
                rhythm_guidance, plausibility, posterior, *,
                length, use_top_k, use_top_p, special, group, pitch_only):
    from labkit.sample import draw_token, filter_logits

    bar, end, numbered, restate, copy_base, lags = special
    model = nnx.merge(graphdef, state)
    top_k = top_k if use_top_k else 0
    top_p = top_p if use_top_p else 1.0
    # `prefix` has `group` rows per tune: the style asked for, then (with guidance) every style of the
    # encoding; all the rows of a tune read the same tokens, and one token is drawn per tune.
    carry, logits = model.run(model.init_carry(prefix.shape[0]), prefix)
    step = model.step_function()
    ids = jnp.arange(logits.shape[-1])
    n = prefix.shape[0] // group
    vocab = logits.shape[-1]

    def tune_logits(logits, allowed, belief):
        """The logits a tune's token is drawn from (at temperature 1 when `pitch_only`), ``-inf`` where not allowed."""
        if group == 1:
            own = guided = jnp.where(allowed, logits, -jnp.inf)
            floor = 0.0
        else:
            logits = logits.reshape(n, group, vocab)
            own = jnp.where(allowed, logits[:, 0], -jnp.inf)
            # guidance on which pitch, rhythm_guidance on everything else (when notes begin and end, copies, END)
            weights = jax.nn.log_softmax(posterior * belief, axis=1)
            guided = with_pitches(jnp.where(allowed, guided_logits(logits, rhythm_guidance, weights), -jnp.inf),
                                  jnp.where(allowed, guided_logits(logits, guidance, weights), -jnp.inf),
                                  first=2, stop=bar)
            floor = plausibility
        if pitch_only:
            return temper_pitch(guided, temperature, first=2, stop=bar, own=own, plausibility=floor)
        # guidance may only choose among the tokens the style's own model finds plausible
        plausible = own >= jnp.max(own, axis=-1, keepdims=True) + jnp.log(floor)
        return jnp.where(plausible, guided, -jnp.inf)

    asked = prefix[::group]
    lag_bars = jnp.array(lags or (0,), jnp.int32)                   # the copy tokens' lags, in bars
    is_copy_id = (ids >= copy_base) & (ids < copy_base + len(lags))

    def body(loop, step_key):
        carry, logits, pos, count, bars, pending, done, ended, lag, fresh, history, belief = loop
        need_bar = (bar_steps > 0) & (pos >= bar_steps)
        capped = count >= max_events
        may_end = (ids[None] == end) & (count > 0)[:, None]
        this_bar = bar + jnp.minimum(bars, numbered - 1)           # the next bar line's numbered token
        # Right after a bar line, a copy of the bar k bars back may begin (if there is one): the bar begun
        # is bar `bars`, the copied one bar `bars - k`.
        may_copy = is_copy_id[None] & fresh[:, None] & (bars[:, None] > lag_bars[jnp.clip(ids - copy_base, 0,
                                                                                          len(lag_bars) - 1)][None])
        allowed = jnp.where(need_bar[:, None], (ids[None] == this_bar[:, None]) | may_end,
                            (ids[None] < bar) | may_end | may_copy)
        restated = jnp.take_along_axis(asked, jnp.clip(3 - pending, 0, 2)[:, None], axis=1)     # [N, 1]
        allowed = jnp.where((pending > 0)[:, None], ids[None] == restated, allowed)
        # Inside a copied bar every event is forced: the event `lag` steps back.
        copying = (lag > 0) & ~need_bar
        copied = jnp.take_along_axis(history, jnp.clip(count - lag, 0, history.shape[1] - 1)[:, None], axis=1)
        allowed = jnp.where(copying[:, None], ids[None] == copied, allowed)
        allowed = jnp.where((done | capped)[:, None], ids[None] == end, allowed)
        masked = tune_logits(logits, allowed, belief)
        token = draw_token(step_key, filter_logits(masked, 1.0 if pitch_only else temperature, top_k, top_p))
        token = jnp.where(copying, copied[:, 0], token)
        token = jnp.where(done | capped, end, token)
        if group > 1:      # what each style's model thinks of the tokens drawn freely so far
            free = ~copying & ~need_bar & (pending == 0) & ~done & ~capped
            rows = jax.nn.log_softmax(logits.reshape(n, group, vocab).astype(jnp.float32), axis=-1)
            drawn = jnp.take_along_axis(rows, token[:, None, None], axis=2)[:, :, 0]
            belief = belief + jnp.where(free[:, None], drawn, 0.0)
        ended = ended | (~done & ~capped & (token == end))
        is_event = token < bar
        is_bar = (token >= bar) & (token < end)
        is_copy = (token >= copy_base) & (token < copy_base + len(lags))
        pos = jnp.where(is_bar, 0, pos + is_event)
        bars = bars + is_bar                                        # bars begun so far
        pending = jnp.maximum(pending - 1, 0)
        if restate:
            pending = jnp.where(is_bar & (bars > 1) & ((bars - 1) % restate == 0), 3, pending)
        lag = jnp.where(is_bar, 0, jnp.where(is_copy, lag_bars[jnp.clip(token - copy_base, 0, len(lag_bars) - 1)]
                                              * bar_steps, lag))
        fresh = is_bar
        history = jnp.where(is_event[:, None] & (jnp.arange(history.shape[1])[None] == count[:, None]),
                            token[:, None], history)
        count = count + is_event
        done = done | (token == end)
        carry, logits = step(carry, jnp.repeat(token, group))
        return (carry, logits, pos, count, bars, pending, done, ended, lag, fresh, history, belief), token

    zeros = jnp.zeros(n, jnp.int32)
    falses = jnp.zeros(n, bool)
    history = jnp.zeros((n, length if lags else 1), jnp.int32)      # the events drawn so far, for copies
    start = (carry, logits[:, -1], bar_steps, zeros, zeros, zeros, falses, falses, zeros, falses, history,
             jnp.zeros((n, group), jnp.float32))
    final, tokens = jax.lax.scan(body, start, jax.random.split(key, length))
    return jnp.concatenate([asked, tokens.T], axis=1), final[7]


def guidance_defaults() -> dict:
    """The sampling settings :func:`sample_to_order` takes from this module's defaults when a caller leaves
    them out (``generate`` and the sampling studio record them beside their tunes).

    >>> sorted(guidance_defaults())
    ['plausibility', 'posterior', 'rhythm_share', 'temper']
    """
    return {"posterior": DEFAULT_POSTERIOR, "rhythm_share": DEFAULT_RHYTHM_SHARE,
            "plausibility": DEFAULT_PLAUSIBILITY, "temper": DEFAULT_TEMPER}


def sample_to_order(model, encoding: ConditionedEncoding, *, style: str, meter: str, key: str | tuple,
                    num: int = 4, max_steps: int = DEFAULT_MAX_STEPS, temperature: float = 0.8, top_k: int = 0,
                    top_p: float = 1.0, seed: int = 0, qpm: float = DEFAULT_QPM,
                    guidance: float = DEFAULT_GUIDANCE, contrast=None,
                    plausibility: float = DEFAULT_PLAUSIBILITY, temper: str = DEFAULT_TEMPER,
                    rhythm_share: float = DEFAULT_RHYTHM_SHARE,
                    posterior: float = DEFAULT_POSTERIOR) -> list[tuple[Melody, dict]]:
    """``num`` whole tunes of ``style`` in ``meter`` and ``key``: ``[(melody, info)]`` (see :meth:`ConditionedEncoding.decode`;
    ``info["tokens"]`` is the tune's token row, prefix to ``END``).

    ``guidance`` (>= 0) pushes each pitch towards the style asked for and away from the ``contrast``
    styles (default: every other style of the encoding; :func:`guided_logits`), and every other choice
    (when notes begin and end, copies, the end) by ``guidance * rhythm_share`` (:func:`with_pitches`);
    the model runs once per style, so sampling costs that many times more. ``0`` samples the model as it is. Guidance chooses only
    among the tokens whose probability under the style asked for is at least ``plausibility`` times the
    most likely one's (contrastive decoding's plausibility constraint, X. L. Li et al. 2023): it reweighs
    what the style might play, and never picks what it would not (``0``: no constraint). ``temper``:
    ``"pitch"`` applies the temperature (and that constraint) to the choice of pitch only, when notes
    begin and end being drawn as the model has it (:func:`temper_pitch`); ``"all"`` to every token.
    ``posterior`` (>= 0): the contrast weighs each style by ``exp(posterior x log p_style(tune so far))``,
    the model's own (tempered) belief of which style the tune drawn so far is in, every token drawn
    counted (forced bar lines and copied events not). ``0``: every style alike. With ``posterior > 0``
    guidance pushes away from the styles the tune is being mistaken for, and fades where it is plainly of
    its style: a style far from the others (Chinese) is hardly pushed, one close to another (Irish jigs,
    fiddle tunes) is pushed from that one (measured in benchmarks/README.md, "Generation to order").

    Each melody carries the asked time signature and key (so :func:`labkit.melody.melody_to_sequence`
    writes them into the MIDI file) and ends where the model wrote ``END``; ``info["ended"]`` is False
    for a tune stopped by the cap of ``max_steps`` steps. The same seed gives the same tunes.

    Notebook: 09_judging_generated_music.ipynb

    Example:
        >>> from labkit.models import make_model
        >>> enc = ConditionedEncoding(styles=("irish",), meters=("6/8",))
        >>> model = make_model(ModelConfig(vocab_size=enc.vocab_size, embed_dim=8, hidden_size=16, num_layers=1), 0)
        >>> [(m.numerator, m.denominator, m.key) for m, _ in sample_to_order(model, enc, style="irish", meter="6/8",
        ...                                                                   key="D", num=2, max_steps=24)]
        [(6, 8, 2), (6, 8, 2)]
    """
    from labkit.sample import _check_model

    if _check_model(model) != encoding.vocab_size:
        raise ConfigError(f"the model has {model.vocab_size} tokens but the conditioned encoding "
                          f"{encoding.vocab_size}: not a model trained on these conditions")
    tonic, mode = parse_key(key) if isinstance(key, str) else key
    if not (isinstance(num, (int, np.integer)) and num >= 1 and isinstance(max_steps, (int, np.integer))
            and max_steps >= 1):
        raise ConfigError(f"num and max_steps must be integers >= 1, got {num!r} and {max_steps!r}")
    if not (isinstance(seed, (int, np.integer)) and 0 <= seed <= MAX_SEED):
        raise ConfigError(f"seed must be an integer in 0..{MAX_SEED}, got {seed!r}")
    if not (math.isfinite(temperature) and temperature > 0) or not (0 < top_p <= 1) or top_k < 0:
        raise ConfigError(f"temperature must be > 0, top_p in (0, 1] and top_k >= 0; got {temperature}, "
                          f"{top_p}, {top_k}")
    if not (isinstance(guidance, (int, float, np.number)) and math.isfinite(guidance) and 0 <= guidance <= 20):
        raise ConfigError(f"guidance must be a number in 0..20, got {guidance!r}")
    if temper not in ("pitch", "all"):
        raise ConfigError(f"temper must be 'pitch' (the temperature shapes the choice of pitch) or 'all' "
                          f"(every token), got {temper!r}")
    if not (isinstance(rhythm_share, (int, float, np.number)) and 0 <= rhythm_share <= 1):
        raise ConfigError(f"rhythm_share must be a number in 0..1, got {rhythm_share!r}")
    if not (isinstance(plausibility, (int, float, np.number)) and 0 <= plausibility <= 1):
        raise ConfigError(f"plausibility must be a number in 0..1, got {plausibility!r}")
    if not (isinstance(posterior, (int, float, np.number)) and 0 <= posterior <= 10):
        raise ConfigError(f"posterior must be a number in 0..10, got {posterior!r}")
    prefix = encoding.prefix(style, meter, tonic, mode)
    contrast = encoding.styles if contrast is None else tuple(contrast)
    others = [encoding.prefix(other, meter, tonic, mode) for other in dict.fromkeys(contrast) if other != style]
    rows = [prefix] + (others if guidance > 0 else [])
    group = len(rows)
    bars = encoding.bar_steps(meter)
    num_bars = int(max_steps) // bars + 1 if bars else 0
    length = (int(max_steps) + num_bars + (3 * (num_bars // encoding.restate_bars + 1) if encoding.restate_bars else 0)
              + (num_bars if encoding.copy_lags else 0) + 1)
    graphdef, state = nnx.split(model)
    tokens, ended = _sample_jit(graphdef, state, jnp.asarray(np.tile(np.stack(rows), (num, 1))),
                                jnp.full(num, bars, jnp.int32), jnp.int32(max_steps), jax.random.key(int(seed)),
                                np.float32(temperature), np.int32(top_k), np.float32(top_p), np.float32(guidance),
                                np.float32(guidance * rhythm_share), np.float32(plausibility), np.float32(posterior),
                                length=length, use_top_k=top_k > 0, use_top_p=top_p < 1.0,
                                special=(encoding.bar, encoding.end, NUMBERED_BARS, encoding.restate_bars,
                                         encoding.copy_base, encoding.copy_lags), group=group,
                                pitch_only=temper == "pitch")
    out = []
    for i, (row, did_end) in enumerate(zip(np.asarray(tokens), np.asarray(ended)), start=1):
        melody, info = encoding.decode(row, qpm=qpm, source=f"melody_{i:03d}")
        info["ended"] = bool(did_end)
        info["tokens"] = row[:int(np.argmax(row == encoding.end)) + 1] if (row == encoding.end).any() else row
        out.append((melody, info))
    return out


# =====================================================================================
# The shipped conditioned model.
# =====================================================================================

def shipped_conditioned_path() -> Path:
    """``<labkit package>/assets/melody_conditioned.npz``.

    >>> shipped_conditioned_path().name
    'melody_conditioned.npz'
    """
    return Path(__file__).resolve().parent / "assets" / SHIPPED_CONDITIONED_FILE


def load_conditioned_model(checkpoint: str | os.PathLike | None = None):
    """``(model, config, encoding, meta)`` of a conditioned checkpoint (default: the shipped one).

    Raises :class:`CheckpointError` naming the file when it is missing or is not a conditioned model
    (its metadata has no ``conditioning``: an unconditioned melody model).

    Notebook: 09_judging_generated_music.ipynb

    Example:
        >>> model, config, enc, meta = load_conditioned_model()
        >>> config.vocab_size == enc.vocab_size, "irish" in enc.styles
        (True, True)
    """
    from labkit.checkpoint import load_model, read_meta

    path = Path(checkpoint) if checkpoint is not None else shipped_conditioned_path()
    if checkpoint is None and not path.is_file():
        raise CheckpointError("the shipped conditioned model is missing; train it with `make model` "
                              "(python -m labkit.train_shipped --conditioned)", path)
    meta = read_meta(path)
    if "conditioning" not in meta:
        raise CheckpointError("not a conditioned melody model (no style/metre/key tokens in its metadata); "
                              "use it without --style/--meter/--key", path)
    try:
        encoding = ConditionedEncoding.from_dict(meta["conditioning"])
    except (KeyError, TypeError, ValueError, ConfigError) as error:
        raise CheckpointError(f"the checkpoint's conditioning is invalid: {error}", path) from None
    model, config = load_model(path)
    if config.vocab_size != encoding.vocab_size:
        raise CheckpointError(f"the model has {config.vocab_size} tokens but its conditioning {encoding.vocab_size}",
                              path)
    return model, config, encoding, meta


#: The shipped conditioned model's sizes: the unconditioned shipped model's, with the larger vocabulary,
#: and its three conditions heard at every step.
CONDITIONED_MODEL = ModelConfig(vocab_size=ConditionedEncoding().vocab_size, embed_dim=64, hidden_size=256,
                                num_layers=1, dropout=0.1, condition_tokens=3)
#: How it is trained (22 minutes on 2 CPU cores): windows of 320 tokens hold most tunes whole.
CONDITIONED_TRAIN = TrainConfig(seed=0, num_steps=6500, batch_size=32, seq_len=320, learning_rate=3e-3,
                                warmup_steps=50, end_lr_ratio=0.05, eval_every=200, max_eval_batches=None,
                                patience=4, log_every=10, progress=True)


def typical_conditions(tunes: ConditionedTunes) -> dict:
    """Each style's most common metre (with a token) and key among ``tunes``: ``{style: {"meter", "key"}}``.

    Notebook: 09_judging_generated_music.ipynb
    """
    from collections import Counter

    out = {}
    for style in tunes.encoding.styles:
        pick = np.flatnonzero(tunes.styles == style)
        meters = Counter(m for m in tunes.meters[pick] if m != UNKNOWN_METER)
        keys = Counter(key_name(tunes.tonics[i], "minor" if tunes.minor[i] else "major") for i in pick)
        if meters and keys:
            out[style] = {"meter": str(meters.most_common(1)[0][0]), "key": str(keys.most_common(1)[0][0])}
    return out


def train_conditioned_model(out: str | os.PathLike | None = None, *, model_config: ModelConfig = CONDITIONED_MODEL,
                            train_config: TrainConfig = CONDITIONED_TRAIN,
                            encoding: ConditionedEncoding = ConditionedEncoding(), workdir=None, root=None,
                            compare_with=None) -> dict:
    """Train the conditioned model on the corpus's train split (dev: valid) and write ``<out>.npz`` / ``.json``.

    The test-split figures (:func:`conditioned_scores`) are on the folk styles' test tunes, the set the
    unconditioned shipped model is scored on; ``compare_with`` (default: the shipped unconditioned model,
    if present) is scored on the same tunes by :func:`labkit.train.split_scores`. Returns the JSON document.

    Notebook: 09_judging_generated_music.ipynb
    """
    from labkit import env
    from labkit.checkpoint import load_melody_model, save_model, shipped_melody_model_path
    from labkit.data import load_melodies
    from labkit.train import fit, split_scores

    out = Path(out) if out is not None else shipped_conditioned_path().with_suffix("")
    mels = load_melodies(root, styles=list(encoding.styles))
    if model_config.vocab_size != encoding.vocab_size:
        raise ConfigError(f"model_config.vocab_size {model_config.vocab_size} is not the encoding's {encoding.vocab_size}")
    tunes = {s: corpus_tunes(mels.split(s), encoding, root) for s in ("train", "valid", "test")}
    started = time.perf_counter()
    model, history = fit(model_config, train_config, train_batches(tunes["train"], train_config),
                         valid_batches(tunes["valid"], train_config), workdir=workdir)
    train_seconds = time.perf_counter() - started
    folk = [s for s in encoding.styles if s != "chorale"]
    test_mels = mels.split("test")
    test_mels = test_mels.subset(np.isin(test_mels.styles, folk))
    test_tunes = corpus_tunes(test_mels, encoding, root)
    scores = {"test_folk": conditioned_scores(model, test_tunes), "test_all": conditioned_scores(model, tunes["test"])}
    baseline = None
    reference = compare_with if compare_with is not None else shipped_melody_model_path()
    if Path(reference).is_file():
        base_model, _ = load_melody_model(reference)
        baseline = {"checkpoint": Path(reference).name, "test_folk": split_scores(base_model, test_mels)}
    best = min((r for r in history if r["valid_loss"] is not None), key=lambda r: r["valid_loss"], default=None)
    document = {
        "what": "labkit's conditioned melody LSTM (python -m labkit.train_shipped --conditioned)",
        "model_config": model_config.to_dict(), "train_config": train_config.to_dict(),
        "conditioning": encoding.to_dict(), "num_params": model_config.num_params(),
        "typical": typical_conditions(tunes["train"]),
        "tunes": {s: len(t) for s, t in tunes.items()}, "style_balance": STYLE_BALANCE,
        "scores": scores, "unconditioned": baseline,
        "best_step": best["step"] if best else None, "steps_run": history[-1]["step"] if history else 0,
        "train_seconds": round(train_seconds, 1),
        "machine": {"cpus": os.cpu_count(), "devices": env.devices(), "platform": platform.platform(),
                    "jax": jax.__version__},
        "history": [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()} for r in history],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_model(out.with_suffix(".npz"), model, model_config,
               {"conditioning": encoding.to_dict(), "typical": document["typical"], "scores": scores})
    atomic_write(out.with_suffix(".json"), (json.dumps(document, indent=1) + "\n").encode("utf-8"))
    return document
