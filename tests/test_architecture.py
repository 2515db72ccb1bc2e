"""The layering of docs/architecture.md, checked on the source: imports point down, no cycles,
few function-level imports, and no exporter name patterns in the cost models."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"core": "vitc.core", "runtime": "vitc.runtime", "compiler": "vitc.compiler", "passes": "vitc.passes",
            "backends": "vitc.backends", "vitc": "vitc"}
#: layer rank: a module may import modules of its own layer or lower ones
LAYER = {"vitc.core": 0, "vitc.runtime": 1, "vitc.compiler": 2, "vitc.passes": 3, "vitc.backends": 4, "vitc": 5}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, pkg in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([pkg] + parts)] = path
    return out


def _layer(module: str) -> int:
    best = max((p for p in LAYER if module == p or module.startswith(p + ".")), key=len)
    return LAYER[best]


def _imports(path: Path, modules: dict[str, Path]):
    """(imported vitc module, line, at module level?) for every import in ``path``."""
    tree = ast.parse(path.read_text())
    top = set(id(n) for n in tree.body)
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vitc"):
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("vitc")]
        target = next((n for n in reversed(names) if n in modules), None)
        if target is not None:
            yield target, node.lineno, id(node) in top


def test_no_import_cycles_and_imports_point_down():
    modules = _modules()
    g = nx.DiGraph()
    upward = []
    for mod, path in modules.items():
        g.add_node(mod)
        for target, line, _ in _imports(path, modules):
            if target == mod:
                continue
            g.add_edge(mod, target)
            if _layer(target) > _layer(mod):
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    cycles = list(nx.simple_cycles(g))
    assert not cycles, f"import cycles: {cycles[:5]}"
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)


def test_few_function_level_imports_each_commented():
    modules = _modules()
    local = []
    for mod, path in modules.items():
        lines = path.read_text().splitlines()
        for target, line, at_top in _imports(path, modules):
            if not at_top:
                local.append((f"{path.relative_to(ROOT)}:{line}", "#" in lines[line - 1]))
    assert len(local) <= 5, f"{len(local)} function-level imports of vitc modules: {[p for p, _ in local]}"
    assert all(commented for _, commented in local), f"uncommented: {[p for p, c in local if not c]}"


#: exporter naming conventions (timm, transformers, torch exporters) that only the raw-model
#: adapter may know
EXPORTER_PATTERNS = re.compile(r"layernorm_before|layernorm_after|encoder[._/]layer|attention/self|"
                               r"intermediate/dense|patch_embed(?!ding)|blocks?[._]\d|attn\.proj")


def test_backends_know_no_exporter_patterns():
    offenders = []
    for path in sorted((ROOT / "backends").rglob("*.py")):
        if path.name == "raw_adapter.py":
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if EXPORTER_PATTERNS.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_source_checkout_resolves_the_layers_without_an_install():
    """``python -m pytest`` on a clean clone imports the checkout's ``vitc/`` first; its layers
    (``core/`` ...) live at the repository root and must still resolve (no site packages here)."""
    code = "import vitc, vitc.core.version, vitc.runtime; print(vitc.core.version.__file__)"
    p = subprocess.run([sys.executable, "-S", "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert Path(p.stdout.strip()).resolve() == (ROOT / "core" / "version.py").resolve()
