"""`save_pretrained`: write a tokenizer as tokenizer.json + tokenizer_config.json (+ chat templates) in the layout
transformers 5.x writes, so both autoload and `transformers.AutoTokenizer` load it back to the same ids.

Like transformers 5, no special_tokens_map.json / added_tokens.json and no `added_tokens_decoder`: the added tokens
live in tokenizer.json. Unlike it, the current padding/truncation sides are always written.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

from . import loading


def save_pretrained(self, save_directory: str | os.PathLike) -> tuple[str, ...]:
    """Write tokenizer.json, tokenizer_config.json and chat_template.jinja (+ additional_chat_templates/)
    so that this class — or transformers' AutoTokenizer — loads the same tokenizer back."""
    folder = Path(save_directory)
    if folder.is_file():
        raise NotADirectoryError(f"save_pretrained needs a folder, and {folder} is a file.")
    folder.mkdir(parents=True, exist_ok=True)
    config = tokenizer_config(self)
    written = [str(folder / loading.CONFIG_FILE), str(folder / loading.TOKENIZER_FILE)]
    written += _save_chat_templates(self, folder)
    with open(folder / loading.CONFIG_FILE, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(loading.encode_added_tokens(config), indent=2, sort_keys=True,
                                ensure_ascii=False) + "\n")
    self._tokenizer.save(str(folder / loading.TOKENIZER_FILE))
    return tuple(written)


def tokenizer_config(self) -> dict:
    """What tokenizer_config.json holds: the init keywords, the current settings and special tokens, the class."""
    config = {key: value for key, value in copy.deepcopy(self.init_kwargs).items()
              if key not in ("add_bos_token", "add_eos_token", "added_tokens_decoder", "chat_template",
                             "additional_special_tokens", "model_specific_special_tokens")}
    for key in list(config):  # settings kept as attributes (do_lower_case, ...) are saved as they are now
        if key in self.__dict__ and not callable(self.__dict__[key]):
            config[key] = self.__dict__[key]
    config.update(model_max_length=self.model_max_length, padding_side=self.padding_side,
                  truncation_side=self.truncation_side, clean_up_tokenization_spaces=self.clean_up_tokenization_spaces)
    config.update(self.special_tokens_map)
    if self._extra_special_tokens:
        config["extra_special_tokens"] = self.extra_special_tokens
    config["tokenizer_class"] = self.saved_class_name or type(self).__name__
    return config


def _save_chat_templates(self, folder: Path) -> list[str]:
    templates = self.chat_template
    if templates is None:
        return []
    if isinstance(templates, str):
        templates = {"default": templates}
    written = []
    for name, template in templates.items():
        if name == "default":
            path = folder / loading.CHAT_TEMPLATE_FILE
        else:
            if not name or "/" in name or "\\" in name or name.startswith("."):
                raise ValueError(f"Invalid chat template name {name!r}: it becomes a file name.")
            (folder / loading.CHAT_TEMPLATE_DIR).mkdir(exist_ok=True)
            path = folder / loading.CHAT_TEMPLATE_DIR / f"{name}.jinja"
        path.write_text(template, encoding="utf-8")
        written.append(str(path))
    return written
