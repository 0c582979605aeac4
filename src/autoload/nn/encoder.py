"""BERT's post-LayerNorm Transformer layer, shared by the families that kept it (BERT, RoBERTa / XLM-R / CamemBERT).

x = LN(x + Dense(SelfAttention(x)))
x = LN(x + Dense(CrossAttention(x, encoder_hidden_states)))     (with add_cross_attention)
x = LN(x + Dense(act(Dense(x))))

Module names are BERT's checkpoint keys under `encoder.layer.N` (`attention.self.query`, `attention.output.dense`,
`attention.output.LayerNorm`, `crossattention...`, `intermediate.dense`, `output.dense`, `output.LayerNorm`); a family
subclasses `EncoderLayer` under the reference's name (`BertLayer`, `RobertaLayer`) for `_no_split_modules`. The
config is read duck-typed: hidden_size, num_attention_heads, intermediate_size, hidden_act, hidden_dropout_prob,
attention_probs_dropout_prob, layer_norm_eps, is_decoder (causal self-attention with a KV cache),
add_cross_attention, and `_attn_implementation` at each call ("eager" computes and returns the weights).

`EncoderEmbeddings` is BERT's embedding block (ELECTRA and ALBERT at their embedding_size); `WordEmbeddingsMixin`
gives a backbone get/set_input_embeddings. Also what the forwards of every encoder family share: the argument checks
and config defaults (encoder_options), a BERT-style decoder's KV cache (decoder_cache), the 2-D attention-mask check
(check_mask) and the one-time warning that SDPA returns no attention weights (warn_no_weights).
"""

from __future__ import annotations

import torch
from torch import nn

from .activations import Activation
from .attention import attention, is_eager, warn_no_weights  # noqa: F401  (the families' import point)
from .cache import DynamicCache
from .masks import attention_mask as build_mask
from .packing import Packing, packing_for


class WordEmbeddingsMixin:
    """get/set_input_embeddings of an encoder backbone, on its `embeddings.word_embeddings`; listed before the
    family's PreTrainedModel (`class BertModel(WordEmbeddingsMixin, BertPreTrainedModel)`)."""

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value


class EncoderEmbeddings(nn.Module):
    """Sum of word, token-type (segment) and absolute position embeddings of `width` (default hidden_size), then
    LayerNorm and dropout. Keys `word_embeddings`, `position_embeddings`, `token_type_embeddings`, `LayerNorm`."""

    def __init__(self, config, width: int | None = None):
        super().__init__()  # built in the reference's order: a seeded build draws the same numbers
        E = config.hidden_size if width is None else width
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
        if position_ids is None:  # positions continue after the cached ones; padding is not skipped (right padding)
            position_ids = self.position_ids[:, past_length:past_length + T]  # (1, T)
        if token_type_ids is None:
            token_type_ids = self.token_type_ids[:, :T].expand(B, T)  # (B, T) all segment A
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (B, T, E)
        x = inputs_embeds + self.token_type_embeddings(token_type_ids)  # (B, T, E)
        x = x + self.position_embeddings(position_ids)  # (B, T, E)
        return self.dropout(self.LayerNorm(x))


