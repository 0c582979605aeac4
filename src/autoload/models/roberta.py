"""RoBERTa (model_types "roberta", "xlm-roberta", "camembert"): BERT's post-LayerNorm encoder with fairseq positions.

embeddings: word + token_type + position -> LayerNorm -> dropout; a token's position is padding_idx + its rank
            among the row's non-pad tokens (pads at padding_idx, the zero row); from inputs_embeds padding_idx+1..
layer:      BERT's (nn.encoder): causal with a KV cache when config.is_decoder, cross-attention with add_cross_attention
heads:      lm_head dense -> gelu -> layer_norm -> decoder (tied to the word embeddings); the sentence classifier
            dense -> tanh -> out_proj on the <s> state; multiple choice on the pooler; token and span heads per token.

Module names are the checkpoint keys (`roberta.encoder.layer.0.attention.self.query.weight`, `lm_head.layer_norm.bias`,
`classifier.out_proj.weight`). XLM-RoBERTa and CamemBERT are thin classes at the end, with their configs; their heads
are built before `roberta`, as the reference's, so that a seeded build draws the same numbers.
"""

from __future__ import annotations

import torch
from torch import nn

from ..generation.mixin import GenerationMixin
from ..modeling import PreTrainedModel
from ..nn.activations import get_activation
from ..nn.encoder import EncoderLayer, WordEmbeddingsMixin, decoder_cache, encoder_options, run_stack, unpad_of
from ..nn.heads import causal_lm_output, finish, flat_choices, head_output, keep_positions, span_output
from ..nn.losses import cross_entropy, sequence_classification_loss
from ..nn.outputs import (BaseModelOutputWithPoolingAndCrossAttentions, CausalLMOutputWithCrossAttentions,
                          MaskedLMOutput, MultipleChoiceModelOutput, SequenceClassifierOutput, TokenClassifierOutput)
from .configs import CamembertConfig, RobertaConfig, XLMRobertaConfig


class RobertaEmbeddings(nn.Module):
    def __init__(self, config: RobertaConfig):
        super().__init__()  # built in the reference's order: a seeded build draws the same numbers
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        positions = torch.arange(config.max_position_embeddings, dtype=torch.long)[None]  # (1, P)
        self.register_buffer("position_ids", positions, persistent=False)
        self.register_buffer("token_type_ids", torch.zeros_like(positions), persistent=False)
        self.padding_idx = config.pad_token_id
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size,
                                                padding_idx=self.padding_idx)

    def forward(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None, past_length=0):
        B, T = input_ids.shape if input_ids is not None else inputs_embeds.shape[:2]
        device = (input_ids if input_ids is not None else inputs_embeds).device
        if position_ids is None and input_ids is not None:
            # fairseq's make_positions: pads stay at padding_idx, tokens count padding_idx+1.. (+ cached length)
            real = input_ids.ne(self.padding_idx).int()  # (B, T)
            position_ids = ((real.cumsum(1).int() + past_length) * real).long() + self.padding_idx  # (B, T)
        elif position_ids is None:  # embeddings: no padding to see, positions in order (the cache is not counted)
            p = self.padding_idx
            position_ids = torch.arange(p + 1, p + 1 + T, dtype=torch.long, device=device)[None].expand(B, T)
        if token_type_ids is None:
            token_type_ids = torch.zeros(B, T, dtype=torch.long, device=device)  # (B, T) all segment 0
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (B, T, H)
        x = inputs_embeds + self.token_type_embeddings(token_type_ids)  # (B, T, H)
        x = x + self.position_embeddings(position_ids)  # (B, T, H)
        return self.dropout(self.LayerNorm(x))


class RobertaLayer(EncoderLayer):
    """BERT's post-LN layer (nn.encoder) under the reference's name (for _no_split_modules)."""


class RobertaLMHead(nn.Module):
    """dense -> gelu -> layer_norm -> decoder; the decoder's bias is the `bias` parameter (`lm_head.bias`)."""

    def __init__(self, config: RobertaConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.gelu = get_activation("gelu")  # always the exact gelu, whatever hidden_act says

    def forward(self, hidden_states):
        return self.decoder(self.layer_norm(self.gelu(self.dense(hidden_states))))  # (B, T, V)


class RobertaClassificationHead(nn.Module):
    """out_proj(dropout(tanh(dense(dropout(h[:, 0]))))): the <s> token's state to num_labels scores."""

    def __init__(self, config: RobertaConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, hidden_states):
        x = torch.tanh(self.dense(self.dropout(hidden_states[:, 0])))  # (B, H)
        return self.out_proj(self.dropout(x))  # (B, labels)


class RobertaPreTrainedModel(PreTrainedModel):
    config_class = RobertaConfig
    base_model_prefix = "roberta"
    supports_gradient_checkpointing = True
    _no_split_modules = ["RobertaEmbeddings", "RobertaLayer"]

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)  # normal(0, initializer_range) for Linear/Embedding, padding rows 0, LN 1/0
        if isinstance(module, RobertaLMHead):
            module.bias.data.zero_()


