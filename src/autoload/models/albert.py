"""ALBERT (model_type "albert"): BERT's post-LayerNorm encoder with factorised embeddings and shared layers.

embeddings: word + token_type + position, all of size E = embedding_size -> LayerNorm -> dropout
encoder:    h = embedding_hidden_mapping_in(e)  (E -> H); then num_hidden_layers steps, step i running the
            layer group int(i / (num_hidden_layers / num_hidden_groups)), a group being inner_group_num layers
layer:      x = LN(x + Dense(SelfAttention(x)));  x = LN(x + ffn_output(act(ffn(x))))
heads:      pooler tanh(Dense(h[:, 0])); MLM head dense (H -> E), act, LayerNorm, decoder (E -> V) tied to the
            word embeddings; sentence-order prediction (`sop_classifier`), classifiers.

Module names are the checkpoint keys (`albert.encoder.albert_layer_groups.0.albert_layers.0.attention.query.weight`,
`predictions.bias`). Only num_hidden_groups × inner_group_num layers have weights; the others reuse them, and
hidden_states / attentions have one entry per layer *run* (num_hidden_layers × inner_group_num), as the reference.
Attention runs through SDPA; `config._attn_implementation == "eager"` computes the weights (the only way
`output_attentions=True` returns them).
"""

from __future__ import annotations

import torch
from torch import nn

from ..modeling import PreTrainedModel
from ..nn.activations import Activation
from ..nn.attention import attention, is_eager
from ..nn.encoder import EncoderEmbeddings, WordEmbeddingsMixin, check_mask, encoder_options, warn_no_weights
from ..nn.heads import finish, flat_choices, head_output, span_output
from ..nn.losses import cross_entropy, sequence_classification_loss
from ..nn.masks import attention_mask as build_mask
from ..nn.outputs import (AlbertForPreTrainingOutput, BaseModelOutputWithPooling, MaskedLMOutput,
                          MultipleChoiceModelOutput, SequenceClassifierOutput, TokenClassifierOutput)
from .configs import AlbertConfig


class AlbertEmbeddings(EncoderEmbeddings):
    """Word, token-type and absolute position embeddings of size embedding_size, summed, LayerNorm, dropout: the
    shared block of nn.encoder under the reference's name."""

    def __init__(self, config: AlbertConfig):
        super().__init__(config, config.embedding_size)


class AlbertAttention(nn.Module):
    """Self-attention with its output block: LN(x + dropout(dense(attention(x))))."""

    def __init__(self, config: AlbertConfig):
        super().__init__()
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(f"hidden_size {config.hidden_size} is not a multiple of num_attention_heads "
                             f"{config.num_attention_heads}.")
        self.config = config  # read at each call: config._attn_implementation may change after loading
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.attention_dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.output_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x, mask=None):
        B, T, H = x.shape

        def split_heads(t):  # (B, T, H) -> (B, nh, T, hs)
            return t.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)

        q, k, v = split_heads(self.query(x)), split_heads(self.key(x)), split_heads(self.value(x))  # (B, nh, T, hs)
        eager = is_eager(self.config)
        y, weights = attention(q, k, v, mask, eager=eager, softmax_fp32=False,
                               dropout=self.attention_dropout.p if self.training else 0.0)
        y = self.output_dropout(self.dense(y.transpose(1, 2).reshape(B, T, H)))  # (B, T, H)
        return self.LayerNorm(x + y), weights


class AlbertLayer(nn.Module):
    """Attention block, then the feed-forward block ffn (H -> I), act, ffn_output (I -> H), post-LN."""

    def __init__(self, config: AlbertConfig):
        super().__init__()
        self.full_layer_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = AlbertAttention(config)
        self.ffn = nn.Linear(config.hidden_size, config.intermediate_size)
        self.ffn_output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.activation = Activation(config.hidden_act)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x, mask=None):
        a, weights = self.attention(x, mask)  # (B, T, H)
        y = self.ffn_output(self.activation(self.ffn(a)))  # (B, T, H) through (B, T, I)
        return self.full_layer_layer_norm(y + a), weights  # (B, T, H)


class AlbertLayerGroup(nn.Module):
    def __init__(self, config: AlbertConfig):
        super().__init__()
        self.albert_layers = nn.ModuleList(AlbertLayer(config) for _ in range(config.inner_group_num))


