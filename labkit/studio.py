"""Music you can see: a light show that follows the music as it plays (pitch, loudness, voice -> place, size, colour).

The source paper pairs the generated music with *lighting and a scene* that follow its pitch,
timbre and intensity. Here every note becomes a light on a dark stage, drawn by a small
JavaScript animation on an HTML canvas that reads the time from the ``<audio>`` element playing
the piece (``currentTime``), so picture and sound stay together when the listener pauses or seeks:

* **pitch -> height and brightness**: a note's height on the stage is its pitch within the
  piece's range (:func:`pitch_height`: the lowest pitch minus two semitones at the bottom, the
  highest plus two at the top), and higher notes are lighter colours (``lightness`` 35..75 %);
* **loudness (velocity) -> size**: the light's radius grows linearly with velocity
  (:func:`velocity_radius`: 3 px at velocity 0 to 15 px at 127);
* **voice (timbre) -> colour**: each voice (each track of a mix, each instrument of a file) has
  its own hue (:data:`VOICE_HUES`);
* **time -> place across the stage**: notes scroll from right to left past a playhead a third of
  the way in; a sounding note glows and swells, and the whole stage is lit in the mean colour of
  the notes sounding, brighter the louder they are (the scene's light).

The mapping is computed here, in Python (:func:`note_lights`: one dict per note), and embedded in
the page as JSON; the JavaScript only draws. So the mapping is tested without a browser, and the
page needs nothing from the network (no CDN): :func:`stage_document` is one self-contained HTML
document (the audio as a base64 WAV data URI), :func:`stage_iframe` wraps it in an ``<iframe
srcdoc>`` (its script runs wherever HTML is shown: a notebook output, an ``ipywidgets.HTML``, the
app) and :func:`show_stage` returns an ``IPython.display.HTML`` for a notebook cell.

Live mode (:mod:`labkit.live` in the app) uses :func:`live_stage_iframe`: the same stage, fed chunk
by chunk through a hidden element of the page (:func:`live_feed_html`), its audio scheduled
gaplessly with the Web Audio API, and the style index on the bipolar axis moving as each chunk plays.

Reference: the lighting-and-scene output of the source paper's music education and live
performance system (pitch, timbre and intensity of the music mapped to light).

Notebook: 10_mixing_and_performance.ipynb
"""
from __future__ import annotations

import base64
import html
import io
import json
import wave

import numpy as np

from labkit.errors import ConfigError

#: Hue (degrees) of each voice, in order; voice ``i`` gets ``VOICE_HUES[i % len(VOICE_HUES)]``.
VOICE_HUES = (205, 25, 130, 290, 55, 340, 170, 260)
#: Radius (px) of a light at velocity 0 and at velocity 127.
RADIUS_RANGE = (3.0, 15.0)
#: Lightness (%) of the lowest and of the highest pitch of a piece.
LIGHTNESS_RANGE = (35.0, 75.0)
#: Semitones of room above the highest and below the lowest pitch of a piece.
PITCH_MARGIN = 2
#: Size of the stage (canvas) in CSS pixels.
STAGE_SIZE = (720, 240)


def pitch_height(pitch, low: int, high: int) -> np.ndarray:
    """Height of ``pitch`` on the stage in [0, 1] (0 bottom): ``(pitch - low + m) / (high - low + 2 m)``,
    ``m`` = :data:`PITCH_MARGIN`, for a piece whose pitches span ``low..high``.

    Notebook: 10_mixing_and_performance.ipynb

    >>> pitch_height([60, 62, 64], 60, 64).round(3).tolist()
    [0.25, 0.5, 0.75]
    """
    m = PITCH_MARGIN
    return (np.asarray(pitch, np.float64) - low + m) / max(high - low + 2 * m, 1)


