"""DeBERTa v2 and v3 (model_type "deberta-v2"): a post-LayerNorm encoder with disentangled attention.

embeddings: word (+ absolute positions if position_biased_input) (+ token types) -> embed_proj (embedding_size !=
            hidden_size) -> LayerNorm -> times the attention mask -> dropout
attention:  (q_i·k_j + c2p + p2c) / sqrt(hs · (1 + len(pos_att_type))); with r the relative-table row of i - j
            (log-bucketed past position_buckets / 2), c2p = q_i·Kr[r] and p2c = k_j·Qr[r], where Kr, Qr are
            `encoder.rel_embeddings` (LayerNorm'd when norm_rel_ebd is "layer_norm") through key_proj / query_proj
            (share_att_key) or pos_key_proj / pos_query_proj. c2p + p2c enter nn.attention as a bias, so SDPA runs;
            output_attentions (or eager attention) returns the weights: the reference is eager-only and always does.
layer:      post-LN attention and MLP as BERT's; after layer 0 the optional `encoder.conv` (conv_kernel_size > 0).
heads:      MLM (`cls.predictions` when config.legacy, else `lm_predictions.lm_head`), ContextPooler sequence and
            choice classifiers, token classifier, QA. Module names are the checkpoint keys.
"""

from __future__ import annotations

import torch
from torch import nn

from ..modeling import PreTrainedModel
from ..nn.activations import Activation
from ..nn.attention import attention, is_eager
from ..nn.encoder import EncoderIntermediate, EncoderOutput, WordEmbeddingsMixin, check_mask, encoder_options
from ..nn.heads import finish, flat_choices, head_output, span_output
from ..nn.losses import cross_entropy, sequence_classification_loss
from ..nn.outputs import (BaseModelOutput, MaskedLMOutput, MultipleChoiceModelOutput, SequenceClassifierOutput,
                          TokenClassifierOutput)
from .configs import DebertaV2Config


def log_bucket(rel: torch.Tensor, buckets: int, max_position: int) -> torch.Tensor:
    """Relative distances (T, K) -> buckets: exact within ±buckets/2, log-spaced out to max_position; odd in d."""
    mid = buckets // 2
    sign = torch.sign(rel)
    near = (rel < mid) & (rel > -mid)
    distance = torch.where(near, torch.tensor(mid - 1).type_as(rel), rel.abs())  # (T, K)
    log_pos = torch.ceil(torch.log(distance / mid) / torch.log(torch.tensor((max_position - 1) / mid))
                         * (mid - 1)) + mid  # (T, K) float
    return torch.where(distance <= mid, rel.type_as(log_pos), log_pos * sign).long()


class DebertaV2Embeddings(nn.Module):
    def __init__(self, config: DebertaV2Config):
        super().__init__()
        e = getattr(config, "embedding_size", config.hidden_size)
        self.word_embeddings = nn.Embedding(config.vocab_size, e, padding_idx=config.pad_token_id)
        self.position_biased_input = config.position_biased_input
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, e) if self.position_biased_input \
            else None
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, e) if config.type_vocab_size > 0 else None
        self.embed_proj = nn.Linear(e, config.hidden_size, bias=False) if e != config.hidden_size else None
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        positions = torch.arange(config.max_position_embeddings, dtype=torch.long)[None]  # (1, P)
        self.register_buffer("position_ids", positions, persistent=False)

    def forward(self, input_ids=None, token_type_ids=None, position_ids=None, mask=None, inputs_embeds=None):
        x = self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, E)
        if self.position_embeddings is not None:
            x = x + self.position_embeddings(self.position_ids[:, :x.shape[1]] if position_ids is None
                                             else position_ids.long())  # (B, T, E)
        if self.token_type_embeddings is not None:
            x = x + self.token_type_embeddings(torch.zeros_like(x[..., 0], dtype=torch.long)
                                               if token_type_ids is None else token_type_ids)  # (B, T, E)
        if self.embed_proj is not None:
            x = self.embed_proj(x)  # (B, T, H)
        x = self.LayerNorm(x)
        if mask is not None:
            x = x * mask[..., None].to(x.dtype)  # padding positions zeroed
        return self.dropout(x)


