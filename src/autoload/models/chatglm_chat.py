"""`chat()` / `stream_chat()` of the ChatGLM models, in each generation's own prompt format and history shape.

- chatglm2 (and codegeex2): the tokenizer's `build_prompt` Round format ("[Round 1]\\n\\n问：...\\n\\n答：");
  history is a list of (query, response) pairs.
- chatglm3: role tokens (`build_chat_input`); history is a list of {"role", "content", "metadata"?} dicts,
  a tool call comes back as {"name", "parameters"} (parsed with `ast`, never `eval`) or {"name", "content"}.
- glm-4: the repo's chat template (else `build_chat_input`); history and tool calls as chatglm3.

The variant is the tokenizer's (`tokenizer.variant`). Defaults are the repos': sampling with temperature 0.8,
top_p 0.8 (and top_k 50, the implicit default of generate), max_length 8192 counting the prompt. The caller's
history is never modified; a new list is returned. Differences from the repos' code, on purpose: the last
generated token is dropped only when it is an end-of-turn id (the repos always drop it, losing a real token when
max_length is reached), and tool-call arguments are parsed as literals instead of being evaluated.
"""

from __future__ import annotations

import ast
import json
import logging

import torch

from ..generation.chat import _shape
from ..generation.streamers import BackgroundGeneration, TokenStreamer

logger = logging.getLogger("autoload")

DEFAULTS = dict(max_length=8192, do_sample=True, top_p=0.8, temperature=0.8)
TRAINING_TIME = ("[[训练时间]]", "2023年")  # placeholder the chatglm2/3 repos substitute in replies


class InvalidScoreGuard:
    """The repos' guard against half-precision overflow: when a row's logits hold NaN or +inf (or are all -inf),
    they are replaced by zeros with one fallback token at 5e4. It runs before the sampling warpers, so the -inf
    those write does not trigger it."""

    def __init__(self, fallback_token: int):
        self.fallback_token = fallback_token

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        bad = torch.isnan(scores).any(-1) | torch.isposinf(scores).any(-1) | torch.isneginf(scores).all(-1)  # (B,)
        if not bool(bad.any()):
            return scores
        fixed = torch.zeros_like(scores)
        fixed[:, self.fallback_token] = 5e4
        return torch.where(bad[:, None], fixed, scores)


def variant_of(tokenizer) -> str | None:
    variant = getattr(tokenizer, "variant", None)
    return variant if variant in ("chatglm2", "chatglm3", "glm4") else None


def chat(model, tokenizer, query: str, history: list | None = None, role: str = "user", *,
         system: str | None = None, logits_processor=None, **kwargs):
    """One turn: returns (response, new_history). `response` is a string, or for a chatglm3/glm-4 tool call a dict
    {"name", "parameters"} (with tools in the system message) or {"name", "content"}."""
    turn = _Turn(model, tokenizer, query, history, role, system, None, logits_processor, kwargs)
    sequences = model.generate(**turn.generate_kwargs())
    return turn.result(sequences[0, turn.prompt_len:].tolist())


def stream_chat(model, tokenizer, query: str, history: list | None = None, role: str = "user", *,
                system: str | None = None, past_key_values=None, return_past_key_values: bool = False,
                logits_processor=None, **kwargs):
    """A generator of (partial_response, new_history) — or (..., past_key_values) with return_past_key_values —
    as tokens arrive; the last item is the final answer. Generation runs in a background thread
    (`autoload.generation.streamers.BackgroundGeneration`) and stops when the generator is closed.
    `past_key_values` from an earlier turn continues that conversation: only the new turn is encoded (the history
    is already in the cache), as in the repos' stream_chat."""
    turn = _Turn(model, tokenizer, query, history, role, system, past_key_values, logits_processor, kwargs)
    if turn.cache is None and return_past_key_values:  # a cache of our own, to hand out while it fills
        from ..nn.cache import DynamicCache
        turn.cache = DynamicCache()
    run = BackgroundGeneration(model, TokenStreamer(), **turn.generate_kwargs(), return_dict_in_generate=True)
    new_ids: list[int] = []
    last = None
    for token in run:
        new_ids.append(token)
        response, new_history = turn.result(new_ids)
        text = response if isinstance(response, str) else json.dumps(response, ensure_ascii=False)
        if text and text != last and not text.endswith("\ufffd"):
            last = text
            yield (response, new_history, turn.cache) if return_past_key_values else (response, new_history)
    cache = run.output.past_key_values
    response, new_history = turn.result(new_ids)
    text = response if isinstance(response, str) else json.dumps(response, ensure_ascii=False)
    if text != last:
        yield (response, new_history, cache) if return_past_key_values else (response, new_history)


