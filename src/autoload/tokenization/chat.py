"""Chat templates: render a conversation with the model's Jinja template, then (optionally) tokenize it.

Same conventions as transformers 5.x, so a template renders to the same text:
* a sandbox, `ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)` with `{% break %}`/`{% continue %}`
  (jinja2.ext.loopcontrols) and the `{% generation %}...{% endgeneration %}` block (marks assistant text for
  `return_assistant_tokens_mask`);
* `tojson` is plain `json.dumps` (no HTML escaping, non-ASCII kept, `indent`/`separators`/`sort_keys` accepted);
* globals `raise_exception(msg)`, `strftime_now(fmt)` (local time), a restricted `dict` and `namespace`;
* variables: `messages`, `tools`, `documents`, `add_generation_prompt`, every named special token (`bos_token`, ...)
  and the caller's extra keywords (which win over the special tokens);
* messages are normalised: objects (dataclasses, pydantic) become dicts, keys set to None are dropped, reasoning
  fields are aliased, and anything that is not plain JSON data reaches the template as a placeholder ("<ndarray>");
* the rendered text is tokenized with add_special_tokens=False: the template writes BOS and friends itself.

Unlike transformers, a render is bounded (time, loop steps, output and intermediate sizes; see `chat_limits`): a
repo's template is untrusted code, and a runaway one raises `ChatTemplateError` instead of hanging or exhausting memory.

jinja2 is imported on first use; compiled templates are cached.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import datetime

from ..errors import ChatTemplateError
from .chat_limits import Budget, ChatTemplateLimits, bounded_sandbox, spending

_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "
# Private-use characters around {% generation %} output while spans are tracked; stripped before returning.
_GEN_START, _GEN_END = "\U000f0002", "\U000f0003"
_tracking_generation: ContextVar[bool] = ContextVar("autoload_chat_tracking", default=False)


@functools.lru_cache(maxsize=1)
def _environment():
    """The sandboxed Jinja environment (built once; jinja2 is imported here, not at module import)."""
    import jinja2
    import jinja2.ext
    import jinja2.nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    version = tuple(int(part) for part in jinja2.__version__.split(".")[:3] if part.isdigit())
    if version < (3, 1, 6):
        # chat templates come from the hub: untrusted code, and older sandboxes have known escapes
        raise ImportError(f"Chat templates need jinja2>=3.1.6 (sandbox fixes); this is {jinja2.__version__}. "
                          "Upgrade with `pip install -U jinja2`.")

    class GenerationBlock(jinja2.ext.Extension):
        """`{% generation %}...{% endgeneration %}`: renders its body; while spans are tracked, wraps it in markers."""
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

        def _render(self, caller):
            text = caller()
            return f"{_GEN_START}{text}{_GEN_END}" if _tracking_generation.get() else text

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    class TemplateDict:
        """`dict(...)` and `dict.fromkeys(...)` for templates, without exposing the dict type itself."""

        def __call__(self, *args, **kwargs):
            return dict(*args, **kwargs)

        def fromkeys(self, *args, **kwargs):
            return dict.fromkeys(*args, **kwargs)

    class TemplateNamespace(jinja2.utils.Namespace):
        """`namespace(...)` that refuses underscore attributes (a way into CPython internals)."""

        def __init__(*args, **kwargs):
            self, args = args[0], args[1:]
            attrs = dict(*args, **kwargs)
            for name in attrs:
                TemplateNamespace._check(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name, value):
            TemplateNamespace._check(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check(name):
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(
                    f"Chat templates cannot store underscore-prefixed attributes on a namespace ({name!r}).")

    env = bounded_sandbox(ImmutableSandboxedEnvironment)(trim_blocks=True, lstrip_blocks=True,
                                                         extensions=[GenerationBlock, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals.update(raise_exception=raise_exception, strftime_now=strftime_now, dict=TemplateDict(),
                       namespace=TemplateNamespace)
    env.install_limits()
    return env


@functools.lru_cache(maxsize=64)
def compile_template(template: str):
    """The compiled Jinja template (cached by its text)."""
    return _environment().from_string(template)


# -- message normalisation --------------------------------------------------------------------------------------


def _objects_to_dicts(value):
    """Dataclasses and pydantic models (e.g. OpenAI SDK messages) to dicts, recursively."""
    if isinstance(value, Mapping):
        return {key: _objects_to_dicts(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_objects_to_dicts(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_objects_to_dicts(item) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: _objects_to_dicts(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if callable(getattr(value, "model_dump", None)):
        return _objects_to_dicts(value.model_dump())
    return value


def normalize_messages(conversation) -> list[dict]:
    """A conversation as a list of dicts, without the keys whose value is None (templates render them as "None")."""
    messages = _objects_to_dicts(getattr(conversation, "messages", conversation))
    normalized = []
    for message in messages:
        if not isinstance(message, dict):
            raise TypeError(f"Chat messages should be dicts, dataclasses or pydantic models, not {message!r}.")
        normalized.append({key: value for key, value in message.items() if value is not None})
    return normalized


def plain_data(value):
    """What a template may see: JSON scalars, dicts, lists and tuples; anything else becomes "<TypeName>".

    Rich objects (arrays, images, tensors) have methods the sandbox cannot vet, so they never reach Jinja.
    """
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {plain_data(key): plain_data(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain_data(item) for item in value]
    if isinstance(value, tuple):
        return tuple(plain_data(item) for item in value)
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return plain_data(value.item())  # numpy scalars: np.bool_(False) must stay falsy
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: plain_data(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if callable(getattr(value, "model_dump", None)):
        return plain_data(value.model_dump())
    return f"<{type(value).__name__}>"


def _alias_reasoning(messages: list[dict]) -> list[dict]:
    # Templates read `reasoning_content` (most) or `thinking` (gpt-oss); fill both from whichever is given.
    out = []
    for message in messages:
        reasoning = next((message[key] for key in _REASONING_FIELDS if message.get(key) is not None), None)
        if reasoning is not None:
            message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        out.append(message)
    return out


# -- rendering --------------------------------------------------------------------------------------------------


def render(conversations: list[list[dict]], template: str, *, tools=None, documents=None,
           add_generation_prompt: bool = False, continue_final_message: bool | str = False,
           track_generation: bool = False, template_source: str = "", render_limits: ChatTemplateLimits | None = None,
           **variables) -> tuple[list[str], list[list[tuple[int, int]]]]:
    """Render each conversation; returns the texts and, with `track_generation`, the character spans of
    `{% generation %}` blocks in each text. Each conversation's render is bounded by `render_limits` (default: the
    `chat_limits` defaults and environment variables); `template_source` names the template in errors."""
    limits = render_limits or ChatTemplateLimits.from_env()
    try:
        compiled = compile_template(template)
    except RecursionError:
        raise ChatTemplateError(f"The chat template {template_source or '(given as a string)'} nests too deeply to "
                                "compile; it is corrupt or hostile.") from None
    if tools is not None:
        for tool in tools:
            if not isinstance(tool, dict):
                raise ValueError("Tools should be JSON schemas (dicts like {'type': 'function', 'function': {...}}); "
                                 "autoload does not convert Python functions to schemas.")
    if documents is not None and not all(isinstance(document, dict) for document in documents):
        raise TypeError("Documents should be a list of dicts with 'title' and 'text' keys.")
    tools, documents, variables = plain_data(tools), plain_data(documents), plain_data(variables)

    texts, all_spans = [], []
    for chat in conversations:
        chat = _alias_reasoning(plain_data(chat))
        final_text = None
        if continue_final_message:
            chat, final_text = _tag_final_message(chat, template, continue_final_message)
        token = _tracking_generation.set(track_generation)
        try:
            with spending(limits, template_source or "(given as a string)") as budget:
                text = _bounded_render(compiled, budget, messages=chat, tools=tools, documents=documents,
                                       add_generation_prompt=add_generation_prompt, **variables)
        finally:
            _tracking_generation.reset(token)
        spans = []
        if track_generation:
            text, spans = _strip_generation_markers(text)
        if continue_final_message:
            text = _cut_after_final_message(text, final_text)
        texts.append(text)
        all_spans.append(spans)
    return texts, all_spans


def _bounded_render(compiled, budget: Budget, **variables) -> str:
    """`compiled.render(...)` piece by piece, stopping at the output size limit."""
    pieces, size, limit = [], 0, budget.limits.chars
    try:
        for piece in compiled.generate(**variables):  # time is checked where work repeats: loops and calls
            size += len(piece)
            if size > limit:
                budget.check_size(size, "an output")
            pieces.append(piece)
    except RecursionError:
        raise ChatTemplateError(f"The chat template {budget.source} recursed too deeply (a macro or recursive loop "
                                "calling itself without end?), so rendering was stopped.") from None
    except MemoryError:
        raise ChatTemplateError(f"The chat template {budget.source} ran out of memory, so rendering was "
                                "stopped.") from None
    return "".join(pieces)


def _tag_final_message(chat: list[dict], template: str, field: bool | str) -> tuple[list[dict], str]:
    """Append a tag to the last message's text, so the render can be cut right after it."""
    if not chat:
        raise ValueError("continue_final_message is set but the conversation is empty.")
    field = field if isinstance(field, str) else "content"
    final = chat[-1].get(field)
    if final is None:
        raise ValueError(f'continue_final_message is set but the final message has no "{field}" to continue.')
    fields = [field]
    if field in _REASONING_FIELDS:  # reasoning is copied under several names: tag every copy
        fields = [name for name in _REASONING_FIELDS if chat[-1].get(name) == final]
    if not any(name in template for name in fields):
        raise ValueError(f'continue_final_message is set to "{field}" but the chat template never reads that field.')
    last = dict(chat[-1])
    if isinstance(final, (list, tuple)):
        blocks = [dict(block) if isinstance(block, dict) else block for block in final]
        for block in reversed(blocks):
            if isinstance(block, dict) and "text" in block:
                final = block["text"]
                block["text"] = block["text"] + _CONTINUE_TAG
                break
        else:
            raise ValueError("continue_final_message is set but the final message has no text block to continue.")
        last[field] = blocks
    else:
        for name in fields:
            last[name] = last[name] + _CONTINUE_TAG
    return [*chat[:-1], last], final


