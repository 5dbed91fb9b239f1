"""Noise from the libraries underneath that a user of shpers can do nothing about."""

from __future__ import annotations

import warnings

# Deprecations raised inside PEFT's own calls into transformers.
_DEPRECATIONS = (r".*is_gradient_checkpointing.*", r".*`past_key_values` is deprecated.*")


def hide_third_party_deprecations() -> None:
    """Drop the known deprecation warnings of PEFT-on-transformers from the terminal and the app's log."""
    for message in _DEPRECATIONS:
        warnings.filterwarnings("ignore", message=message, category=FutureWarning)