class RobertaModel(WordEmbeddingsMixin, RobertaPreTrainedModel):
    """The bare encoder: last hidden states and (with `add_pooling_layer`) tanh(Dense(h[:, 0])) as pooler_output."""

    def __init__(self, config: RobertaConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = RobertaEmbeddings(config)
        self.encoder = nn.Module()  # checkpoint keys `encoder.layer.N...`
        self.encoder.layer = nn.ModuleList(RobertaLayer(config, i) for i in range(config.num_hidden_layers))
        self.pooler = None
        if add_pooling_layer:
            self.pooler = nn.Module()
            self.pooler.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, encoder_hidden_states=None, encoder_attention_mask=None, past_key_values=None,
                use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None, cache=None,
                unpad: bool | None = None):
        """input_ids (B, T) or inputs_embeds (B, T, H); attention_mask (B, past+T), 1 = token, 0 = padding;
        token_type_ids (B, T) default 0; position_ids default from input_ids (see the module docstring). `cache` is
        an alias of `past_key_values` (used only when config.is_decoder)."""
        config = self.config
        output_attentions, output_hidden_states, return_dict = encoder_options(
            config, input_ids, inputs_embeds, output_attentions, output_hidden_states, return_dict)
        cache, use_cache, past = decoder_cache(self, past_key_values, cache, use_cache)
        x = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds, past)  # (B, T, H)
        x, hidden_states, attentions, cross_attentions = run_stack(
            self, self.encoder.layer, x, attention_mask, past=past, cache=cache, causal=config.is_decoder,
            encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask,
            output_attentions=output_attentions, unpad=unpad_of(config, unpad))  # (B, T, H)
        pooled = torch.tanh(self.pooler.dense(x[:, 0])) if self.pooler is not None else None  # (B, H)

        out = BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=x, pooler_output=pooled,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            past_key_values=cache if use_cache else None,
            attentions=tuple(attentions) if output_attentions else None,
            cross_attentions=tuple(cross_attentions) if output_attentions else None)
        return out if return_dict else out.to_tuple()


class _RobertaHead(RobertaPreTrainedModel):
    """`roberta` and the task head that `build_head` makes, in the reference's order, then the init."""

    head_first = False  # XLM-RoBERTa and CamemBERT build the head before `roberta` (a seeded build's draws)
    pooled = False  # the head reads the pooler (multiple choice)

    def __init__(self, config: RobertaConfig):
        super().__init__(config)
        if self.head_first:
            self.build_head(config)
        self.roberta = RobertaModel(config, add_pooling_layer=self.pooled)
        if not self.head_first:
            self.build_head(config)
        self.post_init()


class _RobertaWithLMHead(_RobertaHead):
    """`roberta` (no pooler) and `lm_head`, whose decoder is tied to the word embeddings."""

    _tied_weights_keys = {"lm_head.decoder.weight": "roberta.embeddings.word_embeddings.weight",
                          "lm_head.decoder.bias": "lm_head.bias"}

    def build_head(self, config):
        self.lm_head = RobertaLMHead(config)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head.decoder = new_embeddings
        self.lm_head.bias = new_embeddings.bias


class RobertaForCausalLM(GenerationMixin, _RobertaWithLMHead):
    """Left-to-right language model (meant for is_decoder=True): causal self-attention, a KV cache, next-token loss."""

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, encoder_hidden_states=None, encoder_attention_mask=None, labels=None,
                past_key_values=None, use_cache=None, logits_to_keep=0, output_attentions=None,
                output_hidden_states=None, return_dict=None, cache=None):
        """labels (B, T): token ids, shifted here so position t predicts labels[t + 1]; -100 is ignored.
        logits_to_keep: an int n computes logits for the last n positions only (0 = all), or a tensor of indices."""
        out = self.roberta(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                           encoder_hidden_states, encoder_attention_mask, past_key_values,
                           False if labels is not None else use_cache, output_attentions, output_hidden_states,
                           return_dict=True, cache=cache)
        logits = self.lm_head(keep_positions(out.last_hidden_state, logits_to_keep))  # (B, T', V)
        return finish(self.config, causal_lm_output(logits, labels, None, out, CausalLMOutputWithCrossAttentions,
                                                    cross_attentions=out.cross_attentions), return_dict)


