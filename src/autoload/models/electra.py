"""ELECTRA (model_type "electra"): BERT's post-LayerNorm encoder over embeddings of `embedding_size`.

embeddings: word + token_type + position (width E = embedding_size) -> LayerNorm -> dropout
            -> `embeddings_project` Linear(E, H) when E != hidden_size H
layer:      x = LN(x + Dense(SelfAttention(x)));  x = LN(x + Dense(act(Dense(x))))  (nn.encoder: BERT's layer, keys)
heads:      discriminator (ForPreTraining): dense, act, dense_prediction -> one replaced-token logit per token;
            generator (ForMaskedLM, ForCausalLM): dense H -> E, gelu, LayerNorm, then `generator_lm_head` tied to
            the word embeddings; classifier dense, gelu, out_proj on h[:, 0]; multiple choice via sequence_summary.

Module names are the checkpoint keys (`electra.encoder.layer.0.attention.self.query.weight`,
`discriminator_predictions.dense_prediction.bias`). With `config.is_decoder` the self-attention is causal and keeps
a KV cache (ElectraForCausalLM); with `add_cross_attention` each layer also attends to `encoder_hidden_states`
(recomputed each step, not cached). Attention runs through SDPA; `config._attn_implementation == "eager"`
computes the weights, the only way `output_attentions=True` returns them (with SDPA they are an empty tuple).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import nn

from ..generation.mixin import GenerationMixin
from ..modeling import PreTrainedModel
from ..nn.activations import Activation
from ..nn.encoder import (EncoderEmbeddings, EncoderLayer, WordEmbeddingsMixin, decoder_cache, encoder_options,
                          run_stack, unpad_of)
from ..nn.heads import causal_lm_output, finish, flat_choices, head_output, keep_positions, span_output
from ..nn.losses import cross_entropy, sequence_classification_loss
from ..nn.outputs import (CausalLMOutputWithCrossAttentions, MaskedLMOutput, ModelOutput, MultipleChoiceModelOutput,
                          SequenceClassifierOutput, TokenClassifierOutput)
from .configs import ElectraConfig

logger = logging.getLogger("autoload")


@dataclass
class BaseModelOutputWithPastAndCrossAttentions(ModelOutput):
    last_hidden_state: Any = None
    past_key_values: Any = None
    hidden_states: Any = None
    attentions: Any = None
    cross_attentions: Any = None


@dataclass
class ElectraForPreTrainingOutput(ModelOutput):
    loss: Any = None
    logits: Any = None
    hidden_states: Any = None
    attentions: Any = None


class ElectraEmbeddings(EncoderEmbeddings):
    """Sum of word, token-type and absolute position embeddings (width embedding_size), LayerNorm and dropout: the
    shared block of nn.encoder under the reference's name."""

    def __init__(self, config: ElectraConfig):
        super().__init__(config, config.embedding_size)


class ElectraLayer(EncoderLayer):
    """BERT's post-LN layer of nn.encoder (`attention.self.query` ... `output.LayerNorm`) under the reference's
    name: self-attention (+ cross-attention in a decoder with add_cross_attention), then the feed-forward block."""


class ElectraDiscriminatorPredictions(nn.Module):
    """dense, activation, dense_prediction: one logit per token, > 0 = replaced by the generator."""

    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = Activation(config.hidden_act)
        self.dense_prediction = nn.Linear(config.hidden_size, 1)

    def forward(self, h):
        return self.dense_prediction(self.activation(self.dense(h))).squeeze(-1)  # (B, T)


class ElectraGeneratorPredictions(nn.Module):
    """dense (H -> E), gelu, LayerNorm: the generator's states before the tied vocabulary projection."""

    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.activation = Activation("gelu")
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)
        self.dense = nn.Linear(config.hidden_size, config.embedding_size)

    def forward(self, h):
        return self.LayerNorm(self.activation(self.dense(h)))  # (B, T, E)


class ElectraPreTrainedModel(PreTrainedModel):
    """Shared base: config, checkpoint prefix `electra`, the reference's default init."""

    config_class = ElectraConfig
    base_model_prefix = "electra"
    supports_gradient_checkpointing = True
    _no_split_modules = ["ElectraEmbeddings", "ElectraLayer"]

    def get_output_embeddings(self) -> nn.Module | None:
        return getattr(self, "generator_lm_head", None)

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.generator_lm_head = new_embeddings


