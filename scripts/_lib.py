"""Put the repository's lib/ on sys.path, so the scripts import xaisec even where it is not
pip-installed (for example a conda environment built by `snakemake --sdm conda`).
Snakemake adds this folder to sys.path for every `script:` rule."""
import sys
from pathlib import Path

_LIB = str(Path(__file__).resolve().parents[1] / "lib")
if _LIB not in sys.path:
    sys.path.insert(0, _LIB)
