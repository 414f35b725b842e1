"""The README's per-target commands name real targets of the full config."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
COMMAND = re.compile(r"^\.venv/bin/snakemake --cores all (results/\S+)", re.M)


def readme_targets():
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Regenerating one table or figure"):]
    section = section[:section.index("\n## ", 10)]
    return COMMAND.findall(section)


def test_readme_lists_every_cfn_table_and_figure():
    targets = set(readme_targets())
    for n in range(1, 9):
        assert f"results/tables/cfn_table{n}.md" in targets, n
    for n in range(1, 25):
        assert f"results/figures/cfn_fig{n}.png" in targets, n


@pytest.mark.workflow
def test_readme_commands_plan_under_the_full_config():
    targets = readme_targets()
    res = subprocess.run([str(SNAKEMAKE), "-n", "--quiet", "rules", "--", *targets], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