class AlbertTransformer(nn.Module):
    """The projection E -> H and the layer groups; `forward` is the backbone's loop (AlbertModel.forward)."""

    def __init__(self, config: AlbertConfig):
        super().__init__()
        self.embedding_hidden_mapping_in = nn.Linear(config.embedding_size, config.hidden_size)
        self.albert_layer_groups = nn.ModuleList(AlbertLayerGroup(config) for _ in range(config.num_hidden_groups))

    def layers(self, config: AlbertConfig):
        """The layers in the order they run: step i uses group int(i / (num_hidden_layers / num_hidden_groups))."""
        for i in range(config.num_hidden_layers):
            group = self.albert_layer_groups[int(i / (config.num_hidden_layers / config.num_hidden_groups))]
            yield from group.albert_layers


class AlbertPreTrainedModel(PreTrainedModel):
    """Shared base of the ALBERT classes: config, checkpoint prefix `albert`, the reference's init."""

    config_class = AlbertConfig
    base_model_prefix = "albert"
    supports_gradient_checkpointing = True  # per layer run (the reference has no checkpointing for ALBERT)
    _no_split_modules = ["AlbertEmbeddings", "AlbertTransformer"]  # the groups are reused across the loop

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)  # normal(0, initializer_range) for Linear/Embedding, LayerNorm 1/0
        if isinstance(module, AlbertMLMHead):
            module.bias.data.zero_()

    def get_output_embeddings(self) -> nn.Module | None:
        predictions = getattr(self, "predictions", None)
        return predictions.decoder if predictions is not None else None

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.predictions.decoder = new_embeddings
        self.predictions.bias = new_embeddings.bias


class AlbertModel(WordEmbeddingsMixin, AlbertPreTrainedModel):
    """The bare encoder: last hidden states and (with `add_pooling_layer`) tanh(pooler(h[:, 0]))."""

    def __init__(self, config: AlbertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = AlbertEmbeddings(config)
        self.encoder = AlbertTransformer(config)
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size) if add_pooling_layer else None
        self.pooler_activation = nn.Tanh() if add_pooling_layer else None
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, output_attentions=None, output_hidden_states=None, return_dict=None):
        """input_ids (B, T) or inputs_embeds (B, T, E); attention_mask (B, T), 1 = token, 0 = padding;
        token_type_ids (B, T) default 0; position_ids default 0..T-1."""
        config = self.config
        output_attentions, output_hidden_states, return_dict = encoder_options(
            config, input_ids, inputs_embeds, output_attentions, output_hidden_states, return_dict)
        check_mask(attention_mask)
        e = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # (B, T, E)
        x = self.encoder.embedding_hidden_mapping_in(e)  # (B, T, H)
        B, T, _ = x.shape
        # (B, 1, T, T) bool, True = attend (padding keys hidden); None when there is no padding
        padding = None if attention_mask is None else attention_mask.to(x.device, torch.bool)
        mask = build_mask(padding, B, T, 0, causal=False, device=x.device)
        warn_no_weights(config, output_attentions)
        hidden_states, attentions = [x], []
        for layer in self.encoder.layers(config):
            x, weights = self.run_layer(layer, x, mask)  # (B, T, H)
            hidden_states.append(x)
            attentions += [weights] if weights is not None else []
        pooled = self.pooler_activation(self.pooler(x[:, 0])) if self.pooler is not None else None  # (B, H)
        out = BaseModelOutputWithPooling(last_hidden_state=x, pooler_output=pooled,
                                         hidden_states=tuple(hidden_states) if output_hidden_states else None,
                                         attentions=tuple(attentions) if output_attentions else None)
        return finish(config, out, return_dict)


class AlbertMLMHead(nn.Module):
    """dense (H -> E), act, LayerNorm, then `decoder` (E -> V) tied to the word embeddings, its bias to `bias`."""

    def __init__(self, config: AlbertConfig):
        super().__init__()
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.dense = nn.Linear(config.hidden_size, config.embedding_size)
        self.decoder = nn.Linear(config.embedding_size, config.vocab_size)
        self.activation = Activation(config.hidden_act)

    def forward(self, h):
        return self.decoder(self.LayerNorm(self.activation(self.dense(h))))  # (B, T, V) through (B, T, E)


class AlbertSOPHead(nn.Module):
    """Sentence-order prediction: dropout then a Linear over the pooled output (label 0 = A then B)."""

    def __init__(self, config: AlbertConfig):
        super().__init__()
        self.dropout = nn.Dropout(config.classifier_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, pooled):
        return self.classifier(self.dropout(pooled))  # (B, num_labels)


def _backbone(model, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, output_attentions,
              output_hidden_states):
    return model.albert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                        output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                        return_dict=True)


