"""The README's commands, as written: every CFN table and figure is listed, and every
Snakemake command line of its code blocks plans (a dry run of exactly that line)."""
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def command_lines():
    """Every `.venv/bin/snakemake ...` line of the README's bash blocks, comment stripped."""
    text = (REPO / "README.md").read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split(" # ")[0].strip()
            if line.startswith(".venv/bin/snakemake"):
                lines.append(line)
    return lines


def targets(lines):
    out = []
    for line in lines:
        args = shlex.split(line)
        out += [a for a in args[1:] if a.startswith("results/")]
    return out


def test_readme_lists_every_cfn_table_and_figure():
    listed = set(targets(command_lines()))
    for n in range(1, 9):
        assert f"results/tables/cfn_table{n}.md" in listed, n
    for n in range(1, 25):
        assert f"results/figures/cfn_fig{n}.png" in listed, n


def test_a_target_after_configfile_would_be_misread():
    """--configfile takes several values: a target after it must follow `--`."""
    for line in command_lines():
        args = shlex.split(line)
        if "--configfile" in args:
            rest = args[args.index("--configfile") + 1:]
            before_sep = rest[:rest.index("--")] if "--" in rest else rest
            assert not any(a.startswith("results/") for a in before_sep), line


def _dry_run(args):
    cmd = [str(SNAKEMAKE), "-n", "--quiet", "rules", *args[1:]]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    return " ".join(args), res.returncode, (res.stdout + res.stderr)[-2000:]


def command_shapes(lines):
    """The command lines grouped by their arguments apart from the one target: each group is
    run once, as written, with all its targets in the target's place (one plan per shape
    instead of one per line; a line with two targets or none is its own group)."""
    groups = {}
    for line in lines:
        args = shlex.split(line)
        pos = [i for i, a in enumerate(args) if a.startswith("results/")]
        if len(pos) != 1:
            groups[tuple(args)] = (args, None, [])
            continue
        key = tuple(a if i != pos[0] else "<target>" for i, a in enumerate(args))
        groups.setdefault(key, (args, pos[0], []))[2].append(args[pos[0]])
    out = []
    for args, pos, tgts in groups.values():
        out.append(args if pos is None else args[:pos] + tgts + args[pos + 1:])
    return out


@pytest.mark.workflow
def test_every_readme_command_plans_as_written():
    lines = command_lines()
    assert len(lines) > 40
    shapes = command_shapes(lines)
    assert sum(len([a for a in s if a.startswith("results/")]) for s in shapes) \
        == len(targets(lines))  # every target is planned
    with ThreadPoolExecutor(2) as pool:
        for line, rc, out in pool.map(_dry_run, shapes):
            assert rc == 0, f"{line}\n{out}"