class DisentangledSelfAttention(nn.Module):
    def __init__(self, config: DebertaV2Config):
        super().__init__()
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(f"hidden_size {config.hidden_size} is not a multiple of num_attention_heads "
                             f"{config.num_attention_heads}.")
        self.num_heads = nh = config.num_attention_heads
        self.head_dim = getattr(config, "attention_head_size", config.hidden_size // nh)
        self.query_proj = nn.Linear(config.hidden_size, nh * self.head_dim)
        self.key_proj = nn.Linear(config.hidden_size, nh * self.head_dim)
        self.value_proj = nn.Linear(config.hidden_size, nh * self.head_dim)
        self.share_att_key = getattr(config, "share_att_key", False)
        self.pos_att_type = list(config.pos_att_type or [])
        self.relative_attention = config.relative_attention
        if self.relative_attention:
            self.pos_dropout = nn.Dropout(config.hidden_dropout_prob)
            if not self.share_att_key and "c2p" in self.pos_att_type:
                self.pos_key_proj = nn.Linear(config.hidden_size, nh * self.head_dim)
            if not self.share_att_key and "p2c" in self.pos_att_type:
                self.pos_query_proj = nn.Linear(config.hidden_size, nh * self.head_dim)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.scale_factor = 1 + ("c2p" in self.pos_att_type) + ("p2c" in self.pos_att_type)

    def forward(self, x, mask, pad_query, rel_embeddings, rel_index, eager):
        """mask (B, 1, T, T) bool, True = attend, or None; pad_query (B, 1, T, 1) True at padded queries, or None."""
        B, T, _ = x.shape

        def split_heads(t):  # (B, T, nh*hs) -> (B, nh, T, hs)
            return t.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)

        q, k, v = split_heads(self.query_proj(x)), split_heads(self.key_proj(x)), split_heads(self.value_proj(x))
        scale = (self.head_dim * self.scale_factor) ** -0.5
        bias = None
        if self.relative_attention and self.scale_factor > 1:
            bias = self.relative_scores(q, k, self.pos_dropout(rel_embeddings), rel_index) * scale  # (B, nh, T, T)
        y, weights = attention(q, k, v, mask, scale=scale, bias=bias, eager=eager, softmax_fp32=False,
                               dropout=self.dropout.p if self.training else 0.0)  # (B, nh, T, hs)
        if pad_query is not None:  # the reference masks a padded query's whole row: uniform weights, q and k get
            y = torch.where(pad_query, v.mean(-2, keepdim=True), y)  # no gradient from it
            if weights is not None:
                weights = weights.masked_fill(pad_query, 1.0 / T)  # (B, nh, T, T)
        return y.transpose(1, 2).reshape(B, T, -1), weights  # (B, T, nh*hs)

    def relative_scores(self, q, k, rel_embeddings, rel_index):
        """c2p(i, j) = q_i·Kr[r(i, j)] and p2c(i, j) = k_j·Qr[r(i, j)] summed, unscaled: (B, nh, T, T)."""
        B, nh, T, hs = q.shape

        def table(proj):  # (2S, H) -> (nh, 2S, hs)
            return proj(rel_embeddings).view(-1, nh, hs).transpose(0, 1)

        scores = 0
        if "c2p" in self.pos_att_type:
            pos_k = table(self.key_proj if self.share_att_key else self.pos_key_proj)  # (nh, 2S, hs)
            c2p = torch.matmul(q, pos_k.transpose(-1, -2))  # (B, nh, T, 2S)
            scores = scores + torch.gather(c2p, -1, rel_index.expand(B, nh, T, T))  # (B, nh, T, T)
        if "p2c" in self.pos_att_type:
            pos_q = table(self.query_proj if self.share_att_key else self.pos_query_proj)  # (nh, 2S, hs)
            p2c = torch.matmul(k, pos_q.transpose(-1, -2))  # (B, nh, K, 2S): row j scores k_j
            # element (j, i) of the gather is k_j·Qr[r(i, j)]; transposed to (query i, key j)
            scores = scores + torch.gather(p2c, -1, rel_index.mT.expand(B, nh, T, T)).transpose(-1, -2)
        return scores


