"""A listening test in the notebook, and the analysis of its answers (subjective evaluation).

Numbers such as those of :mod:`labkit.judge` say how close generated tunes are to real ones; whether
they *sound* good can only be asked of listeners. :class:`ListeningTest` is an ipywidgets panel
(ipywidgets 7.7.1 in Colab, 8 in JupyterLab: it uses only ``Button``, ``Audio``, ``HTML``, ``Text``
and boxes, which both have) that plays

* **pairs** (``mode="pairs"``): two clips, A and B, and asks which is better (a forced choice); or
* **single clips** (``mode="ratings"``): one clip and a rating from 1 (bad) to 5 (excellent), the
  absolute category rating of ITU-T P.800 and of MUSHRA-like music tests.

The test is blind: clips are played from their bytes, never named (the page shows "Pair 3 of 12"),
the order of the trials and which clip of a pair is A are drawn from an explicit ``seed``
(``numpy.random.default_rng``), so the same seed gives the same test.

**Answers are never lost.** After every answer one row is appended to a CSV file (:data:`CSV_COLUMNS`:
rater, seed, trial, the clip ids and their systems, answer, ISO 8601 time in UTC): the file is opened
in append mode, the row written, flushed and ``os.fsync``\\ ed before the next trial shows, and a
header is written only when the file is new or empty. A crash loses at most the answer being given,
and a second panel (another rater, another day) on the same file adds to it. A file whose header is
not this one's is refused, never written to.

Clips are WAV files (id ``<folder>/<file stem>``: put each system's clips in a folder of its own) or
``(id, audio array)`` pairs; a clip's **system** (``"real"``, ``"lstm-T0.8"``) is the part of its id
before the first ``/`` (or the whole id), unless ``systems`` says otherwise.

**Analysis.** :func:`read_answers` reads one or more such files; :func:`preference_rate` gives the
share of pairs a system won with a 95% Wilson score interval (Wilson 1927: unlike the normal
approximation it stays inside [0, 1] and is honest for small n and rates near 0 or 1);
:func:`mean_ratings` the mean rating of each system with a 95% Student-t interval (ratings treated as
independent, which ratings by the same rater are not quite); :func:`krippendorff_alpha` the agreement
between raters (Krippendorff 2011: any number of raters, missing answers allowed; 1 = perfect
agreement, 0 = no better than chance).

References:
    Edwin B. Wilson, "Probable inference, the law of succession, and statistical inference",
    JASA 22 (1927) 209-212. Klaus Krippendorff, "Computing Krippendorff's Alpha-Reliability" (2011),
    repository.upenn.edu/asc_papers/43. ITU-T Recommendation P.800 (1996), absolute category rating.

Notebook: 09_judging_generated_music.ipynb
"""
from __future__ import annotations

import csv
import datetime
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from labkit._common import display_name
from labkit.errors import ConfigError

#: The columns of an answers file, in order.
CSV_COLUMNS: tuple[str, ...] = ("rater", "seed", "trial", "clip_a", "system_a", "clip_b", "system_b", "answer",
                                "time")
#: Answers of a pair trial (the clip preferred) and of a rating trial.
PAIR_ANSWERS: tuple[str, ...] = ("A", "B")
RATINGS: tuple[int, ...] = (1, 2, 3, 4, 5)
RATING_LABELS: dict[int, str] = {1: "1 bad", 2: "2 poor", 3: "3 fair", 4: "4 good", 5: "5 excellent"}
#: Sample rate (Hz) of clips given as arrays, unless one is given.
CLIP_SAMPLE_RATE = 16000
#: z of a two-sided 95% interval.
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Clip:
    """One clip of a listening test: its ``id`` (never shown), its ``system``, and its WAV bytes.

    Notebook: 09_judging_generated_music.ipynb
    """

    id: str
    system: str
    wav: bytes


def _wav_bytes(audio, sample_rate: int) -> bytes:
    from labkit.audio import play

    return play(np.asarray(audio, dtype=np.float32), sample_rate=sample_rate).data


