"""text2text-generation, summarization and translation: a source text in, generated text out, with an
encoder-decoder's `generate()` (T5, BART, mBART, Marian; see docs/seq2seq.md).

As the reference's pipelines (transformers 4.x, which had them):
- the model's `config.task_specific_params[task]` (T5's "summarization", "translation_en_to_de", ...) gives the
  input `prefix` ("summarize: ") and generation defaults (num_beams, max_length, ...); the call's options win;
  otherwise `config.prefix`;
- a single text gives `[{"generated_text": ...}]` (one entry per num_return_sequences), a list of texts gives one
  such entry per text (or a list of them when num_return_sequences > 1); `return_tensors=True` gives the ids;
- summarization warns when max_length is not shorter than the input; translation when the input is near it;
- translation: `translation_xx_to_yy` names the languages; a tokenizer with language codes (mBART-50's) gets
  `src_lang` (default: its own) and the target's code becomes `forced_bos_token_id`; a short name ("fr") is the
  tokenizer's one code for it ("fr_XX"). Plain "translation" on a model with task_specific_params takes its first
  translation_xx_to_yy entry, as the reference did.
Options that are not the pipeline's own go to `generate()`.
"""

from __future__ import annotations

import logging
import re

from .base import Pipeline

logger = logging.getLogger("autoload")
TRANSLATION_TASK = re.compile(r"translation_([A-Za-z_-]+)_to_([A-Za-z_-]+)")


class Text2TextGenerationPipeline(Pipeline):
    """`pipe("translate English to German: Hello")` -> `[{"generated_text": "Hallo"}]`."""

    task = "text2text-generation"
    return_name = "generated"
    auto_class = "AutoModelForSeq2SeqLM"
    options = {"return_tensors": False, "return_text": True, "clean_up_tokenization_spaces": False,
               "truncation": False, "prefix": None}

    def __init__(self, model, tokenizer, *, task: str | None = None, **kwargs):
        self.task_name = task or self.task  # e.g. "translation_en_to_fr" (picks task_specific_params)
        super().__init__(model, tokenizer, **kwargs)

    @classmethod
    def check_options(cls, options: dict) -> dict:
        return dict(options)  # what is not a pipeline option is for generate(), which rejects unknown names

    @classmethod
    def check_model(cls, model) -> None:
        config = getattr(model, "config", None)
        if not (callable(getattr(model, "generate", None)) and getattr(config, "is_encoder_decoder", False)):
            raise ValueError(f"{type(model).__name__} is not an encoder-decoder: {cls.task} needs a seq2seq model "
                             "(load it with AutoModelForSeq2SeqLM, or pass its name).")

    def task_params(self) -> dict:
        """The model config's task_specific_params for this task (a copy), {} when it has none."""
        params = getattr(self.model.config, "task_specific_params", None) or {}
        found = params.get(self.task_name) if isinstance(params, dict) else None
        return dict(found) if isinstance(found, dict) else {}

    def _prepare(self, options: dict) -> dict:
        own = {k: v for k, v in options.items() if k in self.options}
        task = self.task_params()
        if own["prefix"] is None:
            own["prefix"] = task.pop("prefix", None) or getattr(self.model.config, "prefix", None) or ""
        task.pop("prefix", None)
        generate = {**task, **{k: v for k, v in options.items() if k not in self.options}}
        return {**own, "generate": generate}

    def _tokenize(self, texts: list[str], options: dict):
        return self.encode([options["prefix"] + text for text in texts], truncation=options["truncation"])

    def check_inputs(self, input_length: int, generate: dict) -> None:
        """Warnings about the lengths (summarization / translation)."""

    def _run(self, batch: list, options: dict) -> list:
        encoding = self._tokenize(batch, options)
        generate = dict(options["generate"])
        forced = encoding.pop("forced_bos_token_id", None)
        if forced is not None and "forced_bos_token_id" not in generate:
            generate["forced_bos_token_id"] = forced
        ids, mask = encoding["input_ids"], encoding.get("attention_mask")  # (B, S)
        self.check_inputs(ids.shape[1], {**self._model_lengths(), **generate})
        output = self.model.generate(input_ids=ids, attention_mask=mask, **generate)
        sequences = getattr(output, "sequences", output)  # (B * n, L)
        per_input = sequences.shape[0] // len(batch)
        results = []
        for b in range(len(batch)):
            records = []
            for sequence in sequences[b * per_input:(b + 1) * per_input].tolist():
                if options["return_tensors"]:
                    records.append({f"{self.return_name}_token_ids": sequence})
                else:
                    text = self.tokenizer.decode(sequence, skip_special_tokens=True, clean_up_tokenization_spaces=
                                                 options["clean_up_tokenization_spaces"])
                    records.append({f"{self.return_name}_text": text})
            results.append(records)
        return results

    def _model_lengths(self) -> dict:
        config = getattr(self.model, "generation_config", None)
        return {k: getattr(config, k) for k in ("max_length", "min_length") if getattr(config, k, None) is not None}

    def _finish(self, results: list, single: bool, options: dict):
        if single:
            return results[0]
        return [r[0] for r in results] if all(len(r) == 1 for r in results) else results