class _Turn:
    """The prompt, generate() options and response parsing of one chat turn."""

    def __init__(self, model, tokenizer, query, history, role, system, past, logits_processor, kwargs):
        if not isinstance(query, str):
            raise TypeError(f"query must be a string, got {type(query).__name__}.")
        self.model, self.tokenizer, self.query, self.role = model, tokenizer, query, role
        self.variant = variant_of(tokenizer)
        if self.variant is None:
            raise TypeError(f"{type(tokenizer).__name__} is not a ChatGLM tokenizer (no .variant of 'chatglm2', "
                            "'chatglm3' or 'glm4'): load it with AutoTokenizer from the same repo.")
        self.history = _history(history, self.variant, system)
        self.cache = past
        if self.variant == "chatglm2" and role != "user":
            raise ValueError(f"chatglm2 has no roles: role={role!r} is not supported (only 'user').")
        if kwargs.get("num_beams", 1) != 1:
            raise NotImplementedError("Beam search is not implemented by autoload: use num_beams=1.")
        kwargs.pop("num_beams", None)
        self.inputs = self._encode(past)
        self.prompt_len = self.inputs["input_ids"].shape[1]
        self.options = {**DEFAULTS, **kwargs}
        if not self.options["do_sample"]:  # greedy: the sampling defaults stand aside (no "no effect" warning)
            for key in ("temperature", "top_p"):
                if key not in kwargs:
                    del self.options[key]
        if kwargs.get("max_new_tokens") is not None and "max_length" not in kwargs:
            del self.options["max_length"]  # max_new_tokens given: the repo's max_length default stands aside
        guard = InvalidScoreGuard(198 if self.variant == "glm4" else 5)
        self.processors = [guard, *(logits_processor or [])]
        self.stop_ids = self._stop_ids()

    def _encode(self, past):
        tok, variant = self.tokenizer, self.variant
        if variant == "chatglm2":
            if past is None:
                inputs = tok([tok.build_prompt(self.query, self.history)], return_tensors="pt")
            else:  # the history is in the cache: this round only, without [gMASK] sop and the dummy-prefix piece
                text = f"\n\n[Round {len(self.history) + 1}]\n\n问：{self.query}\n\n答："
                ids = tok(text, add_special_tokens=False)["input_ids"][1:]
                inputs = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
                          "position_ids": torch.arange(len(ids))[None]}
        elif variant == "glm4" and past is None and getattr(tok, "chat_template", None):
            messages = [*self.history, {"role": self.role, "content": self.query}]
            inputs = tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,
                                             return_tensors="pt")
        else:  # chatglm3, or glm-4 without a template; with a past the history is left out, as the repos do
            inputs = tok.build_chat_input(self.query, history=None if past is not None else self.history,
                                          role=self.role)
        inputs = {k: torch.as_tensor(v) for k, v in dict(inputs).items() if k in ("input_ids", "attention_mask",
                                                                                  "position_ids")}
        if "position_ids" not in inputs:
            inputs["position_ids"] = torch.arange(inputs["input_ids"].shape[1])[None]
        if past is not None:
            inputs["position_ids"] = inputs["position_ids"] + past.get_seq_length()
        return inputs

    def _stop_ids(self) -> list[int]:
        tok = self.tokenizer
        if self.variant == "chatglm2":
            return [tok.eos_token_id]
        return [tok.eos_token_id, tok.get_command("<|user|>"), tok.get_command("<|observation|>")]

    def generate_kwargs(self) -> dict:
        device = self.model.device
        return {**{k: v.to(device) for k, v in self.inputs.items()}, **self.options,
                "eos_token_id": self.options.get("eos_token_id", self.stop_ids),
                "logits_processor": self.processors, "past_key_values": self.cache}

    def result(self, new_ids: list[int]):
        """(response, new_history) for the ids generated so far."""
        if new_ids and new_ids[-1] in self.stop_ids:
            new_ids = new_ids[:-1]
        if self.variant == "chatglm2":
            response = _fill_training_time(self.tokenizer.decode(new_ids).strip())
            pair = [self.query, response] if self.history and isinstance(self.history[-1], list) else \
                (self.query, response)
            return response, [*self.history, pair]
        text = self.tokenizer.decode(new_ids, skip_special_tokens=False)
        return _parse_reply(text, [*self.history, {"role": self.role, "content": self.query}])


