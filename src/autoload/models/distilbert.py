"""DistilBERT (model_type "distilbert"): a 6-layer BERT distilled from BERT-base, with its own key names.

embeddings: word + position (learned, or sinusoidal at init with `sinusoidal_pos_embds`) -> LayerNorm -> dropout;
            no token types
layer:      x = sa_layer_norm(x + out_lin(SelfAttention(x)));  x = output_layer_norm(x + lin2(act(lin1(x))))
heads:      MLM vocab_transform, act, vocab_layer_norm, vocab_projector tied to the word embeddings; classifiers
            on h[:, 0] through pre_classifier + ReLU; token classifier; qa_outputs.

Module names are the checkpoint keys (`distilbert.transformer.layer.0.attention.q_lin.weight`, `ffn.lin1`,
`vocab_projector`). Attention runs through SDPA; `config._attn_implementation == "eager"` computes the weights,
the only way `output_attentions=True` returns them (with SDPA they are an empty tuple, as the reference).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling import PreTrainedModel
from ..nn.activations import Activation
from ..nn.attention import attention, is_eager
from ..nn.encoder import WordEmbeddingsMixin, encoder_options
from ..nn.heads import finish, flat_choices, head_output, span_output
from ..nn.losses import cross_entropy, sequence_classification_loss
from ..nn.masks import attention_mask as build_mask
from ..nn.outputs import (BaseModelOutput, MaskedLMOutput, MultipleChoiceModelOutput, SequenceClassifierOutput,
                          TokenClassifierOutput)
from .configs import DistilBertConfig


def sinusoidal_positions(n_pos: int, dim: int) -> torch.Tensor:
    """(n_pos, dim) fixed encodings: even columns sin(pos / 10000^(2i/dim)), odd columns the cos of the same angle
    (column j uses i = j // 2), computed in float64 as the reference does with numpy."""
    j = torch.arange(dim, dtype=torch.float64)
    angles = torch.arange(n_pos, dtype=torch.float64)[:, None] / torch.pow(10000.0, 2 * (j // 2) / dim)  # (P, D)
    out = torch.empty(n_pos, dim)
    out[:, 0::2] = torch.sin(angles[:, 0::2]).float()
    out[:, 1::2] = torch.cos(angles[:, 1::2]).float()
    return out


class Embeddings(nn.Module):
    """Word + absolute position embeddings, LayerNorm (eps 1e-12) and dropout."""

    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.dim, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.dim)
        self.LayerNorm = nn.LayerNorm(config.dim, eps=1e-12)
        self.dropout = nn.Dropout(config.dropout)
        positions = torch.arange(config.max_position_embeddings, dtype=torch.long)[None]  # (1, P)
        self.register_buffer("position_ids", positions, persistent=False)

    def forward(self, input_ids=None, inputs_embeds=None, position_ids=None):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (B, T, D)
        if position_ids is None:
            position_ids = self.position_ids[:, :inputs_embeds.shape[1]]  # (1, T)
        x = inputs_embeds + self.position_embeddings(position_ids)  # (B, T, D)
        return self.dropout(self.LayerNorm(x))


class DistilBertSelfAttention(nn.Module):
    """Multi-head self-attention: q_lin, k_lin, v_lin, then out_lin (all with bias)."""

    def __init__(self, config: DistilBertConfig):
        super().__init__()
        if config.dim % config.n_heads:
            raise ValueError(f"n_heads {config.n_heads} must divide dim {config.dim} evenly.")
        self.config = config  # read at each call: config._attn_implementation may change after loading
        self.n_heads, self.head_dim = config.n_heads, config.dim // config.n_heads
        self.q_lin = nn.Linear(config.dim, config.dim)
        self.k_lin = nn.Linear(config.dim, config.dim)
        self.v_lin = nn.Linear(config.dim, config.dim)
        self.out_lin = nn.Linear(config.dim, config.dim)
        self.dropout = nn.Dropout(config.attention_dropout)

    def forward(self, x, mask=None):
        B, T, D = x.shape

        def split_heads(t):  # (B, T, D) -> (B, nh, T, hs)
            return t.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)

        q, k, v = split_heads(self.q_lin(x)), split_heads(self.k_lin(x)), split_heads(self.v_lin(x))
        eager = is_eager(self.config)
        y, weights = attention(q, k, v, mask, eager=eager, softmax_fp32=False,
                               dropout=self.dropout.p if self.training else 0.0)  # (B, nh, T, hs)
        return self.out_lin(y.transpose(1, 2).reshape(B, T, D)), weights  # (B, T, D)


class FFN(nn.Module):
    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.dropout = nn.Dropout(config.dropout)
        self.lin1 = nn.Linear(config.dim, config.hidden_dim)
        self.lin2 = nn.Linear(config.hidden_dim, config.dim)
        self.activation = Activation(config.activation)

    def forward(self, x):
        return self.dropout(self.lin2(self.activation(self.lin1(x))))  # (B, T, D)


class TransformerBlock(nn.Module):
    """Post-LN block: attention then feed-forward, each added to its input and LayerNorm-ed (no dropout on the
    attention output, as the reference)."""

    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.attention = DistilBertSelfAttention(config)
        self.sa_layer_norm = nn.LayerNorm(config.dim, eps=1e-12)
        self.ffn = FFN(config)
        self.output_layer_norm = nn.LayerNorm(config.dim, eps=1e-12)

    def forward(self, x, mask=None):
        y, weights = self.attention(x, mask)
        x = self.sa_layer_norm(y + x)  # (B, T, D)
        return self.output_layer_norm(self.ffn(x) + x), weights  # (B, T, D)


class DistilBertPreTrainedModel(PreTrainedModel):
    """Shared base: config, checkpoint prefix `distilbert`, the reference's init (sinusoidal positions when set)."""

    config_class = DistilBertConfig
    base_model_prefix = "distilbert"
    supports_gradient_checkpointing = True
    _no_split_modules = ["Embeddings", "TransformerBlock"]

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)  # normal(0, initializer_range) for Linear/Embedding, LayerNorm 1/0
        if isinstance(module, Embeddings) and self.config.sinusoidal_pos_embds:
            weight = module.position_embeddings.weight
            weight.data.copy_(sinusoidal_positions(*weight.shape))


