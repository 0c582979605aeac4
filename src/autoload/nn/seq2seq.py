"""The layers of the BART-shaped encoder-decoders (BART, mBART, Marian), post-LN or pre-LN.

encoder layer:  x = x ⊕ SelfAttention(x);                     x = x ⊕ fc2(act(fc1(x)))
decoder layer:  x = x ⊕ CausalSelfAttention(x, cache);        x = x ⊕ CrossAttention(x, encoder states);
                x = x ⊕ fc2(act(fc1(x)))
where `x ⊕ f(x)` is LN(x + f(x)) post-LN (BART, Marian) or x + f(LN(x)) pre-LN (mBART), dropout on f's output.

Module names are the checkpoint keys (`self_attn.{q,k,v,out}_proj`, `self_attn_layer_norm`, `encoder_attn`,
`encoder_attn_layer_norm`, `fc1`, `fc2`, `final_layer_norm`). The config is read duck-typed: d_model,
encoder_/decoder_attention_heads, encoder_/decoder_ffn_dim, activation_function, dropout, attention_dropout,
activation_dropout, encoder_/decoder_layerdrop, `_attn_implementation` at each call ("eager" returns the weights;
the softmax stays in the input dtype, as the reference's). The decoder's cache is an `EncoderDecoderCache`: the
self-attention keys grow per step, the cross-attention keys are projected from the encoder output once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .activations import Activation
from .attention import attention, is_eager
from .cache import DynamicCache, EncoderDecoderCache
from .encoder import cross_attention_mask
from .heads import decoder_lm_output, finish, keep_positions
from .masks import attention_mask as build_mask
from .outputs import BaseModelOutput, Seq2SeqModelOutput

SEQ2SEQ_FIELDS = ("past_key_values", "decoder_hidden_states", "decoder_attentions", "cross_attentions",
                  "encoder_last_hidden_state", "encoder_hidden_states", "encoder_attentions")


class Seq2SeqAttention(nn.Module):
    """Multi-head attention with biased q/k/v/out projections and 1/sqrt(head_dim) scaling. Self-attention
    (causal in the decoder, keys cached per step) or cross-attention (keys from the encoder output)."""

    def __init__(self, config, num_heads: int, layer_idx: int = 0, causal: bool = False):
        super().__init__()
        d = config.d_model
        if d % num_heads:
            raise ValueError(f"d_model {d} is not a multiple of the attention heads {num_heads}.")
        self.config = config  # read at each call: config._attn_implementation may change after loading
        self.num_heads, self.head_dim, self.layer_idx, self.causal = num_heads, d // num_heads, layer_idx, causal
        self.dropout = config.attention_dropout
        self.k_proj = nn.Linear(d, d)  # the reference's order: a seeded build draws the same numbers
        self.v_proj = nn.Linear(d, d)
        self.q_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x, mask=None, cache=None, encoder_hidden_states=None):
        """x (B, T, d); mask (B, 1, T, K) bool or None; returns (y (B, T, d), weights (B, nh, T, K) or None)."""
        B, T, d = x.shape

        def heads(t):  # (N, L, d) -> (N, nh, L, hs)
            return t.view(t.shape[0], -1, self.num_heads, self.head_dim).transpose(1, 2)

        q = heads(self.q_proj(x))  # (B, nh, T, hs)
        if encoder_hidden_states is None:
            k, v = heads(self.k_proj(x)), heads(self.v_proj(x))  # (B, nh, T, hs)
            if cache is not None:
                k, v = cache.update(k, v, self.layer_idx)  # (B, nh, past + T, hs)
        else:
            def project(source):  # (N, nh, S, hs) each, from the (N, S, d) encoder output
                return heads(self.k_proj(source)), heads(self.v_proj(source))
            cached = cache is not None and hasattr(cache, "cross")  # a decoder-only DynamicCache keeps no cross keys
            k, v = cache.cross(self.layer_idx, project, encoder_hidden_states) if cached else \
                project(encoder_hidden_states)
        eager = is_eager(self.config)
        y, weights = attention(q, k, v, mask, is_causal=self.causal, eager=eager, softmax_fp32=False,
                               dropout=self.dropout if self.training else 0.0)  # (B, nh, T, hs)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, d)), weights  # (B, T, d)


class _Layer(nn.Module):
    """What both layers share: the feed-forward block and the residual rule (post-LN or pre-LN)."""

    def __init__(self, config, pre_ln: bool):
        super().__init__()
        self.pre_ln = pre_ln
        self.p, self.p_act = config.dropout, config.activation_dropout
        self.activation_fn = Activation(config.activation_function)

    def residual(self, x, norm: nn.LayerNorm, block):
        """post-LN: LN(x + dropout(block(x))); pre-LN: x + dropout(block(LN(x))). `block` returns (y, weights)."""
        y, weights = block(norm(x) if self.pre_ln else x)
        x = x + F.dropout(y, p=self.p, training=self.training)
        return (x if self.pre_ln else norm(x)), weights

    def feed_forward(self, x):
        h = F.dropout(self.activation_fn(self.fc1(x)), p=self.p_act, training=self.training)  # (B, T, ffn)
        return self.fc2(h), None  # (B, T, d)


class Seq2SeqEncoderLayer(_Layer):
    """Bidirectional self-attention, then the feed-forward block. Returns (x (B, S, d), weights or None)."""

    def __init__(self, config, layer_idx: int = 0, pre_ln: bool = False):
        super().__init__(config, pre_ln)
        d = config.d_model
        self.self_attn = Seq2SeqAttention(config, config.encoder_attention_heads, layer_idx)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, config.encoder_ffn_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)

    def forward(self, x, mask=None):
        x, weights = self.residual(x, self.self_attn_layer_norm, lambda h: self.self_attn(h, mask))
        x, _ = self.residual(x, self.final_layer_norm, self.feed_forward)  # (B, S, d)
        if x.dtype == torch.float16 and (self.pre_ln or not torch.isfinite(x).all()):
            bound = torch.finfo(x.dtype).max - 1000  # fp16 overflow: clamped as the reference (mBART always)
            x = torch.clamp(x, min=-bound, max=bound)
        return x, weights


class Seq2SeqDecoderLayer(_Layer):
    """Causal self-attention (cached), cross-attention over the encoder output, then the feed-forward block.
    Returns (x (B, T, d), self-attention weights, cross-attention weights) (weights None unless eager)."""

    def __init__(self, config, layer_idx: int = 0, pre_ln: bool = False):
        super().__init__(config, pre_ln)
        d = config.d_model
        self.self_attn = Seq2SeqAttention(config, config.decoder_attention_heads, layer_idx, causal=True)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.encoder_attn = Seq2SeqAttention(config, config.decoder_attention_heads, layer_idx)
        self.encoder_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, config.decoder_ffn_dim)
        self.fc2 = nn.Linear(config.decoder_ffn_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)

    def forward(self, x, mask=None, encoder_hidden_states=None, encoder_mask=None, cache=None):
        x, weights = self.residual(x, self.self_attn_layer_norm, lambda h: self.self_attn(h, mask, cache))
        cross_weights = None
        if encoder_hidden_states is not None:
            x, cross_weights = self.residual(x, self.encoder_attn_layer_norm, lambda h: self.encoder_attn(
                h, encoder_mask, cache, encoder_hidden_states))
        x, _ = self.residual(x, self.final_layer_norm, self.feed_forward)  # (B, T, d)
        return x, weights, cross_weights


def init_weights(module: nn.Module, config) -> None:
    """The reference's init of these families: normal(0, std) for Linear and Embedding (padding row zeroed),
    LayerNorm 1/0, a `final_logits_bias` buffer 0. Other modules (fixed position tables) are left. std is
    config.init_std, unless the config carries an `initializer_range` (then that, or 0.02), as the reference."""
    std = (config.initializer_range or 0.02) if hasattr(config, "initializer_range") else config.init_std
    if isinstance(module, nn.Linear):
        module.weight.data.normal_(0.0, std)
        if module.bias is not None:
            module.bias.data.zero_()
    elif isinstance(module, nn.Embedding):
        module.weight.data.normal_(0.0, std)
        if module.padding_idx is not None:
            module.weight.data[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        module.weight.data.fill_(1.0)
        module.bias.data.zero_()
    if getattr(module, "final_logits_bias", None) is not None:
        module.final_logits_bias.data.zero_()


def _dropped(owner, layerdrop: float) -> bool:
    """LayerDrop while training: skip the layer with probability `layerdrop` (one draw, as the reference)."""
    return owner.training and layerdrop > 0.0 and bool(torch.rand([]) < layerdrop)


def run_encoder(owner, layers, x: torch.Tensor, attention_mask: torch.Tensor | None, layerdrop: float = 0.0):
    """The encoder's layer loop over embedded x (B, S, d) with the (B, S) padding mask (1 = token), each layer
    through `owner.run_layer` (gradient checkpointing). Returns (x, hidden states [input, each layer run],
    attentions)."""
    B, S, _ = x.shape
    padding = None if attention_mask is None else attention_mask.to(x.device, torch.bool)  # (B, S)
    mask = build_mask(padding, B, S, causal=False, device=x.device)  # (B, 1, S, S) or None
    hidden_states, attentions = [x], []
    for layer in layers:
        if not _dropped(owner, layerdrop):
            x, weights = owner.run_layer(layer, x, mask)  # (B, S, d)
            attentions += [weights] if weights is not None else []
            hidden_states.append(x)
    return x, hidden_states, attentions


def run_decoder(owner, layers, x: torch.Tensor, attention_mask: torch.Tensor | None, encoder_hidden_states,
                encoder_attention_mask: torch.Tensor | None, cache=None, past: int = 0, layerdrop: float = 0.0):
    """The decoder's layer loop over embedded x (B, T, d) at cache positions past..past+T-1; `attention_mask`
    (B, past+T) hides decoder padding (a 4-D boolean mask, while compiled decoding, is used as it is), `encoder_attention_mask` (B, S) the encoder's. Returns (x, hidden states,
    self-attention weights, cross-attention weights)."""
    B, T, _ = x.shape
    if attention_mask is not None and attention_mask.dim() == 4:  # compiled decoding: over the whole static cache
        mask = attention_mask  # (B, 1, T, max_len) bool
    else:
        padding = None if attention_mask is None else attention_mask[:, -(past + T):].to(x.device, torch.bool)
        mask = build_mask(padding, B, T, past, causal=True, device=x.device)  # (B, 1, T, past+T) or None
    encoder_mask = cross_attention_mask(encoder_attention_mask, B, T)  # (B, 1, T, S) or None
    if encoder_mask is not None:
        encoder_mask = encoder_mask.to(x.device)
    hidden_states, attentions, cross_attentions = [x], [], []
    for layer in layers:
        if not _dropped(owner, layerdrop):
            x, weights, cross_weights = owner.run_layer(layer, x, mask, encoder_hidden_states, encoder_mask, cache)
            attentions += [weights] if weights is not None else []
            cross_attentions += [cross_weights] if cross_weights is not None else []
            hidden_states.append(x)
    return x, hidden_states, attentions, cross_attentions


def flag(config, value, name: str) -> bool:
    """A forward's output_attentions / output_hidden_states, else the config's."""
    return bool(getattr(config, f"output_{name}") if value is None else value)


def as_encoder_output(encoder_outputs) -> BaseModelOutput:
    """The encoder's output as a caller passes it: an output object with last_hidden_state, or a tuple (last hidden
    state, hidden states, attentions)."""
    if hasattr(encoder_outputs, "last_hidden_state"):
        return encoder_outputs
    if isinstance(encoder_outputs, (tuple, list)) and len(encoder_outputs) > 0:
        return BaseModelOutput(*encoder_outputs[:3])
    raise TypeError("encoder_outputs must be the encoder's output (a BaseModelOutput or a tuple whose first item is "
                    f"the (batch, length, hidden) tensor), got {type(encoder_outputs).__name__}.")


def encode_and_decode(model, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, encoder_outputs,
                      past_key_values, inputs_embeds, decoder_inputs_embeds, use_cache, output_attentions,
                      output_hidden_states, return_dict, cache_position):
    """An encoder-decoder backbone's forward (`model.encoder`, `model.decoder`): the encoder on the source, unless
    `encoder_outputs` (an output object or a tuple) is given, then the decoder over it; attention_mask (B, S) is
    the encoder's padding mask, also hiding those keys from cross-attention. A Seq2SeqModelOutput (or its tuple)."""
    if encoder_outputs is None:
        encoder_outputs = model.encoder(input_ids, attention_mask, inputs_embeds, output_attentions,
                                        output_hidden_states, return_dict=True)
    encoder_outputs = as_encoder_output(encoder_outputs)
    dec = model.decoder(decoder_input_ids, decoder_attention_mask, encoder_outputs[0], attention_mask,
                        past_key_values, decoder_inputs_embeds, use_cache, output_attentions, output_hidden_states,
                        return_dict=True, cache_position=cache_position)
    return finish(model.config, Seq2SeqModelOutput(
        last_hidden_state=dec.last_hidden_state, past_key_values=dec.past_key_values,
        decoder_hidden_states=dec.hidden_states, decoder_attentions=dec.attentions,
        cross_attentions=dec.cross_attentions, encoder_last_hidden_state=encoder_outputs.last_hidden_state,
        encoder_hidden_states=encoder_outputs.hidden_states, encoder_attentions=encoder_outputs.attentions),
        return_dict)


