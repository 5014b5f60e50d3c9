"""The studio app: the sampler, the mixer, live mode and the style index on one web page.

:class:`StudioApp` is one ipywidgets panel with four tabs, built from the notebooks' own pieces:

* **Sampler**: the sampling studio of notebook 05 (:class:`labkit.widgets.SamplingStudio`: temperature,
  seed, length, ..., Generate; piano roll, audio player, MIDI download link), with the first melody's
  light show under it (:func:`labkit.studio.stage_iframe`);
* **Mixer**: the first melody, a drone and a simple accompaniment in its key (:mod:`labkit.mix`), each
  with on/off, volume (dB), pan and instrument, a room (reverb) and a master level; Mix gives the
  stereo light show with its player, the WAV to download and each channel's level;
* **Live**: :class:`labkit.live.LiveEngine` playing on in chunks, steered toward a style; Start, Stop
  and the target work while it plays; the chunks' audio is queued in the page as it comes and the
  style index moves on the bipolar axis (:func:`labkit.studio.live_stage_iframe`); Stop offers the
  performance as a WAV;
* **Style index**: where the generated melodies lie on the axis between two styles of the shipped
  style model (``P(a) / (P(a) + P(b))``, as in notebook 07).

Every button reports a failure in the page, in red (a :class:`~labkit.errors.LabkitError` as its one
line; anything else with its traceback folded under it), never only in a terminal.

``python -m labkit app`` serves :data:`NOTEBOOK` (which calls :func:`app_page`) with Voila on localhost;
in a notebook, ``StudioApp()`` (or ``StudioApp().widget``) shows the same panel.

Notebook: 10_mixing_and_performance.ipynb
"""
from __future__ import annotations

import base64
import functools
import html
import os
import threading
import time
import traceback
from pathlib import Path

import numpy as np

from labkit.errors import ConfigError, LabkitError

#: The notebook Voila serves (package data of ``labkit.app``).
NOTEBOOK = Path(__file__).resolve().parent / "studio_app.ipynb"
#: Environment variable naming the app's output folder (set by ``python -m labkit app --out``).
OUT_ENV = "LABKIT_APP_OUT"
#: Sample rate (Hz) of the app's audio: the mixer, the light shows and live mode.
APP_SAMPLE_RATE = 16000
#: Instruments the mixer and live mode offer: label -> General MIDI program.
INSTRUMENTS = {"piano": 0, "harpsichord": 6, "vibraphone": 11, "organ": 19, "guitar": 24, "bass": 32,
               "violin": 40, "cello": 42, "strings": 48, "choir": 52, "trumpet": 56, "clarinet": 71,
               "flute": 73}
#: The mixer's voices: name -> (on, volume dB, pan, instrument) at start.
VOICES = {"melody": (True, 0.0, 0.0, "piano"), "drone": (False, -12.0, 0.3, "strings"),
          "accompaniment": (True, -8.0, -0.3, "piano")}
#: Seconds a live chunk may be handed to the page before it is due to play (beyond its own length).
LIVE_LEAD_S = 1.0


def _error_html(error: BaseException) -> str:
    """A failure as red HTML: a LabkitError as its line, anything else with the traceback folded under it."""
    if isinstance(error, LabkitError):
        return f'<div class="labkit-error" style="color:#b00020"><b>Error:</b> {html.escape(str(error))}</div>'
    detail = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return (f'<div class="labkit-error" style="color:#b00020"><b>Unexpected {type(error).__name__}:</b> '
            f"{html.escape(str(error))}<details><summary>details</summary><pre>{html.escape(detail)}</pre>"
            "</details></div>")


