"""Interactive panels for the notebooks (ipywidgets): the sampling studio.

:class:`SamplingStudio` puts the knobs of :mod:`labkit.sample` on one panel: temperature,
top-k, top-p, length, number of melodies, seed and a primer (none, a built-in motif, the
example MIDI file, a MIDI file by path or an uploaded one). "Generate" samples with those
settings and shows a piano roll of every melody (the primer shaded), an audio player for
each and a link that downloads its MIDI file (also written to ``out_dir``).

The panel is a thin layer over plain methods, so that it can be tested without a browser:

* :meth:`SamplingStudio.settings` reads the widgets into a :class:`~labkit.sample.SampleConfig`;
* :meth:`SamplingStudio.primer_tokens` reads the primer choice into tokens;
* :meth:`SamplingStudio.generate` samples, decodes and writes the MIDI files, and returns a
  :class:`StudioResult` (nothing is displayed);
* :meth:`SamplingStudio.show` displays a result in the panel's ``Output`` widget.

A click (``studio.button.click()`` does one from code) runs ``generate`` then ``show``, and
stores the result in ``studio.last_result``; a bad setting (a missing MIDI file, an empty
upload, a temperature of 0) becomes a message in the panel and in ``studio.last_error``,
never an exception from inside the widget.

**To order** (folk-rnn's generation to order, Sturm et al. 2016, via :mod:`labkit.conditioned`):
the ``style`` drop-down offers the conditioned model's styles besides :data:`ANY_STYLE`. With
:data:`ANY_STYLE` (the default) the studio works as described above, with the unconditioned model.
With a style chosen, "Generate" samples *whole tunes* with the conditioned model
(:func:`labkit.conditioned.sample_to_order`) in the ``meter`` and ``key`` chosen (choosing a style
sets both to its typical ones, as ``generate --style`` does); temperature (on the choice of pitch),
top-k, top-p, number and seed apply as before, ``guidance`` pushes the tunes towards the style (0: the
model as it is; :func:`labkit.conditioned.guided_logits`), ``tune cap`` replaces ``length`` (a tune ends
by itself or at the cap) and there is no primer. The MIDI files carry the metre's time signature and the key's key signature.

Works with ipywidgets 7.7.1 (Google Colab) and 8: the only API that differs between them
and that the studio uses, ``FileUpload.value``, is read by :func:`uploaded_files`.

Notebook: 05_sampling_studio.ipynb
"""
from __future__ import annotations

import base64
import html
import io
import os
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labkit.checkpoint import load_melody_model, read_meta
from labkit.conditioned import (DEFAULT_GUIDANCE, DEFAULT_MAX_STEPS, ConditionedEncoding, guidance_defaults, key_name,
                                load_conditioned_model, parse_key, sample_to_order, shipped_conditioned_path)
from labkit.encoding import MelodyEncoding
from labkit.errors import CheckpointError, ConfigError, LabkitError
from labkit.generate import generate_melodies, melody_stats, read_primer, write_outputs
from labkit.melody import Melody, melody_to_sequence
from labkit.sample import SampleConfig, default_primer, primer_from_melody

#: Built-in primer motifs: name -> (pitches, start steps, end steps) at 4 steps per quarter.
MOTIFS: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {
    "C major arpeggio": ((60, 64, 67, 72), (0, 4, 8, 12), (4, 8, 12, 16)),
    "Twinkle, twinkle (bars 1-2)": ((60, 60, 67, 67, 69, 69, 67), (0, 4, 8, 12, 16, 20, 24),
                                    (4, 8, 12, 16, 20, 24, 32)),
    "Ode to joy (bars 1-2)": ((64, 64, 65, 67, 67, 65, 64, 62), (0, 4, 8, 12, 16, 20, 24, 28),
                              (4, 8, 12, 16, 20, 24, 28, 32)),
    "A minor, falling eighths": ((76, 74, 72, 71, 69), (0, 2, 4, 6, 8), (2, 4, 6, 8, 16)),
}

#: Sounds of the audio players: label -> (labkit.audio method, General MIDI program).
SOUNDS: dict[str, tuple[str, int]] = {
    "piano": ("soundfont", 0),
    "flute": ("soundfont", 73),
    "violin": ("soundfont", 40),
    "sine (fast)": ("sine", 0),
}

#: Sample rate (Hz) of the audio players: enough for melodies, and a lighter page than 22,050.
PLAYER_SAMPLE_RATE = 16000
#: Seconds of audio one "Generate" embeds in the page at most (base64 WAV, about 43 kB a second).
AUDIO_BUDGET_S = 120.0