def decoder_cache(decoder, cache, use_cache, encoder_hidden_states, cache_position):
    """(cache, use_cache, past) at the start of a decoder's forward: no cache under gradient checkpointing (a
    recomputed block would write it twice); a new EncoderDecoderCache when use_cache (default config.use_cache) and
    none is given (a DynamicCache for a decoder-only model without encoder states); positions start at
    cache_position[0], else at the cache length."""
    config = decoder.config
    use_cache = config.use_cache if use_cache is None else use_cache
    if decoder.checkpointing():
        use_cache, cache = False, None
    if use_cache and cache is None:
        cross = encoder_hidden_states is not None or config.is_encoder_decoder
        cache = EncoderDecoderCache() if cross else DynamicCache()
    write = write_index(cache)
    if write is not None:  # compiled decoding: the cache index as a (1,) tensor, no Python int
        return cache, use_cache, write
    past = cache.get_seq_length() if cache is not None else 0
    return cache, use_cache, int(cache_position[0]) if cache_position is not None else past


def write_index(cache) -> torch.Tensor | None:
    """The (1,) cache index the new token is written at while `generate(compile=True)` decodes (the static
    self-attention cache in its fixed-shape mode, see nn.cache.StaticCache), else None. The decoder's
    `attention_mask` is then the (B, 1, 1, max_len) boolean mask over the whole cache."""
    return getattr(getattr(cache, "self_attention_cache", None), "write_positions", None)


