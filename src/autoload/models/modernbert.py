"""ModernBERT (model_type "modernbert"): a pre-norm encoder with rotary positions, GeGLU and alternating global /
local attention.

embeddings: tok_embeddings -> LayerNorm -> dropout (no position embeddings: RoPE in every attention)
layer:      x = x + Wo(Attn(attn_norm(x)));  x = x + Wo(gelu(a) * g), [a, g] = Wi(mlp_norm(x))  (attn_norm: Identity
            in layer 0, whose input is already normed); then final_norm.
attention:  fused Wqkv; "full_attention" layers see every token with RoPE theta rope_parameters["full_attention"];
            "sliding_attention" layers see |i - j| <= local_attention // 2 with their own theta.
heads:      `head` (Dense, act, LayerNorm) before the MLM `decoder` (tied to tok_embeddings) or the classifiers;
            sequence classification pools "cls" (position 0) or "mean" (over the attention mask).

Two paths with the same results at the real tokens:
- padded (default): (B, T) batches, padding hidden by the mask, as transformers 5 does with sdpa / eager;
- unpadded (`config.unpad_inputs = True`, a plain attribute read at each forward; used when the attention mask
  has padding): the real tokens of all rows are concatenated into one (1, N, H) stream, as the reference's
  flash-attention path did; each row's tokens attend only among themselves (one SDPA call per row), its RoPE
  positions are those of the padded row, and its window counts that row's tokens. Outputs are padded back to
  (B, T, ...) with zeros at the padding (attention weights too). Equal to the padded path for left or right
  padding; it saves the work on padding tokens.
Attention runs through SDPA; `config._attn_implementation == "eager"` computes the weights explicitly, the only
way `output_attentions=True` returns them (with SDPA they are an empty tuple, as in transformers 5).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from torch import nn

from ..modeling import PreTrainedModel
from ..nn.activations import Activation
from ..nn.attention import attention, is_eager
from ..nn.encoder import encoder_options, unpad_of
from ..nn.heads import finish, flat_choices, head_output, span_output
from ..nn.losses import cross_entropy, sequence_classification_loss
from ..nn.outputs import (BaseModelOutput, MaskedLMOutput, MultipleChoiceModelOutput, SequenceClassifierOutput,
                          TokenClassifierOutput)
from ..nn.rope import RotaryEmbedding, apply_rotary
from .configs import ModernBertConfig

LAYER_TYPES = ("full_attention", "sliding_attention")


def layer_norm(config: ModernBertConfig) -> nn.LayerNorm:
    return nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)


def window_mask(padding: torch.Tensor | None, batch: int, length: int, window: int | None,
                device) -> torch.Tensor | None:
    """(B, 1, T, T) bool, True = attend: key j is a token (`padding` (B, T) bool, True = token) and, with a
    `window`, |i - j| <= window (bidirectional). None when nothing is hidden."""
    banded = window is not None and length - 1 > window
    if not banded and (padding is None or bool(padding.all())):
        return None
    allowed = torch.ones(length, length, dtype=torch.bool, device=device)  # (T, T)
    if banded:
        i = torch.arange(length, device=device)
        allowed = (i[:, None] - i[None, :]).abs() <= window
    allowed = allowed[None, None].expand(batch, 1, length, length)  # (B, 1, T, T)
    return allowed & padding[:, None, None, :] if padding is not None else allowed


class ModernBertEmbeddings(nn.Module):
    def __init__(self, config: ModernBertConfig):
        super().__init__()
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.norm = layer_norm(config)
        self.drop = nn.Dropout(config.embedding_dropout)

    def forward(self, input_ids=None, inputs_embeds=None):
        x = self.tok_embeddings(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, H)
        return self.drop(self.norm(x))


class ModernBertMLP(nn.Module):
    """GeGLU: Wi gives the input and gate halves, Wo(drop(act(input) * gate))."""

    def __init__(self, config: ModernBertConfig):
        super().__init__()
        self.Wi = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=config.mlp_bias)
        self.act = Activation(config.hidden_activation)
        self.drop = nn.Dropout(config.mlp_dropout)
        self.Wo = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)

    def forward(self, x):
        a, gate = self.Wi(x).chunk(2, dim=-1)  # (B, T, I) each
        return self.Wo(self.drop(self.act(a) * gate))  # (B, T, H)


class ModernBertAttention(nn.Module):
    def __init__(self, config: ModernBertConfig, layer_idx: int):
        super().__init__()
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(f"hidden_size {config.hidden_size} is not a multiple of num_attention_heads "
                             f"{config.num_attention_heads}.")
        self.config = config  # read at each call: config._attn_implementation may change after loading
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.Wqkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.attention_bias)
        self.Wo = nn.Linear(config.hidden_size, config.hidden_size, bias=config.attention_bias)
        self.out_drop = nn.Dropout(config.attention_dropout) if config.attention_dropout > 0 else nn.Identity()

    def forward(self, x, cos, sin, mask, segments=None):
        """x (B, T, H); cos/sin (B, T, hs). Padded: `mask` (B, 1, T, T) or None. Unpadded (B = 1, `segments` the
        token count of each row): `mask` is a list with one (1, 1, L, L) mask or None per row."""
        B, T, H = x.shape
        qkv = self.Wqkv(x).view(B, T, 3, self.num_heads, self.head_dim)  # (B, T, 3, nh, hs)
        q, k, v = qkv.transpose(1, 3).unbind(2)  # (B, nh, T, hs) each
        dtype = q.dtype
        q, k = apply_rotary(q.float(), k.float(), cos, sin)  # rotated in fp32, as the reference
        q, k = q.to(dtype), k.to(dtype)
        options = dict(scale=self.head_dim ** -0.5, eager=is_eager(self.config),
                       dropout=self.config.attention_dropout if self.training else 0.0)
        if segments is None:
            y, weights = attention(q, k, v, mask, **options)  # (B, nh, T, hs)
        else:  # one attention per row, over its own tokens
            parts = [attention(*qkv_row, row_mask, **options) for *qkv_row, row_mask in
                     zip(q.split(segments, 2), k.split(segments, 2), v.split(segments, 2), mask)]
            y = torch.cat([part[0] for part in parts], dim=2)  # (1, nh, N, hs)
            weights = [part[1] for part in parts] if options["eager"] else None  # (1, nh, L, L) per row
        return self.out_drop(self.Wo(y.transpose(1, 2).reshape(B, T, H))), weights  # (B, T, H)


class ModernBertEncoderLayer(nn.Module):
    def __init__(self, config: ModernBertConfig, layer_idx: int):
        super().__init__()
        self.attn_norm = nn.Identity() if layer_idx == 0 else layer_norm(config)
        self.attn = ModernBertAttention(config, layer_idx)
        self.mlp_norm = layer_norm(config)
        self.mlp = ModernBertMLP(config)
        self.attention_type = config.layer_types[layer_idx]

    def forward(self, x, cos, sin, mask, segments=None):
        y, weights = self.attn(self.attn_norm(x), cos, sin, mask, segments)
        x = x + y  # (B, T, H)
        return x + self.mlp(self.mlp_norm(x)), weights


class ModernBertPredictionHead(nn.Module):
    """Dense, activation, LayerNorm: before the MLM decoder and the classifiers."""

    def __init__(self, config: ModernBertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size, bias=config.classifier_bias)
        self.act = Activation(config.classifier_activation)
        self.norm = layer_norm(config)

    def forward(self, x):
        return self.norm(self.act(self.dense(x)))  # (..., H)


class ModernBertPreTrainedModel(PreTrainedModel):
    """Shared base: config, checkpoint prefix `model`, the reference's truncated-normal init."""

    config_class = ModernBertConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["ModernBertEmbeddings", "ModernBertEncoderLayer"]

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)  # the default normal / LayerNorm init first, as the reference
        config = self.config
        cutoff = config.initializer_cutoff_factor if config.initializer_cutoff_factor is not None else 3
        std_in = config.initializer_range
        std_out = config.initializer_range / math.sqrt(2.0 * config.num_hidden_layers)

        def trunc_normal(layer: nn.Module, std: float) -> None:  # normal(0, std) cut at ±cutoff·std, zero bias
            nn.init.trunc_normal_(layer.weight, mean=0.0, std=std, a=-cutoff * std, b=cutoff * std)
            if isinstance(layer, nn.Linear) and layer.bias is not None:
                nn.init.zeros_(layer.bias)

        if isinstance(module, ModernBertEmbeddings):
            trunc_normal(module.tok_embeddings, std_in)
        elif isinstance(module, (ModernBertMLP, ModernBertAttention)):
            trunc_normal(module.Wqkv if isinstance(module, ModernBertAttention) else module.Wi, std_in)
            trunc_normal(module.Wo, std_out)
        elif isinstance(module, ModernBertPredictionHead):
            trunc_normal(module.dense, std_out)
        elif isinstance(module, ModernBertForMaskedLM):
            trunc_normal(module.decoder, std_out)
        elif isinstance(module, _ModernBertClassifier):
            trunc_normal(module.classifier, config.hidden_size ** -0.5)