def make_clips(items: Iterable, *, systems: dict | None = None, sample_rate: int = CLIP_SAMPLE_RATE) -> list[Clip]:
    """Clips from WAV paths, ``(id, audio array)`` pairs or :class:`Clip` objects.

    A path's id is ``<parent folder name>/<file stem>``; an array is mono ``[n]`` or stereo ``[n, 2]``
    floats in [-1, 1] at ``sample_rate`` Hz. ``systems`` maps ids to systems (default: the id's part
    before the first ``/``, or the whole id). Raises ConfigError for a missing file, a file that is not
    a WAV file, an id used twice or fewer than one clip.

    >>> clips = make_clips([("real/a", np.zeros(160)), ("lstm/b", np.zeros(160))])
    >>> [(c.id, c.system, c.wav[:4]) for c in clips]
    [('real/a', 'real', b'RIFF'), ('lstm/b', 'lstm', b'RIFF')]

    Notebook: 09_judging_generated_music.ipynb
    """
    clips: list[Clip] = []
    for item in items:
        if isinstance(item, Clip):
            clips.append(item)
            continue
        if isinstance(item, (str, os.PathLike)):
            path = Path(item)
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise ConfigError(f"cannot read this clip ({exc.strerror or exc})", path) from None
            if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
                raise ConfigError("not a WAV file (a listening test plays WAV files)", path)
            clip_id = f"{path.parent.name}/{path.stem}" if path.parent.name else path.stem
        else:
            try:
                clip_id, audio = item
            except (TypeError, ValueError):
                raise ConfigError(f"a clip is a WAV path or an (id, audio array) pair, not {type(item).__name__}") \
                    from None
            clip_id = str(clip_id)
            data = _wav_bytes(audio, sample_rate)
        system = (systems or {}).get(clip_id, clip_id.split("/", 1)[0])
        clips.append(Clip(clip_id, str(system), data))
    if not clips:
        raise ConfigError("a listening test needs at least one clip")
    seen = set()
    for clip in clips:
        if clip.id in seen:
            raise ConfigError(f"clip id {clip.id!r} is used twice (ids name the clips in the answers file)")
        seen.add(clip.id)
    return clips


