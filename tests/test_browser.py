"""The studio app in a real browser: ``python -m labkit app`` on a free localhost port, driven by Playwright.

The browser is Debian's Chromium (``apt-get install chromium``; ``make browser-deps``), never a
download: ``chromium.launch(executable_path=...)``. Outside CI a missing Chromium, Playwright or Voila
skips these tests with the reason; under CI (the ``CI`` environment variable set) it fails them.
Select them with ``-m browser``. The tests share one server and one page, and run in file order
(generate, then mix, then live), as a user would.
"""
from __future__ import annotations

import base64
import importlib.util
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser

#: Seconds the page may take to appear (the kernel imports JAX and loads two models).
PAGE_TIMEOUT_S = 90
#: Seconds one action (Generate, Mix, a live chunk) may take.
ACTION_TIMEOUT_S = 60


def chromium_path() -> str | None:
    """Debian's Chromium: ``chromium`` on PATH, else /usr/bin/chromium."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return found or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)


def _missing() -> str | None:
    if chromium_path() is None:
        return "Chromium is not installed (make browser-deps, or apt-get install chromium)"
    for module, package in (("playwright", "playwright"), ("voila", "voila")):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed (make browser-deps)"
    return None


@pytest.fixture(scope="module", autouse=True)
def _requirements():
    reason = _missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests under CI: {reason}")
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(out: Path) -> tuple[subprocess.Popen, str, float]:
    """``python -m labkit app`` on a free port: ``(process, url, seconds until it listens)``."""
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "app", "--port", str(port), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    while time.perf_counter() - started < 30:
        if proc.poll() is not None:
            raise AssertionError(f"the app ended: {proc.stdout.read().decode(errors='replace')[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, f"http://127.0.0.1:{port}/", time.perf_counter() - started
        except OSError:
            time.sleep(0.1)
    stop_app(proc)
    raise AssertionError("the app did not listen within 30 s")


def stop_app(proc: subprocess.Popen) -> str:
    """End the app's process group (the command and its Voila server); return what it printed."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    return proc.stdout.read().decode(errors="replace")