def velocity_radius(velocity) -> np.ndarray:
    """Radius in px of a light of MIDI ``velocity`` 0..127: linear from :data:`RADIUS_RANGE` [0] to [1].

    Notebook: 10_mixing_and_performance.ipynb

    >>> velocity_radius([0, 127, 63.5]).tolist()
    [3.0, 15.0, 9.0]
    """
    v = np.clip(np.asarray(velocity, np.float64), 0, 127) / 127.0
    lo, hi = RADIUS_RANGE
    return lo + (hi - lo) * v


def voice_colour(voice: int, height: float) -> str:
    """CSS colour of a light: the voice's hue (:data:`VOICE_HUES`), lighter for a higher ``height`` in [0, 1].

    Notebook: 10_mixing_and_performance.ipynb

    >>> voice_colour(0, 0.0), voice_colour(1, 1.0), voice_colour(8, 0.5)
    ('hsl(205, 80%, 35%)', 'hsl(25, 80%, 75%)', 'hsl(205, 80%, 55%)')
    """
    lo, hi = LIGHTNESS_RANGE
    lightness = lo + (hi - lo) * float(np.clip(height, 0.0, 1.0))
    return f"hsl({VOICE_HUES[int(voice) % len(VOICE_HUES)]}, 80%, {lightness:.0f}%)"


def _voice_notes(music) -> list[tuple[int, float, float, int, int]]:
    """``(pitch, start s, end s, velocity, sub-voice)`` of a NoteSequence, Melody or ``(pitch, start, end,
    velocity)`` rows; drums are left out (they have no pitch to place)."""
    from labkit.melody import Melody, melody_to_sequence

    if isinstance(music, Melody):
        music = melody_to_sequence(music)
    if hasattr(music, "notes") and hasattr(music, "total_time"):
        instruments = sorted({(n.instrument, n.program) for n in music.notes if not n.is_drum})
        which = {key: i for i, key in enumerate(instruments)}
        return [(int(n.pitch), float(n.start_time), float(n.end_time), int(n.velocity),
                 which[(n.instrument, n.program)]) for n in music.notes if not n.is_drum]
    rows = []
    for row in music:
        if len(row) != 4:
            raise ConfigError(f"a note is (pitch, start s, end s, velocity), got {row!r}")
        rows.append((int(row[0]), float(row[1]), float(row[2]), int(row[3]), 0))
    return rows


def note_lights(voices, *, low: int | None = None, high: int | None = None) -> list[dict]:
    """The lights of a piece: one dict per note, sorted by start time.

    Args:
        voices: one piece (a ``NoteSequence``, a :class:`~labkit.melody.Melody`, or rows ``(pitch,
            start s, end s, velocity)``) or a list of them, one per voice (the tracks of a mix).
            Within one NoteSequence each instrument is a voice of its own.
        low, high: the pitch range of the stage (default: the piece's lowest and highest pitch).

    Returns:
        ``[{"pitch", "t0", "t1" (seconds), "velocity", "voice", "y" (height in [0, 1],
        :func:`pitch_height`), "r" (radius px, :func:`velocity_radius`), "colour" (:func:`voice_colour`)}]``.

    Notebook: 10_mixing_and_performance.ipynb

    >>> lights = note_lights([[(60, 0.0, 0.5, 127)], [(64, 0.25, 1.0, 0)]])
    >>> [(d["voice"], round(d["y"], 3), d["r"], d["colour"]) for d in lights]
    [(0, 0.25, 15.0, 'hsl(205, 80%, 45%)'), (1, 0.75, 3.0, 'hsl(25, 80%, 65%)')]
    """
    if isinstance(voices, (list, tuple)) and voices and not (
            isinstance(voices[0], (list, tuple)) and len(voices[0]) == 4 and np.isscalar(voices[0][0])):
        pieces = list(voices)
    else:
        pieces = [voices]
    notes, offset = [], 0
    for piece in pieces:
        rows = _voice_notes(piece)
        notes += [(p, s, e, v, offset + sub) for p, s, e, v, sub in rows]
        offset += max((sub for *_, sub in rows), default=0) + 1
    if not notes:
        return []
    pitches = [n[0] for n in notes]
    low = min(pitches) if low is None else int(low)
    high = max(pitches) if high is None else int(high)
    ys = pitch_height(pitches, low, high)
    radii = velocity_radius([n[3] for n in notes])
    lights = [{"pitch": p, "t0": round(s, 4), "t1": round(e, 4), "velocity": v, "voice": voice,
               "y": round(float(y), 4), "r": round(float(r), 2), "colour": voice_colour(voice, y)}
              for (p, s, e, v, voice), y, r in zip(notes, ys, radii)]
    return sorted(lights, key=lambda d: (d["t0"], d["voice"], d["pitch"]))


