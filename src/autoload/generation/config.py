"""`GenerationConfig`: the decoding options of `generate()`, read from and written to generation_config.json.

Every field defaults to None ("not set"). `resolve()` merges the levels with the reference's priority:
call keywords > a passed GenerationConfig (or dict) > the model's generation_config.json (or, without one, the
generation fields of its config.json) > the global defaults below. No torch here.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from ..jsonfiles import read_json

logger = logging.getLogger("autoload")

GENERATION_CONFIG_NAME = "generation_config.json"

# what an unset field becomes at generate() time (the reference's `_get_default_generation_params`); note top_k=50,
# which sampling applies unless the call or the model's file sets top_k (0 disables it)
# (max_length is left unset by `resolve`: generate() turns "no length anywhere" into DEFAULT_NEW_TOKENS new tokens)
DEFAULT_NEW_TOKENS = 20
GLOBAL_DEFAULTS: dict[str, Any] = {
    "min_length": 0, "do_sample": False, "temperature": 1.0, "top_k": 50, "top_p": 1.0,
    "repetition_penalty": 1.0, "num_return_sequences": 1, "use_cache": True, "return_dict_in_generate": False,
    "output_scores": False, "cache_implementation": "dynamic",
    "num_beams": 1, "length_penalty": 1.0, "early_stopping": False, "no_repeat_ngram_size": 0, "output_logits": False,
    "output_attentions": False, "output_hidden_states": False,
}
# the flags that ask for more than the sequences; one set to True in a model config makes the generation config
# derived from it return a dict (the reference's `from_model_config`)
OUTPUT_FLAGS = ("output_attentions", "output_hidden_states", "output_scores", "output_logits")
# reference options this generate() does not implement, with the value at which they change nothing; a file that
# sets another value gets a warning (the option is ignored), a call or a passed config gets an error
NEUTRAL: dict[str, Any] = {
    "num_beam_groups": 1, "typical_p": 1.0, "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0, "diversity_penalty": 0.0, "encoder_repetition_penalty": 1.0,
    "encoder_no_repeat_ngram_size": 0, "force_words_ids": None, "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "sequence_bias": None, "guidance_scale": None, "penalty_alpha": None, "top_h": None, "max_time": None,
    "exponential_decay_length_penalty": None, "renormalize_logits": False, "remove_invalid_values": False,
    "watermarking_config": None, "constraints": None, "token_healing": False, "prefill_chunk_size": None,
    "synced_gpus": False,  # multi-process generation (Seq2SeqTrainer passes False)
}
CACHE_IMPLEMENTATIONS = ("dynamic", "static")


@dataclass
class GenerationConfig:
    """Decoding options (all None = not set). Unknown keys of a file are kept in `extra` and saved back."""

    max_new_tokens: int | None = None
    max_length: int | None = None
    min_new_tokens: int | None = None
    min_length: int | None = None
    do_sample: bool | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    num_return_sequences: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    stop_strings: str | list[str] | None = None
    use_cache: bool | None = None
    cache_implementation: str | None = None
    return_dict_in_generate: bool | None = None
    output_scores: bool | None = None
    num_beams: int | None = None
    length_penalty: float | None = None
    early_stopping: bool | str | None = None
    no_repeat_ngram_size: int | None = None
    output_logits: bool | None = None
    output_attentions: bool | None = None
    output_hidden_states: bool | None = None
    decoder_start_token_id: int | None = None  # encoder-decoders: the decoder's first token (default: bos)
    forced_bos_token_id: int | None = None  # the token forced as the first generated one (mBART language codes)
    forced_eos_token_id: int | list[int] | None = None  # the token(s) forced as the last one at max_length
    bad_words_ids: list[list[int]] | None = None  # token sequences that may not be generated (opus-mt: [[pad]])
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    # derived from a model config (not read from generation_config.json): the reference's flag, which
    # Seq2SeqTrainer reads and clears (a plain attribute, not a field: never saved)
    _from_model_config = False

    # -- construction ---------------------------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.name != "extra"]

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, strict: bool = False) -> GenerationConfig:
        """Known keys become fields; others go to `extra`. `strict`: reference-only options that would change the
        result (num_beams=4, ...) are an error instead of a warning."""
        known = set(cls.field_names())
        values = {k: v for k, v in data.items() if k in known}
        if values.get("cache_implementation") == "hybrid":  # Gemma 2/3 repos' files: the reference's generate unsets
            values["cache_implementation"] = None  # it (its default cache handles sliding layers); so does autoload
        extra = {k: copy.deepcopy(v) for k, v in data.items()
                 if k not in known and k != "transformers_version" and not k.startswith("_")}
        _check_unsupported(extra, strict)
        return cls(**values, extra=extra)

    @classmethod
    def from_model_config(cls, config) -> GenerationConfig:
        """The generation fields of a model config (eos/bos/pad ids, legacy max_length, ...), None skipped."""
        data = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        if data.get("cache_implementation") == "hybrid":  # gemma-2 config.json files carry it: unset, as from_dict
            data.pop("cache_implementation")
        known = set(cls.field_names())
        # the output flags only when True: a model config's default False is not a generation option
        config = cls(**{k: v for k, v in data.items()
                        if k in known and v is not None and not (k in OUTPUT_FLAGS and v is False)})
        if not config.return_dict_in_generate and any(getattr(config, k) for k in OUTPUT_FLAGS):
            config.return_dict_in_generate = True  # as the reference: an output flag implies the dict
        config._from_model_config = True
        return config

    @staticmethod
    def _get_default_generation_params() -> dict[str, Any]:
        """The values unset fields take at generate() time, under the reference's name (Seq2SeqTrainer's
        predict_with_generate fills them in with `update(defaults_only=True)` and pads its predictions to
        max_length): the global defaults and the reference's max_length of 20."""
        return {"max_length": 20, **GLOBAL_DEFAULTS}

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, config_file_name: str = GENERATION_CONFIG_NAME):
        """Read `folder/generation_config.json` (a folder path; for hub repos use `from_source`)."""
        path = os.path.join(folder, config_file_name)
        if not os.path.isfile(path):
            raise OSError(f"{folder} has no {config_file_name}.")
        return cls._read(path)

    @classmethod
    def from_source(cls, source, model_config=None) -> GenerationConfig:
        """For `PreTrainedModel.from_pretrained`: the model's generation_config.json from its `FileSource`
        (folder or hub repo), else the generation fields of the model config, as the reference falls back."""
        path = source.get(GENERATION_CONFIG_NAME)
        if path is not None:
            return cls._read(path)
        return cls.from_model_config(model_config) if model_config is not None else cls()

    @classmethod
    def _read(cls, path: str) -> GenerationConfig:
        return cls.from_dict(read_json(path, expect=dict))  # bounded size and nesting; RepoFileError names the file

    @classmethod
    def coerce(cls, value) -> GenerationConfig:
        """A GenerationConfig from ours, a dict, or any object with to_dict()/attributes (e.g. transformers')."""
        if value is None or isinstance(value, GenerationConfig):
            return value if value is not None else cls()
        if isinstance(value, dict):
            data = value
        elif hasattr(value, "to_dict"):
            data = value.to_dict()
        else:
            data = {k: v for k, v in vars(value).items() if not k.startswith("_")}
        data = {k: v for k, v in data.items() if v is not None}
        known = set(cls.field_names()) | set(NEUTRAL)
        unknown = [k for k in data if k not in known and k != "transformers_version" and not k.startswith("_")]
        if isinstance(value, dict) and unknown:
            raise TypeError(f"generation_config has unknown option(s) {unknown}: valid ones are "
                            f"{', '.join(cls.field_names())}.")
        return cls.from_dict(data, strict=True)

    # -- serialisation --------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The set fields (and `extra`), as generation_config.json holds them."""
        out = {name: copy.deepcopy(getattr(self, name)) for name in self.field_names()
               if getattr(self, name) is not None}
        out.update(copy.deepcopy(self.extra))
        return out

    def save_pretrained(self, folder: str | os.PathLike) -> str:
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, GENERATION_CONFIG_NAME)
        with open(path, "w", encoding="utf-8") as f:
            f.write(json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        return path

    def to_diff_dict(self) -> dict[str, Any]:
        """What differs from `GenerationConfig()`, as the reference names it: every field defaults to None here,
        so this is `to_dict()` (transformers' pipelines read it to know which options the model sets)."""
        return self.to_dict()

    def to_json_string(self, use_diff: bool = True, ignore_metadata: bool = False,
                       keys_to_pop: list[str] | None = None) -> str:
        data = {k: v for k, v in self.to_dict().items() if k not in (keys_to_pop or ())}
        return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    def validate(self, strict: bool = False, user_set_attributes: set[str] | None = None) -> None:
        """The reference's hook: options this generate() does not implement, at a value that changes the result,
        warn (strict=True: raise NotImplementedError)."""
        _check_unsupported(self.extra, strict)

    def update(self, defaults_only: bool = False, allow_custom_entries: bool = False, **values) -> dict[str, Any]:
        """Set the named fields (with `defaults_only`, only those still unset) and return the keywords that are
        not fields, as the reference does; `allow_custom_entries` keeps those in `extra` instead."""
        known, unused = set(self.field_names()), {}
        for key, value in values.items():
            if key in known:
                if not (defaults_only and getattr(self, key) is not None):
                    setattr(self, key, value)
            elif allow_custom_entries:
                self.extra[key] = value
            else:
                unused[key] = value
        return unused


def _check_unsupported(values: dict[str, Any], strict: bool) -> None:
    active = {k: v for k, v in values.items() if k in NEUTRAL and v is not None and v != NEUTRAL[k]}
    if not active:
        return
    what = ", ".join(f"{k}={v!r}" for k, v in active.items())
    message = (f"generation options {what} are not implemented by autoload's generate (greedy decoding and "
               "sampling with temperature/top-k/top-p/min-p/repetition penalty)")
    if strict:
        raise NotImplementedError(message + ".")
    logger.warning("%s: they are ignored.", message)


def resolve(call: dict[str, Any], passed, model_config: GenerationConfig | None) -> tuple[GenerationConfig, set]:
    """Merge the levels field by field (first set value wins): call keywords (an explicit None in `call` clears
    the field), the passed config, the model's
    config, the global defaults. Returns the merged config and the names the call or passed config set (so that
    warnings about inconsistent options only concern what the user chose)."""
    passed = GenerationConfig.coerce(passed) if passed is not None else GenerationConfig()
    model_config = model_config if model_config is not None else GenerationConfig()
    merged, user_set = GenerationConfig(), set()
    for name in GenerationConfig.field_names():
        if name in call and call[name] is None:  # an explicit None (only eos/pad ids get here) clears the field
            user_set.add(name)
            continue
        for level, value in enumerate((call.get(name), getattr(passed, name), getattr(model_config, name))):
            if value is not None:
                setattr(merged, name, value)
                if level < 2:
                    user_set.add(name)
                break
        else:
            setattr(merged, name, GLOBAL_DEFAULTS.get(name))
    return merged, user_set
