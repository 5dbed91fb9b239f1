"""Errors a user can cause by naming a model."""

from __future__ import annotations

from shpers_core.errors import UserError


class ModelError(UserError):
    """A model name, folder or hub id that cannot be loaded; the message is one line."""
