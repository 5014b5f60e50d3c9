"""The slide decks (``make slides``; slides/README.md): one reveal.js deck per notebook, working offline.

The decks are the ones in slides/build/ when they are newer than every notebook and than the build's
own files (``make test`` runs ``make slides`` first), else they are built into a temporary folder.
They need ``npm ci`` in slides/ (reveal.js and MathJax, pinned); the browser tests need Debian's Chromium
(``make browser-deps``) and Playwright. Outside CI a missing npm, node_modules, Chromium or Playwright
skips those tests with the reason; under CI (the ``CI`` environment variable set) it fails them.
Each deck is opened from ``file://`` with every request to another host aborted and recorded.
The tests that need the decks carry the ``browser`` mark, so that ``make test-colab`` (``-m "not browser"``,
in a venv without nbconvert or Playwright) leaves them out; ``make test`` runs them all.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SLIDES = ROOT / "slides"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: Seconds a deck may take to show its slides and typeset its maths.
LOAD_TIMEOUT_S = 30


def _load_build():
    spec = importlib.util.spec_from_file_location("slides_build", SLIDES / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build()


def _need(reason: str | None) -> None:
    """Skip with the reason, or fail under CI."""
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"slides under CI: {reason}")
        pytest.skip(reason)


def _missing_packages() -> str | None:
    if not (build.NODE_MODULES / "reveal.js").is_dir() or not (build.NODE_MODULES / "mathjax").is_dir():
        if shutil.which("npm") is None:
            return "npm is not installed (apt-get install npm), so slides/node_modules cannot be installed"
        return "slides/node_modules is missing: run `make slides` (npm ci)"
    return None


def chromium_path() -> str | None:
    """Debian's Chromium: ``chromium`` on PATH, else /usr/bin/chromium."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return found or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)


def expected_slides(nb) -> int:
    """Slides and sub-slides a deck shows, by nbconvert's rule: the first visible cell always starts one."""
    kinds = [cell.metadata.get("slideshow", {}).get("slide_type", "-") for cell in nb.cells]
    visible = [k for k in kinds if k not in ("skip", "notes")]
    return 1 + sum(k in ("slide", "subslide") for k in visible[1:])


def has_maths(nb) -> bool:
    """Whether a visible markdown cell holds TeX between dollars."""
    return any(cell.cell_type == "markdown" and re.search(r"\$[^$\n]+\$", cell.source)
               and cell.metadata.get("slideshow", {}).get("slide_type") not in ("skip", "notes")
               for cell in nb.cells)


@pytest.fixture(scope="module")
def decks(tmp_path_factory) -> dict[str, Path]:
    """``{notebook name: deck path}``: slides/build/ when fresh, else a build in a temporary folder."""
    _need(_missing_packages())
    made = SLIDES / "build"
    inputs = [build.TEMPLATE, SLIDES / "build.py", SLIDES / "package-lock.json"]
    newest_input = max(p.stat().st_mtime for p in inputs)
    fresh = made.is_dir() and (made / "vendor").is_dir() and all(
        (made / f"{nb.stem}.slides.html").is_file()
        and (made / f"{nb.stem}.slides.html").stat().st_mtime >= max(newest_input, nb.stat().st_mtime)
        for nb in NOTEBOOKS)
    if not fresh:
        made = tmp_path_factory.mktemp("slides") / "build"
        build.build(made, NOTEBOOKS)
    return {nb.name: made / f"{nb.stem}.slides.html" for nb in NOTEBOOKS}


# ---------------------------------------------------------------- the build, without a browser

