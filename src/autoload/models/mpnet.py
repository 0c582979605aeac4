"""MPNet (model_type "mpnet"): a post-LayerNorm Transformer encoder with a T5-style relative position bias, and its
task heads (sentence-transformers/all-mpnet-base-v2 is its bare encoder).

embeddings: word + position -> LayerNorm -> dropout; positions count tokens RoBERTa-style: they start after the
            padding index 1 (pads keep position 1), so a padded row has the positions of its unpadded self
layer:      x = LN(x + O(SelfAttention(x) + bias));  x = LN(x + Dense(act(Dense(x))))
bias:       `encoder.relative_attention_bias` (Embedding(buckets, nh)) of bucketed key - query offsets, computed
            once per forward and added to every layer's scores
heads:      MLM (dense, gelu, layer_norm, decoder tied to the word embeddings); classifiers on the <s> token

Module names are the checkpoint keys (`mpnet.encoder.layer.0.attention.attn.q.weight`, `lm_head.bias`). Attention
runs through SDPA with the bias folded into its float mask; `output_attentions=True` (or
`config._attn_implementation == "eager"`) computes the weights explicitly and returns them whatever the attention
implementation, as transformers' own MPNet (eager only) does.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..modeling import PreTrainedModel
from ..nn.activations import Activation
from ..nn.attention import attention, is_eager
from ..nn.encoder import WordEmbeddingsMixin, check_mask, encoder_options, unpad_of
from ..nn.heads import finish, flat_choices, head_output, span_output
from ..nn.losses import cross_entropy, sequence_classification_loss
from ..nn.masks import attention_mask as build_mask
from ..nn.outputs import (BaseModelOutputWithPooling, MaskedLMOutput, MultipleChoiceModelOutput,
                          SequenceClassifierOutput, TokenClassifierOutput)
from ..nn.packing import Packing, packing_for
from .configs import MPNetConfig

PADDING_IDX = 1  # fixed in the reference, whatever pad_token_id: both embeddings' pad row and the position of pads
NUM_BUCKETS, MAX_DISTANCE = 32, 128  # fixed in the reference too (relative_attention_num_buckets only sizes the table)


def relative_position_bucket(relative: torch.Tensor, num_buckets: int = NUM_BUCKETS,
                             max_distance: int = MAX_DISTANCE) -> torch.Tensor:
    """Bucket ids of key - query offsets (T5's bidirectional buckets): half the buckets for keys on each side;
    within a half, offsets below half/2 get a bucket each, larger ones share log-spaced buckets up to max_distance
    (and beyond it the last bucket)."""
    half = num_buckets // 2
    exact = half // 2
    distance = -relative  # query - key: > 0 for keys on the left
    bucket = (distance < 0).long() * half  # keys on the right use the upper half
    distance = distance.abs()
    # floor(exact + log(d / exact) / log(max_distance / exact) * (half - exact)), the reference's fp32 operations
    log_ratio = torch.log(distance.clamp(min=exact).float() / exact) / math.log(max_distance / exact)
    far = (exact + (log_ratio * (half - exact)).long()).clamp(max=half - 1)
    return bucket + torch.where(distance < exact, distance, far)


class MPNetEmbeddings(nn.Module):
    """Sum of word and position embeddings (no token types), then LayerNorm and dropout."""

    def __init__(self, config: MPNetConfig):
        super().__init__()
        H = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, H, padding_idx=PADDING_IDX)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, H, padding_idx=PADDING_IDX)
        self.LayerNorm = nn.LayerNorm(H, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids=None, position_ids=None, inputs_embeds=None):
        if position_ids is None and input_ids is not None:  # pads stay at 1; tokens count 2, 3, ... skipping pads
            is_token = input_ids.ne(PADDING_IDX).int()  # (B, T)
            position_ids = (is_token.cumsum(1) * is_token).long() + PADDING_IDX  # (B, T)
        elif position_ids is None:  # embeddings given: no pads known, positions 2..T+1
            B, T = inputs_embeds.shape[:2]
            position_ids = torch.arange(PADDING_IDX + 1, T + PADDING_IDX + 1, device=inputs_embeds.device)
            position_ids = position_ids.expand(B, T)  # (B, T)
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (B, T, H)
        x = inputs_embeds + self.position_embeddings(position_ids)  # (B, T, H)
        return self.dropout(self.LayerNorm(x))


class MPNetSelfAttention(nn.Module):
    """Multi-head attention: q, k, v projections, the shared relative bias on the scores, and the output `o`."""

    def __init__(self, config: MPNetConfig):
        super().__init__()
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(f"hidden_size {config.hidden_size} is not a multiple of num_attention_heads "
                             f"{config.num_attention_heads}.")
        self.config = config  # read at each call: config._attn_implementation may change after loading
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        H = config.hidden_size
        self.q, self.k, self.v, self.o = (nn.Linear(H, H) for _ in range(4))
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)

    def forward(self, x, mask=None, bias=None, eager=False):
        if isinstance(mask, Packing):  # packed real tokens (N, H): attention per text in the padded layout
            B, T, H = mask.B, mask.T, x.shape[-1]
            qkv = mask.unpack(torch.cat([self.q(x), self.k(x), self.v(x)], dim=-1))  # (B, T, 3H)
            q, k, v = (t.view(B, T, self.num_heads, self.head_dim).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
            y, _ = attention(q, k, v, mask.key_mask, bias=bias, dropout=self.dropout.p if self.training else 0.0)
            return self.o(mask.pack(y.transpose(1, 2).reshape(B, T, H))), None  # (N, H)
        B, T, H = x.shape

        def split_heads(t):  # (B, T, H) -> (B, nh, T, hs)
            return t.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)

        q, k, v = split_heads(self.q(x)), split_heads(self.k(x)), split_heads(self.v(x))  # (B, nh, T, hs)
        eager = eager or is_eager(self.config)
        y, weights = attention(q, k, v, mask, bias=bias, eager=eager, softmax_fp32=False,
                               dropout=self.dropout.p if self.training else 0.0)  # (B, nh, T, hs)
        return self.o(y.transpose(1, 2).reshape(B, T, H)), weights  # (B, T, H)


class MPNetAttention(nn.Module):
    def __init__(self, config: MPNetConfig):
        super().__init__()
        self.attn = MPNetSelfAttention(config)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x, mask=None, bias=None, eager=False):
        y, weights = self.attn(x, mask, bias, eager)  # (B, T, H)
        return self.LayerNorm(self.dropout(y) + x), weights  # (B, T, H)


class MPNetIntermediate(nn.Module):
    def __init__(self, config: MPNetConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = Activation(config.hidden_act)

    def forward(self, x):
        return self.intermediate_act_fn(self.dense(x))  # (B, T, I)


class MPNetOutput(nn.Module):
    def __init__(self, config: MPNetConfig):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x, residual):
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)  # (B, T, H)


class MPNetLayer(nn.Module):
    def __init__(self, config: MPNetConfig):
        super().__init__()
        self.attention = MPNetAttention(config)
        self.intermediate = MPNetIntermediate(config)
        self.output = MPNetOutput(config)

    def forward(self, x, mask=None, bias=None, eager=False):
        x, weights = self.attention(x, mask, bias, eager)  # (B, T, H)
        return self.output(self.intermediate(x), x), weights  # (B, T, H)


class MPNetEncoder(nn.Module):
    """The layers and the relative position bias table they share (checkpoint keys `encoder.layer.N`,
    `encoder.relative_attention_bias`)."""

    def __init__(self, config: MPNetConfig):
        super().__init__()
        self.layer = nn.ModuleList(MPNetLayer(config) for _ in range(config.num_hidden_layers))
        self.relative_attention_bias = nn.Embedding(config.relative_attention_num_buckets,
                                                    config.num_attention_heads)

    def position_bias(self, T: int, device) -> torch.Tensor:
        """(1, nh, T, T): the bias of key j for query i, from the bucket of j - i (by index: pads included)."""
        idx = torch.arange(T, dtype=torch.long, device=device)
        buckets = relative_position_bucket(idx[None, :] - idx[:, None])  # (T, T)
        return self.relative_attention_bias(buckets).permute(2, 0, 1)[None]  # (1, nh, T, T)


class MPNetPooler(nn.Module):
    """tanh(Dense(h[:, 0])): the <s> token's final state (used by the multiple-choice head)."""

    def __init__(self, config: MPNetConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states):
        return torch.tanh(self.dense(hidden_states[:, 0]))  # (B, H)


class MPNetLMHead(nn.Module):
    """dense, gelu, layer_norm, then `decoder` to vocabulary logits; its weight is tied to the word embeddings and
    its bias to the separate `bias` parameter (the checkpoint key `lm_head.bias`)."""

    def __init__(self, config: MPNetConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, x):
        return self.decoder(self.layer_norm(F.gelu(self.dense(x))))  # (B, T, V); exact gelu, whatever hidden_act


class MPNetClassificationHead(nn.Module):
    """The <s> token's state -> dropout, dense, tanh, dropout -> out_proj (RoBERTa's sentence classifier)."""

    def __init__(self, config: MPNetConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, hidden_states):
        x = torch.tanh(self.dense(self.dropout(hidden_states[:, 0])))  # (B, H)
        return self.out_proj(self.dropout(x))  # (B, labels)


class MPNetPreTrainedModel(PreTrainedModel):
    """Shared base of the MPNet classes: config, checkpoint prefix `mpnet`, the reference's init."""

    config_class = MPNetConfig
    base_model_prefix = "mpnet"
    supports_gradient_checkpointing = True
    _no_split_modules = ["MPNetEmbeddings", "MPNetLayer"]
    _keys_to_ignore_on_load_unexpected = [r"embeddings\.position_ids$"]  # a buffer older checkpoints saved

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)  # normal(0, initializer_range) for Linear/Embedding (pad row 0), LayerNorm 1/0
        if isinstance(module, MPNetLMHead):
            module.bias.data.zero_()

    def get_output_embeddings(self) -> nn.Module | None:
        head = getattr(self, "lm_head", None)
        return head.decoder if head is not None else None

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head.decoder = new_embeddings
        self.lm_head.bias = new_embeddings.bias