class ModernBertModel(ModernBertPreTrainedModel):
    """The bare encoder: final-normed hidden states (B, T, H)."""

    def __init__(self, config: ModernBertConfig):
        super().__init__(config)
        self.embeddings = ModernBertEmbeddings(config)
        self.layers = nn.ModuleList(ModernBertEncoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.final_norm = layer_norm(config)
        head_dim = config.hidden_size // config.num_attention_heads
        self.rotary_emb = nn.ModuleDict({  # one cos/sin table per layer type, each with its own rope_parameters
            kind: RotaryEmbedding(SimpleNamespace(rope_parameters=config.rope_parameters[kind], head_dim=head_dim,
                                                  max_position_embeddings=config.max_position_embeddings))
            for kind in LAYER_TYPES if kind in config.layer_types})
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.tok_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.tok_embeddings = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
                output_attentions=None, output_hidden_states=None, return_dict=None, unpad: bool | None = None):
        """input_ids (B, T) or inputs_embeds (B, T, H); attention_mask (B, T), 1 = token, 0 = padding;
        position_ids (B, T) default 0..T-1 (padding included, as the reference). unpad: the unpadded path for
        this call (default `config.unpad_inputs`)."""
        config = self.config
        output_attentions, output_hidden_states, return_dict = encoder_options(
            config, input_ids, inputs_embeds, output_attentions, output_hidden_states, return_dict)
        x = self.embeddings(input_ids, inputs_embeds)  # (B, T, H)
        B, T, H = x.shape
        if position_ids is None:
            position_ids = torch.arange(T, device=x.device)[None]  # (1, T)
        position_ids = position_ids.expand(B, T)  # (B, T)
        padding = None if attention_mask is None else attention_mask.to(x.device, torch.bool)  # (B, T)
        unpad = unpad_of(config, unpad) and padding is not None and not bool(padding.all())
        windows = {"full_attention": None, "sliding_attention": config.local_attention // 2}

        if unpad:  # the real tokens of every row, one after another: (1, N, H)
            rows = [int(n) for n in padding.sum(-1) if n > 0]  # token count of each non-empty row
            x, position_ids = x[padding][None], position_ids[padding][None]  # (1, N, H), (1, N)
            masks = {kind: [window_mask(None, 1, n, w, x.device) for n in rows] for kind, w in windows.items()}
        else:
            rows = None
            masks = {kind: window_mask(padding, B, T, w, x.device) for kind, w in windows.items()}
        tables = {kind: rope(x, position_ids) for kind, rope in self.rotary_emb.items()}  # (B, T, hs) cos, sin

        def padded(h):  # unpadded (1, N, ...) -> (B, T, ...) with zeros at the padding
            return h if not unpad else h.new_zeros(B, T, *h.shape[2:]).index_put((padding,), h[0])

        hidden_states, attentions = [x], []
        for layer in self.layers:
            kind = layer.attention_type
            x, weights = self.run_layer(layer, x, *tables[kind], masks[kind], rows)  # (B, T, H) or (1, N, H)
            hidden_states.append(x)
            if weights is not None:
                attentions.append(self._padded_weights(weights, padding) if unpad else weights)
        x = self.final_norm(x)  # (B, T, H)
        hidden_states[-1] = x  # the reference records the normed output as the last hidden state

        out = BaseModelOutput(
            last_hidden_state=padded(x),
            hidden_states=tuple(padded(h) for h in hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None)
        return out if return_dict else out.to_tuple()

    @staticmethod
    def _padded_weights(weights: list[torch.Tensor], padding: torch.Tensor) -> torch.Tensor:
        """One (1, nh, L, L) weight matrix per non-empty row -> (B, nh, T, T), zeros at padding rows/columns."""
        B, T = padding.shape
        out = weights[0].new_zeros(B, weights[0].shape[1], T, T)  # (B, nh, T, T)
        for b, w in zip([b for b in range(B) if padding[b].any()], weights):
            real = padding[b].nonzero()[:, 0]  # (L,)
            out[b, :, real[:, None], real[None, :]] = w[0]
        return out


class ModernBertForMaskedLM(ModernBertPreTrainedModel):
    """Masked-token prediction: decoder(head(h)), the decoder tied to tok_embeddings. With
    `config.sparse_prediction` and labels, only the labelled positions are scored (logits (M, V))."""

    _tied_weights_keys = {"decoder.weight": "model.embeddings.tok_embeddings.weight"}
    accepts_loss_kwargs = True  # Trainer passes num_items_in_batch (the loss over all accumulated tokens)

    def __init__(self, config: ModernBertConfig):
        super().__init__(config)
        self.model = ModernBertModel(config)
        self.head = ModernBertPredictionHead(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=config.decoder_bias)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.decoder = new_embeddings

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                output_attentions=None, output_hidden_states=None, return_dict=None, num_items_in_batch=None):
        out = self.model(input_ids, attention_mask, position_ids, inputs_embeds, output_attentions,
                         output_hidden_states, return_dict=True)
        h = out.last_hidden_state  # (B, T, H)
        if self.config.sparse_prediction and labels is not None:
            labels = labels.reshape(-1)  # (B*T,)
            keep = labels != self.config.sparse_pred_ignore_index
            h, labels = h.reshape(labels.shape[0], -1)[keep], labels[keep]  # (M, H), (M,)
        logits = self.decoder(self.head(h))  # (B, T, V) or (M, V)
        loss = None if labels is None else cross_entropy(logits.float(), labels, num_items_in_batch=num_items_in_batch)
        return head_output(self.config, MaskedLMOutput, loss, logits, out, return_dict)


class _ModernBertClassifier(ModernBertPreTrainedModel):
    """head, dropout and a Linear `classifier` over the pooled state (sequence, multiple choice) or every token's
    state (token classification, question answering)."""

    def __init__(self, config: ModernBertConfig, outputs: int | None = None):
        super().__init__(config)
        self.model = ModernBertModel(config)
        self.head = ModernBertPredictionHead(config)
        self.drop = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels if outputs is None else outputs)
        self.post_init()

    def classify(self, h):
        return self.classifier(self.drop(self.head(h)))  # (..., outputs)

    def pool(self, h, attention_mask, first_token: bool):
        """(B, T, H) -> (B, H): "cls" takes position 0 (the first real token if `first_token`), "mean" averages
        over the attention mask."""
        if self.config.classifier_pooling == "mean":
            if attention_mask is None:
                attention_mask = torch.ones(h.shape[:2], dtype=torch.bool, device=h.device)  # (B, T)
            mask = attention_mask.to(h.device)
            return (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # (B, H)
        first = attention_mask.argmax(-1).to(h.device) if first_token and attention_mask is not None else 0
        return h[torch.arange(h.shape[0], device=h.device), first]  # (B, H)


class ModernBertForSequenceClassification(_ModernBertClassifier):
    """One label per sequence from the pooled state (`classifier_pooling`); the loss follows
    `config.problem_type` (regression, single- or multi-label), set from the labels when None."""

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                output_attentions=None, output_hidden_states=None, return_dict=None):
        out = self.model(input_ids, attention_mask, position_ids, inputs_embeds, output_attentions,
                         output_hidden_states, return_dict=True)
        logits = self.classify(self.pool(out.last_hidden_state, attention_mask, first_token=False))  # (B, labels)
        loss = None if labels is None else sequence_classification_loss(self.config, logits, labels)
        return head_output(self.config, SequenceClassifierOutput, loss, logits, out, return_dict)