def wav_bytes(audio, sample_rate: int) -> bytes:
    """A 16-bit PCM WAV file, in memory, of float audio in [-1, 1]: mono ``[n]`` or stereo ``[n, 2]``.

    Notebook: 10_mixing_and_performance.ipynb

    >>> data = wav_bytes(np.zeros((10, 2), np.float32), 8000)
    >>> data[:4], len(data)
    (b'RIFF', 84)
    """
    a = np.asarray(audio, np.float32)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[1] not in (1, 2):
        raise ConfigError(f"audio must be [n] or [n, 2], got shape {a.shape}")
    pcm = (np.clip(a, -1.0, 1.0) * 32767.0).round().astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(a.shape[1])
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def wav_data_uri(audio, sample_rate: int) -> str:
    """``data:audio/wav;base64,...`` of :func:`wav_bytes` (for an ``<audio>`` or a download link).

    Notebook: 10_mixing_and_performance.ipynb
    """
    return "data:audio/wav;base64," + base64.b64encode(wav_bytes(audio, sample_rate)).decode("ascii")


# The stage's drawing code, shared by the played piece and the live mode. `lights` are note_lights()
# dicts; `now()` is the time in seconds; it sets data-frames / data-active / data-time on <body>.
_STAGE_JS = r"""
const canvas = document.getElementById('stage'), g = canvas.getContext('2d');
const W = canvas.width, H = canvas.height, PX_PER_S = 140, PLAYHEAD = W / 3;
let frames = 0;
function activeAt(t) { return lights.filter(n => n.t0 <= t && t < n.t1); }
function draw(t) {
  const on = activeAt(t);
  let glow = 0, lead = null;                 // the scene's light: the loudest note's colour, as bright as all
  for (const n of on) { glow += n.velocity / 127; if (!lead || n.velocity > lead.velocity) lead = n; }
  const light = Math.min(1, glow / 2);
  const bg = g.createRadialGradient(PLAYHEAD, H / 2, 10, PLAYHEAD, H / 2, W / 2);
  const alpha = (0.1 + 0.4 * light).toFixed(3);
  bg.addColorStop(0, lead ? lead.colour.replace('hsl', 'hsla').replace('%)', '%, ' + alpha + ')') : '#111');
  bg.addColorStop(1, '#0b0b12');
  g.fillStyle = bg; g.fillRect(0, 0, W, H);
  g.strokeStyle = 'rgba(255,255,255,0.35)'; g.beginPath(); g.moveTo(PLAYHEAD, 0); g.lineTo(PLAYHEAD, H); g.stroke();
  for (const n of lights) {
    const x0 = PLAYHEAD + (n.t0 - t) * PX_PER_S, x1 = PLAYHEAD + (n.t1 - t) * PX_PER_S;
    if (x1 < -20 || x0 > W + 20) continue;
    const y = H - 10 - n.y * (H - 20), sounding = n.t0 <= t && t < n.t1;
    g.globalAlpha = sounding ? 1 : 0.55;
    g.strokeStyle = n.colour; g.lineWidth = Math.max(2, n.r / 2);
    g.beginPath(); g.moveTo(x0, y); g.lineTo(x1, y); g.stroke();
    g.shadowBlur = sounding ? 25 : 0; g.shadowColor = n.colour; g.fillStyle = n.colour;
    g.beginPath(); g.arc(Math.max(x0, Math.min(PLAYHEAD, x1)), y, sounding ? n.r * 1.5 : n.r, 0, 2 * Math.PI); g.fill();
    g.shadowBlur = 0; g.globalAlpha = 1;
  }
  frames += 1;
  document.body.dataset.frames = frames;
  document.body.dataset.active = on.length;
  document.body.dataset.time = t.toFixed(3);
}
"""