class MPNetModel(WordEmbeddingsMixin, MPNetPreTrainedModel):
    """The bare encoder: last hidden states and (with `add_pooling_layer`) the pooled <s> output."""

    def __init__(self, config: MPNetConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = MPNetEmbeddings(config)
        self.encoder = MPNetEncoder(config)
        self.pooler = MPNetPooler(config) if add_pooling_layer else None
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
                output_attentions=None, output_hidden_states=None, return_dict=None, unpad: bool | None = None):
        """input_ids (B, T) or inputs_embeds (B, T, H); attention_mask (B, T), 1 = token, 0 = padding;
        position_ids default: counted over the tokens that are not id 1, from 2. unpad (default
        `config.unpad_inputs`, False): the layers run on the real tokens only (nn/packing.py), outputs at padded
        positions are then zeros; not with output_attentions."""
        config = self.config
        output_attentions, output_hidden_states, return_dict = encoder_options(
            config, input_ids, inputs_embeds, output_attentions, output_hidden_states, return_dict)
        check_mask(attention_mask)
        x = self.embeddings(input_ids, position_ids, inputs_embeds)  # (B, T, H)
        B, T, _ = x.shape
        padding = None if attention_mask is None else attention_mask.to(x.device, torch.bool)  # (B, T)
        mask = build_mask(padding, B, T, causal=False, device=x.device)  # (B, 1, T, T) bool, or None: no padding
        bias = self.encoder.position_bias(T, x.device)  # (1, nh, T, T), once for every layer
        packing = packing_for(padding, unpad_of(config, unpad), weights=output_attentions)
        if packing is not None:
            x, mask = packing.pack(x), packing  # (N, H): the layers see real tokens only

        hidden_states, attentions = [x], []
        for layer in self.encoder.layer:
            x, weights = self.run_layer(layer, x, mask, bias, output_attentions)  # (B, T, H) or (N, H)
            hidden_states.append(x)
            attentions += [weights] if weights is not None else []
        if packing is not None:
            x, hidden_states = packing.unpack(x), packing.unpack_states(hidden_states)  # (B, T, H)
        pooled = self.pooler(x) if self.pooler is not None else None  # (B, H)

        out = BaseModelOutputWithPooling(
            last_hidden_state=x, pooler_output=pooled,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None)
        return out if return_dict else out.to_tuple()


