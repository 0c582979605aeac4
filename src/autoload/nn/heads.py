"""What the task heads of every family share: forward-argument defaults, the positions to score, last-non-pad
pooling, multiple choice's flattened inputs, the output objects of the causal-LM, classification and
question-answering heads (logits in, loss and output out), returning an output object or its tuple, and the head
mixins of the decoder families (a backbone `model` of the class's `model_class` plus the task layer, placed before
the family's PreTrainedModel, which they reach through super()). Configs are read duck-typed."""

from __future__ import annotations

import torch
from torch import nn

from .cache import DynamicCache
from .losses import causal_lm_loss, cross_entropy, qa_span_loss, sequence_classification_loss
from .outputs import (CausalLMOutputWithCrossAttentions, CausalLMOutputWithPast, QuestionAnsweringModelOutput,
                      SequenceClassifierOutputWithPast, TokenClassifierOutput)


def forward_options(backbone, embed, input_ids, inputs_embeds, past_key_values, cache, use_cache,
                    output_attentions, output_hidden_states, return_dict):
    """What a decoder backbone's forward starts with: the argument checks, the config defaults, no cache while
    gradient checkpointing (recomputed blocks would write it twice), `embed(input_ids)` when no inputs_embeds are
    given, and a new DynamicCache when one is wanted. The cache comes as `past_key_values` or `cache`. Returns
    (inputs_embeds (B, T, C), cache, use_cache, output_attentions, output_hidden_states, return_dict)."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
    if past_key_values is not None and cache is not None:
        raise ValueError("Pass the cache once, as past_key_values or as cache.")
    config = backbone.config
    cache = past_key_values if past_key_values is not None else cache
    use_cache = config.use_cache if use_cache is None else use_cache
    if backbone.checkpointing():
        use_cache, cache = False, None
    if inputs_embeds is None:
        inputs_embeds = embed(input_ids)
    if use_cache and cache is None:
        cache = DynamicCache()
    return (inputs_embeds, cache, use_cache,
            config.output_attentions if output_attentions is None else output_attentions,
            config.output_hidden_states if output_hidden_states is None else output_hidden_states,
            config.return_dict if return_dict is None else return_dict)


def run_backbone(backbone, input_ids, attention_mask, position_ids, past_key_values, inputs_embeds, use_cache,
                 output_attentions, output_hidden_states, cache, **extra):
    """A decoder head's backbone run on the head's forward arguments (and `extra` ones): its output object."""
    return backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                    past_key_values=past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache,
                    output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                    return_dict=True, cache=cache, **extra)


def finish(config, out, return_dict: bool | None):
    """The output object, or its tuple of set fields when return_dict (default config.return_dict) is False."""
    return out if (config.return_dict if return_dict is None else return_dict) else out.to_tuple()


def head_output(config, output_class, loss, logits, out, return_dict: bool | None):
    """An encoder head's output_class of its loss and logits, with the hidden states and attentions of the
    backbone's output `out`; its tuple when return_dict is False (finish)."""
    return finish(config, output_class(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                       attentions=out.attentions), return_dict)


def flat_choices(choices: bool, *inputs):
    """Multiple choice: each (B, C, T, ...) input as (B*C, T, ...), so that every choice is encoded on its own
    (None stays None); the inputs as they are when `choices` is False."""
    return [t.reshape(-1, *t.shape[2:]) if choices and t is not None else t for t in inputs]


def keep_positions(h: torch.Tensor, logits_to_keep: int | torch.Tensor) -> torch.Tensor:
    """The hidden states (B, T, C) to score: an int n keeps the last n positions (0: all); a 1-D tensor indexes
    positions; a 2-D tensor picks per row (bool: a (B, T) selection, else (B, T') indices)."""
    if isinstance(logits_to_keep, int):
        return h[:, -logits_to_keep:, :]  # -0 == 0 keeps every position
    if logits_to_keep.ndim == 2:
        if logits_to_keep.dtype == torch.bool:
            return h[logits_to_keep]
        return torch.take_along_dim(h, logits_to_keep[..., None], dim=1)
    return h[:, logits_to_keep, :]


def pool_last_token(logits: torch.Tensor, input_ids: torch.Tensor | None, pad_token_id: int | None) -> torch.Tensor:
    """(B, T, N) -> (B, N) at each row's right-most token that is not `pad_token_id` (0 if all are pad; works for
    left and right padding); the last position without a pad id (batch size 1 only) or without input_ids."""
    b = logits.shape[0]
    if pad_token_id is None and b != 1:
        raise ValueError("Cannot handle batch sizes > 1 if no padding token is defined.")
    last = -1
    if pad_token_id is not None and input_ids is not None:  # argmax of index * is_token: the last non-pad index
        not_pad = (input_ids != pad_token_id).to(logits.device, torch.int32)
        last = (torch.arange(input_ids.shape[-1], device=logits.device, dtype=torch.int32) * not_pad).argmax(-1)
    return logits[torch.arange(b, device=logits.device), last]  # (B, N)


