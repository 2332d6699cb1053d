"""The architecture as import rules (issue 10): no cycles, layers point one way.

Every ``import`` of the package's modules is parsed (module level *and* inside
functions: a lazy import is still a dependency), so a rule broken in a rarely
run branch fails here, not on a robot.  Imports under ``if TYPE_CHECKING:``
and ``if __name__ == "__main__":`` are skipped (never executed on import), and so
is a package's own ``__init__`` importing its submodules (a factory's lazy
dispatch: the submodule's import of its package always runs first anyway).
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

REPO = Path(__file__).resolve().parents[1]
#: source folder → the name it is installed under (training/ is goodpoint_training, setup.py)
PACKAGES = {REPO / "goodpoint_ros": "goodpoint_ros", REPO / "training": "goodpoint_training"}
ROS_ONLY = ("rclpy", "message_filters", "tf2_ros")

#: Known debt, shrinking: an edge listed here still breaks a rule and is left out of
#: the checks until it is fixed; a test fails once a listed edge is gone, so the list
#: shrinks with the code.  Empty since issue 10 (the gate, the ONNX metadata reader and
#: export_onnx moved below the backends; MAX_SIDE into config; FrontendConfig).
KNOWN_DEBT: Set[Tuple[str, str]] = set()


def package_modules() -> Dict[str, Path]:
    """Dotted module name → file, for both installed packages."""
    out = {}
    for root, pkg in PACKAGES.items():
        for f in sorted(root.rglob("*.py")):
            parts = [pkg, *f.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def _type_checking_nodes(tree: ast.AST) -> Set[int]:
    """Nodes under ``if TYPE_CHECKING:`` or ``if __name__ == "__main__":`` (never run on import)."""
    skip = set()
    for node in ast.walk(tree):
        test = ast.unparse(node.test) if isinstance(node, ast.If) else ""
        if "TYPE_CHECKING" in test or "__name__ == '__main__'" in test:
            skip.update(id(n) for b in node.body for n in ast.walk(b))
    return skip


def _resolve(node, here: List[str], known: Dict[str, Path]) -> List[str]:
    """The modules an ``import`` / ``from ... import`` statement imports.

    ``from a.b import c`` counts as importing ``a.b.c`` when that is a module,
    else ``a.b``; relative imports are resolved against the package ``here``.
    """
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        mod = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
    else:
        mod = node.module
    return [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]


def _parse(name: str, path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    return tree, here


def imports_of(name: str, path: Path, known: Dict[str, Path]) -> List[Tuple[str, int]]:
    """(imported module, line) for every import statement in ``path`` (see :func:`_resolve`)."""
    tree, here = _parse(name, path)
    skip = _type_checking_nodes(tree)
    return [(t, node.lineno) for node in ast.walk(tree) if id(node) not in skip
            and isinstance(node, (ast.Import, ast.ImportFrom)) for t in _resolve(node, here, known)]


def function_local_imports(name: str, path: Path, known: Dict[str, Path]) -> List[Tuple[str, int]]:
    """(imported module, line) for the imports inside a function or method body."""
    tree, here = _parse(name, path)
    out, todo = [], [(tree, False)]          # (node, inside a function)
    while todo:
        node, inside = todo.pop()
        if inside and isinstance(node, (ast.Import, ast.ImportFrom)):
            out += [(t, node.lineno) for t in _resolve(node, here, known)]
        inside = inside or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        todo += [(c, inside) for c in ast.iter_child_nodes(node)]
    return sorted(set(out))


@pytest.fixture(scope="module")
def graph():
    mods = package_modules()
    imports = {m: imports_of(m, p, mods) for m, p in mods.items()}
    return {m: [(t, ln) for t, ln in imps if (m, t) not in KNOWN_DEBT]
            for m, imps in imports.items()}, mods


def test_known_debt_is_still_there():
    """Remove an edge from KNOWN_DEBT once it is fixed (its source may be gone too)."""
    mods = package_modules()
    fixed = [e for e in sorted(KNOWN_DEBT) if e[0] in mods
             and e[1] not in {t for t, _ in imports_of(e[0], mods[e[0]], mods)}]
    assert not fixed, f"fixed, drop from KNOWN_DEBT: {fixed}"


def _cycles(edges: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_parser_sees_lazy_and_relative_imports(graph):
    imports, _ = graph
    # a module-level absolute import, a relative one, and a function-local one
    assert any(t == "goodpoint_ros.core.config" for t, _ in imports["goodpoint_ros.core.pipeline"])
    assert any(t == "goodpoint_training.config" for t, _ in imports["goodpoint_training.trainer"])
    assert any(t == "torch" for t, _ in imports["goodpoint_ros.backends.onnx_model"])  # in export_onnx


def test_no_import_cycle_between_the_package_modules(graph):
    imports, mods = graph
    edges = {m: {t for t, _ in imps if t in mods and t != m and not t.startswith(m + ".")}
             for m, imps in imports.items()}
    cycles = _cycles(edges)
    detail = []
    for comp in cycles:
        inside = set(comp)
        detail.append(" ; ".join(sorted({f"{m} → {t} (line {ln})" for m in comp
                                         for t, ln in imports[m] if t in inside and t != m})))
    assert not cycles, "import cycles:\n" + "\n".join(detail)


def _violations(imports, source_prefixes, forbidden, exempt=()):
    bad = []
    for mod, imps in imports.items():
        if not mod.startswith(source_prefixes) or mod.startswith(exempt or ("\0",)):
            continue
        for target, line in imps:
            if any(target == f or target.startswith(f + ".") for f in forbidden):
                bad.append(f"{mod}:{line} imports {target}")
    return sorted(set(bad))


LAYER_RULES = [
    # (who, may not import, why)
    (("goodpoint_ros.core",),
     ("goodpoint_ros.ros", "goodpoint_ros.evaluation", "goodpoint_ros.cli", "goodpoint_ros.frontend",
      "goodpoint_ros.odometry", "goodpoint_ros.deploy", "goodpoint_training"),
     "core is the bottom layer"),
    (("goodpoint_ros.frontend", "goodpoint_ros.odometry"),
     ("goodpoint_ros.ros", "goodpoint_ros.cli", "goodpoint_ros.evaluation"),
     "the frontend and the VO are ROS-free libraries"),
    (("goodpoint_ros.backends",),
     ("goodpoint_ros.deploy", "goodpoint_ros.cli", "goodpoint_ros.evaluation", "goodpoint_ros.ros",
      "goodpoint_ros.frontend"),
     "the backends serve everything above them"),
    (("goodpoint_ros.evaluation", "goodpoint_ros.synthetic", "goodpoint_ros.deploy"),
     ("goodpoint_ros.ros", "goodpoint_ros.cli"),
     "evaluation, the synthetic data and deployment are ROS-free libraries below the CLI"),
    (("goodpoint_ros.synthetic",), ("goodpoint_ros.evaluation",),
     "the synthetic data is below the evaluation that reads it (shared constants: core.config)"),
    (("goodpoint_training",), ("goodpoint_ros.cli",), "the trainer is below the CLI"),
    (("goodpoint_ros",), ("goodpoint_training",),
     "the runtime never needs the trainer (only `goodpoint train` / `export weights` do)"),
]


@pytest.mark.parametrize("who,forbidden,why", LAYER_RULES, ids=[r[0][0] for r in LAYER_RULES])
def test_layers_point_one_way(graph, who, forbidden, why):
    imports, _ = graph
    exempt = ("goodpoint_ros.cli",) if forbidden == ("goodpoint_training",) else ()
    bad = _violations(imports, who, forbidden, exempt)
    assert not bad, f"{why}:\n" + "\n".join(bad)


def test_only_the_ros_folder_imports_rclpy(graph):
    imports, _ = graph
    bad = _violations(imports, ("goodpoint_ros", "goodpoint_training"), ROS_ONLY,
                      exempt=("goodpoint_ros.ros",))
    assert not bad, "only goodpoint_ros/ros may import rclpy / message_filters / tf2_ros:\n" + "\n".join(bad)


def test_a_violation_is_reported():
    """The rules can fail: a fake core module importing the CLI, and a two-module cycle."""
    fake = {"goodpoint_ros.core.x": [("goodpoint_ros.cli.eval", 3)]}
    assert _violations(fake, ("goodpoint_ros.core",), ("goodpoint_ros.cli",)) == \
        ["goodpoint_ros.core.x:3 imports goodpoint_ros.cli.eval"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# --------------------------------------------------------------------------- lazy imports
#: Optional or heavy third-party modules that may be imported inside a function (a
#: lazy import): each is absent from some installation the package supports, or costs
#: a noticeable part of a second at import where most commands never use it.
#: torch & co. / tensorrt / cuda / onnx / onnxruntime / gtsam / scipy: optional extras; rclpy
#: & co. and cv_bridge: a ROS install only; matplotlib (~0.5 s) and rosbags (~0.15 s):
#: plots and bag paths only, and `goodpoint --help` imports the modules that use them.
LAZY_OK = ("torch", "torchao", "torchvision", "triton", "tensorrt", "cuda", "onnx",
           "onnxruntime", "gtsam", "scipy",
           "rclpy", "message_filters", "tf2_ros", "cv_bridge", "matplotlib", "rosbags")

#: Known exceptions, (module, imported module): function-local imports in folders
#: being reworked concurrently (ros/, odometry/, backends/, deploy/, evaluation/vo/,
#: cli bench/export/eval_vo) that still break the rule below.  Issue 10: hoist them,
#: then delete the entry; the list must end empty (no staleness test yet, as those
#: files change under other hands).
KNOWN_LAZY_EXCEPTIONS: Set[Tuple[str, str]] = {
    # the pipeline builds on the backends: the gate (run rarely) imports it on use
    ("goodpoint_ros.backends.gate", "goodpoint_ros.core.pipeline"),
}


def _is_lazy_ok(target: str) -> bool:
    return target.split(".")[0] in LAZY_OK


def heavy_modules(mods: Dict[str, Path]) -> Set[str]:
    """The package modules whose import (module level, transitively, parents included)
    loads a :data:`LAZY_OK` module: importing them lazily is importing torch lazily."""
    direct = {}
    for m, p in mods.items():
        local = set(function_local_imports(m, p, mods))
        direct[m] = {t for t, ln in imports_of(m, p, mods) if (t, ln) not in local}
    heavy: Set[str] = set()
    changed = True
    while changed:
        changed = False
        for m, targets in direct.items():
            if m in heavy:
                continue
            for t in targets:
                parts = t.split(".")
                chain = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
                if _is_lazy_ok(t) or chain & heavy:
                    heavy.add(m)
                    changed = True
                    break
    return heavy


def lazy_import_violations(mods: Dict[str, Path]) -> Set[Tuple[str, str, int]]:
    """(module, target, line) of each function-local import that is not allowed.

    Allowed: a :data:`LAZY_OK` module, a package module that loads one
    (:func:`heavy_modules`), or a package ``__init__`` importing its own submodule
    (PEP 562 lazy attributes: ``import goodpoint_ros`` stays free of numpy, so the
    CLI can set OPENBLAS_NUM_THREADS first).
    """
    heavy = heavy_modules(mods)
    bad = set()
    for m, p in mods.items():
        for t, ln in function_local_imports(m, p, mods):
            own_sub = p.name == "__init__.py" and t.startswith(m + ".")
            if not (_is_lazy_ok(t) or t in heavy or own_sub):
                bad.add((m, t, ln))
    return bad


def test_function_local_imports_are_only_for_optional_heavy_modules():
    """Issue 10: hoist an import unless it is optional or heavy (torch, rclpy, ...)."""
    bad = sorted(v for v in lazy_import_violations(package_modules())
                 if v[:2] not in KNOWN_LAZY_EXCEPTIONS)
    assert not bad, ("function-local imports of modules that are neither optional nor heavy "
                     "(hoist them to the top of the file):\n"
                     + "\n".join(f"{m}:{ln} imports {t}" for m, t, ln in bad))


def test_known_lazy_exceptions_are_not_stale():
    """An exception whose import was hoisted must leave the list (it would hide a relapse)."""
    current = {v[:2] for v in lazy_import_violations(package_modules())}
    assert KNOWN_LAZY_EXCEPTIONS <= current, sorted(KNOWN_LAZY_EXCEPTIONS - current)


def test_the_lazy_import_rule_can_fail(tmp_path):
    """A fake package: numpy inside a function fails; torch, a module importing torch
    at its top, and a package __init__'s own submodule pass."""
    pkg = tmp_path / "fakepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("def __getattr__(n):\n    from fakepkg import light\n")
    (pkg / "light.py").write_text("import json\n")
    (pkg / "net.py").write_text("import torch\n")
    (pkg / "user.py").write_text("def f():\n    import numpy\n    import torch\n"
                                 "    from fakepkg import net\n    from . import light\n")
    mods = {"fakepkg": pkg / "__init__.py",
            **{f"fakepkg.{n}": pkg / f"{n}.py" for n in ("light", "net", "user")}}
    assert heavy_modules(mods) == {"fakepkg.net"}
    assert lazy_import_violations(mods) == {("fakepkg.user", "numpy", 2),
                                            ("fakepkg.user", "fakepkg.light", 5)}
