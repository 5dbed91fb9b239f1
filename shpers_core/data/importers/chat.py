"""Chat datasets in the common layout: one conversation per record, ``messages: [{"role", "content"}]``,
a column naming the user or persona (``--persona-field``) and optionally one describing it
(``--character-field``).

A leading ``system`` message is kept as dialogue metadata; without a character column the first system
message seen for a persona is its description, and without either the description is the persona's id.
Replies are not marked persona-dependent (the layout does not say which are).
"""

from __future__ import annotations

from pathlib import Path

from shpers_core.data.errors import DatasetError
from shpers_core.data.importers.common import ImportResult, alternate, dialogue, finish, need
from shpers_core.data.loader import SUFFIXES, _records
from shpers_core.data.schema import Persona

NAME = "chat"
ROLES = ("user", "assistant")


def chat_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not files:
            raise DatasetError(f"{path}: folder holds no .json or .jsonl files")
        return files
    if path.is_file():
        return [path]
    raise DatasetError(f"{path}: no such file or folder")


def read_chat(path: Path, *, persona_field: str, character_field: str | None = None,
              strict: bool = False) -> ImportResult:
    """Convert every conversation under ``path``; raise a one-line :class:`DatasetError` on the first problem."""
    personas: dict[str, Persona] = {}
    first_seen: dict[str, str] = {}
    for file in chat_files(path):
        for where, record in _records(file):
            pid = need(record, persona_field, (str, int), where)
            pid = str(pid).strip()
            if not pid:
                raise DatasetError(f"{where}: field '{persona_field}' is empty")
            messages = need(record, "messages", list, where)
            if not messages:
                raise DatasetError(f"{where}: field 'messages' is empty")
            system, turns = None, []
            for k, m in enumerate(messages):
                mf = f"messages[{k}]"
                role = need(m, "role", str, where, f"{mf}.role")
                key = "content" if isinstance(m, dict) and "content" in m else "text"
                text = need(m, key, str, where, f"{mf}.{key}")
                if role == "system" and k == 0:
                    system = text
                elif role in ROLES:
                    turns.append((role, text, k))
                else:
                    where_ok = "" if role != "system" else " (a system message may only come first)"
                    raise DatasetError(f"{where}: field '{mf}.role' is {role!r}; must be 'user' or 'assistant'"
                                       f"{where_ok}")
            if character_field:
                character = need(record, character_field, str, where)
            else:
                character = personas[pid].character if pid in personas else (system or f"{persona_field} {pid}")
            persona = personas.get(pid)
            if persona is None:
                persona = personas[pid] = Persona(pid, character)
                first_seen[pid] = where
            elif persona.character != character:
                raise DatasetError(f"{where}: field '{character_field}' differs from the description of persona "
                                   f"'{pid}' given at {first_seen[pid]}")
            pairs = alternate(turns, where, "messages")
            meta = {"system": system} if system else {}
            n = len(persona.dialogues)
            persona.dialogues.append(dialogue(pid, character, pairs, None, dialogue_id=f"{pid}/{n:03d}", meta=meta))
    if not personas:
        raise DatasetError(f"{path}: the dataset is empty (no conversations)")
    return finish(personas, first_seen, str(path), NAME, strict, persona_field)