def _reports_errors(status_name: str):
    """Decorator of a callback: an exception becomes a red message in ``self.<status_name>`` (an HTML widget)."""
    def wrap(method):
        @functools.wraps(method)
        def run(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except Exception as error:            # shown in the page: the user sees no terminal
                self.last_error = error
                getattr(self, status_name).value = _error_html(error)
        return run
    return wrap


def _download_link(data: bytes, name: str, mime: str, label: str, css_class: str) -> str:
    href = f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
    return f'<a class="{css_class}" download="{html.escape(name)}" href="{href}">{html.escape(label)}</a>'


def style_axis_html(indices, labels, axis=("irish", "german")) -> str:
    """An SVG bipolar axis (``axis[1]`` at 0, left, red; ``axis[0]`` at 1, right, blue) with one labelled
    marker per index in [0, 1]: the style index of each melody, as in :func:`labkit.style.plots.plot_style_axis`.

    Notebook: 10_mixing_and_performance.ipynb

    >>> svg = style_axis_html([0.25], ["melody 1"])
    >>> 'cx="160.0"' in svg and "melody 1: 0.25" in svg
    True
    """
    width, left, right = 520, 60, 460
    marks = []
    for i, (x, label) in enumerate(zip(indices, labels)):
        x = float(np.clip(x, 0.0, 1.0))
        cx = left + x * (right - left)
        y = 30 + 14 * (i % 3)
        marks.append(f'<circle cx="{cx:.1f}" cy="{y}" r="6" fill="#222" stroke="white"/>'
                     f'<text x="{cx + 9:.1f}" y="{y + 4}" font-size="11">{html.escape(str(label))}: {x:.2f}</text>')
    return (f'<svg class="labkit-style-axis" width="{width}" height="80" xmlns="http://www.w3.org/2000/svg">'
            '<defs><linearGradient id="rdbu"><stop offset="0" stop-color="#b2182b"/>'
            '<stop offset="0.5" stop-color="#f7f7f7"/><stop offset="1" stop-color="#2166ac"/></linearGradient></defs>'
            f'<rect x="{left}" y="12" width="{right - left}" height="8" fill="url(#rdbu)"/>'
            f'<line x1="{(left + right) / 2}" y1="8" x2="{(left + right) / 2}" y2="24" stroke="#888" '
            f'stroke-dasharray="2"/><text x="0" y="20" font-size="12">{html.escape(axis[1])}</text>'
            f'<text x="{right + 8}" y="20" font-size="12">{html.escape(axis[0])}</text>' + "".join(marks) + "</svg>")


class StudioApp:
    """The app's panel (see the module text): ``app.widget`` is the ipywidgets tree to display.

    Args:
        out_dir: where MIDI files, the mix and the live recording are written (default: the
            ``LABKIT_APP_OUT`` environment variable, else ``out/app``).
        model: a melody model (default: the shipped one).
        style_model: a style model (default: the shipped one).
        axis: ``(a, b)``: the styles at index 1 and 0 (default :data:`labkit.live.DEFAULT_AXIS`).
        sample_rate: of the app's audio (Hz).

    The buttons' work is done by plain methods (:meth:`mix`, :meth:`start_live`, :meth:`stop_live`),
    so the panel can be driven from code as in a browser.

    Notebook: 10_mixing_and_performance.ipynb
    """

    def __init__(self, out_dir=None, *, model=None, style_model=None, axis=None,
                 sample_rate: int = APP_SAMPLE_RATE):
        import ipywidgets as w

        from labkit.checkpoint import load_melody_model
        from labkit.encoding import MelodyEncoding
        from labkit.live import DEFAULT_AXIS
        from labkit.style.model import load_style_model
        from labkit.studio import live_stage_iframe
        from labkit.widgets import SamplingStudio

        self.out_dir = Path(out_dir or os.environ.get(OUT_ENV) or "out/app").expanduser().resolve()
        self.encoding = MelodyEncoding()
        self.model = load_melody_model(encoding=self.encoding)[0] if model is None else model
        self.style_model = load_style_model() if style_model is None else style_model
        self.axis = tuple(axis or DEFAULT_AXIS)
        styles = tuple(self.style_model.styles)
        if len(self.axis) != 2 or self.axis[0] == self.axis[1] or any(s not in styles for s in self.axis):
            raise ConfigError(f"the axis must be two different styles of the style model ({', '.join(styles)}), "
                              f"got {self.axis!r}")
        self.sample_rate = int(sample_rate)
        self.melodies: list = []
        self.last_error: Exception | None = None
        self.last_mix = None

        # --- sampler: the notebooks' sampling studio, one melody by default ---------------------
        self.sampler = SamplingStudio(self.model, encoding=self.encoding, out_dir=self.out_dir / "sampler")
        self.sampler.num_melodies.value = 1
        self.sampler.button.on_click(self._after_generate)     # runs after the studio's own handler
        self.sampler_stage = w.HTML("")
        self.sampler_status = w.HTML("")
        sampler_tab = w.VBox([self.sampler.widget, self.sampler_status, self.sampler_stage])

        # --- mixer -------------------------------------------------------------------------------
        wide = {"description_width": "6em"}
        self.voices: dict[str, dict] = {}
        rows = []
        for name, (on, volume, pan, instrument) in VOICES.items():
            controls = {
                "on": w.Checkbox(value=on, description=name, indent=False, layout=w.Layout(width="10em")),
                "volume": w.FloatSlider(value=volume, min=-60.0, max=12.0, step=0.5, description="volume dB",
                                        continuous_update=False, style=wide, layout=w.Layout(width="20em")),
                "pan": w.FloatSlider(value=pan, min=-1.0, max=1.0, step=0.05, description="pan (L-R)",
                                     continuous_update=False, style=wide, layout=w.Layout(width="20em")),
                "instrument": w.Dropdown(options=list(INSTRUMENTS), value=instrument, description="instrument",
                                         style=wide, layout=w.Layout(width="16em")),
            }
            for what, control in controls.items():
                control.add_class(f"labkit-mix-{name}-{what}")
            self.voices[name] = controls
            rows.append(w.HBox(list(controls.values())))
        self.reverb = w.FloatSlider(value=0.2, min=0.0, max=1.0, step=0.05, description="room (reverb)",
                                    continuous_update=False, style={"description_width": "8em"},
                                    layout=w.Layout(width="22em"))
        self.master = w.FloatSlider(value=0.0, min=-60.0, max=12.0, step=0.5, description="master dB",
                                    continuous_update=False, style={"description_width": "8em"},
                                    layout=w.Layout(width="22em"))
        self.reverb.add_class("labkit-mix-reverb")
        self.master.add_class("labkit-mix-master")
        self.mix_button = w.Button(description="Mix", button_style="primary", icon="sliders")
        self.mix_button.on_click(self._on_mix)
        self.mix_status = w.HTML("<i>Generate a melody on the Sampler tab, then press Mix.</i>")
        self.mix_stage = w.HTML("")
        self.mix_link = w.HTML("")
        mixer_tab = w.VBox([w.HTML("<b>Mixer</b>: the first generated melody, a drone and an accompaniment "
                                   "in its key. Volumes in dB (+6 = twice the amplitude), pan -1 left .. 1 right."),
                            *rows, w.HBox([self.reverb, self.master]), w.HBox([self.mix_button, self.mix_status]),
                            self.mix_link, self.mix_stage])

        # --- live ----------------------------------------------------------------------------------
        a, b = self.axis
        self.live_seed = w.BoundedIntText(value=0, min=0, max=2**32 - 1, description="seed",
                                          style=wide, layout=w.Layout(width="14em"))
        self.live_target = w.Dropdown(options=[("none (plain sampling)", None), (f"{a} (1)", 1.0),
                                               ("in between (0.5)", 0.5), (f"{b} (0)", 0.0)],
                                      value=1.0, description="target", style=wide, layout=w.Layout(width="20em"))
        self.live_instrument = w.Dropdown(options=list(INSTRUMENTS), value="piano", description="instrument",
                                          style=wide, layout=w.Layout(width="16em"))
        self.start_button = w.Button(description="Start", button_style="success", icon="play")
        self.stop_button = w.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.start_button.on_click(self._on_start)
        self.stop_button.on_click(self._on_stop)
        self.live_target.observe(self._on_target, names="value")
        self.live_status = w.HTML("<i>Press Start: the model plays on, two bars at a time.</i>")
        self._feed = f"labkit-feed-{id(self):x}"
        self.live_feed = w.HTML("")
        self.live_stage = w.HTML(live_stage_iframe(self._feed, axis=self.axis))
        self.live_link = w.HTML("")
        self._engine = None
        self._live_thread: threading.Thread | None = None
        self._live_stop = threading.Event()
        self._session = 0
        self.recording: list[np.ndarray] = []
        self.live_chunks = 0
        live_tab = w.VBox([w.HTML(f"<b>Live</b>: continuous generation in chunks, each chosen among candidates "
                                  f"for its style index on the axis {b} (0) .. {a} (1); change the target "
                                  "while it plays."),
                           w.HBox([self.live_seed, self.live_target, self.live_instrument]),
                           w.HBox([self.start_button, self.stop_button, self.live_status]),
                           self.live_feed, self.live_stage, self.live_link])

        # --- style index ------------------------------------------------------------------------
        self.style_view = w.HTML("<i>Generate melodies on the Sampler tab: their style index appears here.</i>")
        style_tab = w.VBox([w.HTML(f"<b>Style index</b>: P({a}) / (P({a}) + P({b})) by the shipped style model; "
                                   f"1 = {a}, 0 = {b}."), self.style_view])

        self.tabs = w.Tab(children=[sampler_tab, mixer_tab, live_tab, style_tab])
        for i, title in enumerate(("Sampler", "Mixer", "Live", "Style index")):
            self.tabs.set_title(i, title)
        self.widget = w.VBox([w.HTML("<h2 style='margin:4px 0'>labkit studio</h2>"), self.tabs])

    # --- sampler -------------------------------------------------------------------------------------
    @_reports_errors("sampler_status")
    def _after_generate(self, _button=None) -> None:
        result = self.sampler.last_result
        if result is None:
            return
        from labkit.audio import render
        from labkit.studio import stage_iframe
        from labkit.widgets import SOUNDS

        self.melodies = list(result.melodies)
        method, program = SOUNDS[self.sampler.sound.value]
        sequence = result.sequences[0]
        audio = render(sequence, sample_rate=self.sample_rate, method=method, program=program)
        self.sampler_stage.value = stage_iframe(sequence, audio, self.sample_rate, title="melody 1: the light show")
        indices = self.style_indices(self.melodies)
        labels = [f"melody {i + 1}" for i in range(len(indices))]
        self.style_view.value = style_axis_html(indices, labels, self.axis) + "<br>" + ", ".join(
            f'<span class="labkit-style-index">{label}: {x:.3f}</span>' for label, x in zip(labels, indices))
        self.sampler_status.value = (f"style index of melody 1 on {self.axis[1]} (0) .. {self.axis[0]} (1): "
                                     f'<b class="labkit-style-index">{indices[0]:.3f}</b>')

    def style_indices(self, melodies) -> list[float]:
        """The style index ``P(a) / (P(a) + P(b))`` of each melody (0.5 for one without notes)."""
        from labkit.live import axis_index
        from labkit.style.scoring import with_estimated_key

        cols = (self.style_model.styles.index(self.axis[0]), self.style_model.styles.index(self.axis[1]))
        out = [0.5] * len(melodies)
        scored = [i for i, m in enumerate(melodies) if len(m.pitches)]
        if scored:
            proba = self.style_model.predict_proba([with_estimated_key(melodies[i]) for i in scored])
            for i, x in zip(scored, axis_index(proba, cols)):
                out[i] = float(x)
        return out

    # --- mixer ---------------------------------------------------------------------------------------
    def mix(self):
        """Mix the current melody's voices with the mixer's settings: a :class:`labkit.mix.MixResult`
        (also written to ``out_dir/mixer/mix.wav``). Raises :class:`ConfigError` before any melody."""
        from labkit.mix import Track, accompaniment, drone, mix_tracks, write_mix

        if not self.melodies:
            raise ConfigError("no melody yet: press Generate on the Sampler tab first")
        melody = self.melodies[0]
        music = {"melody": melody, "drone": lambda: drone(melody), "accompaniment": lambda: accompaniment(melody)}
        tracks, voices = [], []
        for name, controls in self.voices.items():
            if not controls["on"].value:
                continue
            source = music[name]() if callable(music[name]) else music[name]
            tracks.append(Track(source, volume_db=float(controls["volume"].value), pan=float(controls["pan"].value),
                                program=INSTRUMENTS[controls["instrument"].value], name=name))
            voices.append(source)
        if not tracks:
            raise ConfigError("every voice is off: tick at least one")
        result = mix_tracks(tracks, reverb=float(self.reverb.value), master_db=float(self.master.value),
                            sample_rate=self.sample_rate)
        write_mix(self.out_dir / "mixer" / "mix.wav", result)
        self.last_mix = (result, voices, [t.name for t in tracks])
        return result

    @_reports_errors("mix_status")
    def _on_mix(self, _button=None) -> None:
        from labkit.studio import stage_iframe

        self.mix_button.disabled = True
        self.mix_status.value = "mixing..."
        try:
            result = self.mix()
        finally:
            self.mix_button.disabled = False
        _, voices, names = self.last_mix
        path = self.out_dir / "mixer" / "mix.wav"
        left, right = result.rms_db
        scaled = f", scaled {result.scaled_db:.1f} dB to avoid clipping" if result.scaled_db else ""
        self.mix_status.value = (f"{', '.join(names)}: {result.seconds:.1f} s stereo, RMS left {left:.1f} dB, "
                                 f"right {right:.1f} dB, peak {result.peak_db:.1f} dBFS{scaled}")
        self.mix_link.value = (_download_link(path.read_bytes(), "mix.wav", "audio/wav", "download the mix (WAV)",
                                              "labkit-mix-wav") + f" <small>saved as <code>{html.escape(str(path))}"
                               "</code></small>")
        self.mix_stage.value = stage_iframe(voices, result.audio, result.sample_rate,
                                            title="the mix: one colour per voice")

    # --- live ----------------------------------------------------------------------------------------
    def start_live(self) -> None:
        """Start live mode: a :class:`labkit.live.LiveEngine` with the panel's seed, target and instrument,
        and a thread that hands its chunks to the page no faster than they play."""
        from labkit.live import LiveEngine

        if self._live_thread is not None and self._live_thread.is_alive():
            return
        self._session += 1
        self.recording, self.live_chunks = [], 0
        engine = LiveEngine(self.model, self.style_model, axis=self.axis, seed=int(self.live_seed.value),
                            target=self.live_target.value, program=INSTRUMENTS[self.live_instrument.value],
                            sample_rate=self.sample_rate, candidates=4, bars_per_chunk=2)
        self._engine = engine
        self._live_stop.clear()
        self._live_thread = threading.Thread(target=self._play, args=(engine, self._session), daemon=True,
                                             name="labkit-app-live")
        self._live_thread.start()

    def _play(self, engine, session: int) -> None:
        from labkit.studio import live_feed_html

        recent, factors = [], []
        started = time.monotonic()
        try:
            for chunk in engine.stream(timeout=None):
                if self._live_stop.is_set():
                    break
                while (chunk.start_time - (time.monotonic() - started) > chunk.seconds + LIVE_LEAD_S
                       and not self._live_stop.is_set()):
                    time.sleep(0.05)
                if self._live_stop.is_set():
                    break
                if not recent:
                    started = time.monotonic()      # the clock starts when the first chunk goes out
                self.recording.append(chunk.audio)
                factors.append(chunk.realtime_factor)   # not engine.realtime_factor(): it waits for the next chunk
                self.live_chunks += 1
                recent = (recent + [chunk])[-3:]
                self.live_feed.value = live_feed_html(self._feed, session, "playing", recent,
                                                      sample_rate=self.sample_rate, axis=self.axis)
                target = "none" if chunk.target is None else f"{chunk.target:.2f}"
                self.live_status.value = (f"playing: chunk {chunk.index + 1}, {chunk.end_time:.0f} s of music, "
                                          f'style index <b class="labkit-live-index">{chunk.style_index:.2f}</b> '
                                          f"(target {target}), real-time factor {float(np.median(factors)):.1f}")
        except Exception as error:
            self.last_error = error
            self.live_status.value = _error_html(error)
        finally:
            engine.stop()

    def stop_live(self) -> Path | None:
        """Stop live mode: the engine and its thread end; the performance so far is written to
        ``out_dir/live/performance.wav`` (returned; ``None`` when nothing was played)."""
        from labkit.audio import write_wav
        from labkit.studio import live_feed_html

        self._live_stop.set()
        if self._engine is not None:
            self._engine.stop()
        if self._live_thread is not None:
            self._live_thread.join(10.0)
        self.live_feed.value = live_feed_html(self._feed, self._session, "stopped", [],
                                              sample_rate=self.sample_rate, axis=self.axis)
        parts = [a for a in self.recording if a is not None and len(a)]
        if not parts:
            return None
        path = write_wav(self.out_dir / "live" / "performance.wav", np.concatenate(parts), self.sample_rate)
        return Path(path)

    @_reports_errors("live_status")
    def _on_start(self, _button=None) -> None:
        self.start_button.disabled, self.stop_button.disabled = True, False
        self.live_link.value = ""
        self.live_status.value = "starting (the first chunk also compiles the model)..."
        try:
            self.start_live()
        except Exception:
            self.start_button.disabled, self.stop_button.disabled = False, True
            raise

    @_reports_errors("live_status")
    def _on_stop(self, _button=None) -> None:
        self.stop_button.disabled = True
        try:
            path = self.stop_live()
        finally:
            self.start_button.disabled = False
        engine = self._engine
        rtf = engine.realtime_factor() if engine is not None else float("nan")
        seconds = sum(len(a) for a in self.recording if a is not None) / self.sample_rate
        self.live_status.value = (f'<span class="labkit-live-stopped">stopped</span> after {self.live_chunks} chunks '
                                  f"({seconds:.1f} s of music); real-time factor {rtf:.1f}")
        if path is not None:
            self.live_link.value = (_download_link(path.read_bytes(), "performance.wav", "audio/wav",
                                                   "download the performance (WAV)", "labkit-live-wav")
                                    + f" <small>saved as <code>{html.escape(str(path))}</code></small>")

    @_reports_errors("live_status")
    def _on_target(self, change) -> None:
        if self._engine is not None and self._live_thread is not None and self._live_thread.is_alive():
            self._engine.set_target(change["new"])

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def app_page(**kwargs):
    """What the app's notebook shows: a panel that says it is loading, then, built in a background thread
    (the models take seconds to load), the :class:`StudioApp` (``kwargs`` go to it); or, when it cannot
    be built, the reason in red: the page is all the user sees.

    Returns the ipywidgets ``VBox``; its ``labkit_app`` attribute is the app once built (else ``None``),
    its ``labkit_ready`` a ``threading.Event`` set when building ended, well or not.

    Notebook: 10_mixing_and_performance.ipynb
    """
    import ipywidgets as w

    box = w.VBox([w.HTML("<h2 style='margin:4px 0'>labkit studio</h2><p class='labkit-loading'>Loading the "
                         "melody and style models (a few seconds)...</p>")])
    box.labkit_app, box.labkit_ready = None, threading.Event()

    def build():
        try:
            box.labkit_app = StudioApp(**kwargs)
            box.children = [box.labkit_app.widget]
        except Exception as error:           # shown in the page, where the user looks
            box.children = [w.HTML("<h3>The labkit studio could not start</h3>" + _error_html(error))]
        finally:
            box.labkit_ready.set()

    threading.Thread(target=build, name="labkit-app-build", daemon=True).start()
    return box