def test_remote_references_finds_loads_not_links():
    page = ('<script src="https://cdn.jsdelivr.net/npm/reveal.js/dist/reveal.js"></script>'
            "<link rel='stylesheet' href=//unpkg.com/x.css>"
            '<img alt="badge" src="https://colab.research.google.com/assets/colab-badge.svg">'
            '<style>@font-face { src: url("https://fonts.example/f.woff2") }</style>'
            "<script type=module>import mermaid from 'https://cdnjs.cloudflare.com/m.mjs';</script>"
            '<a href="https://github.com/x/y">a link is followed by the reader, not loaded</a>'
            '<script src="vendor/mathjax/tex-chtml-full.js"></script>')
    assert build.remote_references(page) == [
        "https://cdn.jsdelivr.net/npm/reveal.js/dist/reveal.js", "//unpkg.com/x.css",
        "https://colab.research.google.com/assets/colab-badge.svg", "https://fonts.example/f.woff2",
        "https://cdnjs.cloudflare.com/m.mjs"]


def test_a_missing_tool_skips_outside_ci_and_fails_under_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="npm is not installed"):
        _need("npm is not installed")
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="slides under CI: npm is not installed"):
        _need("npm is not installed")
    _need(None)  # nothing missing: nothing happens


def test_missing_node_modules_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(build, "NODE_MODULES", tmp_path)
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/npm")
    assert "run `make slides`" in _missing_packages()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert "npm is not installed" in _missing_packages()


def test_packages_are_pinned():
    wanted = json.loads((SLIDES / "package.json").read_text())["dependencies"]
    assert set(wanted) == {"reveal.js", "mathjax"}
    lock = json.loads((SLIDES / "package-lock.json").read_text())["packages"]
    for name, version in wanted.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} {version}: not an exact version"
        locked = lock[f"node_modules/{name}"]
        assert locked["version"] == version and locked["integrity"].startswith("sha512-"), name