# -- history and replies ---------------------------------------------------------------------------------------

def _history(history, variant: str, system: str | None) -> list:
    """A copy of the history in the variant's shape (pairs for chatglm2, role dicts otherwise)."""
    history = list(history or [])
    pairs = _shape(history) == "pairs"  # also rejects mixed or malformed histories
    if variant == "chatglm2":
        if system is not None:
            raise ValueError("chatglm2 has no system prompt: pass system=None.")
        if not pairs:
            history = _dicts_to_pairs(history)
        return [type(item)(item) for item in history]
    if pairs:  # chatglm3 / glm-4 keep role dicts; pairs are converted for convenience
        history = [m for q, r in history for m in ({"role": "user", "content": q},
                                                   {"role": "assistant", "metadata": "", "content": r})]
    history = [dict(m) for m in history]
    if system is not None:
        history = [m for m in history if m.get("role") != "system"]
        history.insert(0, {"role": "system", "content": system})
    return history


def _dicts_to_pairs(history: list[dict]) -> list[tuple]:
    pairs, query = [], None
    for message in history:
        if message["role"] == "user":
            query = message.get("content", "")
        elif message["role"] == "assistant" and query is not None:
            pairs.append((query, message.get("content", "")))
            query = None
        elif message["role"] != "system":
            raise ValueError(f"chatglm2 history holds user/assistant turns only, got role {message['role']!r}.")
    return pairs


def _fill_training_time(text: str) -> str:
    return text.replace(*TRAINING_TIME)


def _parse_reply(text: str, history: list[dict]):
    """The chatglm3/glm-4 reply: parts split at <|assistant|>, each "metadata\\ncontent". Empty metadata is a
    plain answer; otherwise the metadata names a tool and the content is its call."""
    content: str | dict = ""
    for part in text.split("<|assistant|>"):
        metadata, content = part.split("\n", 1) if "\n" in part else ("", part)
        if not metadata.strip():
            content = content.strip()
            history.append({"role": "assistant", "metadata": metadata, "content": content})
            content = _fill_training_time(content)
            continue
        history.append({"role": "assistant", "metadata": metadata, "content": content})
        name = metadata.strip()
        if history[0].get("role") == "system" and "tools" in history[0]:
            content = {"name": name, "parameters": _tool_arguments(content)}
        else:
            content = {"name": name, "content": content}
    return content, history


def _tool_arguments(content: str) -> dict:
    """The keyword arguments of a tool call: chatglm3 writes a code block around `tool_call(a=1, b="x")`, glm-4
    a JSON object. Only literals are accepted; anything else is returned as {"raw": content} with a warning."""
    body = content.strip()
    if body.startswith("```"):
        body = "\n".join(body.split("\n")[1:-1]).strip()
    if body.startswith("{"):
        try:
            return json.loads(body)
        except json.JSONDecodeError:
            pass
    try:
        call = ast.parse(body, mode="eval").body
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "tool_call" \
                and not call.args:
            return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg is not None}
    except (SyntaxError, ValueError):
        pass
    logger.warning("The model's tool call is not `tool_call(name=literal, ...)` or a JSON object; returning it as "
                   "text: %r", body[:200])
    return {"raw": content}
