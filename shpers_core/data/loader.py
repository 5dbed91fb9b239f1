"""Read a dataset from a JSON array, a JSONL file, or a folder of them (in sorted order).

JSONL is streamed line by line, so a file far larger than memory is never read whole; only the
parsed dialogues (with each persona's character text kept once) stay in memory. Nothing is
half-imported: :func:`load_dataset` returns a complete :class:`Dataset` or raises.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from shpers_core.data.errors import DatasetError
from shpers_core.data.schema import Dataset, Dialogue, Persona
from shpers_core.data.validate import record_to_dialogue, why_not_a_file

SUFFIXES = (".json", ".jsonl")
JSON_ARRAY_LIMIT = 200 * 1024 * 1024
LINE_LIMIT = 64 * 1024 * 1024
MIN_DIALOGUES = 3
BOM = b"\xef\xbb\xbf"


def load_dataset(path: str | Path) -> Dataset:
    """Load and validate every dialogue under ``path``; raise :class:`DatasetError` on the first problem."""
    path = Path(path)
    return collect(path).finish(path)


def collect(path: Path) -> _Builder:
    """Every dialogue under ``path`` validated and grouped by persona, before the whole-dataset checks."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not files:
            raise DatasetError(f"{path}: folder holds no .json or .jsonl files")
    elif path.is_file():
        files = [path]
    else:
        raise DatasetError(f"{path}: {why_not_a_file(path)}")
    builder = _Builder()
    strings: dict[str, str] = {}
    for file in files:
        for where, record in _records(file):
            builder.add(record_to_dialogue(record, where, strings), where)
            if isinstance(record, dict) and record.get("persona_meta"):
                builder.add_persona_meta(record["persona_id"], record["persona_meta"], where)
    return builder


class _Builder:
    """Groups dialogues by persona and checks what only the whole dataset can tell."""

    def __init__(self) -> None:
        self.personas: dict[str, Persona] = {}
        self.first_seen: dict[str, str] = {}

    def add(self, d: Dialogue, where: str) -> None:
        persona = self.personas.get(d.persona_id)
        if persona is None:
            self.personas[d.persona_id] = Persona(d.persona_id, d.character, [d], archetype=d.archetype)
            self.first_seen[d.persona_id] = where
            return
        if persona.character != d.character:
            raise DatasetError(
                f"{where}: field 'character' differs from the character of persona '{d.persona_id}' "
                f"given at {self.first_seen[d.persona_id]}"
            )
        persona.dialogues.append(d)
        if not persona.archetype:
            persona.archetype = d.archetype

    def add_persona_meta(self, pid: str, meta: dict, where: str) -> None:
        persona = self.personas[pid]
        if persona.meta and persona.meta != meta:
            raise DatasetError(f"{where}: field 'persona_meta' differs from the one given earlier for persona '{pid}'")
        persona.meta = meta

    def finish(self, path: Path) -> Dataset:
        if not self.personas:
            raise DatasetError(f"{path}: the dataset is empty (no dialogues)")
        for pid in sorted(self.personas):
            n = len(self.personas[pid].dialogues)
            if n < MIN_DIALOGUES:
                raise DatasetError(
                    f"{self.first_seen[pid]}: field 'persona_id': persona '{pid}' has {n} dialogue"
                    f"{'s' if n != 1 else ''}; at least {MIN_DIALOGUES} are needed (train, validation, test)"
                )
        return Dataset(self.personas, source=str(path))


def _records(file: Path) -> Iterator[tuple[str, object]]:
    try:
        if _first_byte(file) == b"[":
            yield from _array_records(file)
        else:
            yield from _jsonl_records(file)
    except OSError as exc:
        raise DatasetError(f"{file}: cannot read: {exc.strerror or exc}") from None


def _first_byte(file: Path) -> bytes:
    """The first non-whitespace byte (after a BOM): ``[`` means a JSON array, anything else JSONL."""
    with open(file, "rb") as fh:
        head = fh.read(len(BOM))
        if head != BOM:
            fh.seek(0)
        while chunk := fh.read(4096):
            stripped = chunk.lstrip()
            if stripped:
                return stripped[:1]
    return b""


def _jsonl_records(file: Path) -> Iterator[tuple[str, object]]:
    with open(file, "rb") as fh:
        offset = 0
        lineno = 0
        while raw := fh.readline(LINE_LIMIT + 1):
            lineno += 1
            start = offset
            offset += len(raw)
            if len(raw) > LINE_LIMIT:
                raise DatasetError(f"{file}: line {lineno}: longer than {LINE_LIMIT // 2**20} MB; not a JSONL record")
            if lineno == 1 and raw.startswith(BOM):
                raw, start = raw[len(BOM):], start + len(BOM)
            where = f"{file}: line {lineno}"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetError(f"{where}: not valid UTF-8 (byte offset {start + exc.start})") from None
            if not text.strip():
                continue
            yield where, _parse(text, where, multiline=False)


def _array_records(file: Path) -> Iterator[tuple[str, object]]:
    size = file.stat().st_size
    if size > JSON_ARRAY_LIMIT:
        raise DatasetError(
            f"{file}: JSON array of {size / 2**20:.0f} MB is over the {JSON_ARRAY_LIMIT // 2**20} MB limit; "
            "convert it to JSONL (one dialogue per line), which is read line by line"
        )
    data = file.read_bytes()
    skip = len(BOM) if data.startswith(BOM) else 0
    try:
        text = data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{file}: not valid UTF-8 (byte offset {skip + exc.start})") from None
    del data
    records = _parse(text, str(file), multiline=True)
    if not isinstance(records, list):
        raise DatasetError(f"{file}: top-level JSON value must be an array of dialogues")
    for i, record in enumerate(records, 1):
        yield f"{file}: record {i}", record


def _parse(text: str, where: str, multiline: bool) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        at = f"line {exc.lineno} column {exc.colno}" if multiline else f"column {exc.colno}"
        raise DatasetError(f"{where}: malformed JSON at {at}: {exc.msg}") from None
    except RecursionError:
        raise DatasetError(f"{where}: malformed JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer over Python's digit limit
        raise DatasetError(f"{where}: malformed JSON: {exc}") from None