class SummarizationPipeline(Text2TextGenerationPipeline):
    """`pipe(article)` -> `[{"summary_text": ...}]`."""

    task = "summarization"
    return_name = "summary"

    def check_inputs(self, input_length: int, generate: dict) -> None:
        max_length, min_length = generate.get("max_length"), generate.get("min_length")
        if max_length is not None and min_length is not None and min_length > max_length:
            logger.warning("Your min_length=%s must be smaller than your max_length=%s.", min_length, max_length)
        if max_length is not None and "max_new_tokens" not in generate and input_length < max_length:
            logger.warning("Your max_length is set to %s, but your input_length is only %s. Since this is a "
                           "summarization task, where outputs shorter than the input are typically wanted, you "
                           "might consider decreasing max_length manually, e.g. summarizer('...', max_length=%s)",
                           max_length, input_length, input_length // 2)


class TranslationPipeline(Text2TextGenerationPipeline):
    """`pipe("Hello")` -> `[{"translation_text": "Bonjour"}]`. The languages come from the task name
    ("translation_en_to_fr") or the `src_lang` / `tgt_lang` options (needed by multilingual tokenizers)."""

    task = "translation"
    return_name = "translation"
    options = {**Text2TextGenerationPipeline.options, "src_lang": None, "tgt_lang": None}

    def __init__(self, model, tokenizer, *, task: str | None = None, **kwargs):
        super().__init__(model, tokenizer, task=task, **kwargs)
        params = getattr(self.model.config, "task_specific_params", None)
        if self.task_name == "translation" and isinstance(params, dict):  # as the reference: its first pair
            found = next((key for key in params if TRANSLATION_TASK.fullmatch(key)), None)
            if found is not None:
                logger.warning('"translation" task was used, instead of "translation_XX_to_YY", defaulting to '
                               '"%s"', found)
                self.task_name = found

    def _prepare(self, options: dict) -> dict:
        prepared = super()._prepare(options)
        match = TRANSLATION_TASK.fullmatch(self.task_name)
        if match:
            prepared["src_lang"] = prepared["src_lang"] or match.group(1)
            prepared["tgt_lang"] = prepared["tgt_lang"] or match.group(2)
        return prepared

    def _tokenize(self, texts: list[str], options: dict):
        tokenizer = self.tokenizer
        if not hasattr(tokenizer, "src_lang") or options["src_lang"] is None and options["tgt_lang"] is None:
            return super()._tokenize(texts, options)
        # a multilingual tokenizer: source language codes around the text, the target's code forced first; a
        # short name ("fr", from translation_en_to_fr) is the tokenizer's one code for it ("fr_XX")
        src = _language_code(tokenizer, options["src_lang"]) or tokenizer.src_lang
        tgt = _language_code(tokenizer, options["tgt_lang"])
        if tgt is None:
            raise ValueError("Translation with a multilingual tokenizer needs tgt_lang (e.g. tgt_lang='fr_XX').")
        target_id = tokenizer.convert_tokens_to_ids(tgt)
        if target_id is None or target_id == tokenizer.unk_token_id:
            raise ValueError(f"tgt_lang={tgt!r} is not a language code of this tokenizer.")
        previous = tokenizer.src_lang
        try:
            tokenizer.src_lang = src
            encoding = super()._tokenize(texts, options)
        finally:
            tokenizer.src_lang = previous
        encoding["forced_bos_token_id"] = target_id
        return encoding

    def check_inputs(self, input_length: int, generate: dict) -> None:
        max_length = generate.get("max_length")
        if max_length is not None and "max_new_tokens" not in generate and input_length > 0.9 * max_length:
            logger.warning("Your input_length: %s is bigger than 0.9 * max_length: %s. You might consider "
                           "increasing your max_length manually, e.g. translator('...', max_length=400)",
                           input_length, max_length)


def _language_code(tokenizer, name: str | None) -> str | None:
    """`name` itself, or the one language code of the tokenizer that starts with `name` + "_" ("fr" -> "fr_XX")."""
    codes = getattr(tokenizer, "lang_code_to_id", None) or {}
    if name is None or name in codes:
        return name
    matches = [code for code in codes if code.split("_")[0] == name]
    return matches[0] if len(matches) == 1 else name
