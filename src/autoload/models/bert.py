"""BERT (model_type "bert"): a post-LayerNorm Transformer encoder and its task heads.

embeddings: word + token_type + position -> LayerNorm -> dropout
layer:      x = LN(x + Dense(SelfAttention(x)));  x = LN(x + Dense(act(Dense(x))))
heads:      pooler tanh(Dense(h[:, 0])); MLM transform + decoder tied to the word embeddings; NSP, classifiers.

Module names are the checkpoint keys (`bert.encoder.layer.0.attention.self.query.weight`, `cls.predictions.bias`).
With `config.is_decoder` the self-attention is causal and keeps a KV cache (BertLMHeadModel); with
`add_cross_attention` each layer also attends to `encoder_hidden_states` (recomputed each step, not cached).
Attention runs through SDPA; `config._attn_implementation == "eager"` computes the weights explicitly, which is
the only way `output_attentions=True` returns them (with SDPA they are an empty tuple, as in transformers 5.24).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..generation.mixin import GenerationMixin
from ..modeling import PreTrainedModel
from ..nn.activations import Activation
from ..nn.encoder import (EncoderEmbeddings, EncoderLayer, WordEmbeddingsMixin, decoder_cache, encoder_options,
                          run_stack, unpad_of, warn_no_weights)
from ..nn.heads import causal_lm_output, finish, flat_choices, head_output, keep_positions, span_output
from ..nn.losses import cross_entropy, sequence_classification_loss
from ..nn.outputs import (BaseModelOutputWithPoolingAndCrossAttentions, BertForPreTrainingOutput,
                          CausalLMOutputWithCrossAttentions, MaskedLMOutput, MultipleChoiceModelOutput,
                          NextSentencePredictorOutput, SequenceClassifierOutput, TokenClassifierOutput)
from .configs import BertConfig

logger = logging.getLogger("autoload")


class BertEmbeddings(EncoderEmbeddings):
    """Sum of word, token-type (segment) and absolute position embeddings, then LayerNorm and dropout: the shared
    block of nn.encoder under the reference's name (for _no_split_modules)."""


class BertLayer(EncoderLayer):
    """Self-attention (+ cross-attention in a seq2seq decoder) then the feed-forward block, each post-LN: the shared
    layer of nn.encoder (`attention.self.query` ... `output.LayerNorm`) under the reference's name."""


class BertPooler(nn.Module):
    """tanh(Dense(h[:, 0])): the [CLS] token's final state, as used by NSP and the sentence classifiers."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states):
        return torch.tanh(self.dense(hidden_states[:, 0]))  # (B, H)


class BertLMPredictionHead(nn.Module):
    """transform (Dense, act, LayerNorm) then `decoder` to vocabulary logits; the decoder's weight is tied to the
    word embeddings and its bias to the separate `bias` parameter (the checkpoint key `cls.predictions.bias`)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.transform = nn.Module()
        self.transform.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.transform.transform_act_fn = Activation(config.hidden_act)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states):
        t = self.transform
        x = t.LayerNorm(t.transform_act_fn(t.dense(hidden_states)))  # (B, T, H)
        return self.decoder(x)  # (B, T, V)


class BertPreTrainedModel(PreTrainedModel):
    """Shared base of the BERT classes: config, checkpoint prefix `bert`, the reference's init."""

    config_class = BertConfig
    base_model_prefix = "bert"
    supports_gradient_checkpointing = True
    _no_split_modules = ["BertEmbeddings", "BertLayer"]

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)  # normal(0, initializer_range) for Linear/Embedding, LayerNorm 1/0
        if isinstance(module, BertLMPredictionHead):
            module.bias.data.zero_()

    def get_output_embeddings(self) -> nn.Module | None:
        predictions = getattr(getattr(self, "cls", None), "predictions", None)
        return predictions.decoder if predictions is not None else None

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.cls.predictions.decoder = new_embeddings
        self.cls.predictions.bias = new_embeddings.bias


