"""Turn one decoded record into a :class:`Dialogue`, or raise a one-line :class:`DatasetError`."""

from __future__ import annotations

import errno
import os
import stat
import unicodedata
from pathlib import Path

from shpers_core.data.errors import DatasetError
from shpers_core.data.schema import ROLES, Dialogue, Message

OPTIONAL_STRINGS = ("dialogue_id", "domain", "archetype")
MAX_ID_CHARS = 200
MAX_MESSAGE_CHARS = 4000
RESERVED_NAMES = frozenset({"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                            *(f"LPT{i}" for i in range(1, 10))})


def _type_name(value: object) -> str:
    return "null" if value is None else {dict: "object", list: "array", str: "string", bool: "boolean",
                                          int: "number", float: "number"}.get(type(value), type(value).__name__)


def _string(value: object, where: str, field: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise DatasetError(f"{where}: field '{field}' must be a string, got {_type_name(value)}")
    if not allow_empty and not value.strip():
        raise DatasetError(f"{where}: field '{field}' is empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        # A JSON "\ud800" escape decodes to a lone surrogate that no UTF-8 file can hold.
        raise DatasetError(f"{where}: field '{field}' contains an unpaired surrogate at character {exc.start}") from None
    return value


def _id(value: object, where: str, field: str, *, allow_empty: bool = False) -> str:
    """An id: a string with no NUL or other control character (ids name things in listings and files)."""
    text = _string(value, where, field, allow_empty=allow_empty)
    bad = next((i for i, ch in enumerate(text) if unicodedata.category(ch) == "Cc"), None)
    if bad is not None:
        raise DatasetError(f"{where}: field '{field}' contains the control character {ascii(text[bad])} at "
                           f"character {bad}; ids may not hold NUL, newlines, tabs or other control characters")
    return text


def unusual_id(persona_id: str) -> str | None:
    """Why ``persona_id`` is unusual as a name (it still works: files use a derived safe name), or None."""
    if len(persona_id) > MAX_ID_CHARS:
        return f"is {len(persona_id)} characters long (over {MAX_ID_CHARS})"
    if persona_id.strip() in (".", ".."):
        return f"is {persona_id!r}, a folder name on most systems"
    if any(sep in persona_id for sep in "/\\"):
        return "contains a path separator"
    if persona_id != persona_id.strip():
        return "starts or ends with white space"
    if persona_id.split(".")[0].strip().upper() in RESERVED_NAMES:
        return "is a reserved device name on Windows"
    if any(unicodedata.category(ch) in ("Cf", "Co", "Cs", "Zl", "Zp") for ch in persona_id):
        return "contains an invisible or formatting character"
    return None


def dataset_warnings(dataset, max_message_chars: int = MAX_MESSAGE_CHARS) -> list[str]:
    """Things that load but are likely mistakes: unusual persona ids, messages over ``max_message_chars``."""
    out = []
    for pid in dataset.persona_ids:
        why = unusual_id(pid)
        if why:
            out.append(f"persona_id {ascii(pid[:60]) + ('...' if len(pid) > 60 else '')} {why}")
    for pid in dataset.persona_ids:
        for d in dataset.personas[pid].dialogues:
            for i, m in enumerate(d.messages):
                if len(m.text) > max_message_chars:
                    out.append(f"persona {ascii(pid[:60])}, dialogue {d.dialogue_id or '?'}: messages[{i}] has "
                               f"{len(m.text)} characters (over {max_message_chars}); long messages are cut to the "
                               "model's context when training and evaluating")
    return out


def record_to_dialogue(record: object, where: str, strings: dict[str, str]) -> Dialogue:
    """Check one record; ``strings`` de-duplicates repeated text (the character, labels) across records."""
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: record must be a JSON object, got {_type_name(record)}")
    for key in ("persona_id", "character", "messages"):
        if key not in record:
            raise DatasetError(f"{where}: missing field '{key}'")
    persona_id = _id(record["persona_id"], where, "persona_id")
    character = _string(record["character"], where, "character")
    messages = record["messages"]
    if not isinstance(messages, list):
        raise DatasetError(f"{where}: field 'messages' must be an array, got {_type_name(messages)}")
    if not messages:
        raise DatasetError(f"{where}: field 'messages' is empty")
    parsed = tuple(_message(m, where, i, strings) for i, m in enumerate(messages))
    for i, m in enumerate(parsed):
        expected = ROLES[i % 2]
        if m.role != expected:
            raise DatasetError(
                f"{where}: field 'messages[{i}].role' is '{m.role}' but turns must alternate user/assistant "
                f"starting with user (expected '{expected}')"
            )
    if parsed[-1].role != "assistant":
        raise DatasetError(f"{where}: field 'messages[{len(parsed) - 1}]' is a user message; a dialogue must end with the assistant")
    extras = {}
    for key in OPTIONAL_STRINGS:
        value = record.get(key)
        if value is not None:
            value = _id(value, where, key, allow_empty=True) if key == "dialogue_id" else \
                _string(value, where, key, allow_empty=True)
            extras[key] = value if key == "dialogue_id" else _shared(strings, value)
    for key in ("meta", "persona_meta"):
        if record.get(key) is not None and not isinstance(record[key], dict):
            raise DatasetError(f"{where}: field '{key}' must be an object, got {_type_name(record[key])}")
    if record.get("meta"):
        extras["meta"] = record["meta"]
    return Dialogue(
        persona_id=_shared(strings, persona_id),
        character=_shared(strings, character),
        messages=parsed,
        **extras,
    )


def _shared(strings: dict[str, str], value: str) -> str:
    # Every JSONL line repeats its persona's character text; keeping one copy per persona is
    # what keeps a loaded dataset much smaller than its file.
    return strings.setdefault(value, value)


def _message(m: object, where: str, i: int, strings: dict[str, str]) -> Message:
    field = f"messages[{i}]"
    if not isinstance(m, dict):
        raise DatasetError(f"{where}: field '{field}' must be an object, got {_type_name(m)}")
    if "role" not in m:
        raise DatasetError(f"{where}: missing field '{field}.role'")
    role = m["role"]
    if not isinstance(role, str):
        raise DatasetError(f"{where}: field '{field}.role' must be a string, got {_type_name(role)}")
    if role not in ROLES:
        raise DatasetError(f"{where}: field '{field}.role' is {role!r}; must be 'user' or 'assistant'")
    key = "text" if "text" in m else "content" if "content" in m else None
    if key is None:
        raise DatasetError(f"{where}: missing field '{field}.text'")
    text = _string(m[key], where, f"{field}.{key}")
    dependent = m.get("persona_dependent")
    if dependent is not None and not isinstance(dependent, bool):
        raise DatasetError(f"{where}: field '{field}.persona_dependent' must be true, false or null, got {_type_name(dependent)}")
    return Message(ROLES[0] if role == ROLES[0] else ROLES[1], text, dependent)


def why_not_a_file(path: Path) -> str:
    """Why ``path`` cannot be read as a dataset file: missing, a FIFO, a device, a symlink loop, ..."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop"
        if exc.errno == errno.ENOENT:
            return "is a broken symbolic link" if os.path.islink(path) else "no such file or folder"
        return exc.strerror or str(exc)
    for test, what in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return f"is {what}, not a regular file"
    return "is not a regular file or folder"