class DebertaV2Layer(nn.Module):
    """BERT's post-LN layer (nn.encoder's output and intermediate blocks) around the disentangled attention."""

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.attention = nn.Module()
        self.attention.self = DisentangledSelfAttention(config)
        self.attention.output = EncoderOutput(config, config.hidden_size)
        self.intermediate = EncoderIntermediate(config)
        self.output = EncoderOutput(config, config.intermediate_size)

    def forward(self, x, mask, pad_query, rel_embeddings, rel_index, eager):
        y, weights = self.attention.self(x, mask, pad_query, rel_embeddings, rel_index, eager)  # (B, T, H)
        x = self.attention.output(y, x)  # (B, T, H)
        return self.output(self.intermediate(x), x), weights  # (B, T, H)


class ConvLayer(nn.Module):
    """After layer 0: LN(h + act(Conv1d(embeddings))) with padding positions zeroed before the activation and after."""

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        size = getattr(config, "conv_kernel_size", 3)
        self.conv = nn.Conv1d(config.hidden_size, config.hidden_size, size, padding=(size - 1) // 2,
                              groups=getattr(config, "conv_groups", 1))
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.conv_act = Activation(getattr(config, "conv_act", "tanh"))

    def forward(self, embedded, h, keep):
        out = self.conv(embedded.transpose(1, 2)).transpose(1, 2)  # (B, T, H)
        if keep is not None:
            out = out.masked_fill(~keep[..., None], 0.0)
        out = self.LayerNorm(h + self.conv_act(self.dropout(out)))  # (B, T, H)
        return out if keep is None else out * keep[..., None].to(out.dtype)


