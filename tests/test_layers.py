"""The architecture, checked: every import statement of the project (module-level and inside
functions, read from the AST) goes down the layer order of search/__init__.py, and no
modules import each other in a cycle of any length."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("spaces", "rl", "search")
ENTRY_POINTS = ("search.py", "evaluate.py", "train.py")
# Layer of each package (the longest prefix decides); an import must go to a lower layer or
# stay in its own package.
LAYERS = {"spaces": 0, "rl": 1, "search": 2, "search.evolution": 2, "search.runs": 3,
          "search.evaluation": 4, "search.report": 5, "search.commands": 6, "<entry>": 7}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    if rel.parent == Path("."):
        return f"<entry>.{rel.name}"
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    found = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    found.update({module_name(ROOT / e): ROOT / e for e in ENTRY_POINTS})
    return found


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports anywhere in its code (``from a.b import c`` is
    the module a.b.c when it is one, else a.b)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules
                     else node.module for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def layer(module: str) -> tuple[str, int]:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return best, LAYERS[best]


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_every_import_goes_down_the_layers():
    wrong = []
    for module, targets in graph().items():
        own, rank = layer(module)
        for target in targets:
            theirs, their_rank = layer(target)
            if theirs != own and their_rank >= rank:
                wrong.append(f"{module} ({own}) imports {target} ({theirs})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_of_any_length():
    assert find_cycle(graph()) is None, " -> ".join(find_cycle(graph()))


def test_the_checks_see_function_level_imports_and_cycles(tmp_path):
    """The detector itself: a function-level import counts, and a 3-cycle is found."""
    code = tmp_path / "m.py"
    code.write_text("def f():\n    from search.runs import tuner\n")
    modules = {"search.runs.tuner": code, "search.runs": code}
    assert imports_of(code, modules) == {"search.runs.tuner"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert layer("search.runs.tuner") == ("search.runs", 3) and layer("rl.train") == ("rl", 1)


def test_the_product_never_imports_tests_or_bench():
    for module, path in project_modules().items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.split(".")[0] in ("tests", "bench") for n in names), module


@pytest.mark.parametrize("package, absent", [("search.evolution", ("ray", "torch", "rl")),
                                             ("spaces", ("ray", "torch")),
                                             ("search.report", ("ray",))])
def test_importing_a_layer_leaves_heavier_ones_out(package, absent):
    """Every module of ``package`` imported in a fresh interpreter: ``absent`` stay unloaded."""
    names = sorted(m for m in project_modules() if m == package or m.startswith(package + "."))
    script = ("import importlib, sys\n"
              f"for name in {names!r}:\n    importlib.import_module(name)\n"
              f"print(sorted(m for m in {list(absent)!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"{package} loads {out.stdout.strip()}"
