"""ELECTRA (model_type "electra"): BERT's post-LayerNorm encoder over embeddings of `embedding_size`.

embeddings: word + token_type + position (width E = embedding_size) -> LayerNorm -> dropout
            -> `embeddings_project` Linear(E, H) when E != hidden_size H
layer:      x = LN(x + Dense(SelfAttention(x)));  x = LN(x + Dense(act(Dense(x))))  (BERT's layer and keys)
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

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..generation.mixin import GenerationMixin
from ..modeling import PreTrainedModel
from ..nn.activations import Activation
from ..nn.attention import attention
from ..nn.cache import DynamicCache
from ..nn.heads import finish, keep_positions, span_output
from ..nn.losses import causal_lm_loss, cross_entropy, sequence_classification_loss
from ..nn.masks import attention_mask as build_mask
from ..nn.outputs import (CausalLMOutputWithCrossAttentions, MaskedLMOutput, ModelOutput, MultipleChoiceModelOutput,
                          SequenceClassifierOutput, TokenClassifierOutput)
from .configs import ElectraConfig


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


class ElectraEmbeddings(nn.Module):
    """Sum of word, token-type and absolute position embeddings (width embedding_size), LayerNorm and dropout."""

    def __init__(self, config: ElectraConfig):
        super().__init__()
        E = config.embedding_size
        self.word_embeddings = nn.Embedding(config.vocab_size, E, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, E)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, E)
        self.LayerNorm = nn.LayerNorm(E, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        positions = torch.arange(config.max_position_embeddings, dtype=torch.long)[None]  # (1, P)
        self.register_buffer("position_ids", positions, persistent=False)
        self.register_buffer("token_type_ids", torch.zeros_like(positions), persistent=False)

    def forward(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None, past_length=0):
        B, T = input_ids.shape if input_ids is not None else inputs_embeds.shape[:2]
        if position_ids is None:  # positions continue after the cached ones
            position_ids = self.position_ids[:, past_length:past_length + T]  # (1, T)
        if token_type_ids is None:
            token_type_ids = self.token_type_ids[:, :T].expand(B, T)  # (B, T) all segment A
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (B, T, E)
        x = inputs_embeds + self.token_type_embeddings(token_type_ids) + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(x))  # (B, T, E)


class ElectraSelfAttention(nn.Module):
    """Multi-head attention, query/key/value with bias; keys and values from `encoder_hidden_states` for
    cross-attention."""

    def __init__(self, config: ElectraConfig, layer_idx: int = 0, is_cross_attention: bool = False):
        super().__init__()
        self.config = config  # read at each call: config._attn_implementation may change after loading
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        inner = self.num_heads * self.head_dim
        self.query = nn.Linear(config.hidden_size, inner)
        self.key = nn.Linear(config.hidden_size, inner)
        self.value = nn.Linear(config.hidden_size, inner)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.is_causal = config.is_decoder and not is_cross_attention
        self.layer_idx = layer_idx

    def forward(self, hidden_states, mask=None, cache=None, encoder_hidden_states=None):
        B, T, _ = hidden_states.shape
        source = hidden_states if encoder_hidden_states is None else encoder_hidden_states  # (B, S, H)

        def split_heads(x):  # (B, L, nh*hs) -> (B, nh, L, hs)
            return x.view(B, -1, self.num_heads, self.head_dim).transpose(1, 2)

        q = split_heads(self.query(hidden_states))  # (B, nh, T, hs)
        k, v = split_heads(self.key(source)), split_heads(self.value(source))  # (B, nh, S, hs)
        if cache is not None and encoder_hidden_states is None:
            k, v = cache.update(k, v, self.layer_idx)  # (B, nh, past + T, hs)
        eager = getattr(self.config, "_attn_implementation", None) == "eager"
        y, weights = attention(q, k, v, mask, is_causal=self.is_causal, eager=eager, softmax_fp32=False,
                               dropout=self.dropout.p if self.training else 0.0)  # (B, nh, T, hs)
        return y.transpose(1, 2).reshape(B, T, -1), weights  # (B, T, nh*hs)


class ElectraOutput(nn.Module):
    """Dense to hidden size, dropout, LayerNorm of the residual sum: the attention output (`attention.output`,
    in = hidden) and the feed-forward output (`output`, in = intermediate)."""

    def __init__(self, config: ElectraConfig, in_features: int):
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x, residual):
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)  # (B, T, H)


class ElectraAttention(nn.Module):
    def __init__(self, config: ElectraConfig, layer_idx: int = 0, is_cross_attention: bool = False):
        super().__init__()
        self.self = ElectraSelfAttention(config, layer_idx, is_cross_attention)
        self.output = ElectraOutput(config, config.num_attention_heads *
                                    (config.hidden_size // config.num_attention_heads))

    def forward(self, hidden_states, mask=None, cache=None, encoder_hidden_states=None):
        y, weights = self.self(hidden_states, mask, cache, encoder_hidden_states)
        return self.output(y, hidden_states), weights  # (B, T, H)


class ElectraLayer(nn.Module):
    """Self-attention (+ cross-attention in a decoder with add_cross_attention), then the feed-forward block."""

    def __init__(self, config: ElectraConfig, layer_idx: int = 0):
        super().__init__()
        self.attention = ElectraAttention(config, layer_idx)
        if config.add_cross_attention:
            if not config.is_decoder:
                raise ValueError("add_cross_attention=True needs is_decoder=True.")
            self.crossattention = ElectraAttention(config, layer_idx, is_cross_attention=True)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate.intermediate_act_fn = Activation(config.hidden_act)
        self.output = ElectraOutput(config, config.intermediate_size)

    def forward(self, x, mask=None, cache=None, encoder_hidden_states=None, encoder_mask=None):
        x, weights = self.attention(x, mask, cache)  # (B, T, H)
        cross_weights = None
        if encoder_hidden_states is not None:
            if not hasattr(self, "crossattention"):
                raise ValueError("encoder_hidden_states were given, but the model has no cross-attention layers "
                                 "(set add_cross_attention=True and is_decoder=True in the config).")
            x, cross_weights = self.crossattention(x, encoder_mask, encoder_hidden_states=encoder_hidden_states)
        inner = self.intermediate.intermediate_act_fn(self.intermediate.dense(x))  # (B, T, I)
        return self.output(inner, x), weights, cross_weights  # (B, T, H)


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


class ElectraModel(ElectraPreTrainedModel):
    """The bare encoder (no pooler): last hidden states (B, T, H)."""

    def __init__(self, config: ElectraConfig):
        super().__init__(config)
        self.embeddings = ElectraEmbeddings(config)
        if config.embedding_size != config.hidden_size:
            self.embeddings_project = nn.Linear(config.embedding_size, config.hidden_size)
        self.encoder = nn.Module()  # checkpoint keys `encoder.layer.N...`
        self.encoder.layer = nn.ModuleList(ElectraLayer(config, i) for i in range(config.num_hidden_layers))
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, encoder_hidden_states=None, encoder_attention_mask=None, past_key_values=None,
                use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None, cache=None):
        """input_ids (B, T) or inputs_embeds (B, T, E); attention_mask (B, past+T), 1 = token, 0 = padding;
        token_type_ids default 0; position_ids default past..past+T-1. `cache` is an alias of `past_key_values`
        (used only when config.is_decoder)."""
        config = self.config
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = config.return_dict if return_dict is None else return_dict
        cache = past_key_values if past_key_values is not None else cache
        use_cache = bool(config.is_decoder and (config.use_cache if use_cache is None else use_cache))
        if self.checkpointing():  # recomputed blocks would write a cache twice
            use_cache, cache = False, None
        if use_cache and cache is None:
            cache = DynamicCache(config)
        past = cache.get_seq_length() if cache is not None else 0

        x = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds, past)  # (B, T, E)
        if hasattr(self, "embeddings_project"):
            x = self.embeddings_project(x)  # (B, T, H)
        B, T, _ = x.shape
        # (B, 1, T, past+T) bool, True = attend: padding hidden, future keys hidden in a decoder; None if not needed
        padding = None if attention_mask is None else attention_mask[:, -(past + T):].to(x.device, torch.bool)
        mask = build_mask(padding, B, T, past, causal=config.is_decoder, device=x.device)
        encoder_mask = None
        if encoder_hidden_states is not None and encoder_attention_mask is not None \
                and not bool(encoder_attention_mask.all()):
            encoder_mask = encoder_attention_mask[:, None, None, :].bool().expand(B, 1, T, -1)  # (B, 1, T, S)

        hidden_states, attentions, cross_attentions = [x], [], []
        for layer in self.encoder.layer:
            x, weights, cross_weights = self.run_layer(layer, x, mask, cache if use_cache else None,
                                                       encoder_hidden_states, encoder_mask)  # (B, T, H)
            hidden_states.append(x)
            attentions += [weights] if weights is not None else []
            cross_attentions += [cross_weights] if cross_weights is not None else []
        out = BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=x, past_key_values=cache if use_cache else None,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
            cross_attentions=tuple(cross_attentions) if output_attentions else None)
        return out if return_dict else out.to_tuple()


class ElectraForPreTraining(ElectraPreTrainedModel):
    """The discriminator: was each token replaced? labels (B, T) 1 = replaced; BCE-with-logits over the tokens
    whose attention_mask is 1 (all tokens without a mask)."""

    def __init__(self, config: ElectraConfig):
        super().__init__(config)
        self.electra = ElectraModel(config)
        self.discriminator_predictions = ElectraDiscriminatorPredictions(config)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None,
                return_dict=None):
        out = self.electra(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                           output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                           return_dict=True)
        logits = self.discriminator_predictions(out.last_hidden_state)  # (B, T)
        loss = None
        if labels is not None:
            active = slice(None) if attention_mask is None else attention_mask.view(-1, logits.shape[1]) == 1
            loss = F.binary_cross_entropy_with_logits(logits.view(-1, logits.shape[1])[active],
                                                      labels[active].float())
        return finish(self.config, ElectraForPreTrainingOutput(
            loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions), return_dict)


class _ElectraWithGenerator(ElectraPreTrainedModel):
    """`electra` plus the generator head; `generator_lm_head` (E -> vocab) is tied to the word embeddings."""

    _tied_weights_keys = {"generator_lm_head.weight": "electra.embeddings.word_embeddings.weight"}

    def __init__(self, config: ElectraConfig):
        super().__init__(config)
        self.electra = ElectraModel(config)
        self.generator_predictions = ElectraGeneratorPredictions(config)
        self.generator_lm_head = nn.Linear(config.embedding_size, config.vocab_size)
        self.post_init()


class ElectraForMaskedLM(_ElectraWithGenerator):
    """The generator: masked-token prediction over the vocabulary at every position."""

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None,
                return_dict=None):
        out = self.electra(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                           output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                           return_dict=True)
        logits = self.generator_lm_head(self.generator_predictions(out.last_hidden_state))  # (B, T, V)
        loss = cross_entropy(logits, labels) if labels is not None else None
        return finish(self.config, MaskedLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                                   attentions=out.attentions), return_dict)


class ElectraForCausalLM(GenerationMixin, _ElectraWithGenerator):
    """Left-to-right LM through the generator head (needs `is_decoder=True`): causal attention, KV cache."""

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
        h = keep_positions(out.last_hidden_state, logits_to_keep)  # (B, T', H)
        logits = self.generator_lm_head(self.generator_predictions(h))  # (B, T', V)
        loss = None if labels is None else causal_lm_loss(logits, labels)
        return finish(self.config, CausalLMOutputWithCrossAttentions(
            loss=loss, logits=logits, past_key_values=out.past_key_values, hidden_states=out.hidden_states,
            attentions=out.attentions, cross_attentions=out.cross_attentions), return_dict)


class ElectraForSequenceClassification(ElectraPreTrainedModel):
    """`classifier`: dropout, dense, gelu, dropout, out_proj on the first token's state. The loss follows
    `config.problem_type` (regression, single- or multi-label)."""

    def __init__(self, config: ElectraConfig):
        super().__init__(config)
        self.electra = ElectraModel(config)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.classifier = nn.Module()
        self.classifier.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.classifier.activation = Activation("gelu")
        self.classifier.dropout = nn.Dropout(p)
        self.classifier.out_proj = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None,
                return_dict=None):
        out = self.electra(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                           output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                           return_dict=True)
        c = self.classifier
        x = c.activation(c.dense(c.dropout(out.last_hidden_state[:, 0])))  # (B, H)
        logits = c.out_proj(c.dropout(x))  # (B, labels)
        loss = None if labels is None else sequence_classification_loss(self.config, logits, labels)
        return finish(self.config, SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions), return_dict)


class ElectraForTokenClassification(ElectraPreTrainedModel):
    """One label per token: dropout (`classifier_dropout`, else `hidden_dropout_prob`) and a Linear."""

    def __init__(self, config: ElectraConfig):
        super().__init__(config)
        self.electra = ElectraModel(config)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None,
                return_dict=None):
        out = self.electra(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                           output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                           return_dict=True)
        logits = self.classifier(self.dropout(out.last_hidden_state))  # (B, T, labels)
        loss = cross_entropy(logits, labels) if labels is not None else None
        return finish(self.config, TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions), return_dict)


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


class ElectraSequenceSummary(nn.Module):
    """One vector per sequence: the first / last / mean token state (`summary_type`), then first_dropout,
    `summary` (Linear with summary_use_proj, to num_labels with summary_proj_to_labels), activation and
    last_dropout, as the reference's SequenceSummary reads the config."""

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


class ElectraForMultipleChoice(ElectraPreTrainedModel):
    """Inputs (B, C, T): each choice encoded on its own, summarised (`sequence_summary`), scored by a Linear(H, 1);
    the C scores compete in a softmax."""

    def __init__(self, config: ElectraConfig):
        super().__init__(config)
        self.electra = ElectraModel(config)
        self.sequence_summary = ElectraSequenceSummary(config)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None,
                return_dict=None):
        C = (input_ids if input_ids is not None else inputs_embeds).shape[1]

        def flat(t):  # (B, C, T, ...) -> (B*C, T, ...)
            return t.reshape(-1, *t.shape[2:]) if t is not None else None

        out = self.electra(flat(input_ids), flat(attention_mask), flat(token_type_ids), flat(position_ids),
                           flat(inputs_embeds), output_attentions=output_attentions,
                           output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.classifier(self.sequence_summary(out.last_hidden_state)).view(-1, C)  # (B, C)
        loss = cross_entropy(logits, labels) if labels is not None else None
        return finish(self.config, MultipleChoiceModelOutput(
            loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions), return_dict)