class RobertaForMaskedLM(_RobertaWithLMHead):
    """Masked-token prediction over the vocabulary at every position; cross entropy with -100 ignored."""

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, encoder_hidden_states=None, encoder_attention_mask=None, labels=None,
                output_attentions=None, output_hidden_states=None, return_dict=None):
        out = self.roberta(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                           encoder_hidden_states, encoder_attention_mask, output_attentions=output_attentions,
                           output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.lm_head(out.last_hidden_state)  # (B, T, V)
        loss = cross_entropy(logits, labels) if labels is not None else None
        return head_output(self.config, MaskedLMOutput, loss, logits, out, return_dict)


class _RobertaClassifier(_RobertaHead):
    """`roberta` and a `classifier`; subclasses say what it reads (the <s> state through the classification head,
    every token, or each choice's pooled state), the output class and the loss."""

    output_class, choices = SequenceClassifierOutput, False

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None,
                return_dict=None):
        C = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        out = self.roberta(*flat_choices(self.choices, input_ids, attention_mask, token_type_ids, position_ids,
                                         inputs_embeds), output_attentions=output_attentions,
                           output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.head(out)  # (B, labels), (B, T, labels) or (B*C, 1)
        if self.choices:
            logits = logits.view(-1, C)  # (B, C)
        loss = None if labels is None else self._loss(logits, labels)
        return head_output(self.config, self.output_class, loss, logits, out, return_dict)

    def _loss(self, logits, labels):
        return cross_entropy(logits, labels)


class RobertaForSequenceClassification(_RobertaClassifier):
    """One label per sequence from the <s> state; MSE for num_labels == 1 (a cross-encoder's relevance score),
    cross entropy for integer labels, else multi-label BCE-with-logits (config.problem_type, set from the labels)."""

    def build_head(self, config):
        self.classifier = RobertaClassificationHead(config)

    def head(self, out):
        return self.classifier(out.last_hidden_state)  # (B, labels)

    def _loss(self, logits, labels):
        return sequence_classification_loss(self.config, logits, labels)


class RobertaForTokenClassification(_RobertaClassifier):
    """One label per token (NER, tagging); cross entropy with -100 ignored."""

    output_class = TokenClassifierOutput

    def build_head(self, config):
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def head(self, out):
        return self.classifier(self.dropout(out.last_hidden_state))  # (B, T, labels)


class RobertaForMultipleChoice(_RobertaClassifier):
    """Inputs (B, C, T): each choice encoded on its own, scored by Linear(H, 1) on its pooled state; the C scores
    compete in a softmax."""

    output_class, choices, pooled = MultipleChoiceModelOutput, True, True

    def build_head(self, config):
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, 1)

    def head(self, out):
        return self.classifier(self.dropout(out.pooler_output))  # (B*C, 1)

    def forward(self, input_ids=None, token_type_ids=None, attention_mask=None, labels=None, position_ids=None,
                inputs_embeds=None, output_attentions=None, output_hidden_states=None, return_dict=None):
        return super().forward(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, labels,
                               output_attentions, output_hidden_states, return_dict)  # the reference's order


class RobertaForQuestionAnswering(_RobertaHead):
    """Extractive QA: `qa_outputs` gives each token a start and an end logit; the loss is the mean of the two cross
    entropies, positions outside the sequence clamped to T and ignored."""

    def build_head(self, config):
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, start_positions=None, end_positions=None, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        out = self.roberta(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                           output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                           return_dict=True)
        logits = self.qa_outputs(out.last_hidden_state)  # (B, T, 2)
        return finish(self.config, span_output(logits, start_positions, end_positions, out), return_dict)


# -- XLM-RoBERTa and CamemBERT: the same classes under their own names and configs ---------------------------------

class XLMRobertaModel(RobertaModel):
    config_class = XLMRobertaConfig


class XLMRobertaForCausalLM(RobertaForCausalLM):
    config_class, head_first = XLMRobertaConfig, True


class XLMRobertaForMaskedLM(RobertaForMaskedLM):
    config_class, head_first = XLMRobertaConfig, True


class XLMRobertaForSequenceClassification(RobertaForSequenceClassification):
    config_class, head_first = XLMRobertaConfig, True


class XLMRobertaForTokenClassification(RobertaForTokenClassification):
    config_class, head_first = XLMRobertaConfig, True


class XLMRobertaForQuestionAnswering(RobertaForQuestionAnswering):
    config_class, head_first = XLMRobertaConfig, True


class XLMRobertaForMultipleChoice(RobertaForMultipleChoice):
    config_class, head_first = XLMRobertaConfig, True


class CamembertModel(RobertaModel):
    config_class = CamembertConfig


class CamembertForCausalLM(RobertaForCausalLM):
    config_class, head_first = CamembertConfig, True


class CamembertForMaskedLM(RobertaForMaskedLM):
    config_class, head_first = CamembertConfig, True


class CamembertForSequenceClassification(RobertaForSequenceClassification):
    config_class, head_first = CamembertConfig, True


class CamembertForTokenClassification(RobertaForTokenClassification):
    config_class, head_first = CamembertConfig, True


class CamembertForQuestionAnswering(RobertaForQuestionAnswering):
    config_class, head_first = CamembertConfig, True


class CamembertForMultipleChoice(RobertaForMultipleChoice):
    config_class, head_first = CamembertConfig, True
