"""Build the course's slide decks: one reveal.js deck per notebook, that works with no network.

``make slides`` runs ``npm ci`` in slides/ (reveal.js and MathJax, pinned in slides/package-lock.json)
and then this script, which writes into slides/build/:

- ``NN_name.slides.html``: one deck per notebooks/NN_*.ipynb, made by nbconvert's SlidesExporter
  (``jupyter nbconvert --to slides``) from the cells' ``slideshow.slide_type`` metadata, with the
  template slides/template/offline.html.j2 (nbconvert's reveal template without its CDN scripts);
- ``vendor/reveal.js`` and ``vendor/mathjax``: local copies of the two libraries that the decks load;
- ``index.html``: a list of the decks.

Every deck is scanned for a script, style sheet, image or frame loaded from another host; one makes the
build fail. The folder slides/build/ is self-contained: zip it, open ``index.html`` anywhere.

Usage: ``python slides/build.py [--out slides/build] [--notebooks notebooks]``; exit status 2 and one
line ``slides: <file>: <problem>`` when something is missing.
"""
from __future__ import annotations

import argparse
import html
import re
import shutil
import sys
import time
from pathlib import Path

SLIDES = Path(__file__).resolve().parent
ROOT = SLIDES.parent
TEMPLATE = SLIDES / "template" / "offline.html.j2"
NODE_MODULES = SLIDES / "node_modules"
#: What each deck needs from the npm packages: (package folder, sub-folder copied, name under vendor/).
VENDOR = (("reveal.js", "dist", "reveal.js/dist"), ("reveal.js", "plugin/notes", "reveal.js/plugin/notes"),
          ("mathjax", "es5", "mathjax"))
REVEAL_PREFIX = "vendor/reveal.js"
MATHJAX_URL = "vendor/mathjax/tex-chtml-full.js"
#: reveal.js's theme: "white" takes its fonts from beside it (some themes, "simple" among them, from Google).
THEME = "white"

#: A resource fetched from another host: src/href of a loading tag, CSS url(), an ES module import.
_TAG = re.compile(r"<(script|link|img|iframe|source|audio|video|embed)\b[^>]*?\b(?:src|href)\s*=\s*[\"']?"
                  r"\s*((?:https?:)?//[^\"'\s>]+)", re.IGNORECASE)
_CSS = re.compile(r"url\(\s*[\"']?\s*((?:https?:)?//[^\"')\s]+)", re.IGNORECASE)
_IMPORT = re.compile(r"(?:\bimport\b[^;\n]*?|@import\s*)[\"']((?:https?:)?//[^\"']+)[\"']")
#: A local style sheet that a page or a style sheet loads (followed, to scan it too).
_LOCAL_CSS = re.compile(r"(?:<link\b[^>]*?\bhref=\"|@import\s+url\(\s*[\"']?|@import\s+[\"'])(?!(?:https?:)?//)([^\"')#?]+\.css)")


class SlidesError(Exception):
    """A deck cannot be built: ``str()`` is ``<file>: <problem>``."""


def remote_references(page: str) -> list[str]:
    """The URLs of other hosts that an HTML page would fetch while loading (links to follow are not).

    Example:
        >>> remote_references('<script src="https://cdn.example/x.js"></script><a href="https://x.org">x</a>')
        ['https://cdn.example/x.js']
        >>> remote_references('<link rel="stylesheet" href="vendor/reveal.js/dist/reveal.css">')
        []
    """
    found = [m.group(2) for m in _TAG.finditer(page)]
    found += [m.group(1) for m in _CSS.finditer(page)]
    found += [m.group(1) for m in _IMPORT.finditer(page)]
    return found