class MPNetForMaskedLM(MPNetPreTrainedModel):
    """Masked-token prediction over the vocabulary at every position."""

    _tied_weights_keys = {"lm_head.decoder.weight": "mpnet.embeddings.word_embeddings.weight",
                          "lm_head.decoder.bias": "lm_head.bias"}

    def __init__(self, config: MPNetConfig):
        super().__init__(config)
        self.mpnet = MPNetModel(config, add_pooling_layer=False)
        self.lm_head = MPNetLMHead(config)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                output_attentions=None, output_hidden_states=None, return_dict=None):
        out = self.mpnet(input_ids, attention_mask, position_ids, inputs_embeds, output_attentions,
                         output_hidden_states, return_dict=True)
        logits = self.lm_head(out.last_hidden_state)  # (B, T, V)
        loss = cross_entropy(logits, labels) if labels is not None else None
        return head_output(self.config, MaskedLMOutput, loss, logits, out, return_dict)


class MPNetForSequenceClassification(MPNetPreTrainedModel):
    """One label per sequence from the <s> token. The loss follows `config.problem_type` (set from the labels when
    None): regression (MSE) for num_labels == 1, single-label cross entropy for integer labels, else multi-label
    BCE-with-logits."""

    def __init__(self, config: MPNetConfig):
        super().__init__(config)
        self.mpnet = MPNetModel(config, add_pooling_layer=False)
        self.classifier = MPNetClassificationHead(config)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                output_attentions=None, output_hidden_states=None, return_dict=None):
        out = self.mpnet(input_ids, attention_mask, position_ids, inputs_embeds, output_attentions,
                         output_hidden_states, return_dict=True)
        logits = self.classifier(out.last_hidden_state)  # (B, labels)
        loss = None if labels is None else sequence_classification_loss(self.config, logits, labels)
        return head_output(self.config, SequenceClassifierOutput, loss, logits, out, return_dict)