class DistilBertModel(WordEmbeddingsMixin, DistilBertPreTrainedModel):
    """The bare encoder: last hidden states (B, T, dim), no pooler."""

    def __init__(self, config: DistilBertConfig):
        super().__init__(config)
        self.embeddings = Embeddings(config)
        self.transformer = nn.Module()  # checkpoint keys `transformer.layer.N...`
        self.transformer.layer = nn.ModuleList(TransformerBlock(config) for _ in range(config.n_layers))
        self.post_init()

    def get_position_embeddings(self) -> nn.Embedding:
        return self.embeddings.position_embeddings

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, position_ids=None,
                output_attentions=None, output_hidden_states=None, return_dict=None):
        """input_ids (B, T) or inputs_embeds (B, T, dim); attention_mask (B, T), 1 = token, 0 = padding."""
        config = self.config
        output_attentions, output_hidden_states, return_dict = encoder_options(
            config, input_ids, inputs_embeds, output_attentions, output_hidden_states, return_dict)
        x = self.embeddings(input_ids, inputs_embeds, position_ids)  # (B, T, D)
        B, T, _ = x.shape
        padding = None if attention_mask is None else attention_mask.to(x.device, torch.bool)  # (B, T)
        mask = build_mask(padding, B, T, causal=False, device=x.device)  # (B, 1, T, T) or None
        hidden_states, attentions = [x], []
        for layer in self.transformer.layer:
            x, weights = self.run_layer(layer, x, mask)  # (B, T, D)
            hidden_states.append(x)
            attentions += [weights] if weights is not None else []
        return finish(config, BaseModelOutput(
            last_hidden_state=x, hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None), return_dict)