class BertModel(WordEmbeddingsMixin, BertPreTrainedModel):
    """The bare encoder: last hidden states and (with `add_pooling_layer`) the pooled [CLS] output."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = nn.Module()  # checkpoint keys `encoder.layer.N...`
        self.encoder.layer = nn.ModuleList(BertLayer(config, i) for i in range(config.num_hidden_layers))
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, encoder_hidden_states=None, encoder_attention_mask=None, past_key_values=None,
                use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None, cache=None,
                unpad: bool | None = None):
        """input_ids (B, T) or inputs_embeds (B, T, H); attention_mask (B, past+T), 1 = token, 0 = padding;
        token_type_ids (B, T) default 0; position_ids default past..past+T-1. `cache` is an alias of
        `past_key_values` (used only when config.is_decoder). unpad (default `config.unpad_inputs`, False): run
        the layers on the real tokens only (nn/packing.py); outputs at padded positions are then zeros."""
        config = self.config
        output_attentions, output_hidden_states, return_dict = encoder_options(
            config, input_ids, inputs_embeds, output_attentions, output_hidden_states, return_dict)
        cache, use_cache, past = decoder_cache(self, past_key_values, cache, use_cache)
        x = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds, past)  # (B, T, H)
        warn_no_weights(config, output_attentions)

        x, hidden_states, attentions, cross_attentions = run_stack(
            self, self.encoder.layer, x, attention_mask, past=past, cache=cache, causal=config.is_decoder,
            encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask,
            output_attentions=output_attentions, unpad=unpad_of(config, unpad))
        pooled = self.pooler(x) if self.pooler is not None else None  # (B, H)

        out = BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=x, pooler_output=pooled,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            past_key_values=cache if use_cache else None,
            attentions=tuple(attentions) if output_attentions else None,
            cross_attentions=tuple(cross_attentions) if output_attentions else None)
        return out if return_dict else out.to_tuple()


class _BertWithMLMHead(BertPreTrainedModel):
    """`bert` plus the masked-LM head `cls.predictions`, whose decoder is tied to the word embeddings."""

    _tied_weights_keys = {"cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
                          "cls.predictions.decoder.bias": "cls.predictions.bias"}
    with_nsp = False  # BertForPreTraining: also the pooler and the next-sentence head `cls.seq_relationship`

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=self.with_nsp)
        self.cls = nn.Module()
        self.cls.predictions = BertLMPredictionHead(config)
        if self.with_nsp:
            self.cls.seq_relationship = nn.Linear(config.hidden_size, 2)
        self.post_init()


class BertForPreTraining(_BertWithMLMHead):
    """Both pre-training heads: masked LM (`cls.predictions`) and next-sentence prediction (`cls.seq_relationship`).
    The loss (with both `labels` and `next_sentence_label`) is their sum."""

    with_nsp = True

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, next_sentence_label=None, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                        output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                        return_dict=True)
        logits = self.cls.predictions(out.last_hidden_state)  # (B, T, V)
        nsp_logits = self.cls.seq_relationship(out.pooler_output)  # (B, 2)
        loss = None
        if labels is not None and next_sentence_label is not None:
            loss = cross_entropy(logits, labels) + cross_entropy(nsp_logits, next_sentence_label)
        return finish(self.config, BertForPreTrainingOutput(
            loss=loss, prediction_logits=logits, seq_relationship_logits=nsp_logits,
            hidden_states=out.hidden_states, attentions=out.attentions), return_dict)


class BertLMHeadModel(GenerationMixin, _BertWithMLMHead):
    """Left-to-right language model (needs `is_decoder=True`): causal self-attention, a KV cache, next-token loss."""

    def __init__(self, config: BertConfig):
        if not config.is_decoder:
            logger.warning("BertLMHeadModel is meant to run with is_decoder=True (causal attention).")
        super().__init__(config)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, encoder_hidden_states=None, encoder_attention_mask=None, labels=None,
                past_key_values=None, use_cache=None, logits_to_keep=0, output_attentions=None,
                output_hidden_states=None, return_dict=None, cache=None):
        """labels (B, T): token ids, shifted here so position t predicts labels[t + 1]; -100 is ignored.
        logits_to_keep: an int n computes logits for the last n positions only (0 = all), or a tensor of indices."""
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                        encoder_hidden_states, encoder_attention_mask, past_key_values,
                        False if labels is not None else use_cache, output_attentions, output_hidden_states,
                        return_dict=True, cache=cache)
        logits = self.cls.predictions(keep_positions(out.last_hidden_state, logits_to_keep))  # (B, T', V)
        return finish(self.config, causal_lm_output(logits, labels, None, out, CausalLMOutputWithCrossAttentions,
                                                    cross_attentions=out.cross_attentions), return_dict)


class BertForMaskedLM(_BertWithMLMHead):
    """Masked-token prediction over the vocabulary at every position (bidirectional attention)."""

    def __init__(self, config: BertConfig):
        if config.is_decoder:
            logger.warning("BertForMaskedLM expects is_decoder=False (bidirectional attention).")
        super().__init__(config)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, encoder_hidden_states=None, encoder_attention_mask=None, labels=None,
                output_attentions=None, output_hidden_states=None, return_dict=None):
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                        encoder_hidden_states, encoder_attention_mask, output_attentions=output_attentions,
                        output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.cls.predictions(out.last_hidden_state)  # (B, T, V)
        loss = cross_entropy(logits, labels) if labels is not None else None
        return head_output(self.config, MaskedLMOutput, loss, logits, out, return_dict)


class BertForNextSentencePrediction(BertPreTrainedModel):
    """Is segment B the continuation of segment A? Logits (B, 2) from the pooled output; label 0 = yes."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config)
        self.cls = nn.Module()
        self.cls.seq_relationship = nn.Linear(config.hidden_size, 2)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None,
                return_dict=None):
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                        output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                        return_dict=True)
        logits = self.cls.seq_relationship(out.pooler_output)  # (B, 2)
        loss = cross_entropy(logits, labels) if labels is not None else None
        return head_output(self.config, NextSentencePredictorOutput, loss, logits, out, return_dict)


