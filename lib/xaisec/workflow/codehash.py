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


@functools.lru_cache(maxsize=None)
def _imports(path: Path, root: Path = PACKAGE) -> frozenset[str]:
    """Dotted names of the package modules ``path`` imports (candidates; unresolvable ones
    such as ``from .x import some_function`` resolve to the module ``.x`` itself)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = _dotted(path, root) if root.parent in path.parents else ""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = me.split(".") if is_pkg else me.split(".")[:-1]
                if node.level > 1:
                    pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
    return frozenset(m for m in out if m == PACKAGE_NAME or m.startswith(PACKAGE_NAME + "."))


def import_closure(script: str | Path, root: Path = PACKAGE) -> list[Path]:
    """Every file of the package that ``script`` reaches by imports, sorted, with the
    ``__init__.py`` of each package on the way."""
    seen: set[Path] = set()
    todo = [Path(script).resolve()]
    first = True
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        if not first:
            seen.add(p)
        first = False
        for dotted in _imports(p, root):
            parts = dotted.split(".")
            for i in range(1, len(parts) + 1):  # the package __init__ files on the way
                f = _module_file(".".join(parts[:i]), root)
                if f is not None and f not in seen:
                    todo.append(f)
    return sorted(seen)


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
