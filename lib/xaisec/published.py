"""The papers' published values, transcribed into ``resources/<name>.csv`` (one reader).

Each file has a ``paper`` and a ``table`` column and the cells of that paper's tables; lines
starting with ``#`` are comments (sources, transcription notes). Tables print these beside the
reproduced values; nothing computes with them.
"""
from __future__ import annotations

from importlib import resources

import pandas as pd

#: the transcriptions shipped with the package
FILES = ("published", "cfn_published", "cfn_published_extra", "fgsmxai_published",
         "exiaa_published", "advedge_published")


def published(name: str) -> pd.DataFrame:
    """The transcription ``resources/<name>.csv`` as a DataFrame."""
    if name not in FILES:
        raise ValueError(f"unknown transcription {name!r}; known: {', '.join(FILES)}")
    with resources.files("xaisec").joinpath(f"resources/{name}.csv").open() as f:
        return pd.read_csv(f, comment="#")
