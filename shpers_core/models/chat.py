"""Dialogues as token ids, always through the tokenizer's own chat template.

Assistant spans are found by rendering prefixes of the conversation (with and without the
generation prompt) rather than by ``{% generation %}`` markers, which the SmolLM2 and Qwen
templates lack.
"""

from __future__ import annotations

from collections.abc import Sequence

import jinja2

from shpers_core.data.schema import Dialogue, Message
from shpers_core.training.batching import IGNORE_INDEX, Example

from .errors import ModelError

# End-of-turn markers of the common chat formats; whichever the vocabulary has ends a reply.
_END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>")

MessageLike = Message | dict


def to_chat(messages: Sequence[MessageLike], system: str | None = None) -> list[dict]:
    """``[{"role", "content"}]`` for a chat template, with ``system`` first when given."""
    chat = [{"role": "system", "content": system}] if system else []
    for m in messages:
        if isinstance(m, Message):
            chat.append({"role": m.role, "content": m.text})
        else:
            text = m.get("content", m.get("text"))
            if text is None:
                raise ModelError(f"message has no text: {m!r}")
            chat.append({"role": m["role"], "content": text})
    return chat


def end_of_turn_ids(tokenizer) -> set[int]:
    """Token ids that end an assistant turn: the EOS token and any known end-of-turn marker."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # get_vocab() copies the whole vocabulary: far too slow per dialogue
        ids.update(backend.token_to_id(t) for t in _END_OF_TURN)
        ids.discard(None)
    else:
        vocab = tokenizer.get_vocab()
        ids.update(vocab[t] for t in _END_OF_TURN if t in vocab)
    return ids


def _render(tokenizer, chat: list[dict], generation_prompt: bool) -> str:
    if not tokenizer.chat_template:
        raise ModelError(f"tokenizer {tokenizer.name_or_path!r} has no chat template")
    try:
        return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=generation_prompt)
    except jinja2.TemplateError as exc:
        raise ModelError(f"chat template of {tokenizer.name_or_path!r} rejected the conversation: {exc}") from exc


def _tokenize(tokenizer, text: str) -> tuple[list[int], list[int] | None]:
    """Token ids of ``text`` (the template already placed any special tokens) and each token's start char."""
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [start for start, _ in enc["offset_mapping"]]
    except NotImplementedError:  # slow tokenizers give no offsets
        return list(tokenizer(text, add_special_tokens=False)["input_ids"]), None


def _reply_char_spans(tokenizer, chat: list[dict], text: str) -> list[tuple[int, int]]:
    """Character spans of each assistant reply in ``text``, from the generation prompt to the turn's end."""
    spans = []
    for i, m in enumerate(chat):
        if m["role"] != "assistant":
            continue
        upto = _render(tokenizer, chat[: i + 1], False)
        if not text.startswith(upto):
            raise ModelError(f"chat template of {tokenizer.name_or_path!r} does not render conversations turn by turn")
        prompt = _render(tokenizer, chat[:i], True) if i else ""
        if i and text.startswith(prompt):
            start = len(prompt)
        else:
            # No usable prefix (a chat opening with the assistant): find the reply's own text.
            start = upto.rfind(m["content"])
            if start < 0:
                raise ModelError(f"chat template of {tokenizer.name_or_path!r} alters reply text; cannot label it")
        spans.append((start, len(upto)))
    return spans


def _labelled(tokenizer, chat: list[dict]) -> tuple[list[int], list[int]]:
    text = _render(tokenizer, chat, False)
    ids, starts = _tokenize(tokenizer, text)

    def token_index(char: int) -> int:
        if starts is not None:
            return sum(1 for s in starts if s < char)
        return len(_tokenize(tokenizer, text[:char])[0])

    stops = end_of_turn_ids(tokenizer)
    labels = [IGNORE_INDEX] * len(ids)
    for a, b in _reply_char_spans(tokenizer, chat, text):
        lo, hi = token_index(a), token_index(b)
        # The span runs to the next turn; score the reply and its end-of-turn token, not the separator after.
        ends = [j for j in range(lo, hi) if ids[j] in stops]
        if ends:
            hi = ends[-1] + 1
        labels[lo:hi] = ids[lo:hi]
    return ids, labels