def test_build_without_packages_fails_with_one_line(tmp_path):
    with pytest.raises(build.SlidesError) as err:
        build.build(tmp_path / "out", NOTEBOOKS[:1], node_modules=tmp_path / "node_modules")
    assert "\n" not in str(err.value) and "npm ci" in str(err.value)
    assert str(tmp_path / "node_modules" / "reveal.js") in str(err.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp").exists()


@pytest.mark.browser
def test_one_deck_per_notebook(decks):
    assert len(NOTEBOOKS) >= 8
    assert all(path.is_file() for path in decks.values())
    index = (next(iter(decks.values())).parent / "index.html").read_text()
    assert all(path.name in index for path in decks.values())


@pytest.mark.browser
@pytest.mark.parametrize("name", [nb.name for nb in NOTEBOOKS])
def test_deck_loads_nothing_from_the_web(decks, name):
    page = decks[name].read_text(encoding="utf-8")
    assert build.remote_references(page) == []
    for cdn in ("cdnjs", "unpkg.com", "jsdelivr", "require.min.js", "jquery.min.js", "mathjax.hub"):
        assert cdn not in page.lower(), f"{name}: {cdn} in the deck"
    # every local script and style sheet it loads is there
    local = re.findall(r'<(?:script|link)\b[^>]*?\b(?:src|href)="([^"#]+)"', page)
    assert any("reveal.js" in p for p in local) and any("mathjax" in p for p in local), local
    missing = [p for p in local if not (decks[name].parent / p).is_file()]
    assert not missing, f"{name}: {missing}"


# ---------------------------------------------------------------- in a browser

@pytest.fixture(scope="module")
def browser(decks):
    """Debian's Chromium through Playwright (never a browser download)."""
    _need(None if chromium_path() else "Chromium is not installed (make browser-deps, or apt-get install chromium)")
    _need(None if importlib.util.find_spec("playwright") else "playwright is not installed (make browser-deps)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=chromium_path())
        try:
            yield chromium
        finally:
            chromium.close()


def open_deck(browser, deck: Path):
    """Open a deck from file:// with the network cut: ``(page, remote requests, failures, script errors)``."""
    remote, failed, errors = [], [], []
    context = browser.new_context()

    def only_local(route):
        url = route.request.url
        if url.startswith(("file://", "data:", "blob:", "about:")) or re.match(r"https?://(localhost|127\.0\.0\.1)[:/]", url):
            route.continue_()
        else:
            remote.append(url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    page.on("requestfailed", lambda r: failed.append(f"{r.url}: {r.failure}"))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(deck.as_uri())
    try:
        page.wait_for_function("window.Reveal && Reveal.isReady()", timeout=LOAD_TIMEOUT_S * 1000)
        page.wait_for_function("window.MathJax && MathJax.startup && MathJax.startup.promise",
                               timeout=LOAD_TIMEOUT_S * 1000)
        page.evaluate("MathJax.startup.promise.then(() => true)")
    except Exception as exc:  # a timeout: say what the page was missing
        context.close()
        raise AssertionError(f"{deck.name}: reveal.js or MathJax never started ({type(exc).__name__}); "
                             f"requests to other hosts: {remote}; failed: {failed}; script errors: {errors}") from None
    return page, remote, failed, errors


@pytest.mark.browser
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_deck_shows_in_chromium_offline(browser, decks, path):
    nb = nbformat.read(path, as_version=4)
    page, remote, failed, errors = open_deck(browser, decks[path.name])
    try:
        assert page.title().endswith("slides")
        # not blank: reveal laid out the notebook's slides, and they hold its words
        assert page.evaluate("Reveal.getTotalSlides()") == expected_slides(nb)
        text = page.text_content(".reveal .slides")
        first_title = next(c.source.splitlines()[0].lstrip("# ") for c in nb.cells
                           if c.cell_type == "markdown" and c.source.startswith("# "))
        assert first_title in text and len(text) > 200
        assert page.is_visible(".reveal .slides section.present")
        assert page.inner_text(".reveal .slides section.present").strip(), "the first slide shows no text"
        # moving on works
        page.keyboard.press("ArrowRight")
        assert page.evaluate("Reveal.getIndices().h") == (1 if expected_slides(nb) > 1 else 0)
        # a slide longer than the frame scrolls instead of being cut off
        height, frame, overflow = page.evaluate("(() => { const s = Reveal.getCurrentSlide(); "
                                                "return [s.scrollHeight, Reveal.getConfig().height, getComputedStyle(s).overflowY]; })()")
        assert height <= frame or overflow == "auto", f"{path.name}: slide 2 is {height} px tall in a {frame} px frame"
        # maths rendered by the local MathJax, without a TeX error
        if has_maths(nb):
            assert page.locator("mjx-container").count() > 0, f"{path.name}: no maths typeset"
            assert page.locator("mjx-merror").count() == 0, page.locator("mjx-merror").first.get_attribute("data-mjx-error")
        # the fonts, if any were requested, have arrived before the verdict on failures
        page.evaluate("document.fonts.ready.then(() => true)")
        assert not remote, f"{path.name}: requests to other hosts: {remote}"
        assert not failed, f"{path.name}: failed requests: {failed}"
        assert not errors, f"{path.name}: script errors: {errors}"
    finally:
        page.context.close()


@pytest.mark.browser
def test_some_deck_has_maths():
    """The maths check above is not vacuous: the course's notebooks do write TeX."""
    assert sum(has_maths(nbformat.read(p, as_version=4)) for p in NOTEBOOKS) >= 3


@pytest.mark.browser
def test_a_request_to_another_host_is_caught(browser, decks, tmp_path):
    """The offline check can fail: a deck that fetches an image from the web has it recorded and aborted."""
    deck = decks[NOTEBOOKS[0].name]
    (tmp_path / "vendor").symlink_to(deck.parent / "vendor")
    leaky = tmp_path / deck.name
    leaky.write_text(deck.read_text(encoding="utf-8").replace(
        "</section>", '<img alt="" src="https://example.invalid/cdn.png"></section>', 1), encoding="utf-8")
    page, remote, failed, errors = open_deck(browser, leaky)
    page.context.close()
    assert remote == ["https://example.invalid/cdn.png"]
    assert any("example.invalid" in f for f in failed)
