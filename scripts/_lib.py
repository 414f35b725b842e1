"""Make the repository's lib/ what every job imports, ahead of any other copy of xaisec (an
editable install of another checkout, an older `pip install`, a PYTHONPATH entry), so that the
code hash of a rule describes the code that ran. Snakemake puts this folder on sys.path for
every `script:` rule; each script imports this module first."""
import sys
from pathlib import Path

_LIB = str(Path(__file__).resolve().parents[1] / "lib")
sys.path[:] = [_LIB] + [p for p in sys.path if p != _LIB]
for _name in [m for m in sys.modules if m == "xaisec" or m.startswith("xaisec.")]:
    del sys.modules[_name]  # imported from elsewhere before this ran: import again from _LIB

import xaisec  # noqa: E402

if Path(xaisec.__file__).resolve().parent != Path(_LIB, "xaisec").resolve():
    raise ImportError(f"xaisec was imported from {xaisec.__file__}, not from this repository's "
                      f"{_LIB}; remove the other copy from the environment")