def _cut_after_final_message(text: str, final: str) -> str:
    tag = _CONTINUE_TAG.strip()
    if final.strip() not in text or tag not in text:
        raise ValueError("continue_final_message is set but the final message does not appear in the rendered chat: "
                         "the template changes or drops part of it.\n"
                         f"Final message: {final.strip()}\nRendered chat:\n{text}")
    at = text.rindex(tag)
    if text[at:at + len(_CONTINUE_TAG)] == _CONTINUE_TAG:
        return text[:at]  # the template kept the spacing
    return text[:at].rstrip()  # trailing space after the message was trimmed: cut before it as well


def _strip_generation_markers(text: str) -> tuple[str, list[tuple[int, int]]]:
    out, spans, start, position = [], [], None, 0
    for char in text:
        if char == _GEN_START:
            start = position
        elif char == _GEN_END:
            spans.append((start, position))
        else:
            out.append(char)
            position += 1
    return "".join(out), spans


# -- tokenizer methods ------------------------------------------------------------------------------------------


def get_chat_template(self, chat_template: str | None = None, tools: list | None = None) -> str:
    """The template text to use: `chat_template` (a template, or a name in the tokenizer's dict of templates),
    else the tokenizer's ("tool_use" when tools are given and it exists, else "default")."""
    templates = self.chat_template
    if isinstance(templates, dict):
        if chat_template is not None and chat_template in templates:
            return templates[chat_template]
        if chat_template is None:
            if tools is not None and "tool_use" in templates:
                return templates["tool_use"]
            if "default" in templates:
                return templates["default"]
            raise ValueError("This tokenizer has several chat templates and none is named 'default': pass "
                             f"chat_template= one of {sorted(templates)} (or a template string).")
        return chat_template
    if chat_template is not None:
        return chat_template
    if templates is None:
        raise ValueError(f"{type(self).__name__} '{self.name_or_path}' has no chat template (no chat_template.jinja "
                         "and none in tokenizer_config.json). Pass one with chat_template=..., or set "
                         "tok.chat_template = '...'.")
    return templates


