"""GPT-2 (Radford et al., 2019): a pre-norm decoder-only transformer with learned absolute positions.

    h = wte(ids) + wpe(positions)                      then, per block:
    h = h + attn(ln_1(h));   h = h + mlp(ln_2(h))      and finally ln_f(h)

Module names are the checkpoint keys (`transformer.h.0.attn.c_attn.weight`, ...). Hub checkpoints of the bare
model lack the `transformer.` prefix; the loader adds it.

The projections c_attn, c_proj and c_fc are `TransposedLinear`, an `nn.Linear` (so PEFT/LoRA, quantizers and
anything else that looks for nn.Linear find them) whose checkpoint layout is GPT-2's Conv1D one, [in, out]:
- in memory `weight` is (out, in) as nn.Linear wants, but a transposed view of [in, out] memory, so a loaded
  (memory-mapped) checkpoint tensor is assigned as `.t()`, never copied, and the matmul sees the reference's
  layout (the same numbers as its addmm);
- `state_dict()` gives `weight` back as [in, out] under the same key (a state-dict post-hook), and
  `load_state_dict()` takes [in, out] (a load pre-hook): save_pretrained folders load in transformers' GPT-2,
  its checkpoints load here;
- autoload's loader reads the class attribute `transposed_in_checkpoint` and assigns the transposed view.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..generation.mixin import GenerationMixin
from ..modeling import PreTrainedModel
from ..nn.activations import Activation
from ..nn.attention import attention, is_eager, warn_no_weights
from ..nn.cache import DynamicCache
from ..nn.heads import finish, keep_positions, pool_last_token, span_output
from ..nn.losses import causal_lm_loss, cross_entropy, sequence_classification_loss
from ..nn.masks import attention_mask as build_mask
from ..nn.outputs import (BaseModelOutputWithPast, CausalLMOutputWithCrossAttentions, SequenceClassifierOutputWithPast,
                          TokenClassifierOutput)
from .configs import GPT2Config



def _weight_to_checkpoint(module, state_dict, prefix, local_metadata) -> None:
    """state_dict post-hook: (out, in) weight -> the checkpoint's [in, out] (a view; contiguous for a loaded one)."""
    if prefix + "weight" in state_dict:
        state_dict[prefix + "weight"] = state_dict[prefix + "weight"].t()


def _weight_from_checkpoint(module, state_dict, prefix, *args) -> None:
    """load_state_dict pre-hook: the checkpoint's [in, out] weight -> (out, in) (a view)."""
    if isinstance(state_dict.get(prefix + "weight"), torch.Tensor):
        state_dict[prefix + "weight"] = state_dict[prefix + "weight"].t()


class TransposedLinear(nn.Linear):
    """y = x·Wᵀ + b, an nn.Linear whose checkpoint stores W transposed ([in, out], GPT-2's Conv1D layout). The
    parameter is (out, in) over [in, out] memory; `residual` marks projections back onto the residual stream,
    initialised with a smaller std."""

    transposed_in_checkpoint = ("weight",)  # read by autoload.loading: assign the checkpoint tensor's .t()

    def __init__(self, in_features: int, out_features: int, residual: bool = False):
        nn.Module.__init__(self)
        self.in_features, self.out_features, self.residual = in_features, out_features, residual
        self.weight = nn.Parameter(torch.empty(in_features, out_features).t())  # (out, in) view of [in, out]
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.reset_parameters()
        self.register_state_dict_post_hook(_weight_to_checkpoint)
        self.register_load_state_dict_pre_hook(_weight_from_checkpoint)

    def reset_parameters(self) -> None:
        self.normal_(0.02)  # as the reference's constructor: a seeded build draws the same numbers

    def normal_(self, std: float) -> None:
        """Draw the weight in the checkpoint's [in, out] order (the reference's order of random numbers)."""
        nn.init.normal_(self.weight.data.t(), std=std)  # [in, out], contiguous when built here


class GPT2Attention(nn.Module):
    """Causal multi-head self-attention; q, k and v come from one fused projection `c_attn`."""

    def __init__(self, config: GPT2Config, layer_idx: int):
        super().__init__()
        if config.n_embd % config.n_head:
            raise ValueError(f"n_embd={config.n_embd} is not divisible by n_head={config.n_head}.")
        self.n_head, self.head_dim, self.layer_idx = config.n_head, config.n_embd // config.n_head, layer_idx
        # softmax(q·kᵀ·scale): 1/√hs by default, further ÷(layer_idx+1) in Stanford CRFM's Mistral checkpoints
        self.scale = self.head_dim ** -0.5 if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            self.scale /= float(layer_idx + 1)
        self.upcast = config.reorder_and_upcast_attn  # eager path only: scores and softmax in fp32
        self.c_attn = TransposedLinear(config.n_embd, 3 * config.n_embd)
        self.c_proj = TransposedLinear(config.n_embd, config.n_embd, residual=True)
        self.attn_dropout = nn.Dropout(config.attn_pdrop)
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x, mask, cache, eager: bool):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=-1)                                         # 3 × (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)                                     # (B, nh, S, hs), S = past+T
        # mask None means "no padding and no cached prefix": SDPA's own causal mask is exact
        y, weights = attention(q, k, v, mask, is_causal=True, scale=self.scale, eager=eager, softmax_fp32=False,
                               upcast=self.upcast, dropout=self.attn_dropout.p if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, T, C)                                            # (B, T, C)
        return self.resid_dropout(self.c_proj(y)), weights


