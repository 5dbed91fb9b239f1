"""Write a dataset as JSONL, atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from shpers_core.data.errors import DatasetError
from shpers_core.data.schema import Dataset


def write_jsonl(ds: Dataset, path: str | Path) -> Path:
    """One dialogue per line, persona order; readers never see a half-written file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot write: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            for pid in ds.persona_ids:
                persona = ds.personas[pid]
                for i, d in enumerate(persona.dialogues):
                    record = d.to_dict()
                    if i == 0 and persona.meta:
                        # Once per persona, on its first line: routines can be long.
                        record["persona_meta"] = persona.meta
                    fh.write(json.dumps(record, ensure_ascii=False))
                    fh.write("\n")
        # mkstemp creates 0600; a dataset is an ordinary file that others may read.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise DatasetError(f"{path}: cannot write: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