class ElectraModel(WordEmbeddingsMixin, ElectraPreTrainedModel):
    """The bare encoder (no pooler): last hidden states (B, T, H)."""

    def __init__(self, config: ElectraConfig):
        super().__init__(config)
        self.embeddings = ElectraEmbeddings(config)
        if config.embedding_size != config.hidden_size:
            self.embeddings_project = nn.Linear(config.embedding_size, config.hidden_size)
        self.encoder = nn.Module()  # checkpoint keys `encoder.layer.N...`
        self.encoder.layer = nn.ModuleList(ElectraLayer(config, i) for i in range(config.num_hidden_layers))
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, encoder_hidden_states=None, encoder_attention_mask=None, past_key_values=None,
                use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None, cache=None,
                unpad: bool | None = None):
        """input_ids (B, T) or inputs_embeds (B, T, E); attention_mask (B, past+T), 1 = token, 0 = padding;
        token_type_ids default 0; position_ids default past..past+T-1. `cache` is an alias of `past_key_values`
        (used only when config.is_decoder)."""
        config = self.config
        output_attentions, output_hidden_states, return_dict = encoder_options(
            config, input_ids, inputs_embeds, output_attentions, output_hidden_states, return_dict)
        cache, use_cache, past = decoder_cache(self, past_key_values, cache, use_cache)
        x = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds, past)  # (B, T, E)
        if hasattr(self, "embeddings_project"):
            x = self.embeddings_project(x)  # (B, T, H)
        x, hidden_states, attentions, cross_attentions = run_stack(
            self, self.encoder.layer, x, attention_mask, past=past, cache=cache if use_cache else None,
            causal=config.is_decoder, encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask, output_attentions=output_attentions,
            unpad=unpad_of(config, unpad))  # (B, T, H)
        out = BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=x, past_key_values=cache if use_cache else None,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
            cross_attentions=tuple(cross_attentions) if output_attentions else None)
        return out if return_dict else out.to_tuple()


class _ElectraHead(ElectraPreTrainedModel):
    """`electra` plus a head on its last hidden states: subclasses build the head (`_build`, after the backbone as
    the reference, so that seeded inits agree), score the states (`_score`) and name the output class and loss.
    With `choices`, inputs are (B, C, T): each choice is encoded on its own and the C scores compete in a softmax."""

    output_class = SequenceClassifierOutput
    choices = False

    def __init__(self, config: ElectraConfig):
        super().__init__(config)
        self.electra = ElectraModel(config)
        self._build(config)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None,
                return_dict=None):
        C = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        out = self.electra(*flat_choices(self.choices, input_ids, attention_mask, token_type_ids, position_ids,
                                         inputs_embeds), output_attentions=output_attentions,
                           output_hidden_states=output_hidden_states, return_dict=True)
        logits = self._score(out.last_hidden_state)  # (B, T), (B, T, V), (B, labels), (B, T, labels), (B*C, 1)
        if self.choices:
            logits = logits.view(-1, C)  # (B, C)
        loss = None if labels is None else self._loss(logits, labels, attention_mask)
        return head_output(self.config, self.output_class, loss, logits, out, return_dict)

    def _loss(self, logits, labels, attention_mask):
        return cross_entropy(logits, labels)


class ElectraForPreTraining(_ElectraHead):
    """The discriminator: was each token replaced? labels (B, T) 1 = replaced; BCE-with-logits over the tokens
    whose attention_mask is 1 (all tokens without a mask)."""

    output_class = ElectraForPreTrainingOutput

    def _build(self, config):
        self.discriminator_predictions = ElectraDiscriminatorPredictions(config)

    def _score(self, h):
        return self.discriminator_predictions(h)  # (B, T)

    def _loss(self, logits, labels, attention_mask):
        active = slice(None) if attention_mask is None else attention_mask.view(-1, logits.shape[1]) == 1  # (B, T)
        return F.binary_cross_entropy_with_logits(logits.view(-1, logits.shape[1])[active], labels[active].float())


class ElectraForMaskedLM(_ElectraHead):
    """The generator: masked-token prediction over the vocabulary at every position; `generator_lm_head`
    (E -> vocab) is tied to the word embeddings."""

    _tied_weights_keys = {"generator_lm_head.weight": "electra.embeddings.word_embeddings.weight"}
    output_class = MaskedLMOutput

    def _build(self, config):
        self.generator_predictions = ElectraGeneratorPredictions(config)
        self.generator_lm_head = nn.Linear(config.embedding_size, config.vocab_size)

    def _score(self, h):
        return self.generator_lm_head(self.generator_predictions(h))  # (B, T, V)


