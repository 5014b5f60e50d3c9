"""Live generation: the melody model plays on and on, in chunks, steered toward a style while it plays.

:class:`LiveEngine` generates music one *chunk* at a time (``bars_per_chunk`` bars, two by
default) with the shipped melody LSTM (:func:`labkit.checkpoint.load_melody_model`) or any
labkit melody model. Each chunk is sampled by :func:`labkit.sample.sample` with the end of
the music so far as its primer (the last ``primer_steps`` tokens), so the line continues
across chunks, and its notes are placed on one steady tempo grid: chunk ``k`` covers steps
``[k * L, (k + 1) * L)`` of the whole performance (``L`` steps per chunk) and every time is an
integer step times ``60 / (qpm * steps_per_quarter)`` seconds, so chunk ``k``'s end is exactly
chunk ``k + 1``'s start. A note belongs to the chunk it starts in; one still held at the
chunk's end is ended there (the model's tokens, and so the next primer and the style index,
keep the whole hold). Each chunk's audio (the SoundFont, :func:`labkit.mix.render_track`) is
exactly as long as the chunk; a release that rings past the end is carried into the next
chunk's audio, so the chunks' audio laid end to end is one seamless stream.

**Steering toward a style.** The style index here is the position on the bipolar axis between
two styles ``(a, b)`` of the shipped style model (:mod:`labkit.style.scoring`): ``P(a) / (P(a) +
P(b))``, 1 at ``a``, 0 at ``b``, the axis of :func:`labkit.style.plots.plot_style_axis`. With a
target set (:meth:`LiveEngine.set_target`: a style name, or an index in [0, 1]), every step draws
``candidates`` continuations at once (one batch, one compiled program) and keeps the one whose
*running* index (the index of the last ``window_bars`` bars played, the candidate included) lies
closest to the target; so the index of the music played drifts toward the target, as fast as the
candidates allow. Without a target the first candidate is kept (plain sampling). This is
best-of-N reranking by an external classifier, a simple form of guided decoding.

**Determinism.** Chunk ``k`` is drawn with ``jax.random.fold_in(jax.random.key(seed), k)``;
a target change takes effect at a chunk index (the next chunk generated, or the one you name),
so the same seed and the same target changes give the same notes, whether the chunks are made
by :meth:`LiveEngine.chunks` or by the background thread of :meth:`LiveEngine.start`.

**Speed.** Each chunk records the seconds it took (sampling, scoring, rendering); its
real-time factor is the seconds of music per second of compute, and
:meth:`LiveEngine.realtime_factor` is the median over the chunks so far (the first chunks
include compilation; the median ignores them). ``benchmarks/live_rtf.py`` measures it.

Notebook: 10_mixing_and_performance.ipynb
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from labkit.audio import DEFAULT_SAMPLE_RATE
from labkit.encoding import MelodyEncoding
from labkit.errors import ConfigError
from labkit.melody import DEFAULT_QPM, Melody
from labkit.mix import Track, render_track
from labkit.sample import SampleConfig, default_primer, primer_from_melody, sample

#: The bipolar axis when none is given: (the style at index 1, the style at index 0).
DEFAULT_AXIS = ("irish", "german")
#: Candidates drawn per chunk when steering.
DEFAULT_CANDIDATES = 8
#: Sampling temperature of the live engine.
DEFAULT_LIVE_TEMPERATURE = 1.0


@dataclass(frozen=True)
class LiveChunk:
    """One chunk of a live performance.

    Attributes:
        index: 0, 1, 2, ... in the order played.
        start_step, num_steps: where it lies on the performance's step grid.
        start_time, end_time: seconds from the start of the performance.
        sequence: the chunk's notes as a ``NoteSequence``, at their absolute times.
        tokens: int32 ``[num_steps]``, the model's tokens for the chunk.
        audio: float32 ``[samples, 2]`` exactly as long as the chunk (with the previous chunk's
            ringing tail mixed in), or ``None`` when the engine renders no audio.
        style_index: the running style index after this chunk (last ``window_bars`` bars).
        candidate_indices: float64 ``[candidates]``, the running index each candidate would give.
        target: the target index in effect (``None``: not steering).
        compute_seconds: time spent making it (sampling, scoring, rendering).

    Notebook: 10_mixing_and_performance.ipynb
    """

    index: int
    start_step: int
    num_steps: int
    start_time: float
    end_time: float
    sequence: object
    tokens: np.ndarray
    audio: np.ndarray | None
    style_index: float
    candidate_indices: np.ndarray
    target: float | None
    compute_seconds: float
    notes: tuple = field(default=(), repr=False)

    @property
    def seconds(self) -> float:
        """Seconds of music in the chunk."""
        return self.end_time - self.start_time

    @property
    def realtime_factor(self) -> float:
        """Seconds of music per second of compute for this chunk."""
        return self.seconds / max(self.compute_seconds, 1e-9)


def axis_index(proba: np.ndarray, columns: tuple[int, int]) -> np.ndarray:
    """The bipolar style index ``P(a) / (P(a) + P(b))`` of probability rows ``[n, C]``: ``[n]`` in [0, 1].

    Notebook: 10_mixing_and_performance.ipynb

    >>> axis_index(np.array([[0.6, 0.2, 0.2], [0.1, 0.0, 0.3]]), (0, 2)).round(3).tolist()
    [0.75, 0.25]
    """
    proba = np.asarray(proba, dtype=np.float64)
    a, b = proba[:, columns[0]], proba[:, columns[1]]
    return (a + 1e-12) / (a + b + 2e-12)


class LiveEngine:
    """Continuous generation in chunks on a steady tempo grid, steered toward a style (see the module text).

    Args:
        model: a labkit melody model (default: the shipped one, :func:`labkit.checkpoint.load_melody_model`).
        style_model: a style model (default: the shipped one, :func:`labkit.style.model.load_style_model`).
        axis: ``(a, b)``: the styles at index 1 and at index 0 (default :data:`DEFAULT_AXIS`).
        seed: 0..2**32-1; the same seed and target changes give the same chunks.
        qpm, steps_per_quarter: the tempo grid (4/4 time: a bar is ``4 * steps_per_quarter`` steps).
        bars_per_chunk: bars per chunk (1..16).
        candidates: continuations drawn per chunk when steering (1..256), in one batch.
        temperature, top_p: sampling (:class:`labkit.sample.SampleConfig`).
        primer: a :class:`~labkit.melody.Melody` or tokens to start from (default: one middle C).
        primer_steps: how many of the last tokens prime each chunk (at least one chunk).
        window_bars: bars the running style index looks at.
        target: the initial target (a style of ``axis``, an index in [0, 1], or ``None``).
        audio: render each chunk's audio (``program``, ``volume_db``, ``sample_rate``, ``method``).
        buffer: chunks the background thread may make ahead of the reader.

    Notebook: 10_mixing_and_performance.ipynb

    Example (a few chunks, synchronously)::

        engine = LiveEngine(seed=1, target="irish")
        for chunk in engine.chunks(4):
            print(chunk.index, chunk.start_time, len(chunk.sequence.notes), round(chunk.style_index, 2))
    """

    def __init__(self, model=None, style_model=None, *, axis: Sequence[str] = DEFAULT_AXIS, seed: int = 0,
                 qpm: float = DEFAULT_QPM, steps_per_quarter: int = 4, bars_per_chunk: int = 2,
                 candidates: int = DEFAULT_CANDIDATES, temperature: float = DEFAULT_LIVE_TEMPERATURE,
                 top_p: float = 1.0, primer=None, primer_steps: int = 64, window_bars: int = 8, target=None,
                 audio: bool = True, program: int = 0, volume_db: float = 0.0,
                 sample_rate: int = DEFAULT_SAMPLE_RATE, method: str = "soundfont", buffer: int = 2):
        import jax

        from labkit.checkpoint import load_melody_model
        from labkit.style.model import load_style_model

        self.encoding = MelodyEncoding()
        if model is None:
            model, _ = load_melody_model(encoding=self.encoding)
        self.model = model
        self.style_model = load_style_model() if style_model is None else style_model
        axis = tuple(axis)
        if len(axis) != 2 or axis[0] == axis[1] or any(s not in self.style_model.styles for s in axis):
            raise ConfigError(f"axis must be two different styles of the style model "
                              f"({', '.join(self.style_model.styles)}), got {axis!r}")
        self.axis = axis
        self._columns = (self.style_model.styles.index(axis[0]), self.style_model.styles.index(axis[1]))
        for name, value, low, high in (("steps_per_quarter", steps_per_quarter, 1, 96),
                                       ("bars_per_chunk", bars_per_chunk, 1, 16),
                                       ("candidates", candidates, 1, 256), ("window_bars", window_bars, 1, 64),
                                       ("buffer", buffer, 1, 64)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
                raise ConfigError(f"{name} must be an integer in {low}..{high}, got {value!r}")
        if not (isinstance(qpm, (int, float, np.integer, np.floating)) and 4 <= qpm < 1000):
            raise ConfigError(f"qpm must be a number in [4, 1000), got {qpm!r}")
        self.qpm, self.steps_per_quarter = float(qpm), int(steps_per_quarter)
        self.bar_steps = 4 * self.steps_per_quarter
        self.chunk_steps = int(bars_per_chunk) * self.bar_steps
        self.window_steps = int(window_bars) * self.bar_steps
        if isinstance(primer_steps, bool) or not isinstance(primer_steps, (int, np.integer)) or primer_steps < 1:
            raise ConfigError(f"primer_steps must be a positive integer, got {primer_steps!r}")
        self.primer_steps = int(primer_steps)
        self.candidates = int(candidates)
        self.config = SampleConfig(num_samples=self.candidates, length=self.chunk_steps, temperature=temperature,
                                   top_p=top_p, seed=0).validate(self.encoding.vocab_size)
        SampleConfig(seed=seed).validate()          # the seed's range, with the sampler's message
        self.seed = int(seed)
        self._base_key = jax.random.key(self.seed)
        if primer is None:
            primer = default_primer(self.encoding)
        elif isinstance(primer, Melody):
            primer = primer_from_melody(primer, self.encoding)
        self._primer = np.asarray(primer, dtype=np.int32).reshape(-1)
        if not self._primer.size or self._primer.min() < 0 or self._primer.max() >= self.encoding.vocab_size:
            raise ConfigError(f"primer tokens must be 1 or more tokens in 0..{self.encoding.vocab_size - 1}")
        self.audio, self.program, self.volume_db = bool(audio), int(program), float(volume_db)
        self.sample_rate, self.method = int(sample_rate), method
        if self.audio:      # check the render settings now, not in the first chunk
            Track(Melody(np.zeros(0, np.int32)), volume_db=self.volume_db, program=self.program).validate()
        self.buffer = int(buffer)
        self._lock = threading.RLock()
        self._targets: dict[int, float | None] = {0: self._as_target(target)}
        self._history = self._primer.copy()          # the model's tokens so far (primer + played), bounded
        self._played = np.zeros(0, np.int32)          # tokens played, the last window_steps of them
        self._next = 0
        self._tail = np.zeros((0, 2), np.float32)
        self._compute: list[float] = []
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue | None = None
        self._stop = threading.Event()
        self._error: BaseException | None = None

    # --- the target -------------------------------------------------------------------
    def _as_target(self, target) -> float | None:
        if target is None:
            return None
        if isinstance(target, str):
            if target not in self.axis:
                raise ConfigError(f"target style {target!r} is not on the axis {self.axis[0]}-{self.axis[1]}")
            return 1.0 if target == self.axis[0] else 0.0
        if isinstance(target, bool) or not isinstance(target, (int, float, np.integer, np.floating)) \
                or not 0.0 <= float(target) <= 1.0:
            raise ConfigError(f"target must be a style of the axis {self.axis}, an index in [0, 1] or None, "
                              f"got {target!r}")
        return float(target)

    def set_target(self, target, at_chunk: int | None = None) -> float | None:
        """Steer toward ``target`` (a style of the axis: its end, 1 or 0; an index in [0, 1]; ``None``: stop
        steering) from chunk ``at_chunk`` on (default: the next chunk generated). Returns the target index.

        Safe to call while the engine plays; the chunk index makes the change reproducible.
        """
        value = self._as_target(target)
        with self._lock:
            at = self._next if at_chunk is None else int(at_chunk)
            if at < self._next:
                raise ConfigError(f"chunk {at} is already generated (the next is {self._next})")
            self._targets = {k: v for k, v in self._targets.items() if k < at}
            self._targets[at] = value
        return value

    def target_at(self, index: int) -> float | None:
        """The target index in effect for chunk ``index``."""
        with self._lock:
            return self._targets[max(k for k in self._targets if k <= index)]

    # --- generation ---------------------------------------------------------------------
    def seconds_per_step(self) -> float:
        """Length of one grid step in seconds: ``60 / (qpm * steps_per_quarter)``."""
        return 60.0 / (self.qpm * self.steps_per_quarter)

    def _running_index(self, windows: np.ndarray) -> np.ndarray:
        from labkit.style.scoring import with_estimated_key

        melodies = [self.encoding.decode(w, steps_per_quarter=self.steps_per_quarter, qpm=self.qpm) for w in windows]
        out = np.full(len(melodies), 0.5)                 # a window without notes is undecided
        scored = [i for i, m in enumerate(melodies) if len(m.pitches)]
        if scored:
            proba = self.style_model.predict_proba([with_estimated_key(melodies[i]) for i in scored])
            out[scored] = axis_index(proba, self._columns)
        return out

    def next_chunk(self) -> LiveChunk:
        """Generate, choose, place and render the next chunk (synchronously; thread-safe)."""
        import jax

        with self._lock:
            started = time.perf_counter()
            index = self._next
            target = self.target_at(index)
            primer = self._history[-self.primer_steps:]
            key = jax.random.fold_in(self._base_key, index)
            drawn = sample(self.model, self.config, primer, key=key)[:, len(primer):]     # [K, L]
            keep = max(self.window_steps - self.chunk_steps, 0)
            context = self._played[len(self._played) - keep:] if keep else self._played[:0]
            windows = np.concatenate([np.broadcast_to(context, (len(drawn), len(context))), drawn], axis=1)
            indices = self._running_index(windows)
            best = 0 if target is None else int(np.argmin(np.abs(indices - target)))     # first of equals
            tokens = drawn[best].astype(np.int32)
            start_step = index * self.chunk_steps
            sequence, notes = self._sequence(tokens, start_step)
            audio = self._render(sequence, start_step) if self.audio else None
            self._history = np.concatenate([self._history, tokens])[-max(self.primer_steps, 1):]
            self._played = np.concatenate([self._played, tokens])[-self.window_steps:]
            self._next = index + 1
            sps = self.seconds_per_step()
            elapsed = time.perf_counter() - started
            self._compute.append(elapsed)
            return LiveChunk(index=index, start_step=start_step, num_steps=self.chunk_steps,
                             start_time=start_step * sps, end_time=(start_step + self.chunk_steps) * sps,
                             sequence=sequence, tokens=tokens, audio=audio, style_index=float(indices[best]),
                             candidate_indices=indices, target=target, compute_seconds=elapsed, notes=notes)

    def _sequence(self, tokens: np.ndarray, start_step: int):
        """The chunk's notes (``(pitch, start_step, end_step)`` absolute) and its NoteSequence (absolute seconds)."""
        from note_seq.protobuf import music_pb2

        pitches, starts, ends = self.encoding.decode(tokens).notes()   # a note held at the end ends there
        sps = self.seconds_per_step()
        seq = music_pb2.NoteSequence()
        seq.ticks_per_quarter = 220
        seq.tempos.add(time=0.0, qpm=self.qpm)
        notes = []
        for p, s, e in zip(pitches.tolist(), starts.tolist(), ends.tolist()):
            s, e = start_step + s, start_step + min(e, len(tokens))
            notes.append((p, s, e))
            seq.notes.add(pitch=p, velocity=100, program=self.program, instrument=0,
                          start_time=s * sps, end_time=e * sps)
        seq.total_time = (start_step + len(tokens)) * sps
        return seq, tuple(notes)

    def _render(self, sequence, start_step: int) -> np.ndarray:
        """The chunk's audio, exactly its length, with the last chunk's ringing tail added; keeps the new tail."""
        from note_seq.protobuf import music_pb2

        sps, sr = self.seconds_per_step(), self.sample_rate
        first = int(round(start_step * sps * sr))
        n = int(round((start_step + self.chunk_steps) * sps * sr)) - first
        local = music_pb2.NoteSequence()
        offset = first / sr
        for note in sequence.notes:
            local.notes.add(pitch=note.pitch, velocity=note.velocity, program=note.program, instrument=0,
                            start_time=note.start_time - offset, end_time=note.end_time - offset)
        local.total_time = n / sr
        rendered = render_track(Track(local, volume_db=self.volume_db, program=self.program), sample_rate=sr,
                                method=self.method) if len(local.notes) else np.zeros((0, 2), np.float32)
        length = max(n, len(rendered), len(self._tail))
        buffer = np.zeros((length, 2), np.float32)
        buffer[:len(self._tail)] += self._tail
        buffer[:len(rendered)] += rendered
        self._tail = buffer[n:].copy()
        return np.clip(buffer[:n], -1.0, 1.0)

    def chunks(self, count: int | None = None) -> Iterator[LiveChunk]:
        """The next ``count`` chunks (``None``: forever), generated here, one by one (no thread)."""
        made = 0
        while count is None or made < count:
            yield self.next_chunk()
            made += 1

    def realtime_factor(self) -> float:
        """Median over the chunks so far of seconds of music per second of compute (``nan`` before any)."""
        with self._lock:
            if not self._compute:
                return float("nan")
            seconds = self.chunk_steps * self.seconds_per_step()
            return float(np.median([seconds / max(c, 1e-9) for c in self._compute]))

    # --- playing in the background ---------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether the background thread is making chunks."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> "LiveEngine":
        """Start a background thread that makes chunks ahead (at most ``buffer``) for :meth:`stream`."""
        with self._lock:
            if self.running:
                return self
            self._stop.clear()
            self._error = None
            self._queue = queue.Queue(maxsize=self.buffer)
            self._thread = threading.Thread(target=self._produce, name="labkit-live", daemon=True)
            self._thread.start()
        return self

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = self.next_chunk()
                while not self._stop.is_set():
                    try:
                        self._queue.put(chunk, timeout=0.05)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:          # handed to the reader by stream()
            self._error = exc

    def stream(self, timeout: float | None = None) -> Iterator[LiveChunk]:
        """The chunks the background thread makes, in order, until :meth:`stop` (starts it if needed).

        ``timeout``: seconds to wait for one chunk before giving up (``None``: wait while it runs).
        An error in the thread is raised here.
        """
        self.start()
        waited = 0.0
        while True:
            try:
                chunk = self._queue.get(timeout=0.05)
                waited = 0.0
                yield chunk
                continue
            except queue.Empty:
                waited += 0.05
            if self._error is not None:
                raise self._error
            if self._stop.is_set() or not self.running:
                return
            if timeout is not None and waited >= timeout:
                return

    def __iter__(self) -> Iterator[LiveChunk]:
        return self.stream()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the background thread and wait for it to end (chunks not yet read are dropped)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if self._queue is not None:
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break

    def __enter__(self) -> "LiveEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
