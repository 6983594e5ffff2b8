"""The structure reads at a glance (issue #18). The layers point one way: every import of every module
in ``simulator/`` (those inside functions too, and modules named in ``importlib`` strings) goes to its
own layer or a lower one, as the layer list in ``simulator/__init__.py``'s docstring orders them, and
the commands do not import each other except along the arrows listed here, each with its reason. No
module is over 500 lines without saying why, and every package's __init__.py says what it owns.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import simulator

ROOT = Path(simulator.__file__).resolve().parent
COMMANDS = "commands"

PEER_ARROWS: dict[tuple[str, str], str] = {
    (
        "simulator.surge",
        "simulator.api",
    ): "the demo and the upload bodies run the reference API in process (api.testing); the target "
    "check sends the admin token the API expects (api.admin_auth)",
    (
        "simulator.surge",
        "simulator.upstreams",
    ): "a surge against the stand-ins reads what they recorded into its report",
    (
        "simulator.demand",
        "simulator.surge",
    ): "demand --fit-trace reads recorded traffic with the surge's trace reader (surge.trace)",
    (
        "simulator.upstreams",
        "simulator.demand",
    ): "the stand-ins' report sets each service's calls beside the planner's forecast (params.toml)",
    (
        "simulator.upstreams",
        "simulator.api",
    ): "the API's clients of the stand-ins (upstreams.client) speak the API's registry, settings "
    "and database; the stand-ins take serve's latency forms",
    (
        "simulator.api",
        "simulator.upstreams",
    ): "serve calls the stand-ins through upstreams.client when a registry or relay URL is given",
}
"""Imports between commands that are part of the design, (importer, imported) -> why."""

KNOWN_TO_BE_REMOVED: dict[tuple[str, str], str] = {}
"""Arrows that break the layers today and are being removed; listed so that no new one appears."""


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    imported: str  # dotted module name (a package when the name imported from it is not a module)
    line: int

    def __str__(self) -> str:
        return f"{self.importer} (line {self.line}) imports {self.imported}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:]) if "." in name else Path()
    return (ROOT / relative).is_dir() or (ROOT / relative).with_suffix(".py").is_file()


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


_NAMED_MODULE = re.compile(r"^(simulator(?:\.\w+)+)(?::\w+)?$")


def _imports(module: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.split(".")[0] == "simulator"]
            found += [Import(module, name, node.lineno) for name in names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "simulator":
                continue
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                found.append(Import(module, candidate if _is_module(candidate) else source, node.lineno))
        elif isinstance(node, (ast.Dict, ast.Call)):
            # Modules loaded by name: "simulator.seed.runner" in an _EXPORTS table, "simulator.api.cli:serve"
            # in the CLI's, importlib.import_module("simulator..."); a command line's "-m simulator.cli"
            # is not an import
            if isinstance(node, ast.Dict):
                names = node.values
            else:
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                names = node.args[:1] if called == "import_module" else []
            for value in names:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    match = _NAMED_MODULE.match(value.value)
                    if match and _is_module(match.group(1)):
                        found.append(Import(module, match.group(1), value.lineno))
    return found


def _layers() -> list[tuple[str, list[str]]]:
    """(name, members) lowest first, read from the docstring of ``simulator/__init__.py``."""
    doc = simulator.__doc__ or ""
    rows = re.findall(r"^\s+(\d+)\.\s+(\w+)\s+(.+)$", doc, flags=re.M)
    assert rows, "simulator/__init__.py: the docstring lists no layers ('    1. base  simulator errors ...')"
    assert [int(n) for n, _, _ in rows] == list(range(1, len(rows) + 1)), "layers are numbered 1, 2, ..."
    return [(name, members.split()) for _, name, members in rows]


def _layer_of(module: str, layers: list[tuple[str, list[str]]]) -> tuple[int, str, str] | None:
    """(rank, layer name, unit): the unit is the package (or root module) the layer lists."""
    parts = module.split(".")
    if module == "simulator":
        unit = "simulator"
    elif len(parts) > 2 and parts[-1] == "cli":
        unit = "*.cli"  # a package's click shell
    else:
        unit = parts[1]
    for rank, (name, members) in enumerate(layers):
        if unit in members:
            return rank, name, module if unit in ("simulator", "*.cli") else f"simulator.{unit}"
    return None


def _all_imports() -> list[Import]:
    return sorted({imp for module, path in _modules().items() for imp in _imports(module, path)}, key=str)


def test_every_module_has_a_layer() -> None:
    layers = _layers()
    missing = [m for m in _modules() if _layer_of(m, layers) is None]
    assert not missing, (
        f"no layer for {', '.join(missing)}: add its package to the layer list in simulator/__init__.py"
    )


def test_no_lower_layer_imports_a_higher_one() -> None:
    layers = _layers()
    wrong = []
    for imp in _all_imports():
        src, dst = _layer_of(imp.importer, layers), _layer_of(imp.imported, layers)
        assert src and dst, f"{imp}: a module with no layer"
        if dst[0] > src[0] and (src[2], dst[2]) not in KNOWN_TO_BE_REMOVED:
            wrong.append(f"{imp}: layer {src[1]} imports the higher layer {dst[1]}")
    assert not wrong, "\n".join(wrong)


def test_commands_import_each_other_only_along_the_listed_arrows() -> None:
    layers = _layers()
    wrong = []
    for imp in _all_imports():
        src, dst = _layer_of(imp.importer, layers), _layer_of(imp.imported, layers)
        assert src and dst
        if src[1] == dst[1] == COMMANDS and src[2] != dst[2]:
            arrow = (src[2], dst[2])
            if arrow not in PEER_ARROWS and arrow not in KNOWN_TO_BE_REMOVED:
                wrong.append(f"{imp}: {arrow[0]} -> {arrow[1]} is not one of the listed PEER_ARROWS")
    assert not wrong, "\n".join(wrong)


def test_listed_arrows_still_exist() -> None:
    """An arrow that no longer occurs is taken off its list, so it cannot come back unnoticed."""
    layers = _layers()
    arrows = set()
    for imp in _all_imports():
        src, dst = _layer_of(imp.importer, layers), _layer_of(imp.imported, layers)
        assert src and dst
        arrows.add((src[2], dst[2]))
    gone = [f"{a} -> {b}" for a, b in (*PEER_ARROWS, *KNOWN_TO_BE_REMOVED) if (a, b) not in arrows]
    assert not gone, f"no longer imported, remove from tests/test_layers.py: {', '.join(gone)}"


def test_every_listed_package_exists() -> None:
    """The list names real folders."""
    for _, members in _layers():
        for member in members:
            if member in ("simulator", "*.cli"):
                continue
            assert _is_module(f"simulator.{member}"), f"simulator/__init__.py lists {member}: no such package"


@pytest.mark.parametrize(
    ("source", "importer", "expected"),
    [
        ("import simulator.io.atomic\n", "simulator.generators.x", "simulator.io.atomic"),
        (
            "def f():\n    from simulator.io import population\n",
            "simulator.generators.x",
            "simulator.io.population",
        ),
        ("from simulator import DEFAULT_SEED\n", "simulator.io.x", "simulator"),
        ("from ..io import atomic\n", "simulator.generators.x", "simulator.io.atomic"),
        ("TABLE = {'a': 'simulator.api.cli:serve'}\n", "simulator.cli", "simulator.api.cli"),
        ("importlib.import_module('simulator.seed.runner')\n", "simulator.seed", "simulator.seed.runner"),
        ("CMD = ['-m', 'simulator.cli']\n", "simulator.api.testing", None),
    ],
)
def test_the_parser_sees_every_kind_of_import(
    tmp_path: Path, source: str, importer: str, expected: str | None
) -> None:
    path = tmp_path / "x.py"
    path.write_text(source)
    assert [imp.imported for imp in _imports(importer, path)] == ([expected] if expected else [])


def test_a_lower_layer_importing_a_higher_one_is_named() -> None:
    layers = _layers()
    imp = Import("simulator.generators.ktp.fixtures", "simulator.io.atomic", 26)
    src, dst = _layer_of(imp.importer, layers), _layer_of(imp.imported, layers)
    assert src and dst and (src[1], dst[1]) == ("generators", "io") and dst[0] > src[0]
    assert _layer_of("simulator.generators.cli", layers)[1] == "cli"
    assert _layer_of("simulator.cli", layers)[1] == "cli"
    assert _layer_of("simulator", layers)[1] == "base"


MAX_LINES = 500
REASON = "Over 500 lines:"
"""A module may be longer than MAX_LINES when a line of its docstring starting with this says why."""

OVERSIZED_IN_OTHER_HANDS: set[str] = set()
"""Modules another change is splitting right now (none: each long module has its reason)."""


def _line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_module_is_over_500_lines_without_a_reason() -> None:
    long = []
    for module, path in _modules().items():
        if module in OVERSIZED_IN_OTHER_HANDS or _line_count(path) <= MAX_LINES:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        if not any(line.strip().startswith(REASON) for line in doc.splitlines()):
            long.append(f"{module}: {_line_count(path)} lines and no '{REASON} <why>' line in its docstring")
    assert not long, "\n".join(long)


def test_the_oversized_list_holds_only_modules_still_over_the_limit() -> None:
    modules = _modules()
    stale = [
        m
        for m in sorted(OVERSIZED_IN_OTHER_HANDS)
        if m not in modules or _line_count(modules[m]) <= MAX_LINES
    ]
    assert not stale, f"split or gone, remove from OVERSIZED_IN_OTHER_HANDS: {', '.join(stale)}"


def test_every_package_says_what_it_owns() -> None:
    """Each folder's __init__.py opens with a docstring: what the package owns, at a glance."""
    silent = [
        m
        for m, p in _modules().items()
        if p.name == "__init__.py" and not ast.get_docstring(ast.parse(p.read_text(encoding="utf-8")))
    ]
    assert not silent, f"no docstring in the __init__.py of {', '.join(silent)}"