class ModernBertForTokenClassification(_ModernBertClassifier):
    """One label per token; cross entropy with -100 ignored."""

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                output_attentions=None, output_hidden_states=None, return_dict=None):
        out = self.model(input_ids, attention_mask, position_ids, inputs_embeds, output_attentions,
                         output_hidden_states, return_dict=True)
        logits = self.classify(out.last_hidden_state)  # (B, T, labels)
        loss = None if labels is None else cross_entropy(logits, labels)
        return head_output(self.config, TokenClassifierOutput, loss, logits, out, return_dict)


class ModernBertForQuestionAnswering(_ModernBertClassifier):
    """Extractive QA: a start and an end logit per token; the loss is the mean of the two cross entropies."""

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, start_positions=None,
                end_positions=None, output_attentions=None, output_hidden_states=None, return_dict=None,
                inputs_embeds=None):
        out = self.model(input_ids, attention_mask, position_ids, inputs_embeds, output_attentions,
                         output_hidden_states, return_dict=True)
        logits = self.classify(out.last_hidden_state)  # (B, T, 2)
        return finish(self.config, span_output(logits, start_positions, end_positions, out), return_dict)


class ModernBertForMultipleChoice(_ModernBertClassifier):
    """Inputs (B, C, T): each choice encoded on its own and pooled ("cls": its first real token), scored by a
    Linear(H, 1); the C scores compete in a softmax."""

    def __init__(self, config: ModernBertConfig):
        super().__init__(config, outputs=1)

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                output_attentions=None, output_hidden_states=None, return_dict=None):
        C = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        input_ids, attention_mask, position_ids, inputs_embeds = flat_choices(
            True, input_ids, attention_mask, position_ids, inputs_embeds)  # (B*C, T, ...)
        out = self.model(input_ids, attention_mask, position_ids, inputs_embeds, output_attentions,
                         output_hidden_states, return_dict=True)
        logits = self.classify(self.pool(out.last_hidden_state, attention_mask, first_token=True)).view(-1, C)
        loss = None if labels is None else cross_entropy(logits, labels)  # logits (B, C)
        return head_output(self.config, MultipleChoiceModelOutput, loss, logits, out, return_dict)