class GPT2MLP(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        inner = config.n_inner if config.n_inner is not None else 4 * config.n_embd
        self.c_fc = TransposedLinear(config.n_embd, inner)
        self.act = Activation(config.activation_function)  # "gelu_new": GELU's tanh approximation
        self.c_proj = TransposedLinear(inner, config.n_embd, residual=True)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))  # (B, T, C) -> (B, T, inner) -> (B, T, C)


class GPT2Block(nn.Module):
    def __init__(self, config: GPT2Config, layer_idx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = GPT2Attention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = GPT2MLP(config)

    def forward(self, x, mask, cache, eager: bool):
        a, weights = self.attn(self.ln_1(x), mask, cache, eager)
        x = x + a                                                                         # (B, T, C)
        return x + self.mlp(self.ln_2(x)), weights


class GPT2PreTrainedModel(PreTrainedModel):
    config_class = GPT2Config
    base_model_prefix = "transformer"
    supports_gradient_checkpointing = True
    _no_split_modules = ["GPT2Block"]
    # causal-mask buffers that old checkpoints saved (`h.0.attn.bias`, `h.0.attn.masked_bias`)
    _keys_to_ignore_on_load_unexpected = [r"(^|\.)(attn|crossattention)\.(masked_)?bias$"]

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, TransposedLinear):  # not the nn.Linear rule: the draws go in [in, out] order
            module.normal_(self.config.initializer_range)
            module.bias.data.zero_()
        else:
            super()._init_weights(module)
        if isinstance(module, (GPT2Attention, GPT2MLP)):
            # GPT-2 paper: residual projections drawn again with std/√N, N = 2 residual branches per block (after
            # their plain init above, children first: the reference's order of RNG draws)
            module.c_proj.normal_(self.config.initializer_range / math.sqrt(2 * self.config.n_layer))


class GPT2Model(GPT2PreTrainedModel):
    """The bare GPT-2 decoder: token + position embeddings, `n_layer` blocks, final LayerNorm."""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        if config.add_cross_attention:
            raise NotImplementedError("GPT-2 with cross-attention (add_cross_attention=True) is not supported.")
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(GPT2Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.wte

    def forward(self, input_ids=None, past_key_values=None, attention_mask=None, token_type_ids=None,
                position_ids=None, inputs_embeds=None, use_cache=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, cache=None):
        """attention_mask: (B, past+T), 0 at padding. position_ids default to past..past+T-1 (pass explicit ones
        for left padding). token_type_ids are embedded with `wte`, as in the reference. With use_cache (default
        config.use_cache) a DynamicCache is created if none is given and returned in `past_key_values`.
        Attention weights are returned only with attn_implementation="eager" (SDPA gives an empty tuple, as in
        the reference)."""
        cfg = self.config
        if cache is not None:
            if past_key_values is not None:
                raise ValueError("Pass the cache as past_key_values or as cache, not both.")
            past_key_values = cache
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids and inputs_embeds.")
        use_cache = cfg.use_cache if use_cache is None else use_cache
        if self.checkpointing():  # recomputed blocks would write a cache twice
            use_cache, past_key_values = False, None
        output_attentions = cfg.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = cfg.output_hidden_states if output_hidden_states is None else output_hidden_states
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache(cfg)
        if inputs_embeds is None:
            inputs_embeds = self.wte(input_ids)                                           # (B, T, C)
        B, T = inputs_embeds.shape[:2]
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + T, device=inputs_embeds.device)[None]  # (1, T)
        h = inputs_embeds + self.wpe(position_ids)                                        # (B, T, C)
        if token_type_ids is not None:
            h = h + self.wte(token_type_ids)
        h = self.drop(h)
        eager = is_eager(cfg)
        mask = None
        if attention_mask is not None:  # (B, past+T): 0 at padding
            if attention_mask.shape[-1] < past + T:
                raise ValueError(f"attention_mask covers {attention_mask.shape[-1]} positions; past ({past}) + new "
                                 f"({T}) tokens = {past + T} are attended.")
            mask = attention_mask.to(h.device, torch.bool)
        mask = build_mask(mask, B, T, past, additive=eager, dtype=h.dtype, device=h.device)  # (B, 1, T, S) or None
        warn_no_weights(self.config, output_attentions)
        hidden_states, attentions = [], []
        for block in self.h:
            if output_hidden_states:
                hidden_states.append(h)
            h, weights = self.run_layer(block, h, mask, past_key_values, eager)
            if output_attentions and weights is not None:
                attentions.append(weights)
        h = self.ln_f(h)
        if output_hidden_states:  # embeddings, block outputs, and the last one after ln_f
            hidden_states.append(h)
        out = BaseModelOutputWithPast(last_hidden_state=h, past_key_values=past_key_values if use_cache else None,
                                      hidden_states=tuple(hidden_states) if output_hidden_states else None,
                                      attentions=tuple(attentions) if output_attentions else None)
        return finish(self.config, out, return_dict)