_STAGE_CSS = ("body{margin:0;background:#0b0b12;color:#ddd;font:13px sans-serif}"
              f"canvas{{display:block;width:100%;max-width:{STAGE_SIZE[0]}px;border-radius:6px}}"
              ".bar{display:flex;gap:8px;align-items:center;padding:4px}audio{height:32px;flex:1}")


def stage_document(voices, audio=None, sample_rate: int = 22050, *, title: str = "") -> str:
    """A self-contained HTML page: the piece's audio player and its light show, kept in step.

    Args:
        voices: as :func:`note_lights` (one piece or one per voice).
        audio: float ``[n]`` or ``[n, 2]`` in [-1, 1] to play (its ``currentTime`` drives the
            picture), or ``None``: the picture plays on a clock of its own (a play button).
        sample_rate: of ``audio`` (Hz).
        title: a line above the stage.

    Returns the HTML text (no network access needed). Open it in a browser, or see
    :func:`stage_iframe` / :func:`show_stage` for a page or a notebook.

    Notebook: 10_mixing_and_performance.ipynb
    """
    lights = note_lights(voices)
    end = max((n["t1"] for n in lights), default=0.0)
    if audio is not None:
        player = f'<audio id="player" controls preload="auto" src="{wav_data_uri(audio, sample_rate)}"></audio>'
        clock = "const player = document.getElementById('player'); const now = () => player.currentTime;"
    else:
        player = '<button id="play">play</button><span id="clock">0.0 s</span>'
        clock = ("let t0 = null; document.getElementById('play').onclick = () => { t0 = performance.now(); };"
                 f"const now = () => t0 === null ? 0 : Math.min({end + 1:.3f}, (performance.now() - t0) / 1000);")
    data = json.dumps(lights, separators=(",", ":")).replace("</", "<\\/")
    head = f"<div class='bar'><b>{html.escape(title)}</b></div>" if title else ""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{_STAGE_CSS}</style></head><body "
            f"data-notes='{len(lights)}' data-frames='0'>{head}"
            f"<canvas id='stage' width='{STAGE_SIZE[0]}' height='{STAGE_SIZE[1]}'></canvas>"
            f"<div class='bar'>{player}</div><script>const lights = {data};{_STAGE_JS}{clock}"
            "window.litAt = t => activeAt(t).length;"
            "function loop() { draw(now()); requestAnimationFrame(loop); } loop();</script></body></html>")


def _iframe(document: str, height: int, css_class: str) -> str:
    return (f'<iframe class="{css_class}" style="width:100%;max-width:{STAGE_SIZE[0] + 20}px;height:{height}px;'
            f'border:0" srcdoc="{html.escape(document, quote=True)}"></iframe>')


def stage_iframe(voices, audio=None, sample_rate: int = 22050, *, title: str = "") -> str:
    """:func:`stage_document` in an ``<iframe srcdoc>`` (class ``labkit-stage``), to put into a page or
    an ``ipywidgets.HTML``: the iframe runs its own script wherever the HTML is inserted.

    Notebook: 10_mixing_and_performance.ipynb
    """
    height = STAGE_SIZE[1] + 60 + (30 if title else 0)
    return _iframe(stage_document(voices, audio, sample_rate, title=title), height, "labkit-stage")