def trial_order(clips: Sequence[Clip], mode: str, seed: int, pairs: Sequence[tuple[str, str]] | None = None
                ) -> list[tuple[Clip, Clip | None]]:
    """The trials of a test, in the order they are played: ``[(clip A, clip B or None)]``.

    ``mode="ratings"``: every clip once. ``mode="pairs"``: the given ``pairs`` of clip ids, or else every
    pair of clips of different systems; which clip is A is drawn too. The order is a permutation drawn
    from ``numpy.random.default_rng(seed)``: the same seed, the same order.

    >>> clips = make_clips([("x/1", np.zeros(8)), ("y/1", np.zeros(8)), ("y/2", np.zeros(8))])
    >>> [(a.id, b.id) for a, b in trial_order(clips, "pairs", seed=0)] == \\
    ...     [(a.id, b.id) for a, b in trial_order(clips, "pairs", seed=0)]
    True
    >>> len(trial_order(clips, "pairs", seed=0)), len(trial_order(clips, "ratings", seed=0))
    (2, 3)

    Notebook: 09_judging_generated_music.ipynb
    """
    from labkit._common import MAX_SEED

    if not (isinstance(seed, (int, np.integer)) and 0 <= int(seed) <= MAX_SEED):
        raise ConfigError(f"seed must be an integer in 0..{MAX_SEED}, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    if mode == "ratings":
        trials = [(clip, None) for clip in clips]
    elif mode == "pairs":
        by_id = {clip.id: clip for clip in clips}
        if pairs is None:
            chosen = [(a, b) for i, a in enumerate(clips) for b in clips[i + 1:] if a.system != b.system]
        else:
            chosen = []
            for pair in pairs:
                try:
                    a, b = pair
                    chosen.append((by_id[str(a)], by_id[str(b)]))
                except (KeyError, TypeError, ValueError):
                    raise ConfigError(f"pair {pair!r} does not name two clips of this test") from None
        if not chosen:
            raise ConfigError("no pair to play: pairs need clips of two different systems")
        swap = rng.integers(0, 2, len(chosen))
        trials = [((b, a) if s else (a, b)) for (a, b), s in zip(chosen, swap)]
    else:
        raise ConfigError(f"mode must be 'pairs' or 'ratings', got {mode!r}")
    return [trials[i] for i in rng.permutation(len(trials))]


def _check_file(path: Path) -> None:
    """Refuse a file that exists, is not empty and does not start with this module's header."""
    if path.is_dir():
        raise ConfigError("is a folder, where the answers file goes", path)
    if path.exists() and path.stat().st_size:
        with open(path, newline="", encoding="utf-8", errors="replace") as handle:
            header = next(csv.reader(handle), [])
        if tuple(header) != CSV_COLUMNS:
            raise ConfigError(f"is not an answers file of a listening test (its first row is not "
                              f"{','.join(CSV_COLUMNS)}): not appended to", path)


def append_answer(path: str | os.PathLike, row: dict) -> None:
    """Append one answer row to ``path``: header first if the file is new or empty; flushed and fsynced.

    Notebook: 09_judging_generated_music.ipynb
    """
    path = Path(path)
    _check_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if handle.tell() == 0:
            writer.writerow(CSV_COLUMNS)
        writer.writerow([row.get(column, "") for column in CSV_COLUMNS])
        handle.flush()
        os.fsync(handle.fileno())


class ListeningTest:
    """A blind listening-test panel: pairs (A/B preference) or single clips (a 1-5 rating).

    Args:
        clips: WAV paths, ``(id, audio)`` pairs or :class:`Clip` objects (:func:`make_clips`).
        answers: the CSV file the answers are appended to (created with its header when new).
        mode: ``"pairs"`` or ``"ratings"``.
        seed: draws the order of the trials and the sides of each pair (0..2**32 - 1).
        rater: the rater's name or code; None shows a text box for it (an answer needs one).
        pairs: for ``mode="pairs"``, the pairs of clip ids to play (default: every pair of clips of
            different systems).
        systems, sample_rate: see :func:`make_clips`.

    Driving it from code (what a click does): :meth:`answer` records ``"A"``/``"B"`` or a rating for
    the trial shown and moves on; the buttons ``prefer_a``, ``prefer_b`` and ``rate_buttons[r - 1]`` call
    it. ``trial`` is the index of the trial shown (``len(trials)`` when done); ``last_error`` the last
    refusal (no rater name), also shown in ``status``.

    Example (in a notebook cell)::

        test = ListeningTest(sorted(Path("clips").glob("*/*.wav")), "answers.csv", mode="pairs", seed=7)
        test          # displays the panel

    Notebook: 09_judging_generated_music.ipynb
    """

    def __init__(self, clips, answers: str | os.PathLike, *, mode: str = "pairs", seed: int = 0,
                 rater: str | None = None, pairs: Sequence[tuple[str, str]] | None = None,
                 systems: dict | None = None, sample_rate: int = CLIP_SAMPLE_RATE):
        import ipywidgets as w

        self.clips = make_clips(clips, systems=systems, sample_rate=sample_rate)
        self.mode = mode
        self.seed = int(seed) if isinstance(seed, (int, np.integer)) else seed
        self.trials = trial_order(self.clips, mode, self.seed, pairs)
        self.answers_path = Path(answers)
        _check_file(self.answers_path)      # before anyone listens
        self.trial = 0
        self.last_error: str | None = None

        self.rater = w.Text(value=rater or "", description="rater", placeholder="your name or code")
        self.progress = w.HTML()
        self.status = w.HTML()
        self.player_a = w.Audio(format="wav", autoplay=False, loop=False)
        self.player_b = w.Audio(format="wav", autoplay=False, loop=False)
        self.prefer_a = w.Button(description="A is better", button_style="info")
        self.prefer_b = w.Button(description="B is better", button_style="info")
        self.prefer_a.on_click(lambda _b: self.answer("A"))
        self.prefer_b.on_click(lambda _b: self.answer("B"))
        self.rate_buttons = [w.Button(description=RATING_LABELS[r], layout=w.Layout(width="8em"))
                             for r in RATINGS]
        for r, button in zip(RATINGS, self.rate_buttons):
            button.on_click(lambda _b, r=r: self.answer(r))
        if mode == "pairs":
            body = [w.HBox([w.VBox([w.HTML("<b>A</b>"), self.player_a]), w.VBox([w.HTML("<b>B</b>"), self.player_b])]),
                    w.HBox([self.prefer_a, self.prefer_b])]
        else:
            body = [self.player_a, w.HTML("How good is this music?"), w.HBox(self.rate_buttons)]
        rows = ([] if rater else [self.rater]) + [self.progress] + body + [self.status]
        self.widget = w.VBox(rows)
        self._show()

    # --- the test ------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.trial >= len(self.trials)

    def _buttons(self):
        return [self.prefer_a, self.prefer_b] if self.mode == "pairs" else self.rate_buttons

    def _show(self) -> None:
        n = len(self.trials)
        if self.done:
            self.progress.value = f"<b>Done: all {n} answered. Thank you!</b>"
            for button in self._buttons():
                button.disabled = True
            self.player_a.value = b""
            self.player_b.value = b""
            return
        a, b = self.trials[self.trial]
        what = "Pair" if self.mode == "pairs" else "Clip"
        self.progress.value = f"<b>{what} {self.trial + 1} of {n}</b>"
        self.player_a.value = a.wav
        self.player_b.value = b.wav if b is not None else b""

    def answer(self, value) -> dict | None:
        """Record ``value`` (``"A"``/``"B"``, or a rating 1..5) for the trial shown; returns the row written.

        The row is on disk (flushed, fsynced) before the next trial shows. Without a rater name the
        answer is refused (None, a message in ``status``); a value of the wrong kind raises ConfigError.
        """
        import html

        if self.done:
            return None
        if self.mode == "pairs" and value not in PAIR_ANSWERS:
            raise ConfigError(f"a pair's answer is 'A' or 'B', got {value!r}")
        if self.mode == "ratings" and (isinstance(value, bool) or value not in RATINGS):
            raise ConfigError(f"a rating is one of {RATINGS}, got {value!r}")
        rater = self.rater.value.strip()
        if not rater:
            self.last_error = "enter your name or code as rater first"
            self.status.value = f'<span style="color:#b00020">{html.escape(self.last_error)}</span>'
            return None
        a, b = self.trials[self.trial]
        row = {"rater": rater, "seed": self.seed, "trial": self.trial + 1, "clip_a": a.id, "system_a": a.system,
               "clip_b": b.id if b is not None else "", "system_b": b.system if b is not None else "",
               "answer": value, "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        append_answer(self.answers_path, row)
        self.last_error = None
        self.status.value = ""
        self.trial += 1
        self._show()
        return row

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


# ----------------------------------------------------------------------------------
# Analysis
# ----------------------------------------------------------------------------------

def read_answers(paths: str | os.PathLike | Iterable[str | os.PathLike]):
    """Read one or more answers files into one ``pandas.DataFrame`` (:data:`CSV_COLUMNS`, plus ``file``).

    ``answer`` stays text (``"A"``, ``"B"`` or ``"1"``..``"5"``); ``trial`` and ``seed`` are integers.
    Raises ConfigError naming the file when one is missing or is not an answers file.

    Notebook: 09_judging_generated_music.ipynb
    """
    import pandas as pd

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    frames = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise ConfigError("no such answers file", path)
        _check_file(path)
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
            frame["trial"] = frame["trial"].astype(int)
            frame["seed"] = frame["seed"].astype(int)
        except Exception as exc:   # pandas raises many kinds: one line naming the file
            raise ConfigError(f"not a readable answers file ({type(exc).__name__}: {exc})", path) from None
        frame["file"] = display_name(path)
        frames.append(frame)
    if not frames:
        raise ConfigError("no answers file given")
    return pd.concat(frames, ignore_index=True)


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default): ``(low, high)``; ``(0, 1)`` when n = 0.

    >>> [round(x, 4) for x in wilson_interval(8, 10)]
    [0.4902, 0.9433]

    Notebook: 09_judging_generated_music.ipynb
    """
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _pair_rows(answers):
    rows = answers[answers["clip_b"] != ""]
    return rows[rows["answer"].isin(PAIR_ANSWERS)]


def preference_rate(answers, system: str, against: str | None = None) -> dict:
    """How often ``system`` won the pairs it played (against ``against`` only, if given).

    Counts the pair answers where exactly one clip is of ``system`` (the other of ``against``, if
    given). Returns ``{"system", "against", "wins", "n", "rate", "low", "high"}``: the rate with its
    95% Wilson interval (:func:`wilson_interval`); ``rate`` is None when no such pair was answered.

    Notebook: 09_judging_generated_music.ipynb
    """
    rows = _pair_rows(answers)
    a_is, b_is = rows["system_a"] == system, rows["system_b"] == system
    mask = a_is ^ b_is
    if against is not None:
        mask &= (rows["system_a"] == against) | (rows["system_b"] == against)
    rows, a_is = rows[mask], a_is[mask]
    wins = int(((rows["answer"] == "A") & a_is).sum() + ((rows["answer"] == "B") & ~a_is).sum())
    n = int(len(rows))
    low, high = wilson_interval(wins, n)
    return {"system": system, "against": against, "wins": wins, "n": n, "rate": wins / n if n else None,
            "low": low, "high": high}


def mean_ratings(answers) -> dict:
    """Mean rating of each system with a 95% Student-t interval: ``{system: {"mean", "low", "high", "n", "sd"}}``.

    ``sd`` is the sample standard deviation (ddof 1); with one rating the interval is None.

    Notebook: 09_judging_generated_music.ipynb
    """
    from scipy.stats import t

    rows = answers[(answers["clip_b"] == "") & answers["answer"].isin([str(r) for r in RATINGS])]
    out = {}
    for system in sorted(set(rows["system_a"])):
        values = rows.loc[rows["system_a"] == system, "answer"].astype(float).to_numpy()
        n, mean = len(values), float(values.mean())
        if n > 1:
            sd = float(values.std(ddof=1))
            half = float(t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
            out[system] = {"mean": mean, "low": mean - half, "high": mean + half, "n": n, "sd": sd}
        else:
            out[system] = {"mean": mean, "low": None, "high": None, "n": n, "sd": None}
    return out


def _units(answers, mode: str) -> dict:
    """``{unit: {rater: value}}``: the last answer of each rater to each unit (a clip or an unordered pair)."""
    units: dict = {}
    if mode == "pairs":
        for row in _pair_rows(answers).itertuples(index=False):
            unit = tuple(sorted((row.clip_a, row.clip_b)))
            units.setdefault(unit, {})[row.rater] = row.clip_a if row.answer == "A" else row.clip_b
    elif mode == "ratings":
        rows = answers[(answers["clip_b"] == "") & answers["answer"].isin([str(r) for r in RATINGS])]
        for row in rows.itertuples(index=False):
            units.setdefault(row.clip_a, {})[row.rater] = float(row.answer)
    else:
        raise ConfigError(f"mode must be 'pairs' or 'ratings', got {mode!r}")
    return units


def krippendorff_alpha_from_units(units: Iterable[Sequence], level: str = "nominal") -> float:
    """Krippendorff's alpha of the values given to each unit (one list per unit, any number of raters).

    ``alpha = 1 - (n - 1) * sum_ck o_ck d_ck / sum_ck n_c n_k d_ck`` with the coincidence matrix
    ``o_ck`` (each unit's ordered pairs of values from different raters, weighted ``1 / (m_u - 1)``),
    ``n_c`` its margins, ``n`` the number of pairable values, ``d_ck`` 1 for unequal values
    (``"nominal"``) or ``(c - k) ** 2`` (``"interval"``). Units with one value are left out. NaN when
    nothing is pairable or all values are equal.

    >>> round(krippendorff_alpha_from_units([["a", "a"], ["a", "b"], ["b", "b"], ["b", "b"]]), 4)
    0.5333

    Notebook: 09_judging_generated_music.ipynb
    """
    if level not in ("nominal", "interval"):
        raise ConfigError(f"level must be 'nominal' or 'interval', got {level!r}")
    pairable = [list(values) for values in units if len(values) >= 2]
    labels = sorted({v for values in pairable for v in values}, key=str)
    if not labels:
        return math.nan
    index = {v: i for i, v in enumerate(labels)}
    o = np.zeros((len(labels), len(labels)))
    for values in pairable:
        counts = np.bincount([index[v] for v in values], minlength=len(labels)).astype(float)
        o += (np.outer(counts, counts) - np.diag(counts)) / (len(values) - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    if level == "nominal":
        d = 1.0 - np.eye(len(labels))
    else:
        x = np.asarray(labels, dtype=float)
        d = (x[:, None] - x[None, :]) ** 2
    expected = float((np.outer(n_c, n_c) * d).sum())
    if expected == 0:
        return math.nan
    return float(1.0 - (n - 1) * float((o * d).sum()) / expected)


def krippendorff_alpha(answers, mode: str = "pairs", level: str | None = None) -> float:
    """Agreement between the raters of an answers table: Krippendorff's alpha.

    ``mode="pairs"``: a unit is an unordered pair of clips, its value the clip preferred (nominal:
    raters who heard the pair in other A/B orders are compared by the clip they chose).
    ``mode="ratings"``: a unit is a clip, its value the rating (``level`` "interval" by default).
    A rater's last answer to a unit counts. See :func:`krippendorff_alpha_from_units`.

    Notebook: 09_judging_generated_music.ipynb
    """
    level = level or ("nominal" if mode == "pairs" else "interval")
    return krippendorff_alpha_from_units([list(v.values()) for v in _units(answers, mode).values()], level)
