"""The package's layout: every module has its floor, and imports point only down the pipeline.

A module may import modules on lower floors, never one on its own floor or above, so that data
flows one way (midi_io -> melody -> ... -> commands) and any module can be read knowing only those
below it. A new module must be given a floor here.
"""
from __future__ import annotations

import ast
from pathlib import Path

import labkit

PACKAGE = Path(labkit.__file__).resolve().parent

#: The floors, from the ground up. Modules on one floor do not import each other.
FLOORS: list[tuple[str, ...]] = [
    ("labkit.errors", "labkit.env"),
    ("labkit._common",),                                    # shared helpers: raise the errors above
    ("labkit", "labkit.examples"),                                            # the package docstring and version
    ("labkit.midi_io",),                                    # MIDI files <-> NoteSequences
    ("labkit.melody",),                                     # melodies: quantize, extract, keys, phrases
    ("labkit.encoding", "labkit.audio", "labkit.viz", "labkit.score"),  # tokens; sound, pictures and scores of notes
    ("labkit.mix",),                                        # voices -> one stereo mix (volume, pan, room)
    ("labkit.studio",),                                     # music you can see: the light show of a piece
    ("labkit.corpus",),                                     # the shipped corpus, read
    ("labkit.data", "labkit.prepare", "labkit.corpus.build"),
    ("labkit.basics", "labkit.ngram", "labkit.models.kernels"),
    ("labkit.models.melody",),
    ("labkit.models",),
    ("labkit.checkpoint",),
    ("labkit.train", "labkit.sample"),
    ("labkit.conditioned",),                                # generation to order: style, metre, key tokens
    ("labkit.evaluate", "labkit.generate", "labkit.train_shipped"),
    ("labkit.polyphony", "labkit.polyphony.data"),                       # piano rolls: data, models, training
    ("labkit.polyphony.models",),
    ("labkit.polyphony.train",),
    ("labkit.polyphony.harmony",),                          # four-part settings and their rules
    ("labkit.polyphony.harmony_model",),                    # the chorale model that harmonizes a melody
    ("labkit.style",),
    ("labkit.style.features",),
    ("labkit.style.logreg",),
    ("labkit.style.selection", "labkit.style.model", "labkit.style.plots"),
    ("labkit.style.scoring",),
    ("labkit.style.experiments", "labkit.style.demo", "labkit.judge"),  # judge: features of tunes, sets compared
    ("labkit.live",),                                       # live generation in chunks, steered by style
    ("labkit.personal",),                                   # your own music: train on a folder, your own classes
    ("labkit.widgets", "labkit.listening"),                 # panels: the sampling studio, the listening test
    ("labkit.app",),                                        # the studio app: sampler, mixer, live, style index
    ("labkit.demo",),
    ("labkit.commands._args",),                              # argument types every command shares
    ("labkit.commands", "labkit.commands.corpus", "labkit.commands.data", "labkit.commands.demo",
     "labkit.commands.evaluate", "labkit.commands.generate", "labkit.commands.midi", "labkit.commands.style",
     "labkit.commands.pianoroll", "labkit.commands.train",
     "labkit.commands.mix", "labkit.commands.judge", "labkit.commands.harmonize", "labkit.commands.app"),
    ("labkit.cli",),
    ("labkit.__main__",),
]
FLOOR = {name: level for level, names in enumerate(FLOORS) for name in names}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    where = PACKAGE.parent / Path(*name.split("."))
    return where.with_suffix(".py").is_file() or (where / "__init__.py").is_file()


def _imports(path: Path) -> set[str]:
    """Every labkit module a file imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "labkit":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if _is_module(sub) else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "labkit"}
    return found


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_every_module_has_a_floor():
    assert set(MODULES) - set(FLOOR) == set(), "give these modules a floor in tests/test_layout.py"
    assert set(FLOOR) - set(MODULES) == set(), "these floors name modules that are gone"


def test_imports_point_down_the_pipeline():
    upward = []
    for name, path in sorted(MODULES.items()):
        for target in sorted(_imports(path)):
            if FLOOR[target] >= FLOOR[name]:
                upward.append(f"{name} (floor {FLOOR[name]}) imports {target} (floor {FLOOR[target]})")
    assert not upward, "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path):
    # the AST walk finds imports inside functions too, so a lazy upward import cannot hide
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from labkit.generate import generate_melodies\n    import labkit.cli\n")
    assert _imports(source) == {"labkit.generate", "labkit.cli"}


def _public_names(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_")}


#: Names every program or command module defines by convention, with the same meaning in each.
CONVENTIONS = {"main", "register"}


def test_every_public_name_means_one_thing():
    where: dict[str, list[str]] = {}
    for name, path in MODULES.items():
        for public in _public_names(path) - CONVENTIONS:
            where.setdefault(public, []).append(name)
    twice = {n: sorted(m) for n, m in where.items() if len(m) > 1}
    assert not twice, f"public names defined in more than one module: {twice}"
    leaves = {name.rsplit(".", 1)[-1]: name for name in MODULES if not name.startswith("labkit.commands")}
    clashes = {n: (m, leaves[n]) for n, ms in where.items() for m in ms if n in leaves and leaves[n] != m}
    assert not clashes, f"functions named like another module: {clashes}"