class MPNetForTokenClassification(MPNetPreTrainedModel):
    """One label per token (NER, tagging); cross entropy with -100 ignored."""

    def __init__(self, config: MPNetConfig):
        super().__init__(config)
        self.mpnet = MPNetModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                output_attentions=None, output_hidden_states=None, return_dict=None):
        out = self.mpnet(input_ids, attention_mask, position_ids, inputs_embeds, output_attentions,
                         output_hidden_states, return_dict=True)
        logits = self.classifier(self.dropout(out.last_hidden_state))  # (B, T, labels)
        loss = cross_entropy(logits, labels) if labels is not None else None
        return head_output(self.config, TokenClassifierOutput, loss, logits, out, return_dict)


class MPNetForMultipleChoice(MPNetPreTrainedModel):
    """Inputs (B, C, T): each choice is encoded on its own, scored by a Linear(H, 1) on its pooled output, and the
    C scores compete in a softmax."""

    def __init__(self, config: MPNetConfig):
        super().__init__(config)
        self.mpnet = MPNetModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                output_attentions=None, output_hidden_states=None, return_dict=None):
        C = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        out = self.mpnet(*flat_choices(True, input_ids, attention_mask, position_ids, inputs_embeds),
                         output_attentions, output_hidden_states, return_dict=True)
        logits = self.classifier(self.dropout(out.pooler_output)).view(-1, C)  # (B, C)
        loss = cross_entropy(logits, labels) if labels is not None else None
        return head_output(self.config, MultipleChoiceModelOutput, loss, logits, out, return_dict)


class MPNetForQuestionAnswering(MPNetPreTrainedModel):
    """Extractive QA: `qa_outputs` gives each token a start and an end logit. The loss is the mean of the start and
    end cross entropies; positions outside the sequence are clamped to T and ignored."""

    def __init__(self, config: MPNetConfig):
        super().__init__(config)
        self.mpnet = MPNetModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
                start_positions=None, end_positions=None, output_attentions=None, output_hidden_states=None,
                return_dict=None):
        out = self.mpnet(input_ids, attention_mask, position_ids, inputs_embeds, output_attentions,
                         output_hidden_states, return_dict=True)
        logits = self.qa_outputs(out.last_hidden_state)  # (B, T, 2)
        return finish(self.config, span_output(logits, start_positions, end_positions, out), return_dict)
