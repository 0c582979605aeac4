"""text-generation: continue a prompt, or answer a chat, with `model.generate()`.

Options that are not the pipeline's own go to `generate()` (max_new_tokens, do_sample, temperature, top_k,
top_p, seed, ...). As in the reference, the pipeline adds max_new_tokens=256, do_sample=True, temperature=0.7
for those that neither the call nor the model's generation config set (temperature only when sampling), and
pads with the tokenizer's pad token. Batches are padded on the left, as decoder-only generation needs.
"""

from __future__ import annotations

from .base import Pipeline, _describe

PIPELINE_DEFAULTS = {"max_new_tokens": 256, "do_sample": True, "temperature": 0.7}
SAMPLING_OPTIONS = {"temperature", "top_k", "top_p", "min_p"}


def is_chat(item) -> bool:
    """A chat is a list of {"role", "content"} messages."""
    return isinstance(item, (list, tuple)) and bool(item) and all(isinstance(m, dict) and "role" in m for m in item)


class TextGenerationPipeline(Pipeline):
    """`pipe("Once upon a time")` -> `[{"generated_text": "Once upon a time ..."}]` (prompt included; pass
    `return_full_text=False` for the new text only). A chat (list of {"role", "content"}) goes through the chat
    template and comes back as the messages plus the assistant's answer. A list of prompts or chats gives a list
    of such lists. `num_return_sequences=n` gives n entries per input; `return_tensors=True` gives
    {"generated_token_ids"} instead of text; `stop_sequence` stops at a string.
    """

    task = "text-generation"
    auto_class = "AutoModelForCausalLM"
    options = {"return_full_text": True, "return_tensors": False, "skip_special_tokens": True,
               "clean_up_tokenization_spaces": None, "continue_final_message": None, "add_special_tokens": None,
               "stop_sequence": None}
    default_batch_size = 1

    @classmethod
    def check_options(cls, options: dict) -> dict:
        return dict(options)  # what is not a pipeline option is for generate(), which rejects unknown names

    @classmethod
    def check_model(cls, model) -> None:
        can_generate = getattr(model, "can_generate", None)
        if not (callable(getattr(model, "generate", None)) and (can_generate is None or can_generate())):
            raise ValueError(f"{type(model).__name__} cannot generate text: load a causal language model with "
                             "AutoModelForCausalLM (or pass its name).")

    def _items(self, inputs) -> tuple[list, bool]:
        if isinstance(inputs, str) or is_chat(inputs):
            return [inputs], True
        if isinstance(inputs, (list, tuple)) and all(isinstance(i, str) or is_chat(i) for i in inputs):
            return list(inputs), False
        raise TypeError(f"text-generation takes a prompt (str), a chat (list of {{'role', 'content'}} dicts) or a "
                        f"list of them, not {_describe(inputs)}.")

    def _prepare(self, options: dict) -> dict:
        generate = {k: v for k, v in options.items() if k not in self.options}
        stop = options["stop_sequence"]
        if stop is not None:
            generate["stop_strings"] = [stop] if isinstance(stop, str) else list(stop)
            generate["tokenizer"] = self.tokenizer
        own = {k: v for k, v in options.items() if k in self.options}
        return {**own, "generate": self._generate_kwargs(generate)}

    def _generate_kwargs(self, generate: dict) -> dict:
        """The call's generate() options plus the pipeline defaults for what nobody set (the reference's rule)."""
        model_config = getattr(self.model, "generation_config", None)
        if model_config is None:  # what generate() falls back to: the generation fields of config.json
            from ..generation.config import GenerationConfig
            model_config = GenerationConfig.from_model_config(self.model.config)
        set_by_model = {}
        if model_config is not None:
            names = getattr(model_config, "field_names", lambda: list(vars(model_config)))()
            set_by_model = {n: getattr(model_config, n) for n in names if getattr(model_config, n, None) is not None}
        passed = generate.get("generation_config")
        if passed is not None:
            items = passed.items() if isinstance(passed, dict) else vars(passed).items()
            set_by_model.update({k: v for k, v in items if v is not None and not k.startswith("_")})
        chosen = {**set_by_model, **generate}
        added = {k: v for k, v in PIPELINE_DEFAULTS.items()
                 if k not in chosen and not (k == "max_new_tokens" and "max_length" in chosen)}
        if not {**chosen, **added}.get("do_sample"):
            added = {k: v for k, v in added.items() if k not in SAMPLING_OPTIONS}
        if "pad_token_id" not in chosen and self.tokenizer.pad_token_id is not None:
            added["pad_token_id"] = self.tokenizer.pad_token_id
        return {**generate, **added}

    def _run(self, batch: list, options: dict) -> list:
        chats = [is_chat(item) for item in batch]
        if any(chats) and not all(chats):  # prompts and chats are tokenized differently: one kind per batch
            first = [item for item, chat in zip(batch, chats) if chat]
            second = [item for item, chat in zip(batch, chats) if not chat]
            done = iter(self._run(first, options)), iter(self._run(second, options))
            return [next(done[0]) if chat else next(done[1]) for chat in chats]
        continue_final = [self._continues(item, options) for item in batch]
        if chats[0]:
            texts = [self.tokenizer.apply_chat_template(list(chat), tokenize=False, add_generation_prompt=not cont,
                                                        continue_final_message=cont)
                     for chat, cont in zip(batch, continue_final)]
            kwargs = {"add_special_tokens": False}
        else:
            texts = batch
            kwargs = {} if options["add_special_tokens"] is None else {"add_special_tokens":
                                                                      options["add_special_tokens"]}
        encoding = self.encode(texts, padding_side="left", **kwargs)
        ids, mask = encoding["input_ids"], encoding.get("attention_mask")  # (B, T)
        prompt_length = ids.shape[1]
        output = self.model.generate(input_ids=ids if prompt_length else None,
                                     attention_mask=mask if prompt_length else None, **options["generate"])
        sequences = getattr(output, "sequences", output)  # (B * n, T + new)
        per_input = sequences.shape[0] // len(batch)
        pads = (mask == 0).sum(dim=1).tolist() if mask is not None else [0] * len(batch)  # left padding per row
        results = []
        for b, (prompt, cont) in enumerate(zip(batch, continue_final)):
            records = []
            for sequence in sequences[b * per_input:(b + 1) * per_input].tolist():
                if options["return_tensors"]:
                    records.append({"generated_token_ids": sequence[pads[b]:]})
                    continue
                text = self.tokenizer.decode(sequence[prompt_length:], skip_special_tokens=options[
                    "skip_special_tokens"], clean_up_tokenization_spaces=options["clean_up_tokenization_spaces"])
                records.append({"generated_text": self._full(prompt, text, cont) if options["return_full_text"]
                                else text})
            results.append(records)
        return results

    @staticmethod
    def _continues(item, options: dict) -> bool:
        """A chat ending with an assistant message is continued (a prefill) unless the option says otherwise."""
        if options["continue_final_message"] is not None:
            return bool(options["continue_final_message"])
        return is_chat(item) and item[-1]["role"] == "assistant"

    @staticmethod
    def _full(prompt, text: str, continue_final: bool):
        if isinstance(prompt, str):
            return prompt + text
        messages = list(prompt)
        if continue_final:
            last = messages[-1]
            return messages[:-1] + [{"role": last["role"], "content": last["content"] + text}]
        return messages + [{"role": "assistant", "content": text}]