def open_page(browser, url: str) -> tuple[object, float, float]:
    """Open the app: ``(page, seconds until its title shows, seconds until Generate can be pressed)``."""
    started = time.perf_counter()
    page = browser.new_page()
    page.set_default_timeout(ACTION_TIMEOUT_S * 1000)
    page.goto(url)
    page.get_by_text("labkit studio").first.wait_for(timeout=PAGE_TIMEOUT_S * 1000)
    shown = time.perf_counter() - started
    page.get_by_role("button", name="Generate").wait_for(timeout=PAGE_TIMEOUT_S * 1000)
    return page, shown, time.perf_counter() - started


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    out = tmp_path_factory.mktemp("app")
    proc, url, listen_s = start_app(out)
    try:
        yield {"url": url, "out": out, "listen_s": listen_s}
    finally:
        stop_app(proc)


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright (one per module: Playwright's sync API runs one at a time)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=chromium_path(),
                                      args=["--autoplay-policy=no-user-gesture-required"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def page(app, browser):
    page, app["shown_s"], app["page_s"] = open_page(browser, app["url"])
    yield page
    page.close()


def data_link(page, selector: str) -> bytes:
    """The bytes of a download link whose ``href`` is a base64 data URI."""
    href = page.locator(selector).last.get_attribute("href")
    assert href and href.startswith("data:") and ";base64," in href
    return base64.b64decode(href.split(";base64,", 1)[1])


def wav_levels(data: bytes) -> tuple[np.ndarray, int, np.ndarray]:
    """``(samples [n, channels] in [-1, 1], sample rate, RMS dB per channel)`` of a 16-bit WAV."""
    with wave.open(io.BytesIO(data)) as w:
        assert w.getsampwidth() == 2
        frames = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, w.getnchannels())
        rate = w.getframerate()
    audio = frames.astype(np.float64) / 32768.0
    with np.errstate(divide="ignore"):
        return audio, rate, 20 * np.log10(np.sqrt(np.mean(audio ** 2, axis=0)))


def set_slider(page, css_class: str, value: float) -> None:
    """Type a value into a slider's readout (as a user can) and check the slider took it."""
    readout = page.locator(f".{css_class} .widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(str(value))
    page.keyboard.press("Enter")
    page.wait_for_function("([sel, v]) => Math.abs(parseFloat(document.querySelector(sel).textContent"
                           ".replace('\\u2212', '-')) - v) < 1e-6",              # the readout writes a minus sign
                           arg=[f".{css_class} .widget-readout", value])


def open_tab(page, title: str) -> None:
    page.locator(".lm-TabBar-tab", has_text=title).first.click()


def test_page_loads_with_every_tab_and_no_error(app, page):
    for title in ("Sampler", "Mixer", "Live", "Style index"):
        assert page.locator(".lm-TabBar-tab", has_text=title).count() == 1
    assert page.locator(".labkit-error").count() == 0
    assert app["listen_s"] < 20 and app["page_s"] < PAGE_TIMEOUT_S
    print(f"\napp listening after {app['listen_s']:.2f} s; page shown {app['shown_s']:.1f} s later, "
          f"Generate ready after {app['page_s']:.1f} s")


def test_generate_shows_piano_roll_audio_player_and_a_midi_that_reads_back(app, page, tmp_path):
    from labkit import midi_io

    page.get_by_role("button", name="Generate").click()
    roll = page.locator(".widget-output img[src^='data:image/png']").first
    roll.wait_for()
    assert roll.evaluate("img => img.naturalWidth > 200 && img.naturalHeight > 50")
    page.locator(".widget-output audio").first.wait_for()         # the player comes after the picture
    midi = data_link(page, "a[download$='.mid']")
    path = tmp_path / "melody.mid"
    path.write_bytes(midi)
    sequence = midi_io.read_midi(path)
    assert len(sequence.notes) > 0
    # the file offered is the file the app saved
    saved = sorted((app["out"] / "sampler").rglob("melody_001.mid"))
    assert saved and saved[-1].read_bytes() == midi
    # the style index of the melody, a number in [0, 1]
    index = page.locator("b.labkit-style-index").first
    index.wait_for()
    assert 0.0 <= float(index.text_content()) <= 1.0


def test_light_show_follows_the_audio(app, page, tmp_path):
    """Seek the stage's <audio>: the notes lit are those sounding then, as read from the MIDI offered."""
    from labkit import midi_io

    frame = page.frame_locator("iframe.labkit-stage").first
    body = frame.locator("body")
    body.wait_for()
    stage = page.locator("iframe.labkit-stage").first.element_handle().content_frame()
    path = tmp_path / "melody.mid"
    path.write_bytes(data_link(page, "a[download$='.mid']"))
    notes = [n for n in midi_io.read_midi(path).notes]
    assert int(body.get_attribute("data-notes")) == len(notes)
    frames = int(body.get_attribute("data-frames"))
    time.sleep(0.3)
    assert int(body.get_attribute("data-frames")) > frames                  # it animates
    player = frame.locator("#player")
    player.evaluate("a => new Promise(r => a.readyState >= 1 ? r() : a.addEventListener('loadedmetadata', r))")
    times = [notes[0].start_time + 0.01, notes[len(notes) // 2].start_time + 0.01]
    rests = [a.end_time for a, b in zip(notes, notes[1:]) if b.start_time - a.end_time > 0.1]
    times += [rests[0] + 0.05] if rests else []                             # a rest: nothing lit
    for t in times:
        player.evaluate(f"a => {{ a.currentTime = {t}; }}")
        stage.wait_for_function("t => Math.abs(+document.body.dataset.time - t) < 0.002", arg=t, timeout=10000)
        sounding = sum(n.start_time <= t < n.end_time for n in notes)
        assert int(body.get_attribute("data-active")) == sounding
    assert page.locator(".labkit-error").count() == 0


def test_mixer_wav_follows_pan_and_volume(page):
    open_tab(page, "Mixer")
    # every voice off: the page says so, in red
    for voice in ("melody", "drone", "accompaniment"):
        page.locator(f".labkit-mix-{voice}-on input[type=checkbox]").uncheck()
    page.get_by_role("button", name="Mix").click()
    page.locator(".labkit-error", has_text="every voice is off").wait_for()

    page.locator(".labkit-mix-melody-on input[type=checkbox]").check()
    set_slider(page, "labkit-mix-reverb", 0.0)
    set_slider(page, "labkit-mix-melody-pan", -1.0)
    page.get_by_role("button", name="Mix").click()
    page.locator("a.labkit-mix-wav").wait_for()
    audio, rate, (left, right) = wav_levels(data_link(page, "a.labkit-mix-wav"))
    assert audio.shape[1] == 2 and rate == 16000
    assert left > -40 and right < left - 40                   # hard left: the right channel far below

    first_href = page.locator("a.labkit-mix-wav").get_attribute("href")
    set_slider(page, "labkit-mix-melody-pan", 1.0)
    set_slider(page, "labkit-mix-melody-volume", -6.0)
    page.get_by_role("button", name="Mix").click()
    page.wait_for_function("h => document.querySelector('a.labkit-mix-wav').href !== h", arg=first_href)
    _, _, (left2, right2) = wav_levels(data_link(page, "a.labkit-mix-wav"))
    assert left2 < right2 - 40                                # hard right now
    assert right2 == pytest.approx(left - 6.0, abs=0.3)       # 6 dB down: half the amplitude
    assert page.frame_locator("iframe.labkit-stage").last.locator("#player").count() == 1


def test_live_mode_plays_chunks_and_stops_cleanly(page):
    open_tab(page, "Live")
    page.get_by_role("button", name="Start").click()
    stage = page.frame_locator("iframe.labkit-live-stage").first
    stage.locator("body[data-state='playing']").wait_for()
    page.wait_for_function("() => { const f = document.querySelector('iframe.labkit-live-stage');"
                           " const b = f && f.contentDocument.body; return b && +b.dataset.decoded >= 2; }")
    body = stage.locator("body")
    assert float(body.get_attribute("data-seconds")) >= 7.9          # two chunks of two bars at 120 qpm
    assert 0.0 <= float(body.get_attribute("data-style")) <= 1.0     # the style index on the axis
    assert re.search(r"style index", page.locator(".widget-html", has_text="playing:").first.text_content())
    page.get_by_role("button", name="Stop").click()
    status = page.locator(".labkit-live-stopped")
    status.wait_for()
    stage.locator("body[data-state='stopped']").wait_for()
    received = int(body.get_attribute("data-chunks"))
    text = page.locator(".widget-html", has_text="stopped after").first.text_content()
    played = int(re.search(r"after (\d+) chunks", text).group(1))
    audio, rate, levels = wav_levels(data_link(page, "a.labkit-live-wav"))
    assert len(audio) == played * 4 * rate                          # 2 bars of 4/4 at 120 qpm = 4 s a chunk
    assert levels.max() > -50                                        # sound, not silence
    time.sleep(1.5)                                                  # stopped: nothing more arrives
    assert int(body.get_attribute("data-chunks")) == received
    assert page.get_by_role("button", name="Start").is_enabled()
    assert page.locator(".labkit-error").count() == 0


def test_jupyterlab_shows_the_light_show_in_a_notebook(browser, tmp_path):
    """A studio notebook in JupyterLab: run its cell in the browser; the light show appears in the output
    and animates (the same HTML as the app's, from labkit.studio.show_stage)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from labkit.melody import Melody\nfrom labkit.studio import show_stage\n"
        "show_stage(Melody.from_notes([60, 64, 67, 72], [0, 4, 8, 12], [4, 8, 12, 16]), title='studio')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    root = tmp_path / "notebooks"
    root.mkdir()
    nbformat.write(nb, root / "studio.ipynb")
    port = free_port()
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"), JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"))
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}",
                             "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=labkit-test", "--allow-root",
                             f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "JupyterLab did not start"
                time.sleep(0.2)
        page = browser.new_page()
        try:
            page.set_default_timeout(ACTION_TIMEOUT_S * 1000)
            page.goto(f"http://127.0.0.1:{port}/lab/tree/studio.ipynb?token=labkit-test")
            page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for()  # kernel ready
            stage = page.locator(".jp-OutputArea iframe.labkit-stage").first
            for attempt in range(3):          # a keystroke sent while the page is still busy can be lost: retry
                page.locator(".jp-Notebook .jp-Cell .cm-content").first.click()
                page.keyboard.press("Shift+Enter")
                try:
                    stage.wait_for(timeout=90_000)   # the kernel imports labkit first: slow on a busy machine
                    break
                except Exception:
                    assert attempt < 2, "the cell never showed the stage: " + page.locator(".jp-OutputArea").first.inner_text()[:500]
            frame = page.frame_locator(".jp-OutputArea iframe.labkit-stage").first
            body = frame.locator("body[data-notes='4']")
            body.wait_for()
            first = int(body.get_attribute("data-frames"))
            time.sleep(0.3)
            assert int(body.get_attribute("data-frames")) > first         # it animates in the notebook too
            frame.locator("#play").click()                                 # no audio: its own clock
            frame.locator("body:not([data-time='0.000'])").wait_for()
        finally:
            page.close()
    finally:
        stop_app(proc)