class DebertaV2Encoder(nn.Module):
    """The layers, the relative-position table `rel_embeddings` (+ `LayerNorm`) and the optional `conv`."""

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.layer = nn.ModuleList(DebertaV2Layer(config) for _ in range(config.num_hidden_layers))
        self.relative_attention = config.relative_attention
        self.buckets = getattr(config, "position_buckets", -1)
        self.max_relative = config.max_relative_positions if config.max_relative_positions >= 1 \
            else config.max_position_embeddings
        self.span = self.buckets if self.buckets > 0 else self.max_relative  # the table has 2·span rows
        if self.relative_attention:
            self.rel_embeddings = nn.Embedding(2 * self.span, config.hidden_size)
        norms = [x.strip() for x in getattr(config, "norm_rel_ebd", "none").lower().split("|")]
        if "layer_norm" in norms:
            self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.conv = ConvLayer(config) if getattr(config, "conv_kernel_size", 0) > 0 else None

    def relative_inputs(self, T: int, device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(relative-embedding table (2S, H), row index r(i, j) (T, T) of query i and key j), or (None, None)."""
        if not self.relative_attention:
            return None, None
        table = self.rel_embeddings.weight  # (2S, H)
        if hasattr(self, "LayerNorm"):
            table = self.LayerNorm(table)
        ids = torch.arange(T, device=device)
        rel = ids[:, None] - ids[None, :]  # (T, T) i - j
        if self.buckets > 0:
            rel = log_bucket(rel, self.buckets, self.max_relative)
        return table, (rel + self.span).clamp(0, 2 * self.span - 1)  # (T, T)


class DebertaV2PreTrainedModel(PreTrainedModel):
    config_class = DebertaV2Config
    base_model_prefix = "deberta"
    supports_gradient_checkpointing = True
    _no_split_modules = ["DebertaV2Layer"]
    _keys_to_ignore_on_load_unexpected = ["position_embeddings"]  # v3 files keep an unused table

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)  # normal(0, initializer_range) for Linear/Embedding, LayerNorm 1/0
        if isinstance(module, nn.Conv1d):
            module.weight.data.normal_(0.0, self.config.initializer_range)
            module.bias.data.zero_()
        elif isinstance(module, _MLMHead):
            module.bias.data.zero_()


class DebertaV2Model(WordEmbeddingsMixin, DebertaV2PreTrainedModel):
    def __init__(self, config: DebertaV2Config):
        super().__init__(config)
        self.embeddings = DebertaV2Embeddings(config)
        self.encoder = DebertaV2Encoder(config)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, output_attentions=None, output_hidden_states=None, return_dict=None, **kwargs):
        """input_ids (B, T) or inputs_embeds (B, T, E); attention_mask (B, T), 1 = token, 0 = padding;
        token_type_ids (B, T) default 0; position_ids (absolute, used with position_biased_input) default 0..T-1."""
        config = self.config
        output_attentions, output_hidden_states, return_dict = encoder_options(
            config, input_ids, inputs_embeds, output_attentions, output_hidden_states, return_dict)
        check_mask(attention_mask)
        x = self.embeddings(input_ids, token_type_ids, position_ids, attention_mask, inputs_embeds)  # (B, T, H)
        B, T, _ = x.shape
        keep = mask = pad_query = None
        if attention_mask is not None:
            keep = attention_mask.to(x.device).bool()  # (B, T)
            pad_query = ~keep[:, None, :, None]  # (B, 1, T, 1)
            mask = keep[:, None, None, :] | pad_query  # (B, 1, T, T): padded keys hidden (padded queries: see above)
        eager = bool(output_attentions) or is_eager(config)
        rel_embeddings, rel_index = self.encoder.relative_inputs(T, x.device)  # (2S, H), (T, T)

        embedded, hidden_states, attentions = x, [x], []
        for i, layer in enumerate(self.encoder.layer):
            x, weights = self.run_layer(layer, x, mask, pad_query, rel_embeddings, rel_index, eager)  # (B, T, H)
            if i == 0 and self.encoder.conv is not None:
                x = self.encoder.conv(embedded, x, keep)  # (B, T, H)
            hidden_states.append(x)
            attentions.append(weights)
        out = BaseModelOutput(last_hidden_state=x, hidden_states=tuple(hidden_states) if output_hidden_states else None,
                              attentions=tuple(attentions) if output_attentions else None)
        return finish(config, out, return_dict)


class _MLMHead(nn.Module):
    """legacy: `transform` (dense H -> E, act, LayerNorm) then `decoder` (tied to the word embeddings and `bias`);
    else (`lm_head`): dense H -> H, act, LayerNorm, then times the word embeddings' transpose, plus `bias`."""

    def __init__(self, config: DebertaV2Config, legacy: bool):
        super().__init__()
        e = getattr(config, "embedding_size", config.hidden_size) if legacy else config.hidden_size
        parent = nn.Module() if legacy else self
        parent.dense = nn.Linear(config.hidden_size, e)
        parent.transform_act_fn = Activation(config.hidden_act)
        parent.LayerNorm = nn.LayerNorm(e, eps=config.layer_norm_eps)
        if legacy:
            self.transform = parent
            self.decoder = nn.Linear(e, config.vocab_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, h, word_embeddings):
        t = getattr(self, "transform", self)
        x = t.LayerNorm(t.transform_act_fn(t.dense(h)))  # (B, T, E)
        if hasattr(self, "decoder"):
            return self.decoder(x)  # (B, T, V)
        return torch.matmul(x, word_embeddings.weight.t()) + self.bias  # (B, T, V)


class ContextPooler(nn.Module):
    """act(Dense(dropout(h[:, 0]))): the first token's final state."""

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.dense = nn.Linear(config.pooler_hidden_size, config.pooler_hidden_size)
        self.dropout = nn.Dropout(config.pooler_dropout)
        self.act = Activation(config.pooler_hidden_act)

    def forward(self, h):
        return self.act(self.dense(self.dropout(h[:, 0])))  # (B, H)


class _DebertaV2Head(DebertaV2PreTrainedModel):
    """`deberta`, then the task layers of `build_head` (the reference's order: a seeded build draws the same). The
    forward encodes (each of C choices on its own for multiple choice), scores with `logits`, adds the loss."""

    choices = False  # inputs (B, C, T); the C scores compete in a softmax
    output_class = SequenceClassifierOutput

    def __init__(self, config: DebertaV2Config):
        super().__init__(config)
        self.deberta = DebertaV2Model(config)
        self.build_head(config)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, **kwargs):
        out = self.deberta(*flat_choices(self.choices, input_ids, attention_mask, token_type_ids, position_ids,
                                         inputs_embeds), output_attentions, output_hidden_states, return_dict=True)
        logits = self.logits(out.last_hidden_state)  # (B, T, V), (B, labels), (B, T, labels) or (B*C, 1)
        if self.choices:
            logits = logits.view(-1, (input_ids if input_ids is not None else inputs_embeds).shape[1])  # (B, C)
        loss = None
        if labels is not None:
            loss, logits = self._loss(logits, labels)
        return head_output(self.config, self.output_class, loss, logits, out, return_dict)

    def build_head(self, config):  # the ContextPooler classifier; `cls_dropout`, else hidden_dropout_prob
        self.pooler = ContextPooler(config)
        self.classifier = nn.Linear(config.hidden_size, 1 if self.choices else config.num_labels)
        p = getattr(config, "cls_dropout", None)
        self.dropout = nn.Dropout(config.hidden_dropout_prob if p is None else p)

    def logits(self, h):
        return self.classifier(self.dropout(self.pooler(h)))  # (B, labels)

    def _loss(self, logits, labels):  # (loss, logits)
        return cross_entropy(logits, labels), logits


