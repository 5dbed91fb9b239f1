"""Errors a user can cause. The CLI prints them as one line and exits 2; the app shows a dialog."""

from __future__ import annotations


class UserError(Exception):
    """Base of every error caused by what a user gave (a file, a name, a value).

    The message names what was wrong and where (file, record index, field).
    """
