"""Model outputs that behave like the reference's: attribute access, `out["logits"]`, `out[0]` (the non-None
fields in order), `out.to_tuple()`; iterating yields the names of the set fields, as an OrderedDict does."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Any


class ModelOutput(OrderedDict):
    """Base of the output dataclasses: only fields that are not None are keys."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                super().__setitem__(f.name, value)

    def __getitem__(self, key):
        if isinstance(key, str):
            return dict(self.items())[key]
        return self.to_tuple()[key]

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.keys() and value is not None:
            super().__setitem__(name, value)
        super().__setattr__(name, value)

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        super().__setattr__(key, value)

    def to_tuple(self) -> tuple:
        return tuple(self[k] for k in self.keys())

    @property
    def cache(self):
        """transformers 5.24's name for `past_key_values`."""
        return getattr(self, "past_key_values", None)


def _output(name: str, *names: str) -> type:
    """An output dataclass with these fields, all defaulting to None."""
    cls = type(name, (ModelOutput,), {"__annotations__": {n: Any for n in names}, **{n: None for n in names}})
    return dataclass(cls)


BaseModelOutput = _output("BaseModelOutput", "last_hidden_state", "hidden_states", "attentions")
BaseModelOutputWithPooling = _output("BaseModelOutputWithPooling", "last_hidden_state", "pooler_output",
                                     "hidden_states", "attentions")
BaseModelOutputWithPast = _output("BaseModelOutputWithPast", "last_hidden_state", "past_key_values",
                                  "hidden_states", "attentions")
BaseModelOutputWithPoolingAndCrossAttentions = _output(
    "BaseModelOutputWithPoolingAndCrossAttentions", "last_hidden_state", "pooler_output", "hidden_states",
    "past_key_values", "attentions", "cross_attentions")
CausalLMOutputWithPast = _output("CausalLMOutputWithPast", "loss", "logits", "past_key_values", "hidden_states",
                                 "attentions")
MoeModelOutputWithPast = _output("MoeModelOutputWithPast", "last_hidden_state", "past_key_values", "hidden_states",
                                 "attentions", "router_logits")
MoeCausalLMOutputWithPast = _output("MoeCausalLMOutputWithPast", "loss", "aux_loss", "logits", "past_key_values",
                                    "hidden_states", "attentions", "router_logits")
CausalLMOutputWithCrossAttentions = _output("CausalLMOutputWithCrossAttentions", "loss", "logits",
                                            "past_key_values", "hidden_states", "attentions", "cross_attentions")
MaskedLMOutput = _output("MaskedLMOutput", "loss", "logits", "hidden_states", "attentions")
NextSentencePredictorOutput = _output("NextSentencePredictorOutput", "loss", "logits", "hidden_states", "attentions")
SequenceClassifierOutput = _output("SequenceClassifierOutput", "loss", "logits", "hidden_states", "attentions")
SequenceClassifierOutputWithPast = _output("SequenceClassifierOutputWithPast", "loss", "logits", "past_key_values",
                                           "hidden_states", "attentions")
TokenClassifierOutput = _output("TokenClassifierOutput", "loss", "logits", "hidden_states", "attentions")
QuestionAnsweringModelOutput = _output("QuestionAnsweringModelOutput", "loss", "start_logits", "end_logits",
                                       "hidden_states", "attentions")
MultipleChoiceModelOutput = _output("MultipleChoiceModelOutput", "loss", "logits", "hidden_states", "attentions")
BertForPreTrainingOutput = _output("BertForPreTrainingOutput", "loss", "prediction_logits",
                                   "seq_relationship_logits", "hidden_states", "attentions")
AlbertForPreTrainingOutput = _output("AlbertForPreTrainingOutput", "loss", "prediction_logits", "sop_logits",
                                     "hidden_states", "attentions")

# encoder-decoder models: the decoder's fields, then the encoder's (as the reference orders them)
_SEQ2SEQ = ("past_key_values", "decoder_hidden_states", "decoder_attentions", "cross_attentions",
            "encoder_last_hidden_state", "encoder_hidden_states", "encoder_attentions")
Seq2SeqModelOutput = _output("Seq2SeqModelOutput", "last_hidden_state", *_SEQ2SEQ)
Seq2SeqLMOutput = _output("Seq2SeqLMOutput", "loss", "logits", *_SEQ2SEQ)
Seq2SeqSequenceClassifierOutput = _output("Seq2SeqSequenceClassifierOutput", "loss", "logits", *_SEQ2SEQ)
Seq2SeqQuestionAnsweringModelOutput = _output("Seq2SeqQuestionAnsweringModelOutput", "loss", "start_logits",
                                              "end_logits", *_SEQ2SEQ)
BaseModelOutputWithPastAndCrossAttentions = _output("BaseModelOutputWithPastAndCrossAttentions", "last_hidden_state",
                                                    "past_key_values", "hidden_states", "attentions",
                                                    "cross_attentions")
