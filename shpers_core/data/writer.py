"""Write a dataset as JSONL, atomically."""

from __future__ import annotations

import json
from pathlib import Path

from shpers_core.atomic import atomic_file
from shpers_core.data.errors import DatasetError
from shpers_core.data.schema import Dataset


def write_jsonl(ds: Dataset, path: str | Path) -> Path:
    """One dialogue per line, persona order; readers never see a half-written file."""
    path = Path(path)
    try:
        with atomic_file(path, newline="\n") as fh:
            for pid in ds.persona_ids:
                persona = ds.personas[pid]
                for i, d in enumerate(persona.dialogues):
                    record = d.to_dict()
                    if i == 0 and persona.meta:
                        # Once per persona, on its first line: routines can be long.
                        record["persona_meta"] = persona.meta
                    fh.write(json.dumps(record, ensure_ascii=False))
                    fh.write("\n")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot write: {exc.strerror or exc}") from None
    return path