def encode_dialogue(tokenizer, dialogue: Dialogue | Sequence[MessageLike], system: str | None = None,
                    max_length: int = 512, persona_id: str = "") -> Example:
    """Token ids of a whole dialogue, with labels on assistant replies (and their end-of-turn token) only.

    A dialogue longer than ``max_length`` loses whole turns from its start (the system prompt
    stays); if even its last exchange is too long, tokens are cut from the left.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be positive, got {max_length}")
    if isinstance(dialogue, Dialogue):
        persona_id = persona_id or dialogue.persona_id
        dialogue = dialogue.messages
    chat = to_chat(dialogue)
    if chat and chat[0]["role"] == "system":
        system = chat[0]["content"] if system is None else system
        chat = chat[1:]
    replies = [i for i, m in enumerate(chat) if m["role"] == "assistant"]
    cuts = [0] + [i for i, m in enumerate(chat) if m["role"] == "user" and i > 0 and replies and i < replies[-1]]
    for cut in cuts:
        ids, labels = _labelled(tokenizer, to_chat(chat[cut:], system))
        if len(ids) <= max_length:
            break
    return Example(tuple(ids[-max_length:]), tuple(labels[-max_length:]), persona_id)


def encode_prompt(tokenizer, history: Sequence[MessageLike], system: str | None = None) -> list[int]:
    """Token ids of ``history`` followed by the generation prompt, ready for ``generate``."""
    return _tokenize(tokenizer, _render(tokenizer, to_chat(history, system), True))[0]


def decode_reply(tokenizer, token_ids) -> str:
    """The text of generated ``token_ids`` (prompt excluded), up to the first end-of-turn token, stripped."""
    ids = token_ids.tolist() if hasattr(token_ids, "tolist") else list(token_ids)
    stops = end_of_turn_ids(tokenizer)
    if tokenizer.pad_token_id is not None:
        stops.add(tokenizer.pad_token_id)
    for j, t in enumerate(ids):
        if t in stops:
            ids = ids[:j]
            break
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


# A token never spans more characters than this in the vocabularies here; cutting a message to
# ``budget * _MAX_TOKEN_CHARS`` characters first keeps a huge message from being tokenised whole.
_MAX_TOKEN_CHARS = 64


def encode_prompt_within(tokenizer, history: Sequence[MessageLike], system: str | None,
                         budget: int) -> tuple[list[int], bool]:
    """:func:`encode_prompt` in at most ``budget`` tokens, and whether anything was cut.

    The oldest turns go first (the history then starts at a user message); if the last message
    alone is still too long, its text is cut from the start, keeping its end. The system prompt
    stays. As a last resort (a system prompt longer than the budget) tokens are cut from the left.
    """
    budget = max(1, budget)
    chat = to_chat(history)
    cap = budget * _MAX_TOKEN_CHARS
    cut = any(len(m["content"]) > cap for m in chat)
    chat = [{**m, "content": m["content"][-cap:]} for m in chat]
    ids = encode_prompt(tokenizer, chat, system)
    if len(ids) <= budget:
        return ids, cut
    while len(chat) > 1:
        chat = chat[1:]
        while len(chat) > 1 and chat[0]["role"] != "user":
            chat = chat[1:]
        ids = encode_prompt(tokenizer, chat, system)
        if len(ids) <= budget:
            return ids, True
    text = chat[0]["content"] if chat else ""
    lo, hi = 0, len(text)  # the most characters of the message's end that fit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(encode_prompt(tokenizer, [{**chat[0], "content": text[len(text) - mid:]}], system)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    ids = encode_prompt(tokenizer, [{**chat[0], "content": text[len(text) - lo:]}] if chat else [], system)
    return ids[-budget:], True