class EncoderSelfAttention(nn.Module):
    """Multi-head attention with separate query/key/value projections (all with bias). Keys and values come
    from `encoder_hidden_states` for cross-attention."""

    def __init__(self, config, layer_idx: int = 0, is_cross_attention: bool = False):
        super().__init__()
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(f"hidden_size {config.hidden_size} is not a multiple of num_attention_heads "
                             f"{config.num_attention_heads}.")
        self.config = config  # read at each call: config._attn_implementation may change after loading
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.is_causal = config.is_decoder and not is_cross_attention
        self.layer_idx = layer_idx

    def forward(self, hidden_states, mask=None, cache=None, encoder_hidden_states=None):
        if isinstance(mask, Packing):
            return self._unpadded(hidden_states, mask), None
        B, T, H = hidden_states.shape
        source = hidden_states if encoder_hidden_states is None else encoder_hidden_states  # (B, S, H)

        def split_heads(x):  # (B, L, H) -> (B, nh, L, hs)
            return x.view(B, -1, self.num_heads, self.head_dim).transpose(1, 2)

        q = split_heads(self.query(hidden_states))  # (B, nh, T, hs)
        k, v = split_heads(self.key(source)), split_heads(self.value(source))  # (B, nh, S, hs)
        if cache is not None and encoder_hidden_states is None:
            k, v = cache.update(k, v, self.layer_idx)  # (B, nh, past + T, hs)
        eager = is_eager(self.config)
        # softmax in the input dtype (as the reference); with no mask a causal decoder uses SDPA's is_causal
        y, weights = attention(q, k, v, mask, is_causal=self.is_causal, eager=eager, softmax_fp32=False,
                               dropout=self.dropout.p if self.training else 0.0)
        return y.transpose(1, 2).reshape(B, T, -1), weights  # (B, T, H); H / tp under tensor parallelism

    def _unpadded(self, rows: torch.Tensor, packing: Packing) -> torch.Tensor:
        """Self-attention over packed real tokens (N, H): q, k, v projected on the rows only, scattered to
        (B, T) for one SDPA call that hides each text's padding keys, then gathered back to (N, H)."""
        B, T = packing.B, packing.T
        qkv = packing.unpack(torch.cat([self.query(rows), self.key(rows), self.value(rows)], dim=-1))  # (B, T, 3H)
        q, k, v = (t.view(B, T, self.num_heads, self.head_dim).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
        y, _ = attention(q, k, v, packing.key_mask, dropout=self.dropout.p if self.training else 0.0)  # (B, nh, T, hs)
        return packing.pack(y.transpose(1, 2).reshape(B, T, -1))  # (N, H); H / tp under tensor parallelism


class EncoderOutput(nn.Module):
    """Dense back to hidden size, dropout, then LayerNorm of the residual sum (post-LN). Serves both the
    attention output (`attention.output`, in = hidden) and the feed-forward output (`output`, in = intermediate)."""

    def __init__(self, config, in_features: int):
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x, residual):
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)  # (B, T, H)


class EncoderAttention(nn.Module):
    def __init__(self, config, layer_idx: int = 0, is_cross_attention: bool = False):
        super().__init__()
        self.self = EncoderSelfAttention(config, layer_idx, is_cross_attention)
        self.output = EncoderOutput(config, config.hidden_size)

    def forward(self, hidden_states, mask=None, cache=None, encoder_hidden_states=None):
        y, weights = self.self(hidden_states, mask, cache, encoder_hidden_states)
        return self.output(y, hidden_states), weights  # (B, T, H)