# -- the decoder alone as a left-to-right LM (XForCausalLM): mixins placed before the family's PreTrainedModel -------

class DecoderWrapper:
    """The decoder (the class's `decoder_class`) alone under `decoder`, so that a causal LM holding it as `model`
    has the checkpoint keys `model.decoder.*`."""

    decoder_class: type

    def __init__(self, config):
        super().__init__(config)
        self.decoder = self.decoder_class(config)
        self.post_init()

    def forward(self, *args, **kwargs):
        return self.decoder(*args, **kwargs)


class DecoderLMHead:
    """`model` (the class's `wrapper_class`, a DecoderWrapper) plus `lm_head` over `lm_vocab` (a config attribute)
    outputs; labels are NOT shifted (labels[t] is the target of logits[t]), as the reference. The config becomes
    is_decoder=True, is_encoder_decoder=False, as the reference sets it."""

    _tied_weights_keys = {"lm_head.weight": "model.decoder.embed_tokens.weight"}
    wrapper_class: type
    lm_vocab = "vocab_size"

    def __init__(self, config):
        config.is_decoder, config.is_encoder_decoder = True, False
        super().__init__(config)
        self.model = self.wrapper_class(config)
        self.lm_head = nn.Linear(config.d_model, getattr(config, self.lm_vocab), bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.decoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.decoder.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def get_decoder(self) -> nn.Module:
        return self.model.decoder

    def forward(self, input_ids=None, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None,
                past_key_values=None, inputs_embeds=None, labels=None, use_cache=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, logits_to_keep=0, position_ids=None,
                cache_position=None):
        """position_ids are not read: the positions count from the cache length (as the reference)."""
        out = self.model.decoder(input_ids, attention_mask, encoder_hidden_states, encoder_attention_mask,
                                 past_key_values, inputs_embeds, use_cache, output_attentions, output_hidden_states,
                                 return_dict=True, cache_position=cache_position)
        logits = self.lm_head(keep_positions(out.last_hidden_state, logits_to_keep))  # (B, T', V)
        return finish(self.config, decoder_lm_output(logits, labels, out), return_dict)