class DistilBertForMaskedLM(DistilBertPreTrainedModel):
    """Masked-token prediction: vocab_transform, activation, vocab_layer_norm, then vocab_projector (its weight
    tied to the word embeddings, its bias its own)."""

    _tied_weights_keys = {"vocab_projector.weight": "distilbert.embeddings.word_embeddings.weight"}

    def __init__(self, config: DistilBertConfig):
        super().__init__(config)
        self.activation = Activation(config.activation)
        self.distilbert = DistilBertModel(config)
        self.vocab_transform = nn.Linear(config.dim, config.dim)
        self.vocab_layer_norm = nn.LayerNorm(config.dim, eps=1e-12)
        self.vocab_projector = nn.Linear(config.dim, config.vocab_size)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.vocab_projector

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.vocab_projector = new_embeddings

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None, position_ids=None,
                output_attentions=None, output_hidden_states=None, return_dict=None):
        out = self.distilbert(input_ids, attention_mask, inputs_embeds, position_ids, output_attentions,
                              output_hidden_states, return_dict=True)
        x = self.vocab_layer_norm(self.activation(self.vocab_transform(out.last_hidden_state)))  # (B, T, D)
        logits = self.vocab_projector(x)  # (B, T, V)
        loss = cross_entropy(logits, labels) if labels is not None else None
        return head_output(self.config, MaskedLMOutput, loss, logits, out, return_dict)


class _DistilBertClassifier(DistilBertPreTrainedModel):
    """A classifier over the first token's state (pre_classifier, ReLU, dropout `seq_classif_dropout`, classifier)
    or, for token classification, over every token's state (dropout `dropout`, classifier)."""

    per_token = False
    choices = False  # inputs (B, C, T): each choice encoded on its own, the C scores compete in a softmax
    output_class = SequenceClassifierOutput

    def __init__(self, config: DistilBertConfig):
        super().__init__(config)
        self.distilbert = DistilBertModel(config)
        if self.per_token:
            self.dropout = nn.Dropout(config.dropout)
        else:
            self.pre_classifier = nn.Linear(config.dim, config.dim)
        self.classifier = nn.Linear(config.dim, 1 if self.choices else config.num_labels)
        if not self.per_token:
            self.dropout = nn.Dropout(config.seq_classif_dropout)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None, position_ids=None,
                output_attentions=None, output_hidden_states=None, return_dict=None):
        C = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        out = self.distilbert(*flat_choices(self.choices, input_ids, attention_mask, inputs_embeds, position_ids),
                              output_attentions, output_hidden_states, return_dict=True)
        h = out.last_hidden_state  # (B, T, D)
        if self.per_token:
            logits = self.classifier(self.dropout(h))  # (B, T, labels)
        else:
            pooled = self.dropout(F.relu(self.pre_classifier(h[:, 0])))  # (B, D)
            logits = self.classifier(pooled)  # (B, labels) or (B*C, 1)
        if self.choices:
            logits = logits.view(-1, C)  # (B, C)
        loss = None if labels is None else self._loss(logits, labels)
        return head_output(self.config, self.output_class, loss, logits, out, return_dict)

    def _loss(self, logits, labels):
        return cross_entropy(logits, labels)


class DistilBertForSequenceClassification(_DistilBertClassifier):
    """One label per sequence; the loss follows `config.problem_type` (regression, single- or multi-label)."""

    def _loss(self, logits, labels):
        return sequence_classification_loss(self.config, logits, labels)


class DistilBertForTokenClassification(_DistilBertClassifier):
    """One label per token; cross entropy with -100 ignored."""

    per_token = True
    output_class = TokenClassifierOutput


class DistilBertForMultipleChoice(_DistilBertClassifier):
    """Inputs (B, C, T): each choice scored by pre_classifier, ReLU, classifier (dim -> 1) on its first token."""

    choices = True
    output_class = MultipleChoiceModelOutput


class DistilBertForQuestionAnswering(DistilBertPreTrainedModel):
    """Extractive QA: dropout `qa_dropout`, then `qa_outputs` gives each token a start and an end logit."""

    def __init__(self, config: DistilBertConfig):
        super().__init__(config)
        self.distilbert = DistilBertModel(config)
        self.qa_outputs = nn.Linear(config.dim, config.num_labels)
        if config.num_labels != 2:
            raise ValueError(f"config.num_labels should be 2, but it is {config.num_labels}")
        self.dropout = nn.Dropout(config.qa_dropout)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, start_positions=None,
                end_positions=None, position_ids=None, output_attentions=None, output_hidden_states=None,
                return_dict=None):
        out = self.distilbert(input_ids, attention_mask, inputs_embeds, position_ids, output_attentions,
                              output_hidden_states, return_dict=True)
        logits = self.qa_outputs(self.dropout(out.last_hidden_state))  # (B, T, 2)
        return finish(self.config, span_output(logits, start_positions, end_positions, out), return_dict)
