"""`chat()` / `stream_chat()`: one conversation turn through the tokenizer's chat template.

History comes in either of two shapes and goes back out in the same one, as a NEW list (the caller's list and
its items are never modified):
- pairs, ChatGLM style: [(query, response), ...] (tuples or 2-item lists);
- role dicts: [{"role": "system"|"user"|"assistant", "content": ...}, ...] (extra keys are passed to the template).
An empty or missing history gives back role dicts.
"""

from __future__ import annotations

from .config import GenerationConfig, resolve
from .decode import generate
from .streamers import BackgroundGeneration, TextIteratorStreamer

# new tokens for a chat turn when neither the call nor the model's generation_config sets a length
# (generate's own default of 20 would cut most answers short)
CHAT_MAX_NEW_TOKENS = 512


def chat(model, tokenizer, query: str, history: list | None = None, *, system: str | None = None,
         stream: bool = False, **generation_kwargs):
    """Answer `query` after `history`: returns (response, new_history). The prompt is the chat template applied
    with add_generation_prompt=True (plus a `system` message if given); options default to the model's
    generation_config (e.g. its sampling settings); the tokenizer's EOS id also ends the turn. The response is
    the decode of the new tokens without special tokens, stripped. `stream=True` returns `stream_chat(...)`."""
    if stream:
        return stream_chat(model, tokenizer, query, history, system=system, **generation_kwargs)
    inputs, kwargs = _prepare(model, tokenizer, query, history, system, generation_kwargs)
    sequences = generate(model, inputs["input_ids"], inputs.get("attention_mask"), **kwargs)
    response = _decode_new(tokenizer, sequences, inputs["input_ids"].shape[1])
    return response, _new_history(history, query, response)


def stream_chat(model, tokenizer, query: str, history: list | None = None, *, system: str | None = None,
                **generation_kwargs):
    """Like `chat`, but a generator of (partial_response, new_history) as tokens arrive; the last item holds
    the final response (equal to what `chat` returns). Generation runs in a background thread and stops if the
    generator is closed early. Partial texts that end in an incomplete character are not yielded."""
    inputs, kwargs = _prepare(model, tokenizer, query, history, system, generation_kwargs)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    run = BackgroundGeneration(model, streamer, input_ids=inputs["input_ids"],
                               attention_mask=inputs.get("attention_mask"), **kwargs)
    text, last = "", None
    for chunk in run:
        text += chunk
        partial = text.strip()
        if partial and partial != last and not partial.endswith("\ufffd"):
            last = partial
            yield partial, _new_history(history, query, partial)
    response = _decode_new(tokenizer, run.output, inputs["input_ids"].shape[1])
    if response != last:
        yield response, _new_history(history, query, response)


# -- helpers -----------------------------------------------------------------------------------------------------

def _prepare(model, tokenizer, query, history, system, generation_kwargs):
    if not isinstance(query, str):
        raise TypeError(f"query must be a string, got {type(query).__name__}.")
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(f"The tokenizer {getattr(tokenizer, 'name_or_path', '') or type(tokenizer).__name__!r} has "
                         "no chat template (no chat_template in tokenizer_config.json or chat_template.jinja), so "
                         "chat() cannot format the conversation. Set one: tokenizer.chat_template = '...' (a Jinja "
                         "template), or build the prompt yourself and call model.generate().")
    messages = _messages(history, query, system)
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,
                                           return_tensors="pt")
    return inputs, _generation_kwargs(model, tokenizer, generation_kwargs)


def _generation_kwargs(model, tokenizer, kwargs: dict) -> dict:
    kwargs = dict(kwargs)
    model_config = getattr(model, "generation_config", None)
    passed = kwargs.get("generation_config")
    length_set = any(kwargs.get(k) is not None for k in ("max_new_tokens", "max_length")) or any(
        getattr(c, k, None) is not None if not isinstance(c, dict) else c.get(k) is not None
        for c in (model_config, passed) if c is not None for k in ("max_new_tokens", "max_length"))
    if not length_set:
        kwargs["max_new_tokens"] = CHAT_MAX_NEW_TOKENS
    if kwargs.get("eos_token_id") is None and getattr(tokenizer, "eos_token_id", None) is not None:
        configured = resolve({}, passed, model_config if model_config is not None else
                             GenerationConfig.from_model_config(model.config))[0].eos_token_id
        eos = [] if configured is None else [configured] if isinstance(configured, int) else list(configured)
        if tokenizer.eos_token_id not in eos:
            kwargs["eos_token_id"] = eos + [tokenizer.eos_token_id]
    return kwargs


def _shape(history) -> str:
    """'dicts', 'pairs' or 'empty'; mixed or malformed histories are an error."""
    if not history:
        return "empty"
    if all(isinstance(item, dict) for item in history):
        for item in history:
            if "role" not in item:
                raise ValueError(f"A history message needs a 'role' (and 'content'): got {item!r}.")
        return "dicts"
    if all(isinstance(item, (tuple, list)) and len(item) == 2 for item in history):
        return "pairs"
    raise ValueError("history must be a list of (query, response) pairs or a list of {'role', 'content'} dicts "
                     f"(not a mix); got {history!r}.")


def _messages(history, query: str, system: str | None) -> list[dict]:
    shape = _shape(history)
    messages: list[dict] = []
    if shape == "dicts":
        messages = [dict(m) for m in history]
    elif shape == "pairs":
        for past_query, past_response in history:
            messages.append({"role": "user", "content": past_query})
            if past_response is not None:
                messages.append({"role": "assistant", "content": past_response})
    if system is not None:
        if messages and messages[0].get("role") == "system":
            messages = messages[1:]  # this call's system message replaces the history's for this turn
        messages.insert(0, {"role": "system", "content": system})
    messages.append({"role": "user", "content": query})
    return messages


def _new_history(history, query: str, response: str) -> list:
    shape = _shape(history)
    if shape == "pairs":
        as_list = isinstance(history[-1], list)
        return [type(item)(item) for item in history] + [[query, response] if as_list else (query, response)]
    previous = [dict(m) for m in history] if shape == "dicts" else []
    return previous + [{"role": "user", "content": query}, {"role": "assistant", "content": response}]


def _decode_new(tokenizer, sequences, prompt_len: int) -> str:
    return tokenizer.decode(sequences[0, prompt_len:].tolist(), skip_special_tokens=True).strip()