class EncoderIntermediate(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = Activation(config.hidden_act)

    def forward(self, x):
        return self.intermediate_act_fn(self.dense(x))  # (B, T, I)


class EncoderLayer(nn.Module):
    """Self-attention (+ cross-attention in a seq2seq decoder) then the feed-forward block, each post-LN.
    Returns (x (B, T, H), self-attention weights or None, cross-attention weights or None)."""

    def __init__(self, config, layer_idx: int = 0):
        super().__init__()
        self.attention = EncoderAttention(config, layer_idx)
        if config.add_cross_attention:
            if not config.is_decoder:
                raise ValueError("add_cross_attention=True needs is_decoder=True.")
            self.crossattention = EncoderAttention(config, layer_idx, is_cross_attention=True)
        self.intermediate = EncoderIntermediate(config)
        self.output = EncoderOutput(config, config.intermediate_size)

    def forward(self, x, mask=None, cache=None, encoder_hidden_states=None, encoder_mask=None):
        x, weights = self.attention(x, mask, cache)  # (B, T, H)
        cross_weights = None
        if encoder_hidden_states is not None:
            if not hasattr(self, "crossattention"):
                raise ValueError("encoder_hidden_states were given, but the model has no cross-attention layers "
                                 "(set add_cross_attention=True and is_decoder=True in the config).")
            x, cross_weights = self.crossattention(x, encoder_mask, encoder_hidden_states=encoder_hidden_states)
        return self.output(self.intermediate(x), x), weights, cross_weights  # (B, T, H)


def cross_attention_mask(encoder_attention_mask: torch.Tensor | None, batch: int, q_len: int) -> torch.Tensor | None:
    """(B, 1, T, S_enc) bool (True = attend) from a (B, S_enc) encoder mask of 1/0; None when nothing is hidden
    (not checked while compiling: a data-dependent branch would break the graph; generate passes None then)."""
    if encoder_attention_mask is None:
        return None
    if not torch.compiler.is_compiling() and bool(encoder_attention_mask.all()):
        return None
    return encoder_attention_mask[:, None, None, :].bool().expand(batch, 1, q_len, -1)  # (B, 1, T, S_enc)


def encoder_options(config, input_ids, inputs_embeds, output_attentions, output_hidden_states, return_dict):
    """What an encoder backbone's forward starts with: exactly one of input_ids and inputs_embeds, then the config
    defaults. Returns (output_attentions, output_hidden_states, return_dict)."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("Pass exactly one of input_ids and inputs_embeds.")
    return (config.output_attentions if output_attentions is None else output_attentions,
            config.output_hidden_states if output_hidden_states is None else output_hidden_states,
            config.return_dict if return_dict is None else return_dict)


def decoder_cache(model, past_key_values, cache, use_cache):
    """The KV cache of a BERT-style backbone (`cache` is an alias of `past_key_values`): used only when
    config.is_decoder (use_cache default config.use_cache), never while gradient checkpointing (recomputed blocks
    would write it twice), a new DynamicCache when one is wanted. Returns (cache, use_cache, cached length)."""
    config = model.config
    cache = past_key_values if past_key_values is not None else cache
    use_cache = bool(config.is_decoder and (config.use_cache if use_cache is None else use_cache))
    if model.checkpointing():
        use_cache, cache = False, None
    if use_cache and cache is None:
        cache = DynamicCache(config)
    return cache, use_cache, cache.get_seq_length() if cache is not None else 0


def check_mask(attention_mask: torch.Tensor | None) -> None:
    """An attention mask must be (B, keys), 1 = attend, 0 = padding."""
    if attention_mask is not None and attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be 2-D (batch, keys) with 1 = attend and 0 = padding, got shape "
                         f"{tuple(attention_mask.shape)}.")


def unpad_of(config, unpad: bool | None) -> bool:
    """A forward's `unpad` argument, else the config's `unpad_inputs` (default False)."""
    return bool(getattr(config, "unpad_inputs", False)) if unpad is None else bool(unpad)


def run_stack(owner, layers, x: torch.Tensor, attention_mask: torch.Tensor | None, *, past: int = 0, cache=None,
              causal: bool = False, encoder_hidden_states=None, encoder_attention_mask=None,
              output_attentions: bool = False, unpad: bool = False):
    """The layer loop of a BERT-style backbone: masks from the (B, past+T) attention mask, each layer through
    `owner.run_layer` (gradient checkpointing), unpadded when `unpad` applies (nn/packing.py).
    Returns (last hidden state (B, T, H), hidden states [embeddings, layer 1, ...], attentions, cross-attentions)."""
    B, T, _ = x.shape
    check_mask(attention_mask)
    # (B, 1, T, S) bool, True = attend: padding hidden, future keys hidden in a decoder; None if SDPA needs none
    padding = None if attention_mask is None else attention_mask[:, -(past + T):].to(x.device, torch.bool)
    mask = build_mask(padding, B, T, past, causal=causal, device=x.device)
    encoder_mask = cross_attention_mask(encoder_attention_mask, B, T)  # (B, 1, T, S_enc) or None
    packing = packing_for(padding, unpad, cached=causal or cache is not None, weights=output_attentions)
    if packing is not None:
        x, mask = packing.pack(x), packing  # (N, H): the layers see real tokens only
    hidden_states, attentions, cross_attentions = [x], [], []
    for layer in layers:
        x, weights, cross_weights = owner.run_layer(layer, x, mask, cache, encoder_hidden_states,
                                                    encoder_mask)  # (B, T, H) or (N, H)
        hidden_states.append(x)
        attentions += [weights] if weights is not None else []
        cross_attentions += [cross_weights] if cross_weights is not None else []
    if packing is not None:
        x, hidden_states = packing.unpack(x), packing.unpack_states(hidden_states)  # (B, T, H)
    return x, hidden_states, attentions, cross_attentions