def style_sheet_references(page: str, folder: Path) -> list[str]:
    """The remote URLs in the local style sheets (under ``folder``) that ``page`` loads, @imports followed."""
    found, todo, seen = [], [(folder, page)], set()
    while todo:
        base, text = todo.pop()
        for name in _LOCAL_CSS.findall(text):
            path = (base / name).resolve()
            if path not in seen and path.is_file():
                seen.add(path)
                css = path.read_text(encoding="utf-8", errors="replace")
                found += remote_references(css)
                todo.append((path.parent, css))
    return found


def copy_vendor(out: Path, node_modules: Path = NODE_MODULES) -> None:
    """Copy reveal.js and MathJax from ``node_modules`` (``npm ci`` in slides/) into ``out/vendor``."""
    for package, sub, name in VENDOR:
        src = node_modules / package / sub
        if not src.is_dir():
            raise SlidesError(f"{src}: not installed (run `make slides`, which runs `npm ci` in slides/)")
        shutil.copytree(src, out / "vendor" / name, dirs_exist_ok=True)


def build_deck(notebook: Path, out: Path) -> Path:
    """Write ``out/<notebook stem>.slides.html``, a reveal.js deck of the notebook's slide cells.

    Loads only ``vendor/`` beside it (see :func:`copy_vendor`); raises SlidesError if the deck would
    fetch anything from another host.
    """
    from nbconvert import SlidesExporter  # here, so that `--help` and the doctests stay quick

    exporter = SlidesExporter(template_file=str(TEMPLATE), reveal_url_prefix=REVEAL_PREFIX, reveal_theme=THEME,
                              reveal_scroll=True,
                              mathjax_url=MATHJAX_URL, jquery_url="", require_js_url="")
    page, _ = exporter.from_filename(str(notebook))
    remote = remote_references(page) + style_sheet_references(page, out)
    if remote:
        raise SlidesError(f"{notebook}: the deck would load {remote[0]} (and {len(remote) - 1} more) from the web")
    if "<section" not in page:
        raise SlidesError(f"{notebook}: no slides (mark the section titles with slideshow.slide_type = slide)")
    path = out / f"{notebook.stem}.slides.html"
    path.write_text(page, encoding="utf-8")
    return path


def _title(notebook: Path) -> str:
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("# "):
            return cell.source.splitlines()[0][2:].strip()
    return notebook.stem


def write_index(decks: list[Path], notebooks: list[Path], out: Path) -> Path:
    """Write ``out/index.html``: one link per deck, titled by the notebook's first ``#`` title."""
    items = "\n".join(f'<li><a href="{deck.name}">{html.escape(nb.stem[:2])}: {html.escape(_title(nb))}</a></li>'
                      for deck, nb in zip(decks, notebooks))
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>Course slides</title></head>\n'
            f'<body>\n<h1>Course slides</h1>\n<p>One deck per notebook; arrows move, <kbd>s</kbd> opens the speaker '
            f'notes, <kbd>Esc</kbd> the overview.</p>\n<ul>\n{items}\n</ul>\n</body>\n</html>\n')
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def build(out: Path, notebooks: list[Path], node_modules: Path = NODE_MODULES) -> list[Path]:
    """Build every deck, the vendor copies and the index into ``out`` (replaced whole); return the decks."""
    if not notebooks:
        raise SlidesError(f"{ROOT / 'notebooks'}: no notebooks")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        copy_vendor(tmp, node_modules)
        decks = [build_deck(nb, tmp) for nb in notebooks]
        write_index(decks, notebooks, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return [out / d.name for d in decks]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slides/build.py", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SLIDES / "build", help="folder for the decks (replaced)")
    parser.add_argument("--notebooks", type=Path, default=ROOT / "notebooks", help="folder of NN_*.ipynb")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        decks = build(args.out, sorted(args.notebooks.glob("[0-9][0-9]_*.ipynb")))
    except SlidesError as exc:
        print(f"slides: {exc}", file=sys.stderr)
        return 2
    print(f"slides: {len(decks)} decks in {args.out} ({time.perf_counter() - started:.1f} s); open {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