def apply_chat_template(self, conversation, *, tools: list[dict] | None = None, documents: list[dict] | None = None,
                        chat_template: str | None = None, add_generation_prompt: bool = False,
                        continue_final_message: bool | str = False, tokenize: bool = True, padding: bool | str = False,
                        truncation: bool = False, max_length: int | None = None, return_tensors: str | None = None,
                        return_dict: bool = True, return_assistant_tokens_mask: bool = False,
                        tokenizer_kwargs: dict | None = None, **template_kwargs):
    """Format a conversation (list of {"role", "content"} dicts) — or a batch of them — with the chat template.

    tokenize=False returns the text (a list for a batch). tokenize=True returns a BatchEncoding (input_ids,
    attention_mask, and `assistant_masks` with return_assistant_tokens_mask), or bare ids with return_dict=False.
    add_generation_prompt appends the assistant header; continue_final_message leaves the last message open
    (True: its "content"; a str: that field). Extra keywords (e.g. enable_thinking=False) are template variables.
    """
    if "sanitize_control_tokens" in template_kwargs:
        raise NotImplementedError("sanitize_control_tokens is not supported by autoload's apply_chat_template.")
    if not tokenize:
        return_dict = False  # only the tokenizer output is a dict
    if return_assistant_tokens_mask and not (return_dict and tokenize):
        raise ValueError("return_assistant_tokens_mask=True needs return_dict=True and tokenize=True.")
    template = self.get_chat_template(chat_template, tools)
    if isinstance(conversation, (list, tuple)) and len(conversation) == 0:
        raise ValueError("Cannot apply a chat template to an empty conversation: give at least one message.")
    batched = isinstance(conversation, (list, tuple)) and (
        isinstance(conversation[0], (list, tuple)) or hasattr(conversation[0], "messages"))
    conversations = [normalize_messages(chat) for chat in (conversation if batched else [conversation])]
    if continue_final_message:
        if add_generation_prompt:
            raise ValueError("continue_final_message and add_generation_prompt cannot be combined: the first "
                             "continues the last message, the second starts a new assistant message.")
        if return_assistant_tokens_mask:
            raise ValueError("continue_final_message cannot be combined with return_assistant_tokens_mask.")

    variables = {**self.special_tokens_map, **template_kwargs}
    own = chat_template is None or (isinstance(self.chat_template, dict) and chat_template in self.chat_template)
    source = f"of {type(self).__name__} '{self.name_or_path}'" if own else "given as chat_template="
    texts, spans = render(conversations, template, tools=tools, documents=documents,
                          add_generation_prompt=add_generation_prompt, continue_final_message=continue_final_message,
                          track_generation=return_assistant_tokens_mask, template_source=source, **variables)
    if not tokenize:
        return texts if batched else texts[0]
    out = self(texts if batched else texts[0], padding=padding, truncation=truncation, max_length=max_length,
               add_special_tokens=False, return_tensors=return_tensors, **(tokenizer_kwargs or {}))
    if not return_dict:
        return out["input_ids"]
    if return_assistant_tokens_mask:
        masks = []
        for index, encoding in enumerate(out.encodings):
            # a token is an assistant token when its characters overlap a {% generation %} span
            mask = [0] * len(encoding.ids)
            chat_spans, span = spans[index], 0
            for position, (start, end) in enumerate(encoding.offsets):
                while span < len(chat_spans) and start >= chat_spans[span][1]:
                    span += 1
                if span == len(chat_spans):
                    break
                if end > chat_spans[span][0] and encoding.attention_mask[position]:
                    mask[position] = 1
            masks.append(mask)
        out["assistant_masks"] = masks if (batched or return_tensors) else masks[0]
        if return_tensors:
            out.convert_to_tensors(return_tensors)
    return out