class AlbertForPreTraining(AlbertPreTrainedModel):
    """Both pre-training heads: masked LM (`predictions`) and sentence-order prediction (`sop_classifier`). The
    loss (with both `labels` and `sentence_order_label`) is their sum."""

    _tied_weights_keys = {"predictions.decoder.weight": "albert.embeddings.word_embeddings.weight",
                          "predictions.decoder.bias": "predictions.bias"}

    def __init__(self, config: AlbertConfig):
        super().__init__(config)
        self.albert = AlbertModel(config)
        self.predictions = AlbertMLMHead(config)
        self.sop_classifier = AlbertSOPHead(config)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, sentence_order_label=None, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        out = _backbone(self, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                        output_attentions, output_hidden_states)
        logits = self.predictions(out.last_hidden_state)  # (B, T, V)
        sop_logits = self.sop_classifier(out.pooler_output)  # (B, 2)
        loss = None
        if labels is not None and sentence_order_label is not None:
            loss = cross_entropy(logits, labels) + cross_entropy(sop_logits, sentence_order_label)
        return finish(self.config, AlbertForPreTrainingOutput(
            loss=loss, prediction_logits=logits, sop_logits=sop_logits, hidden_states=out.hidden_states,
            attentions=out.attentions), return_dict)


class AlbertForMaskedLM(AlbertPreTrainedModel):
    """Masked-token prediction over the vocabulary at every position; cross entropy with -100 ignored."""

    _tied_weights_keys = AlbertForPreTraining._tied_weights_keys

    def __init__(self, config: AlbertConfig):
        super().__init__(config)
        self.albert = AlbertModel(config, add_pooling_layer=False)
        self.predictions = AlbertMLMHead(config)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None,
                return_dict=None):
        out = _backbone(self, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                        output_attentions, output_hidden_states)
        logits = self.predictions(out.last_hidden_state)  # (B, T, V)
        loss = cross_entropy(logits, labels) if labels is not None else None
        return head_output(self.config, MaskedLMOutput, loss, logits, out, return_dict)


class _AlbertClassifier(AlbertPreTrainedModel):
    """dropout (classifier_dropout_prob) and a Linear `classifier` over the pooled output (or every token's
    state); subclasses name the output class and the loss."""

    pooled = True  # classify the pooled [CLS] state (else every token's state)
    choices = False  # inputs (B, C, T): each choice encoded on its own, the C scores compete in a softmax
    output_class = SequenceClassifierOutput

    def __init__(self, config: AlbertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.albert = AlbertModel(config, add_pooling_layer=self.pooled)
        p = config.classifier_dropout_prob
        self.dropout = nn.Dropout(p if p is not None else config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, 1 if self.choices else config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None,
                return_dict=None):
        C = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        out = _backbone(self, *flat_choices(self.choices, input_ids, attention_mask, token_type_ids, position_ids,
                                            inputs_embeds), output_attentions, output_hidden_states)
        h = out.pooler_output if self.pooled else out.last_hidden_state  # (B, H) or (B, T, H)
        logits = self.classifier(self.dropout(h))  # (B, labels), (B, T, labels) or (B*C, 1)
        if self.choices:
            logits = logits.view(-1, C)  # (B, C)
        loss = None if labels is None else self._loss(logits, labels)
        return head_output(self.config, self.output_class, loss, logits, out, return_dict)

    def _loss(self, logits, labels):
        return cross_entropy(logits, labels)


class AlbertForSequenceClassification(_AlbertClassifier):
    """One label per sequence from the pooled output; the loss follows `config.problem_type` (regression MSE,
    single-label cross entropy, multi-label BCE-with-logits; set from the labels when None)."""

    def _loss(self, logits, labels):
        return sequence_classification_loss(self.config, logits, labels)


class AlbertForTokenClassification(_AlbertClassifier):
    """One label per token (NER, tagging); cross entropy with -100 ignored."""

    pooled = False
    output_class = TokenClassifierOutput


class AlbertForMultipleChoice(_AlbertClassifier):
    """Inputs (B, C, T): each choice encoded on its own, scored by a Linear(H, 1) on its pooled output."""

    choices = True
    output_class = MultipleChoiceModelOutput


class AlbertForQuestionAnswering(AlbertPreTrainedModel):
    """Extractive QA: `qa_outputs` gives each token a start and an end logit; the loss is the mean of the start
    and end cross entropies, positions outside the sequence clamped to T and ignored."""

    def __init__(self, config: AlbertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.albert = AlbertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, start_positions=None, end_positions=None, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        out = _backbone(self, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                        output_attentions, output_hidden_states)
        logits = self.qa_outputs(out.last_hidden_state)  # (B, T, 2)
        return finish(self.config, span_output(logits, start_positions, end_positions, out), return_dict)