NO_PRIMER = "none (one middle C)"
EXAMPLE_PRIMER = "Mozart, K. 525 (example MIDI)"
PATH_PRIMER = "MIDI file: the path below"
UPLOAD_PRIMER = "MIDI file: uploaded"
_MIDI_CHOICES = (EXAMPLE_PRIMER, PATH_PRIMER, UPLOAD_PRIMER)
#: The style drop-down's first choice: no conditions, the unconditioned model (the studio's default).
ANY_STYLE = "any (unconditioned)"
#: The 24 keys of the key drop-down, in the conditioned model's token order (C major .. B minor).
KEYS: tuple[str, ...] = tuple(key_name(tonic, mode) for mode in ("major", "minor") for tonic in range(12))


@dataclass
class StudioResult:
    """What one "Generate" made.

    Attributes:
        config: the :class:`~labkit.sample.SampleConfig` used.
        primer_name: the primer's label in the studio's drop-down (or ``"given"``).
        primer: int32 ``[P]`` primer tokens.
        tokens: int32 ``[N, P + length]``: the primer followed by the generated tokens.
        melodies: ``N`` :class:`~labkit.melody.Melody` decoded from ``tokens`` (primer included).
        sequences: ``N`` ``note_seq.NoteSequence`` of the melodies (seconds at ``qpm``).
        midi_paths: ``N`` MIDI files written, one per melody.
        seconds: wall time of sampling and decoding (compilation included on a first call).
        records: per melody, the files written and :func:`labkit.generate.melody_stats`.
        order: to order: ``{"style", "meter", "key", "max_steps"}`` asked for; ``None`` for the
            unconditioned model. Then ``config.length`` is the tune cap, ``primer`` is empty,
            ``tokens`` is int32 ``[N, T]``: each tune's conditioned tokens (prefix to ``END``),
            padded with ``END`` to the longest.
        ended: to order: per tune, whether it ended by itself (else it stopped at the cap).

    Notebook: 05_sampling_studio.ipynb
    """

    config: SampleConfig
    primer_name: str
    primer: np.ndarray
    tokens: np.ndarray
    melodies: list = field(default_factory=list)
    sequences: list = field(default_factory=list)
    midi_paths: list = field(default_factory=list)
    seconds: float = 0.0
    records: list = field(default_factory=list)
    order: dict | None = None
    ended: list = field(default_factory=list)


def uploaded_files(value) -> list[tuple[str, bytes]]:
    """``(file name, bytes)`` of each file in an ``ipywidgets.FileUpload`` value.

    ipywidgets 7 gives a dict ``{name: {"metadata": {...}, "content": bytes}}``;
    ipywidgets 8 a tuple of dicts ``{"name", "type", "size", "content": memoryview, ...}``.
    Both are read here; anything else raises :class:`~labkit.errors.ConfigError`.

    Notebook: 05_sampling_studio.ipynb

    Example:
        >>> uploaded_files({"a.mid": {"metadata": {"name": "a.mid"}, "content": b"MThd"}})
        [('a.mid', b'MThd')]
        >>> uploaded_files(({"name": "b.mid", "content": memoryview(b"MThd")},))
        [('b.mid', b'MThd')]
    """
    if isinstance(value, dict):                              # ipywidgets 7
        entries = [(name, entry.get("content") if isinstance(entry, dict) else None)
                   for name, entry in value.items()]
    elif isinstance(value, (tuple, list)):                  # ipywidgets 8
        entries = [(entry.get("name", "upload.mid"), entry.get("content")) if isinstance(entry, dict)
                   else ("upload.mid", None) for entry in value]
    else:
        raise ConfigError(f"cannot read a FileUpload value of type {type(value).__name__}")
    files = []
    for name, content in entries:
        if content is None:
            raise ConfigError("the uploaded file has no content; upload it again", name)
        files.append((str(name), bytes(content)))
    return files


