"""Code hashes of the rules: what a job's script runs, derived from its import closure.

Snakemake reruns a ``script:`` rule when the script changes, but not when the library it
imports changes. Every rule therefore gets a ``code`` param: the hash of the script and of
every ``xaisec`` module it can reach through imports (module-level or inside functions, absolute
``xaisec.x`` or relative ``.x`` / ``..x``), plus the package ``__init__.py`` files on the way
and the resource files (published values) the package ships. Editing any module changes the
code param of exactly the rules whose scripts reach it.

Torch-free and cheap: the closure is read with :mod:`ast` and cached per script.
"""
from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

#: the package root (lib/xaisec)
PACKAGE = Path(__file__).resolve().parents[1]
PACKAGE_NAME = PACKAGE.name


def _module_file(dotted: str, root: Path = PACKAGE) -> Path | None:
    """``xaisec.a.b`` -> lib/xaisec/a/b.py or lib/xaisec/a/b/__init__.py (None if neither)."""
    parts = dotted.split(".")
    if parts[0] != PACKAGE_NAME:
        return None
    base = root.joinpath(*parts[1:]) if len(parts) > 1 else root
    if base.with_suffix(".py").is_file() and len(parts) > 1:
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _dotted(path: Path, root: Path = PACKAGE) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


ALL = None  # "every function of the module may run"


def _resolve(node: ast.ImportFrom, path: Path, root: Path) -> str:
    if not node.level:
        return node.module or ""
    me = _dotted(path, root) if root.parent in path.parents else ""
    pkg = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
    if node.level > 1:
        pkg = pkg[: len(pkg) - (node.level - 1)]
    return ".".join(pkg + ([node.module] if node.module else []))


def _targets(node, path: Path, root: Path) -> list[tuple[str, frozenset | None]]:
    """(module, names used from it or ALL) of one import statement, package modules only."""
    out = []
    if isinstance(node, ast.Import):
        out = [(a.name, ALL) for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = _resolve(node, path, root)
        names = set()
        for a in node.names:
            if a.name != "*" and _module_file(f"{base}.{a.name}", root) is not None:
                out.append((f"{base}.{a.name}", ALL))  # a submodule: all of it
            else:
                names.add(a.name)
        if names:
            out.append((base, ALL if "*" in names else frozenset(names)))
    return [(m, n) for m, n in out if m == PACKAGE_NAME or m.startswith(PACKAGE_NAME + ".")]


@functools.lru_cache(maxsize=None)
def _module_info(path: Path, root: Path = PACKAGE):
    """(imports at module level, {top-level def or class: (its imports, the names it uses)},
    the names module-level code uses)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top, defs, used = [], {}, set()
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            imps, names = [], set()
            for node in ast.walk(stmt):
                imps += _targets(node, path, root)
                if isinstance(node, ast.Name):
                    names.add(node.id)
            for dec in getattr(stmt, "decorator_list", []):  # decorators run at import time
                used.update(n.id for n in ast.walk(dec) if isinstance(n, ast.Name))
            defs[stmt.name] = (imps, names)
        else:
            for node in ast.walk(stmt):
                top += _targets(node, path, root)
                if isinstance(node, ast.Name):
                    used.add(node.id)
    return top, defs, used


def _reached(path: Path, names, root: Path) -> list[tuple[str, frozenset | None]]:
    """The imports that can run when ``names`` of the module at ``path`` are used (ALL: any
    of it): its module-level imports, and those inside the functions and classes it uses,
    following calls between them within the module."""
    top, defs, used = _module_info(path, root)
    want = set(defs) if names is ALL else (set(names) | used) & set(defs)
    todo, done = list(want), set()
    while todo:
        d = todo.pop()
        if d in done:
            continue
        done.add(d)
        todo += [n for n in defs[d][1] if n in defs and n not in done]
    return top + [imp for d in sorted(done) for imp in defs[d][0]]


def import_closure(script: str | Path, root: Path = PACKAGE) -> list[Path]:
    """Every file of the package that ``script`` can run, sorted, with the ``__init__.py`` of
    each package on the way. A module imported whole counts with every function in it; for
    ``from m import f`` only the imports at m's module level and those inside ``f`` (and the
    functions of m that ``f`` uses) are followed, so a task module's lazy imports reach only
    the rules that call that task."""
    reached: dict[Path, set | None] = {}
    todo: list[tuple[Path, frozenset | None]] = [(Path(script).resolve(), ALL)]
    first = True
    while todo:
        p, names = todo.pop()
        if not first:
            have = reached.get(p, set()) if p in reached else set()
            if p in reached and (have is ALL or (names is not ALL and names <= have)):
                continue
            reached[p] = ALL if names is ALL or have is ALL else have | names
            names = reached[p]
        first = False
        for dotted, wanted in _reached(p, names, root):
            parts = dotted.split(".")
            for k in range(1, len(parts)):  # the package __init__ files on the way
                f = _module_file(".".join(parts[:k]), root)
                if f is not None:
                    todo.append((f, frozenset()))
            f = _module_file(dotted, root)
            if f is not None:
                todo.append((f, wanted))
    return sorted(reached)


def _resources(root: Path = PACKAGE) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and "resources" in p.parts
                  and p.suffix in (".csv", ".json", ".yaml"))


@functools.lru_cache(maxsize=None)
def code_hash(script: str | Path, root: Path = PACKAGE) -> str:
    """sha256 (16 hex digits) of the script, its import closure and the package's resources."""
    h = hashlib.sha256()
    script = Path(script).resolve()
    files = [script, *import_closure(script, root)]
    if any("resources" in f.read_text() for f in files):
        files += _resources(root)
    for f in files:
        rel = f.name if f == script else str(f.relative_to(root.parent))
        h.update(rel.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def closure_modules(script: str | Path, root: Path = PACKAGE) -> list[str]:
    """The dotted module names of :func:`import_closure` (for reports and tests)."""
    return [_dotted(p, root) for p in import_closure(script, root)]
