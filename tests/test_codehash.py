"""Code hashes follow each script's import closure; the repository's lib/ is what jobs import."""
import modulefinder
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from xaisec.workflow import codehash

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for p in (REPO / "scripts").glob("*.py") if p.name != "_lib.py")


def test_closure_within_modulefinder():
    """An independent static import analysis (the standard library's, which follows every
    import of a module, not only those of the functions used) finds every module we do."""
    for script in SCRIPTS[:6]:
        finder = modulefinder.ModuleFinder(path=[str(REPO / "lib")] + sys.path[1:],
                                           excludes=["torch", "torchvision", "numpy", "pandas",
                                                     "matplotlib", "seaborn", "scipy", "skimage",
                                                     "captum", "pyarrow", "sklearn", "PIL",
                                                     "pytorch_msssim", "tqdm", "jsonschema"])
        finder.run_script(str(script))
        found = {m for m in finder.modules if m == "xaisec" or m.startswith("xaisec.")}
        ours = set(codehash.closure_modules(script))
        assert ours <= found, (script.name, ours - found)


def test_editing_a_module_changes_exactly_the_rules_that_reach_it(tmp_path):
    root = tmp_path / "xaisec"
    shutil.copytree(REPO / "lib" / "xaisec", root,
                    ignore=shutil.ignore_patterns("__pycache__"))
    scripts = tmp_path / "scripts"
    shutil.copytree(REPO / "scripts", scripts)

    def hashes():  # an appended comment changes no import: the parsed imports stay cached
        codehash.code_hash.cache_clear()
        return {s.name: codehash.code_hash(s, root=root) for s in sorted(scripts.glob("*.py"))
                if s.name != "_lib.py"}

    before = hashes()
    closures = {s.name: {p.relative_to(tmp_path) for p in codehash.import_closure(s, root)}
                for s in sorted(scripts.glob("*.py")) if s.name != "_lib.py"}
    modules = sorted(p for p in root.rglob("*.py"))
    assert len(modules) > 20
    for mod in modules:
        original = mod.read_bytes()
        mod.write_bytes(original + b"\n# edited\n")
        after = hashes()
        changed = {k for k in before if after[k] != before[k]}
        reach = {k for k, c in closures.items() if mod.relative_to(tmp_path) in c}
        assert changed == reach, (mod.name, changed ^ reach)
        mod.write_bytes(original)
    codehash.code_hash.cache_clear()
    codehash._module_info.cache_clear()


def test_a_task_module_reaches_only_what_the_called_task_imports():
    """papers/cfn/tasks.py imports each experiment inside the task that runs it: editing the
    example figures' module reruns the figure rule, not the fine-tuning."""
    fine = set(codehash.closure_modules(REPO / "scripts" / "finetune_backdoor.py"))
    figs = set(codehash.closure_modules(REPO / "scripts" / "cfn_example_figure.py"))
    assert "xaisec.attacks.backdoor" in fine and "xaisec.papers.cfn.examples" not in fine
    assert "xaisec.papers.cfn.examples" in figs and "xaisec.attacks.backdoor" not in figs


def test_tables_do_not_reach_the_training_code():
    mods = set(codehash.closure_modules(REPO / "scripts" / "cfn_table.py"))
    assert "xaisec.papers.cfn.evaluation" in mods
    train = set(codehash.closure_modules(REPO / "scripts" / "train_clean.py"))
    assert "xaisec.papers.cfn.examples" not in train and "xaisec.attacks.exiaa" not in train


def test_repository_lib_wins_over_a_shadowing_copy(tmp_path):
    shadow = tmp_path / "shadow" / "xaisec"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("SHADOW = True\n")
    (shadow / "smk.py").write_text("raise RuntimeError('the shadowing copy ran')\n")
    code = ("import sys; sys.path.insert(0, %r)\n"
            "import xaisec; assert getattr(xaisec, 'SHADOW', False)\n"  # the shadow first ...
            "sys.path.append(%r)\n"
            "import _lib\n"
            "import xaisec, xaisec.workflow.context\n"
            "print(xaisec.__file__)\n") % (str(shadow.parent), str(REPO / "lib"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow.parent), str(REPO / "lib")])}
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO / "scripts", env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert Path(res.stdout.strip()).resolve() == (REPO / "lib" / "xaisec" / "__init__.py").resolve()


def test_no_import_cycle_in_the_package():
    """No import cycle between xaisec modules, lazy imports inside functions included: a
    family never imports its dependants. (A package's __init__ importing its own submodules,
    and a submodule importing its package, are not cycles we count.)"""
    import ast

    root = REPO / "lib" / "xaisec"
    graph = {}
    for p in root.rglob("*.py"):
        me = codehash._dotted(p, root)
        pkg = me.split(".") if p.name == "__init__.py" else me.split(".")[:-1]
        deps = set()
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, ast.ImportFrom):
                base = n.module or ""
                if n.level:
                    b = pkg[: len(pkg) - (n.level - 1)]
                    base = ".".join(b + ([n.module] if n.module else []))
                cands = [f"{base}.{a.name}" for a in n.names] + [base]
            elif isinstance(n, ast.Import):
                cands = [a.name for a in n.names]
            else:
                continue
            for c in cands:
                f = codehash._module_file(c, root)
                if f is not None and c.startswith("xaisec.") and f != p:
                    deps.add(codehash._dotted(f, root))
        graph[me] = deps
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for d in graph.get(n, ()):
            if n.startswith(d + ".") or d.startswith(n + "."):
                continue
            if state.get(d) == 1:
                raise AssertionError(" -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


@pytest.mark.parametrize("target, message", [
    ("results/smoke/shapes/resnet20/seed1/backdoor/rh-cam-mse/model.pt", "MissingRuleException"),
])
def test_a_path_no_rule_builds_is_refused_by_name(target, message):
    snakemake = Path(sys.executable).with_name("snakemake")
    res = subprocess.run([str(snakemake), "-n", "--configfile", "config/smoke.yaml", "--", target],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "KeyError" not in out and "Traceback" not in out, out[-2000:]
    assert message in out or "No rule to produce" in out, out[-2000:]