def span_output(logits: torch.Tensor, start_positions, end_positions, out) -> QuestionAnsweringModelOutput:
    """The question-answering output of (B, T, 2) span logits, with the span loss when both positions are given;
    hidden states and attentions come from the backbone's output `out`."""
    start, end = logits.split(1, dim=-1)  # (B, T, 1) each
    start, end = start.squeeze(-1).contiguous(), end.squeeze(-1).contiguous()  # (B, T)
    loss = None
    if start_positions is not None and end_positions is not None:
        loss = qa_span_loss(start, end, start_positions, end_positions)
    return QuestionAnsweringModelOutput(loss=loss, start_logits=start, end_logits=end,
                                        hidden_states=out.hidden_states, attentions=out.attentions)


def classifier_dropout(config) -> float:
    """A token-classification head's dropout: classifier_dropout, else hidden_dropout, else 0.1."""
    p = getattr(config, "classifier_dropout", None)
    p = getattr(config, "hidden_dropout", None) if p is None else p
    return 0.1 if p is None else p


def causal_lm_output(logits: torch.Tensor, labels, num_items_in_batch, out, output_class=CausalLMOutputWithPast,
                     **extra):
    """The causal-LM output of (B, T, V) logits, with the shifted next-token loss when labels are given; the cache,
    hidden states and attentions come from the backbone's output `out`; `extra` are more fields of output_class."""
    loss = None if labels is None else causal_lm_loss(logits, labels, num_items_in_batch)
    return output_class(loss=loss, logits=logits, past_key_values=out.past_key_values,
                        hidden_states=out.hidden_states, attentions=out.attentions, **extra)


def decoder_lm_output(logits: torch.Tensor, labels, out) -> CausalLMOutputWithCrossAttentions:
    """The output of an encoder-decoder family's decoder used alone as an LM: labels are NOT shifted (labels[t] is
    the target of logits[t]); cache, hidden states, attentions and cross-attentions come from the decoder's `out`."""
    loss = None if labels is None else cross_entropy(logits.float(), labels.to(logits.device))
    return CausalLMOutputWithCrossAttentions(loss=loss, logits=logits, past_key_values=out.past_key_values,
                                             hidden_states=out.hidden_states, attentions=out.attentions,
                                             cross_attentions=out.cross_attentions)


def last_token_output(config, logits: torch.Tensor, input_ids, labels, out) -> SequenceClassifierOutputWithPast:
    """Sequence classification from (B, T, N) per-position logits, pooled at each row's last non-pad token
    (pool_last_token), with the loss config.problem_type picks when labels are given."""
    pooled = pool_last_token(logits, input_ids, config.pad_token_id)  # (B, N)
    loss = None if labels is None else sequence_classification_loss(config, pooled, labels.to(pooled.device))
    return SequenceClassifierOutputWithPast(loss=loss, logits=pooled, past_key_values=out.past_key_values,
                                            hidden_states=out.hidden_states, attentions=out.attentions)


def token_output(logits: torch.Tensor, labels, out) -> TokenClassifierOutput:
    """Token classification from (B, T, N) logits, with the fp32 cross-entropy when labels are given."""
    loss = None if labels is None else cross_entropy(logits.float(), labels.to(logits.device))
    return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                 attentions=out.attentions)


# -- head mixins of the decoder families: `class XForY(Mixin, XPreTrainedModel): model_class = XModel` ----------
# They build the modules in the order and under the names of the checkpoint keys, read `self.config` (the config
# the PreTrainedModel keeps), and call post_init() last.

class CausalLMHead:
    """`model` plus `lm_head` (no bias; tied to embed_tokens with tie_word_embeddings). The family writes forward."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
    accepts_loss_kwargs = True  # Trainer passes num_items_in_batch (the loss over all accumulated tokens)
    model_class: type

    def __init__(self, config):
        super().__init__(config)
        self.model = self.model_class(self.config)
        self.vocab_size = self.config.vocab_size
        self.lm_head = nn.Linear(self.config.hidden_size, self.config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head


class LastTokenClassifierHead:
    """`model` plus `score` (no bias) on every position, pooled at each row's right-most token that is not
    pad_token_id (last_token_output)."""

    model_class: type

    def __init__(self, config):
        super().__init__(config)
        self.model = self.model_class(self.config)
        self.num_labels = self.config.num_labels
        self.score = nn.Linear(self.config.hidden_size, self.config.num_labels, bias=False)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, cache=None):
        out = run_backbone(self.model, input_ids, attention_mask, position_ids, past_key_values, inputs_embeds,
                           use_cache, output_attentions, output_hidden_states, cache)
        logits = self.score(out.last_hidden_state)  # (B, T, num_labels)
        return finish(self.config, last_token_output(self.config, logits, input_ids, labels, out), return_dict)


class TokenClassifierHead:
    """`model` plus dropout (classifier_dropout) then `score` on every position; `score` has a bias unless the
    config's token_classification_bias is False."""

    model_class: type

    def __init__(self, config):
        super().__init__(config)
        self.model = self.model_class(self.config)
        self.num_labels = self.config.num_labels
        self.dropout = nn.Dropout(classifier_dropout(self.config))
        self.score = nn.Linear(self.config.hidden_size, self.config.num_labels,
                               bias=getattr(self.config, "token_classification_bias", True))
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, cache=None):
        out = run_backbone(self.model, input_ids, attention_mask, position_ids, past_key_values, inputs_embeds,
                           use_cache, output_attentions, output_hidden_states, cache)
        logits = self.score(self.dropout(out.last_hidden_state))  # (B, T, num_labels)
        return finish(self.config, token_output(logits, labels, out), return_dict)