class _BertClassifier(BertPreTrainedModel):
    """dropout (`classifier_dropout`, else `hidden_dropout_prob`) and a Linear `classifier` over the encoder's
    pooled [CLS] state (or every token's state); subclasses name the output class and the loss."""

    pooled = True  # classify the pooled [CLS] state (else every token's state)
    choices = False  # inputs (B, C, T): each choice encoded on its own, the C scores compete in a softmax
    output_class = SequenceClassifierOutput

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=self.pooled)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, 1 if self.choices else config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None,
                return_dict=None):
        C = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        out = self.bert(*flat_choices(self.choices, input_ids, attention_mask, token_type_ids, position_ids,
                                      inputs_embeds), output_attentions=output_attentions,
                        output_hidden_states=output_hidden_states, return_dict=True)
        h = out.pooler_output if self.pooled else out.last_hidden_state  # (B, H) or (B, T, H)
        logits = self.classifier(self.dropout(h))  # (B, labels), (B, T, labels) or (B*C, 1)
        if self.choices:
            logits = logits.view(-1, C)  # (B, C)
        loss = None if labels is None else self._loss(logits, labels)
        return head_output(self.config, self.output_class, loss, logits, out, return_dict)

    def _loss(self, logits, labels):
        return cross_entropy(logits, labels)


class BertForSequenceClassification(_BertClassifier):
    """One label per sequence from the pooled output. The loss follows `config.problem_type` (set from the labels
    when None): regression (MSE) for num_labels == 1, single-label cross entropy for integer labels, else
    multi-label BCE-with-logits."""

    def _loss(self, logits, labels):
        return sequence_classification_loss(self.config, logits, labels)


class BertForTokenClassification(_BertClassifier):
    """One label per token (NER, tagging); cross entropy with -100 ignored."""

    pooled = False
    output_class = TokenClassifierOutput


class BertForMultipleChoice(_BertClassifier):
    """Inputs (B, C, T): each choice is encoded on its own, scored by a Linear(H, 1) on its pooled output, and
    the C scores compete in a softmax."""

    choices = True
    output_class = MultipleChoiceModelOutput


class BertForQuestionAnswering(BertPreTrainedModel):
    """Extractive QA: `qa_outputs` gives each token a start and an end logit. The loss is the mean of the start
    and end cross entropies; positions outside the sequence are clamped to T and ignored."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, start_positions=None, end_positions=None, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                        output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                        return_dict=True)
        logits = self.qa_outputs(out.last_hidden_state)  # (B, T, 2)
        return finish(self.config, span_output(logits, start_positions, end_positions, out), return_dict)