class DebertaV2ForMaskedLM(_DebertaV2Head):
    """`config.legacy` (the default) builds `cls.predictions` as transformers 5 (the original v3 files' keys
    `lm_predictions.lm_head` then leave it newly initialised there too); legacy=False builds `lm_predictions`."""

    _tied_weights_keys = {"cls.predictions.decoder.bias": "cls.predictions.bias",
                          "cls.predictions.decoder.weight": "deberta.embeddings.word_embeddings.weight"}
    _keys_to_ignore_on_load_unexpected = [r"mask_predictions.*", "position_embeddings"]
    output_class = MaskedLMOutput

    def build_head(self, config):
        self.legacy = config.legacy
        if self.legacy:
            self.cls = nn.Module()
            self.cls.predictions = _MLMHead(config, legacy=True)
        else:
            self._tied_weights_keys = {}  # scores against the word embeddings directly: nothing to tie
            self.lm_predictions = nn.Module()
            self.lm_predictions.lm_head = _MLMHead(config, legacy=False)

    def logits(self, h):
        head = self.cls.predictions if self.legacy else self.lm_predictions.lm_head
        return head(h, self.deberta.embeddings.word_embeddings)  # (B, T, V)

    def get_output_embeddings(self) -> nn.Module | None:
        return self.cls.predictions.decoder if self.legacy else None

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.cls.predictions.decoder = new_embeddings
        self.cls.predictions.bias = new_embeddings.bias

    def resize_token_embeddings(self, *args, **kwargs) -> nn.Embedding:
        embeddings = super().resize_token_embeddings(*args, **kwargs)
        if not self.legacy:  # lm_head scores the word embeddings: its bias follows their rows (0-padded or cut)
            head, n = self.lm_predictions.lm_head, embeddings.weight.shape[0]
            head.bias = nn.Parameter(nn.functional.pad(head.bias.data, (0, n - head.bias.shape[0])))
        return embeddings


class DebertaV2ForSequenceClassification(_DebertaV2Head):
    def _loss(self, logits, labels):
        """problem_type unset: DeBERTa's own rule, not stored: MSE for one label (logits flattened to (B,) as the
        reference's), cross entropy over the rows with a label >= 0, soft-label cross entropy for (B, C) labels."""
        config = self.config
        if config.problem_type is not None:
            return sequence_classification_loss(config, logits, labels), logits
        if config.num_labels == 1:
            logits = logits.view(-1).to(labels.dtype)  # (B,)
            return nn.functional.mse_loss(logits, labels.view(-1)), logits
        if labels.dim() == 1 or labels.size(-1) == 1:
            labels = labels.reshape(-1).long()  # (B,)
            kept = labels >= 0
            if not bool(kept.any()):
                return torch.tensor(0).to(logits), logits
            return nn.functional.cross_entropy(logits[kept].float(), labels[kept]), logits
        return -(torch.log_softmax(logits, -1) * labels).sum(-1).mean(), logits


class DebertaV2ForMultipleChoice(_DebertaV2Head):
    choices = True
    output_class = MultipleChoiceModelOutput


class DebertaV2ForTokenClassification(_DebertaV2Head):
    output_class = TokenClassifierOutput

    def build_head(self, config):
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def logits(self, h):
        return self.classifier(self.dropout(h))  # (B, T, labels)


class DebertaV2ForQuestionAnswering(_DebertaV2Head):
    def build_head(self, config):
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, start_positions=None, end_positions=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, **kwargs):
        out = self.deberta(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                           output_attentions, output_hidden_states, return_dict=True)
        logits = self.qa_outputs(out.last_hidden_state)  # (B, T, 2)
        return finish(self.config, span_output(logits, start_positions, end_positions, out), return_dict)
