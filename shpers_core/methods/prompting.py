"""Shared by the methods that personalise through the prompt rather than the weights."""

from __future__ import annotations


def persona_system_prompt(character: str, base_prompt: str | None) -> str:
    """A system prompt that tells the assistant who it is serving."""
    intro = base_prompt or "You are a smart-home assistant."
    return f"{intro}\nThe person you are helping: {character}"


def persona_system_prompts(ctx) -> dict[str, str]:
    """:func:`persona_system_prompt` for every selected persona of a job."""
    return {pid: persona_system_prompt(ctx.dataset.personas[pid].character, ctx.system_prompt)
            for pid in ctx.personas}