def _midi_link(path: Path) -> str:
    """An HTML link that downloads the MIDI file from the page itself (a data URI: works in Colab too)."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<a download="{html.escape(path.name)}" href="data:audio/midi;base64,{data}">'
            f"download {html.escape(path.name)}</a>")


def _figure_png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=72)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class SamplingStudio:
    """A panel to sample melodies from a model and hear, see and download them.

    Args:
        model: a labkit melody model (:class:`~labkit.models.MelodyLSTM`,
            :class:`~labkit.models.AttentionMelodyLSTM`) or the path of a checkpoint
            (:func:`labkit.checkpoint.load_melody_model`).
        encoding: the model's :class:`~labkit.encoding.MelodyEncoding`; default the
            standard one (90 tokens), which must match ``model.vocab_size``.
        primers: extra primers for the drop-down, ``{label: tokens | MIDI path | Melody}``:
            int tokens ``[P]``, the path of a MIDI file (its first melody, first
            ``primer steps`` steps), or a :class:`~labkit.melody.Melody`.
        out_dir: folder the MIDI files go to (created when needed), one sub-folder per
            setting (see :meth:`generate`).
        steps_per_quarter: grid of the melodies (4 = sixteenth notes); the model's.
        conditioned: the model of the "to order" controls: ``"shipped"`` (default:
            ``labkit/assets/melody_conditioned.npz``; without that file the style drop-down offers
            only :data:`ANY_STYLE`), the path of a conditioned checkpoint (read when a tune is first
            asked for), a tuple ``(model, ConditionedEncoding, meta)`` (``meta["typical"]``: each
            style's typical ``{"meter", "key"}``), or ``None`` (no styles).

    Widgets (attributes): ``temperature``, ``top_k``, ``top_p``, ``length``, ``num_melodies``,
    ``seed``, ``primer``, ``primer_path``, ``upload``, ``primer_steps``, ``qpm``, ``sound``,
    ``style``, ``meter``, ``key``, ``max_steps`` (the tune cap), ``button``, ``status`` and
    ``output``; ``widget`` is the panel (a ``VBox``) to display.
    ``audio_budget_s`` (default :data:`AUDIO_BUDGET_S`) caps the seconds of audio one click
    embeds in the page; melodies past it get a MIDI link but no player.
    After a click, ``last_result`` is its :class:`StudioResult` (``None`` if it failed) and
    ``last_error`` the :class:`~labkit.errors.LabkitError` shown instead (``None`` if it worked).

    Notebook: 05_sampling_studio.ipynb

    Example:
        >>> from labkit.models import ModelConfig, make_model
        >>> studio = SamplingStudio(make_model(ModelConfig(embed_dim=8, hidden_size=16, num_layers=1), 0),
        ...                         out_dir=__import__("tempfile").mkdtemp())
        >>> studio.length.value, studio.num_melodies.value = 16, 2
        >>> studio.button.click()
        >>> studio.last_result.tokens.shape
        (2, 17)
    """

    def __init__(self, model, *, encoding: MelodyEncoding | None = None, primers: dict | None = None,
                 out_dir: str | os.PathLike = "out/studio", steps_per_quarter: int = 4,
                 conditioned="shipped"):
        import ipywidgets as w

        if isinstance(model, (str, os.PathLike)):
            model, _ = load_melody_model(model)
        if not hasattr(model, "vocab_size") or not hasattr(model, "step"):
            raise ConfigError(f"SamplingStudio needs a labkit melody model or a checkpoint path, "
                              f"got {type(model).__name__}")
        self.model = model
        self.vocab_size = int(model.vocab_size)
        self.encoding = encoding or MelodyEncoding()
        if self.encoding.vocab_size != self.vocab_size:
            raise ConfigError(f"the model has {self.vocab_size} tokens but the encoding {self.encoding} has "
                              f"{self.encoding.vocab_size}: pass the encoding the model was trained with")
        self.out_dir = Path(out_dir)
        self.steps_per_quarter = int(steps_per_quarter)
        self.audio_budget_s = float(AUDIO_BUDGET_S)
        self.last_result: StudioResult | None = None
        self.last_error: Exception | None = None

        self._primer_sources: dict[str, object] = {NO_PRIMER: None}
        for name, (pitches, starts, ends) in MOTIFS.items():
            self._primer_sources[name] = Melody.from_notes(list(pitches), list(starts), list(ends),
                                                           steps_per_quarter=4, source=name)
        for name, source in (primers or {}).items():
            if name in (NO_PRIMER, *_MIDI_CHOICES, *MOTIFS):
                raise ConfigError(f"primer name {name!r} is taken by a built-in choice; pick another name")
            if not isinstance(source, (str, os.PathLike, Melody, np.ndarray, list, tuple)):
                raise ConfigError(f"primer {name!r} must be tokens, a MIDI path or a Melody, "
                                  f"got {type(source).__name__}")
            self._primer_sources[str(name)] = source
        from labkit.examples import example_midi

        self._primer_sources[EXAMPLE_PRIMER] = example_midi("mozart")
        self._primer_sources[PATH_PRIMER] = None
        self._primer_sources[UPLOAD_PRIMER] = None

        wide = {"description_width": "9em"}
        row = w.Layout(width="26em")
        self.temperature = w.FloatSlider(value=1.0, min=0.05, max=2.0, step=0.05, description="temperature",
                                         continuous_update=False, style=wide, layout=row)
        self.top_k = w.IntSlider(value=0, min=0, max=self.vocab_size, step=1, description="top-k (0 = off)",
                                 continuous_update=False, style=wide, layout=row)
        self.top_p = w.FloatSlider(value=1.0, min=0.01, max=1.0, step=0.01, description="top-p (1 = off)",
                                   continuous_update=False, style=wide, layout=row)
        self.length = w.IntSlider(value=64, min=8, max=512, step=8, description="length (steps)",
                                  continuous_update=False, style=wide, layout=row)
        self.num_melodies = w.IntSlider(value=4, min=1, max=8, step=1, description="melodies",
                                        continuous_update=False, style=wide, layout=row)
        self.seed = w.IntText(value=0, description="seed", style=wide, layout=w.Layout(width="16em"))
        self.primer = w.Dropdown(options=list(self._primer_sources), value=NO_PRIMER, description="primer",
                                 style=wide, layout=row)
        self.primer_path = w.Text(value="", placeholder="path/to/tune.mid", description="MIDI path",
                                  style=wide, layout=row)
        self.upload = w.FileUpload(accept=".mid,.midi", multiple=False, description="upload MIDI")
        self.primer_steps = w.IntSlider(value=16, min=1, max=64, step=1, description="primer steps (MIDI)",
                                        continuous_update=False, style=wide, layout=row)
        self.qpm = w.IntSlider(value=120, min=40, max=240, step=4, description="tempo (qpm)",
                               continuous_update=False, style=wide, layout=row)
        self.sound = w.Dropdown(options=list(SOUNDS), value="piano", description="sound", style=wide,
                                layout=w.Layout(width="16em"))
        self.button = w.Button(description="Generate", button_style="primary", icon="music",
                               tooltip="sample melodies with these settings")
        self.status = w.HTML(value="")
        self.output = w.Output(layout=w.Layout(border="1px solid #ddd", padding="4px"))
        self._length_note = w.HTML()

        # --- to order: style, metre, key (the conditioned model) --------------------------------
        self._init_conditioned(conditioned)
        styles = list(self.conditioned_encoding.styles) if self.conditioned_encoding else []
        meters = list(self.conditioned_encoding.meters) if self.conditioned_encoding else ["4/4"]
        self.style = w.Dropdown(options=[ANY_STYLE, *styles], value=ANY_STYLE, description="style (to order)",
                                style=wide, layout=row, disabled=not styles)
        self.meter = w.Dropdown(options=meters, value="4/4" if "4/4" in meters else meters[0],
                                description="metre", style=wide, layout=w.Layout(width="16em"))
        self.key = w.Dropdown(options=list(KEYS), value="C major", description="key", style=wide,
                              layout=w.Layout(width="16em"))
        self.max_steps = w.IntSlider(value=DEFAULT_MAX_STEPS, min=16, max=2048, step=16,
                                     description="tune cap (steps)", continuous_update=False, style=wide,
                                     layout=row)
        self.guidance = w.FloatSlider(value=DEFAULT_GUIDANCE, min=0.0, max=5.0, step=0.25, description="guidance",
                                      continuous_update=False, style=wide, layout=row)

        self.button.on_click(self._on_click)
        self.primer.observe(self._on_primer_choice, names="value")
        self.upload.observe(self._on_upload, names="value")
        self.length.observe(self._on_length, names="value")
        self.style.observe(self._on_style, names="value")
        self._on_style()
        self._on_length()

        title = w.HTML(f"<b>Sampling studio</b>: {type(model).__name__}, {self.vocab_size} tokens. "
                       "Set the knobs, then press <i>Generate</i>.")
        sampling = w.VBox([self.temperature, self.top_k, self.top_p, self.length, self._length_note,
                           self.num_melodies, self.seed])
        priming = w.VBox([self.primer, self.primer_path, self.upload, self.primer_steps, self.qpm, self.sound])
        ordering = w.VBox([w.HBox([self.style, self.meter, self.key]), w.HBox([self.max_steps, self.guidance])])
        self.widget = w.VBox([title, w.HBox([sampling, priming]), ordering, w.HBox([self.button, self.status]),
                              self.output])

    def _init_conditioned(self, conditioned) -> None:
        """Set ``conditioned_encoding`` and ``typical`` (styles, metres and keys of the drop-downs)
        without loading the model's weights: they are read on the first tune to order."""
        self._conditioned_model = None
        self._conditioned_path: Path | None = None
        self.conditioned_encoding: ConditionedEncoding | None = None
        self.typical: dict = {}
        if conditioned is None:
            return
        if isinstance(conditioned, tuple):
            if len(conditioned) != 3 or not isinstance(conditioned[1], ConditionedEncoding):
                raise ConfigError("conditioned must be (model, ConditionedEncoding, meta), a checkpoint path, "
                                  "'shipped' or None")
            model, encoding, meta = conditioned
            if int(getattr(model, "vocab_size", -1)) != encoding.vocab_size:
                raise ConfigError(f"the conditioned model has {getattr(model, 'vocab_size', '?')} tokens but its "
                                  f"encoding {encoding.vocab_size}")
            self._conditioned_model, self.conditioned_encoding = model, encoding
            self.typical = dict((meta or {}).get("typical", {}))
            return
        if isinstance(conditioned, str) and conditioned == "shipped":
            path = shipped_conditioned_path()
            if not path.is_file():
                return                                       # a fresh checkout without it: no styles
        elif isinstance(conditioned, (str, os.PathLike)):
            path = Path(conditioned)
        else:
            raise ConfigError(f"conditioned must be 'shipped', a checkpoint path, (model, encoding, meta) or None, "
                              f"got {type(conditioned).__name__}")
        meta = read_meta(path)
        if "conditioning" not in meta:
            raise CheckpointError("not a conditioned melody model (no style/metre/key tokens in its metadata)", path)
        try:
            self.conditioned_encoding = ConditionedEncoding.from_dict(meta["conditioning"])
        except (KeyError, TypeError, ValueError, ConfigError) as error:
            raise CheckpointError(f"the checkpoint's conditioning is invalid: {error}", path) from None
        self._conditioned_path = path
        self.typical = dict(meta.get("typical", {}))

    def conditioned_model(self):
        """The conditioned model (loaded from its checkpoint on the first call)."""
        if self._conditioned_model is None:
            if self._conditioned_path is None:
                raise ConfigError("this studio has no conditioned model: choose the style "
                                  f"{ANY_STYLE!r}")
            self._conditioned_model, _, self.conditioned_encoding, _ = load_conditioned_model(self._conditioned_path)
        return self._conditioned_model

    # --- reading the widgets ---------------------------------------------------------------

    def settings(self) -> SampleConfig:
        """The :class:`~labkit.sample.SampleConfig` the widgets describe, validated.

        Raises :class:`~labkit.errors.ConfigError` for a value sampling cannot use.
        """
        if not -2**63 <= int(self.seed.value) < 2**63:
            raise ConfigError(f"seed must fit in 64 bits, got {self.seed.value}")
        length = self.max_steps.value if self.order() is not None else self.length.value
        return SampleConfig(num_samples=int(self.num_melodies.value), length=int(length),
                            temperature=float(self.temperature.value), top_k=int(self.top_k.value),
                            top_p=float(self.top_p.value), seed=int(self.seed.value)).validate(self.vocab_size)

    def order(self) -> dict | None:
        """``{"style", "meter", "key", "guidance"}`` of the "to order" controls, or ``None`` for :data:`ANY_STYLE`."""
        if self.style.value == ANY_STYLE:
            return None
        return {"style": str(self.style.value), "meter": str(self.meter.value), "key": str(self.key.value),
                "guidance": float(self.guidance.value)}

    def primer_tokens(self) -> tuple[str, np.ndarray]:
        """``(label, int32 tokens [P])`` of the primer chosen in the drop-down.

        MIDI primers (the example, a path, an upload, a path in ``primers``) are read by
        :func:`labkit.generate.read_primer`: the first ``primer steps`` steps of the file's
        first melody. An uploaded file is saved to ``out_dir/uploads/`` first. Raises a
        :class:`~labkit.errors.LabkitError` naming the file for a missing or unreadable one.
        """
        label = self.primer.value
        if label == NO_PRIMER:
            return label, default_primer(self.encoding)
        if label == PATH_PRIMER:
            path = self.primer_path.value.strip()
            if not path:
                raise ConfigError("type the path of a MIDI file into 'MIDI path', or choose another primer")
            return label, self._midi_primer(Path(path).expanduser())
        if label == UPLOAD_PRIMER:
            files = uploaded_files(self.upload.value)
            if not files:
                raise ConfigError("no file uploaded yet: press 'upload MIDI' first, or choose another primer")
            name, data = files[-1]
            path = self.out_dir / "uploads" / (Path(name).name or "upload.mid")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            except OSError as error:
                raise ConfigError(f"cannot save the uploaded file ({error.strerror or error})", path) from None
            return label, self._midi_primer(path)
        source = self._primer_sources[label]
        if isinstance(source, Melody):
            return label, primer_from_melody(source, self.encoding)
        if isinstance(source, (str, os.PathLike)):
            return label, self._midi_primer(source)
        return label, np.asarray(source)

    def _midi_primer(self, path) -> np.ndarray:
        tokens, _ = read_primer(path, encoding=self.encoding, num_steps=int(self.primer_steps.value),
                                steps_per_quarter=self.steps_per_quarter)
        return tokens

    # --- the work, without display -------------------------------------------------------------

    def generate(self, config: SampleConfig | None = None, primer=None) -> StudioResult:
        """Sample, decode and write the MIDI files; display nothing.

        Sampling and writing are :func:`labkit.generate.generate_melodies` and
        :func:`labkit.generate.write_outputs` (``melody_001.mid``, ... and ``generation.json``
        with the settings), in a folder of ``out_dir`` named by the settings, e.g.
        ``none_n4_len64_T1.00_k0_p1.00_seed0``: the same settings write the same files.

        Args:
            config: default :meth:`settings` (the widgets).
            primer: int tokens ``[P]``; default :meth:`primer_tokens` (the drop-down).

        With a style chosen (:meth:`order` not ``None``) the tunes come from the conditioned model
        instead (:meth:`generate_to_order`); ``primer`` must then be ``None``.

        Returns a :class:`StudioResult`. Same settings, same seed: same tokens.
        """
        config = self.settings() if config is None else config.validate(self.vocab_size)
        order = self.order()
        if order is not None:
            if primer is not None:
                raise ConfigError(f"a tune to order starts from its conditions, not a primer: choose the style "
                                  f"{ANY_STYLE!r} to continue a primer")
            return self.generate_to_order(config, **order)
        primer_name, primer = self.primer_tokens() if primer is None else ("given", primer)
        qpm = float(self.qpm.value)
        start = time.perf_counter()
        melodies = generate_melodies(self.model, num=config.num_samples, length=config.length,
                                     temperature=config.temperature, top_k=config.top_k, top_p=config.top_p,
                                     primer=primer, seed=config.seed, encoding=self.encoding,
                                     steps_per_quarter=self.steps_per_quarter, qpm=qpm)
        seconds = time.perf_counter() - start
        tokens = np.stack([self.encoding.encode(m) for m in melodies]).astype(np.int32)
        primer = tokens[0, :tokens.shape[1] - config.length].copy()
        _, program = SOUNDS[self.sound.value]
        slug = re.sub(r"[^a-z0-9]+", "-", primer_name.split(" (")[0].lower()).strip("-")
        folder = self.out_dir / (f"{slug or 'primer'}_n{config.num_samples}_len{config.length}_"
                                 f"T{config.temperature:.2f}_k{config.top_k}_p{config.top_p:.2f}_seed{config.seed}")
        settings = {"primer": primer_name, "primer_tokens": primer.tolist(), "qpm": qpm,
                    **{k: getattr(config, k) for k in ("num_samples", "length", "temperature", "top_k", "top_p",
                                                       "seed")}}
        records = write_outputs(melodies, folder, settings=settings, program=program)
        sequences = [melody_to_sequence(m, program=program) for m in melodies]
        return StudioResult(config=config, primer_name=primer_name, primer=primer, tokens=tokens,
                            melodies=melodies, sequences=sequences,
                            midi_paths=[Path(r["midi"]) for r in records], seconds=seconds, records=records)

    def generate_to_order(self, config: SampleConfig, *, style: str, meter: str, key: str,
                          guidance: float = DEFAULT_GUIDANCE) -> StudioResult:
        """Whole tunes of ``style`` in ``meter`` and ``key`` from the conditioned model; display nothing.

        :func:`labkit.conditioned.sample_to_order` with ``config``'s number, temperature, top-k, top-p
        and seed, ``guidance``, ``config.length`` as the tune cap (steps) and the ``qpm`` slider's tempo; written by
        :func:`labkit.generate.write_outputs` (each MIDI file with the metre's time signature and the
        key's key signature) into a folder of ``out_dir`` named by the settings, e.g.
        ``irish-6-8-D-major_n4_cap1024_T1.00_k0_p1.00_g2.00_seed0``. Same settings, same seed: same tunes.

        Notebook: 05_sampling_studio.ipynb
        """
        model = self.conditioned_model()
        encoding = self.conditioned_encoding
        if style not in encoding.styles:
            raise ConfigError(f"unknown style {style!r}; the conditioned model knows {', '.join(encoding.styles)}")
        if meter not in encoding.meters:
            raise ConfigError(f"the conditioned model knows no metre {meter!r}; choose one of "
                              f"{', '.join(encoding.meters)}")
        tonic, mode = parse_key(key)
        qpm = float(self.qpm.value)
        start = time.perf_counter()
        tunes = sample_to_order(model, encoding, style=style, meter=meter, key=(tonic, mode),
                                num=config.num_samples, max_steps=config.length, temperature=config.temperature,
                                top_k=config.top_k, top_p=config.top_p, seed=config.seed, qpm=qpm,
                                guidance=guidance)
        seconds = time.perf_counter() - start
        melodies = [melody for melody, _ in tunes]
        ended = [bool(info["ended"]) for _, info in tunes]
        rows = [np.asarray(info["tokens"], dtype=np.int32) for _, info in tunes]
        tokens = np.full((len(rows), max(len(r) for r in rows)), encoding.end, dtype=np.int32)
        for i, row in enumerate(rows):
            tokens[i, :len(row)] = row
        _, program = SOUNDS[self.sound.value]
        key = key_name(tonic, mode)
        slug = re.sub(r"[^A-Za-z0-9#]+", "-", f"{style}_{meter}_{key}").replace("#", "sharp")
        folder = self.out_dir / (f"{slug}_n{config.num_samples}_cap{config.length}_T{config.temperature:.2f}_"
                                 f"k{config.top_k}_p{config.top_p:.2f}_g{guidance:.2f}_seed{config.seed}")
        order = {"style": style, "meter": meter, "key": key, "max_steps": config.length, "guidance": guidance}
        settings = {"model": "conditioned", **order, **guidance_defaults(), "qpm": qpm, "ended": ended,
                    **{k: getattr(config, k) for k in ("num_samples", "temperature", "top_k", "top_p", "seed")}}
        records = write_outputs(melodies, folder, settings=settings, program=program)
        sequences = [melody_to_sequence(m, program=program) for m in melodies]
        return StudioResult(config=config, primer_name="to order", primer=np.zeros(0, np.int32), tokens=tokens,
                            melodies=melodies, sequences=sequences, midi_paths=[Path(r["midi"]) for r in records],
                            seconds=seconds, records=records, order=order, ended=ended)

    # --- display ----------------------------------------------------------------------------

    def _emit(self, bundle: dict) -> None:
        """Append a MIME bundle to the Output widget.

        The bundle goes into the widget's synced ``outputs`` state, which every front end renders
        (JupyterLab, Notebook, VS Code, Colab), instead of being captured from ``display`` calls
        (``with output:``): that works the same with and without a kernel, and does not stall
        notebook runners that mimic the output widget (nbclient/nbconvert).
        """
        self.output.outputs = tuple(self.output.outputs) + (
            {"output_type": "display_data", "data": bundle, "metadata": {}},)

    def clear(self) -> None:
        """Empty the Output widget."""
        self.output.outputs = ()

    def _show_error(self, message: str, detail: str = "") -> None:
        text = html.escape(message)
        self.status.value = f'<span style="color:#b00020">{text}</span>'
        extra = f"<pre>{html.escape(detail)}</pre>" if detail else ""
        self._emit({"text/html": f'<div style="color:#b00020"><b>Could not generate:</b> {text}{extra}</div>',
                    "text/plain": f"Could not generate: {message}"})

    def show(self, result: StudioResult) -> None:
        """Display ``result`` in the Output widget: piano rolls, audio players, MIDI download links.

        The players are rendered at :data:`PLAYER_SAMPLE_RATE` Hz with the chosen sound, as long as
        ``audio_budget_s`` lasts. Nothing is written to disk here.
        """
        from matplotlib.figure import Figure

        from labkit.audio import play
        from labkit.viz import plot_piano_roll

        n = len(result.melodies)
        first = result.melodies[0]
        primer_seconds = len(result.primer) * 60.0 / (first.qpm * first.steps_per_quarter)
        figure = Figure(figsize=(10, 1.7 * n + 0.4))
        axes = np.atleast_1d(figure.subplots(n, 1, sharex=True, squeeze=False)[:, 0])
        for i, (ax, sequence) in enumerate(zip(axes, result.sequences)):
            plot_piano_roll(sequence, ax=ax)
            if result.order is None:
                ax.axvspan(0.0, primer_seconds, color="gold", alpha=0.25, zorder=1, linewidth=0)
                ax.set_title(f"melody {i + 1} (primer shaded)", fontsize="small", loc="left")
            else:
                o = result.order
                end = "" if result.ended[i] else ", stopped at the cap"
                ax.set_title(f"tune {i + 1}: {o['style']}, {o['meter']}, {o['key']}{end}", fontsize="small",
                             loc="left")
            if i < n - 1:
                ax.set_xlabel("")
        figure.tight_layout()
        self._emit({"image/png": _figure_png(figure), "text/plain": f"<piano rolls of {n} melodies>"})

        method, program = SOUNDS[self.sound.value]
        budget = self.audio_budget_s
        rows = []
        for i, (melody, sequence, path) in enumerate(zip(result.melodies, result.sequences, result.midi_paths)):
            stats = melody_stats(melody)
            seconds = melody.num_steps * 60.0 / (melody.qpm * melody.steps_per_quarter)
            what = (f"{stats['notes']} notes, pitches {stats['lowest']}-{stats['highest']}, "
                    f"{100 * stats['silence_share']:.0f}% silence" if stats["notes"] else "no notes")
            if not stats["notes"]:
                player = ""
            elif seconds <= budget:
                budget -= seconds
                player = play(sequence, PLAYER_SAMPLE_RATE, method=method, program=program)._repr_html_()
            else:
                player = "<i>(no player: this page's audio budget is spent; download the MIDI file)</i>"
            rows.append(f"<div style='margin:4px 0'><b>melody {i + 1}</b> ({what}) {player} "
                        f"{_midi_link(Path(path))} <small>saved as <code>{html.escape(str(path))}</code></small>"
                        "</div>")
        self._emit({"text/html": "".join(rows), "text/plain": "\n".join(str(p) for p in result.midi_paths)})

    def _summary(self, result: StudioResult) -> str:
        c = result.config
        top_k = "off" if c.top_k == 0 else c.top_k
        top_p = "off" if c.top_p >= 1.0 else f"{c.top_p:.2f}"
        if result.order is not None:
            o = result.order
            return (f"{len(result.melodies)} {html.escape(o['style'])} tunes in {o['meter']}, {o['key']} "
                    f"({sum(result.ended)} ended by themselves, cap {c.length} steps) in {result.seconds:.2f} s: "
                    f"temperature {c.temperature:.2f} (pitch), guidance {o['guidance']:g}, top-k {top_k}, "
                    f"top-p {top_p}, seed {c.seed}")
        return (f"{len(result.melodies)} melodies of {c.length} steps after a {len(result.primer)}-token primer "
                f"({html.escape(result.primer_name)}) in {result.seconds:.2f} s: temperature "
                f"{c.temperature:.2f}, top-k {top_k}, top-p {top_p}, seed {c.seed}")

    # --- callbacks ---------------------------------------------------------------------------

    def _on_click(self, _button=None) -> None:
        self.clear()
        self.last_result, self.last_error = None, None
        self.button.disabled = True
        self.status.value = "generating..."
        try:
            result = self.generate()
            self.show(result)
        except LabkitError as error:                 # a bad setting or file: say which
            self.last_error = error
            self._show_error(str(error))
        except Exception as error:                   # a bug: show it whole, in the panel
            self.last_error = error
            self._show_error(f"unexpected {type(error).__name__}: {error}", traceback.format_exc())
        else:
            self.last_result = result
            self.status.value = self._summary(result)
        finally:
            self.button.disabled = False

    def _on_primer_choice(self, _change=None) -> None:
        label = self.primer.value
        to_order = self.style.value != ANY_STYLE
        self.primer.disabled = self.upload.disabled = to_order
        self.primer_path.disabled = to_order or label != PATH_PRIMER
        self.primer_steps.disabled = to_order or not (
            label in _MIDI_CHOICES or isinstance(self._primer_sources.get(label), (str, os.PathLike)))

    def _on_style(self, change=None) -> None:
        """A style chosen: its typical metre and key (as ``generate --style``), the to-order knobs on,
        length and primer off; :data:`ANY_STYLE`: the reverse."""
        style = self.style.value
        to_order = style != ANY_STYLE
        if to_order and change is not None:
            typical = self.typical.get(style, {})
            meter = typical.get("meter", "4/4")
            if meter in self.meter.options:
                self.meter.value = meter
            try:
                self.key.value = key_name(*parse_key(typical.get("key", "C major")))
            except ConfigError:
                self.key.value = "C major"
        self.meter.disabled = self.key.disabled = self.max_steps.disabled = self.guidance.disabled = not to_order
        self.length.disabled = to_order
        self._on_primer_choice()

    def _on_upload(self, _change=None) -> None:
        if self.upload.value:
            self.primer.value = UPLOAD_PRIMER

    def _on_length(self, _change=None) -> None:
        bars = self.length.value / (4 * self.steps_per_quarter)
        self._length_note.value = (f"<small>&nbsp;&nbsp;= {bars:g} bars of 4/4 at "
                                   f"{self.steps_per_quarter} steps per quarter</small>")

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)