class ElectraForCausalLM(GenerationMixin, ElectraPreTrainedModel):
    """Left-to-right LM through the generator head (needs `is_decoder=True`): causal attention, a KV cache."""

    _tied_weights_keys = ElectraForMaskedLM._tied_weights_keys
    _build, _score = ElectraForMaskedLM._build, ElectraForMaskedLM._score

    def __init__(self, config: ElectraConfig):
        if not config.is_decoder:
            logger.warning("ElectraForCausalLM is meant to run with is_decoder=True (causal attention).")
        super().__init__(config)
        self.electra = ElectraModel(config)
        self._build(config)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, encoder_hidden_states=None, encoder_attention_mask=None, labels=None,
                past_key_values=None, use_cache=None, logits_to_keep=0, output_attentions=None,
                output_hidden_states=None, return_dict=None, cache=None):
        """labels (B, T): token ids, shifted here so position t predicts labels[t + 1]; -100 is ignored.
        logits_to_keep: an int n scores the last n positions only (0 = all), or a tensor of indices."""
        out = self.electra(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                           encoder_hidden_states, encoder_attention_mask, past_key_values,
                           False if labels is not None else use_cache, output_attentions, output_hidden_states,
                           return_dict=True, cache=cache)
        logits = self._score(keep_positions(out.last_hidden_state, logits_to_keep))  # (B, T', V)
        return finish(self.config, causal_lm_output(logits, labels, None, out, CausalLMOutputWithCrossAttentions,
                                                    cross_attentions=out.cross_attentions), return_dict)


class ElectraForSequenceClassification(_ElectraHead):
    """`classifier`: dropout, dense, gelu, dropout, out_proj on the first token's state. The loss follows
    `config.problem_type` (regression, single- or multi-label)."""

    def _build(self, config):
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.classifier = nn.Module()
        self.classifier.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.classifier.activation = Activation("gelu")
        self.classifier.dropout = nn.Dropout(p)
        self.classifier.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def _score(self, h):
        c = self.classifier
        x = c.activation(c.dense(c.dropout(h[:, 0])))  # (B, H)
        return c.out_proj(c.dropout(x))  # (B, labels)

    def _loss(self, logits, labels, attention_mask):
        return sequence_classification_loss(self.config, logits, labels)


class ElectraForTokenClassification(_ElectraHead):
    """One label per token: dropout (`classifier_dropout`, else `hidden_dropout_prob`) and a Linear."""

    output_class = TokenClassifierOutput

    def _build(self, config):
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def _score(self, h):
        return self.classifier(self.dropout(h))  # (B, T, labels)


class ElectraSequenceSummary(nn.Module):
    """One vector per sequence: the first / last / mean token state (`summary_type`), then first_dropout,
    `summary` (Linear with summary_use_proj, to num_labels with summary_proj_to_labels), activation and
    last_dropout, reading the config as the reference's SequenceSummary does."""

    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.summary_type = getattr(config, "summary_type", "last")
        if self.summary_type not in ("first", "last", "mean"):
            raise NotImplementedError(f"summary_type {self.summary_type!r}: only 'first', 'last' and 'mean'.")
        self.summary = nn.Identity()
        if getattr(config, "summary_use_proj", False):
            to_labels = getattr(config, "summary_proj_to_labels", False) and config.num_labels > 0
            self.summary = nn.Linear(config.hidden_size, config.num_labels if to_labels else config.hidden_size)
        name = getattr(config, "summary_activation", None)
        self.activation = Activation(name) if name else nn.Identity()
        first, last = getattr(config, "summary_first_dropout", 0), getattr(config, "summary_last_dropout", 0)
        self.first_dropout = nn.Dropout(first) if first and first > 0 else nn.Identity()
        self.last_dropout = nn.Dropout(last) if last and last > 0 else nn.Identity()

    def forward(self, h):
        pooled = {"first": lambda: h[:, 0], "last": lambda: h[:, -1], "mean": lambda: h.mean(1)}[self.summary_type]()
        return self.last_dropout(self.activation(self.summary(self.first_dropout(pooled))))  # (B, H)


class ElectraForMultipleChoice(_ElectraHead):
    """Inputs (B, C, T): each choice summarised (`sequence_summary`) and scored by a Linear(H, 1)."""

    output_class = MultipleChoiceModelOutput
    choices = True

    def _build(self, config):
        self.sequence_summary = ElectraSequenceSummary(config)
        self.classifier = nn.Linear(config.hidden_size, 1)

    def _score(self, h):
        return self.classifier(self.sequence_summary(h))  # (B*C, 1)


class ElectraForQuestionAnswering(ElectraPreTrainedModel):
    """Extractive QA: `qa_outputs` gives each token a start and an end logit; the span loss as the reference."""

    def __init__(self, config: ElectraConfig):
        super().__init__(config)
        self.electra = ElectraModel(config)
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, start_positions=None, end_positions=None, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        out = self.electra(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                           output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                           return_dict=True)
        logits = self.qa_outputs(out.last_hidden_state)  # (B, T, 2)
        return finish(self.config, span_output(logits, start_positions, end_positions, out), return_dict)