def show_stage(voices, audio=None, sample_rate: int = 22050, *, title: str = ""):
    """The light show in a notebook cell: ``IPython.display.HTML`` of :func:`stage_iframe`.

    Notebook: 10_mixing_and_performance.ipynb

    Example (in a notebook cell)::

        from labkit.mix import Track, mix_tracks
        result = mix_tracks([Track(melody, pan=-0.5), Track(drone(melody), pan=0.5, volume_db=-9)])
        show_stage([melody, drone(melody)], result.audio, result.sample_rate)
    """
    from IPython.display import HTML

    return HTML(stage_iframe(voices, audio, sample_rate, title=title))


# --- live mode -----------------------------------------------------------------------------------

def live_feed_html(feed: str, session: int, state: str, chunks, *, sample_rate: int, axis=("irish", "german"),
                   voice: int = 0) -> str:
    """The hidden element through which the live stage (:func:`live_stage_iframe`) receives chunks.

    Args:
        feed: a CSS class naming this feed (one per live panel).
        session: a number that changes at every start (the stage then starts afresh).
        state: ``"playing"`` or ``"stopped"`` (the stage then falls silent at once).
        chunks: the latest few :class:`labkit.live.LiveChunk` (with audio); the stage takes those it
            has not seen yet, by index.
        sample_rate: of the chunks' audio.

    Notebook: 10_mixing_and_performance.ipynb
    """
    if state not in ("playing", "stopped"):
        raise ConfigError(f"state must be 'playing' or 'stopped', not {state!r}")
    items = []
    for c in chunks:
        sps = c.seconds / max(c.num_steps, 1)            # the notes are (pitch, start step, end step)
        lights = note_lights([[(p, s * sps, e * sps, 100) for p, s, e in c.notes]], low=48, high=84) \
            if c.notes else []
        for n in lights:
            n["voice"], n["colour"] = voice, voice_colour(voice, n["y"])
        wav = base64.b64encode(wav_bytes(c.audio, sample_rate)).decode("ascii") if c.audio is not None else ""
        data = {"index": c.index, "start": c.start_time, "end": c.end_time, "style": round(c.style_index, 4),
                "target": c.target, "lights": lights}
        items.append(f"<span data-chunk='{html.escape(json.dumps(data), quote=True)}' data-wav='{wav}'></span>")
    return (f"<div class='{html.escape(feed)}' style='display:none' data-session='{int(session)}' "
            f"data-state='{state}' data-axis='{html.escape(json.dumps(list(axis)), quote=True)}'>"
            + "".join(items) + "</div>")


