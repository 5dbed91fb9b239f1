"""Convert datasets from other layouts into the study's dialogue format.

:func:`import_dataset` reads a local file or folder, or a Hugging Face dataset id, in one of
:data:`FORMATS` and returns a complete, validated :class:`ImportResult` or raises a one-line
:class:`DatasetError`; nothing is written here (see :mod:`shpers_core.data.library`).
"""

from __future__ import annotations

from pathlib import Path

from shpers_core.data.errors import DatasetError
from shpers_core.data.importers.chat import chat_files, read_chat
from shpers_core.data.importers.common import ImportResult, finish
from shpers_core.data.importers.edgewisepersona import find_folder, read_edgewisepersona
from shpers_core.data.importers.hub import download, looks_like_hub_id
from shpers_core.data.loader import _records, collect, load_dataset

FORMATS = ("edgewisepersona", "chat", "shpers")


def import_dataset(source: str | Path, fmt: str | None = None, *, persona_field: str | None = None,
                   character_field: str | None = None, strict: bool = False) -> ImportResult:
    """Read ``source`` (a path or hub id) as ``fmt`` (guessed when None) into a validated dataset."""
    if fmt is not None and fmt not in FORMATS:
        raise DatasetError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    path = Path(source).expanduser()
    if not path.exists():
        if looks_like_hub_id(str(source)):
            path = download(str(source))
        else:
            raise DatasetError(f"{source}: no such file or folder (nor a Hugging Face dataset id, org/name)")
    fmt = fmt or guess_format(path, persona_field)
    if fmt == "edgewisepersona":
        return read_edgewisepersona(path, strict=strict)
    if fmt == "chat":
        if not persona_field:
            raise DatasetError(f"{source}: the chat layout needs --persona-field, the column naming each "
                               "conversation's user or persona")
        return read_chat(path, persona_field=persona_field, character_field=character_field, strict=strict)
    if strict:
        return ImportResult(load_dataset(path), "shpers")
    return _shpers_lenient(path)


def _shpers_lenient(path: Path) -> ImportResult:
    """The study's own format, with personas that have too few dialogues skipped rather than refused."""
    builder = collect(path)
    return finish(builder.personas, builder.first_seen, str(path), "shpers", strict=False)


def guess_format(path: Path, persona_field: str | None) -> str:
    """EdgeWisePersona when its three files are there, else by the first record's keys."""
    if find_folder(path) is not None:
        return "edgewisepersona"
    for file in chat_files(path):
        for where, record in _records(file):
            if isinstance(record, dict) and {"persona_id", "character", "messages"} <= set(record):
                return "shpers"
            if isinstance(record, dict) and "messages" in record:
                return "chat"
            raise DatasetError(f"{where}: cannot tell the dataset's layout from this record; give --format "
                               f"({', '.join(FORMATS)})")
    raise DatasetError(f"{path}: the dataset is empty")


__all__ = ["FORMATS", "ImportResult", "import_dataset"]
