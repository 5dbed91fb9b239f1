"""The one error the dataset package raises for anything wrong with a user's data."""

from __future__ import annotations

from shpers_core.errors import UserError


class DatasetError(UserError, ValueError):
    """A dataset file or folder is unreadable or breaks the dialogue format.

    The message is one line naming the file, the record (1-based line for JSONL, 1-based
    record number for a JSON array) and the field.
    """