_LIVE_JS = r"""
const lights = [];
const axisCanvas = document.getElementById('axis'), a = axisCanvas.getContext('2d');
let ctx = null, session = null, seen = -1, origin = null, sources = [], marks = [], playing = false, received = 0;
function reset() {
  for (const s of sources) { try { s.stop(); } catch (e) {} }
  sources = []; lights.length = 0; marks = []; seen = -1; origin = null; received = 0;
}
function songTime() { return (ctx && origin !== null) ? ctx.currentTime - origin : 0; }
function now() { return songTime(); }
function drawAxis(t) {
  const W = axisCanvas.width, H = axisCanvas.height;
  const grad = a.createLinearGradient(0, 0, W, 0);
  grad.addColorStop(0, '#b2182b'); grad.addColorStop(0.5, '#f7f7f7'); grad.addColorStop(1, '#2166ac');
  a.fillStyle = '#0b0b12'; a.fillRect(0, 0, W, H);
  a.fillStyle = grad; a.fillRect(40, H / 2 - 4, W - 80, 8);
  a.fillStyle = '#ddd'; a.font = '12px sans-serif';
  a.fillText(axisNames[1], 0, H / 2 + 4); a.fillText(axisNames[0], W - 38, H / 2 + 4);
  let current = null, target = null;
  for (const m of marks) if (m.start <= t) { current = m.style; target = m.target; }
  if (target !== null && target !== undefined) {
    const tx = 40 + target * (W - 80); a.strokeStyle = '#ffd166'; a.lineWidth = 2;
    a.beginPath(); a.moveTo(tx, 2); a.lineTo(tx, H - 2); a.stroke();
  }
  if (current !== null) {
    const x = 40 + current * (W - 80);
    a.fillStyle = '#ffffff'; a.beginPath(); a.arc(x, H / 2, 7, 0, 2 * Math.PI); a.fill();
    document.getElementById('index').textContent = current.toFixed(2);
    document.body.dataset.style = current.toFixed(4);
  }
}
function poll() {
  const feed = window.parent.document.querySelector('div.' + FEED);
  if (!feed) return;
  axisNames = JSON.parse(feed.dataset.axis || '["a","b"]');
  if (feed.dataset.session !== session) { reset(); session = feed.dataset.session; }
  playing = feed.dataset.state === 'playing';
  document.body.dataset.state = feed.dataset.state;
  if (!playing) { if (sources.length) { reset(); } return; }
  if (!ctx) { const AC = window.parent.AudioContext || window.AudioContext; ctx = new AC(); }
  if (ctx.state === 'suspended') ctx.resume();
  for (const span of feed.querySelectorAll('span[data-chunk]')) {
    const c = JSON.parse(span.dataset.chunk);
    if (c.index <= seen) continue;
    seen = c.index; received += 1;
    document.body.dataset.chunks = received;
    document.getElementById('count').textContent = received;
    if (origin === null) origin = ctx.currentTime + 0.15 - c.start;
    for (const n of c.lights) lights.push(n);
    marks.push({start: c.start, style: c.style, target: c.target});
    const bytes = Uint8Array.from(atob(span.dataset.wav), ch => ch.charCodeAt(0));
    const when = origin + c.start, sess = session;
    ctx.decodeAudioData(bytes.buffer).then(buf => {
      if (sess !== session || !playing) return;
      const src = ctx.createBufferSource(); src.buffer = buf; src.connect(ctx.destination);
      src.start(Math.max(when, ctx.currentTime)); sources.push(src);
      document.body.dataset.decoded = (+(document.body.dataset.decoded || 0) + 1);
      document.body.dataset.seconds = ((+(document.body.dataset.seconds || 0)) + buf.duration).toFixed(3);
    });
  }
}
let axisNames = ['a', 'b'];
setInterval(poll, 150);
function loop() { const t = now(); draw(t); drawAxis(t); requestAnimationFrame(loop); } loop();
"""


def live_stage_iframe(feed: str, *, axis=("irish", "german")) -> str:
    """The live stage: an ``<iframe srcdoc>`` (class ``labkit-live-stage``) that reads chunks from the
    page's feed element (:func:`live_feed_html`, CSS class ``feed``), plays their audio one after the
    other without gaps (Web Audio, scheduled on the chunks' times) and draws their lights and the
    running style index on the bipolar axis (``axis[1]`` at 0, left; ``axis[0]`` at 1, right).

    The frame sets ``data-chunks`` (chunks received), ``data-decoded``, ``data-seconds`` (audio
    scheduled), ``data-state`` and ``data-style`` on its ``<body>``: what a browser test reads.

    Notebook: 10_mixing_and_performance.ipynb
    """
    if not feed.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"a feed name is letters, digits, '-' and '_', not {feed!r}")
    document = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{_STAGE_CSS}</style></head>"
                f"<body data-chunks='0' data-state='stopped'><canvas id='stage' width='{STAGE_SIZE[0]}' "
                f"height='{STAGE_SIZE[1]}'></canvas><canvas id='axis' width='{STAGE_SIZE[0]}' height='36'>"
                "</canvas><div class='bar'>chunks: <span id='count'>0</span> &middot; style index: "
                f"<span id='index'>-</span></div><script>const FEED = {json.dumps(feed)};"
                f"{_STAGE_JS}{_LIVE_JS}</script></body></html>")
    return _iframe(document, STAGE_SIZE[1] + 90, "labkit-live-stage")