class GPT2LMHeadModel(GenerationMixin, GPT2PreTrainedModel):
    """GPT-2 with a language-modelling head tied to the token embeddings. `labels` give the shifted causal-LM
    loss (token t predicts t+1; -100 ignored). Other keywords are GPT2Model.forward's."""

    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.post_init()

    def forward(self, input_ids=None, past_key_values=None, attention_mask=None, *, labels=None, return_dict=None,
                logits_to_keep: int | torch.Tensor = 0, num_items_in_batch=None, **kwargs):
        out = self.transformer(input_ids, past_key_values, attention_mask, return_dict=True, **kwargs)
        logits = self.lm_head(keep_positions(out.last_hidden_state, logits_to_keep))      # (B, T, vocab)
        loss = None if labels is None else causal_lm_loss(logits, labels, num_items_in_batch)
        result = CausalLMOutputWithCrossAttentions(loss=loss, logits=logits, past_key_values=out.past_key_values,
                                                   hidden_states=out.hidden_states, attentions=out.attentions)
        return finish(self.config, result, return_dict)


class GPT2ForSequenceClassification(GPT2PreTrainedModel):
    """Scores (`score`, no bias) read at each row's last non-padding token (the rightmost token that is not
    config.pad_token_id; the last token when there is no pad id, which then requires batch size 1)."""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.transformer = GPT2Model(config)
        self.score = nn.Linear(config.n_embd, config.num_labels, bias=False)
        self.post_init()

    def forward(self, input_ids=None, past_key_values=None, attention_mask=None, *, labels=None, return_dict=None,
                **kwargs):
        out = self.transformer(input_ids, past_key_values, attention_mask, return_dict=True, **kwargs)
        logits = self.score(out.last_hidden_state)                                        # (B, T, num_labels)
        pooled = pool_last_token(logits, input_ids, self.config.pad_token_id)             # (B, num_labels)
        loss = None
        if labels is not None:
            loss = sequence_classification_loss(self.config, pooled, labels.to(pooled.device))
        result = SequenceClassifierOutputWithPast(loss=loss, logits=pooled, past_key_values=out.past_key_values,
                                                  hidden_states=out.hidden_states, attentions=out.attentions)
        return finish(self.config, result, return_dict)


class GPT2ForTokenClassification(GPT2PreTrainedModel):
    """Per-token scores: dropout then `classifier` on every hidden state."""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.transformer = GPT2Model(config)
        p = getattr(config, "classifier_dropout", None)
        p = p if p is not None else getattr(config, "hidden_dropout", None)
        self.dropout = nn.Dropout(p if p is not None else 0.1)
        self.classifier = nn.Linear(config.n_embd, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, past_key_values=None, attention_mask=None, *, labels=None, return_dict=None,
                **kwargs):
        out = self.transformer(input_ids, past_key_values, attention_mask, return_dict=True, **kwargs)
        logits = self.classifier(self.dropout(out.last_hidden_state))                      # (B, T, num_labels)
        loss = None
        if labels is not None:
            loss = cross_entropy(logits, labels.to(logits.device))
        result = TokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                       attentions=out.attentions)
        return finish(self.config, result, return_dict)


class GPT2ForQuestionAnswering(GPT2PreTrainedModel):
    """Extractive QA: `qa_outputs` gives start and end logits per token. The loss averages the start and end
    cross entropies; positions outside the sequence are clamped to T and ignored."""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.qa_outputs = nn.Linear(config.n_embd, 2)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, *, start_positions=None, end_positions=None,
                return_dict=None, **kwargs):
        out = self.transformer(input_ids, attention_mask=attention_mask, return_dict=True, **kwargs)
        logits = self.qa_outputs(out.last_hidden_state)  # (B, T, 2)
        return finish(self.config, span_output(logits, start_positions, end_positions, out), return_dict)
