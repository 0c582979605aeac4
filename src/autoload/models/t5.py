"""T5 (Raffel et al., 2020) and mT5 (model_types "t5", "mt5"): a pre-norm encoder-decoder with relative position
biases, shared token embeddings and no attention scaling.

    encoder block:  h = h + SelfAttention(ln(h));  h = h + DenseReluDense(ln(h))
    decoder block:  h = h + SelfAttention(ln(h)) (causal);  h = h + EncDecAttention(ln(h), enc);  h = h + FF(ln(h))
    attention:      softmax(q·kᵀ + position_bias + mask)·v   (no 1/√d: T5 folds it into the init of q)
    position_bias:  relative_attention_bias(bucket(key - query)) (1, nh, T, K), an embedding of block 0 only,
                    computed once per stack and reused by every block (bidirectional buckets in the encoder,
                    causal in the decoder, whose new queries sit at past..past+T-1); cross-attention has none
    FF:             wo(relu(wi x)) (v1.0, "relu") or wo(gelu_new(wi_0 x) * wi_1 x) (v1.1 / flan / mT5, "gated-gelu")
    LayerNorm:      RMS norm without mean subtraction or bias, variance in fp32
    lm_head:        on the decoder output times d_model**-0.5 when config.scale_decoder_outputs (t5: default
                    tie_word_embeddings; mt5: never, as transformers 5)

Module names are the checkpoint keys (`encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight`,
`decoder.block.1.layer.1.EncDecAttention.q.weight`, `...layer.2.DenseReluDense.wi_0.weight`, `final_layer_norm`).
`encoder.embed_tokens` / `decoder.embed_tokens` are always tied to `shared`, `lm_head` when tie_word_embeddings.
Attention runs through torch's SDPA with scale=1 and the bias, the mask folded in (the dtype's minimum at hidden
keys), as a float attn_mask; eager attention (attn_implementation="eager") returns the weights.

fp16 (as transformers): after each sub-layer (self-attention, cross-attention, feed-forward) a float16 residual
stream is clamped to ±(65504 - 1000) (which rounds to 64512) if it holds an inf anywhere, so infs become that
finite value, else to ±65504 (a no-op); NaNs stay. Loaded in float16, the feed-forward output projections `wo`
are kept in float32 (the reference's `_keep_in_fp32_modules`): their input is cast to float32, so from the first
feed-forward on the residual stream is float32 and the clamp no longer fires. bfloat16 needs neither.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..generation.mixin import GenerationMixin
from ..modeling import PreTrainedModel
from ..nn.activations import Activation
from ..nn.attention import attention, is_eager
from ..nn.cache import EncoderDecoderCache
from ..nn.heads import finish
from ..nn.losses import cross_entropy, qa_span_loss, sequence_classification_loss, shift_tokens_right
from ..nn.outputs import (BaseModelOutput, BaseModelOutputWithPastAndCrossAttentions, Seq2SeqLMOutput,
                          Seq2SeqModelOutput, Seq2SeqQuestionAnsweringModelOutput, Seq2SeqSequenceClassifierOutput,
                          TokenClassifierOutput)
from ..nn.seq2seq import write_index
from .configs import MT5Config, T5Config


def clamp_fp16(h: torch.Tensor) -> torch.Tensor:
    """float16 only: clamp to ±(max - 1000) when any value is inf, else to ±max (see the module docstring)."""
    if h.dtype != torch.float16:
        return h
    top = torch.finfo(torch.float16).max
    limit = torch.where(torch.isinf(h).any(), top - 1000, top)
    return torch.clamp(h, min=-limit, max=limit)


def relative_position_bucket(relative: torch.Tensor, bidirectional: bool, num_buckets: int, max_distance: int):
    """Bucket of each key - query distance: half the buckets (per direction when bidirectional) are exact small
    distances, the rest grow logarithmically up to max_distance; a causal decoder maps keys ahead to bucket 0."""
    buckets = 0
    if bidirectional:
        num_buckets //= 2
        buckets = (relative > 0).to(torch.long) * num_buckets
        relative = torch.abs(relative)
    else:
        relative = -torch.min(relative, torch.zeros_like(relative))
    exact = num_buckets // 2
    large = exact + (torch.log(relative.float() / exact) / math.log(max_distance / exact)
                     * (num_buckets - exact)).to(torch.long)
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    return buckets + torch.where(relative < exact, relative, large)


class T5LayerNorm(nn.Module):
    """weight · x / sqrt(mean(x²) + eps): no mean subtraction, no bias; the variance in fp32."""

    def __init__(self, size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.variance_epsilon)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            x = x.to(self.weight.dtype)
        return self.weight * x


class T5DenseActDense(nn.Module):
    """The feed-forward block: wo(act(wi x)), or wo(act(wi_0 x) * wi_1 x) when config.is_gated_act."""

    def __init__(self, config: T5Config):
        super().__init__()
        self.gated = config.is_gated_act
        if self.gated:
            self.wi_0 = nn.Linear(config.d_model, config.d_ff, bias=False)
            self.wi_1 = nn.Linear(config.d_model, config.d_ff, bias=False)
        else:
            self.wi = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wo = nn.Linear(config.d_ff, config.d_model, bias=False)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.act = Activation(config.dense_act_fn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.wi_0(x)) * self.wi_1(x) if self.gated else self.act(self.wi(x))  # (B, T, d_ff)
        return self.wo(self.dropout(h).to(self.wo.weight.dtype))  # wo may be kept in fp32 (module docstring)


class T5Attention(nn.Module):
    """Multi-head attention without scaling; `relative_attention_bias` only in block 0's self-attention."""

    def __init__(self, config: T5Config, has_relative_attention_bias: bool, layer_idx: int):
        super().__init__()
        self.n_heads, self.d_kv, self.layer_idx = config.num_heads, config.d_kv, layer_idx
        self.dropout = config.dropout_rate
        inner = config.num_heads * config.d_kv
        self.q = nn.Linear(config.d_model, inner, bias=False)
        self.k = nn.Linear(config.d_model, inner, bias=False)
        self.v = nn.Linear(config.d_model, inner, bias=False)
        self.o = nn.Linear(inner, config.d_model, bias=False)
        self.has_relative_attention_bias = has_relative_attention_bias
        if has_relative_attention_bias:
            self.num_buckets = config.relative_attention_num_buckets
            self.max_distance = config.relative_attention_max_distance
            self.relative_attention_bias = nn.Embedding(config.relative_attention_num_buckets, config.num_heads)

    def compute_bias(self, q_len: int, k_len: int, past: int, bidirectional: bool, device) -> torch.Tensor:
        """(1, nh, T, K): the learned bias of queries at past..past+T-1 over keys 0..K-1."""
        query = torch.arange(q_len, dtype=torch.long, device=device)[:, None] + past  # (T, 1)
        key = torch.arange(k_len, dtype=torch.long, device=device)[None, :]  # (1, K)
        buckets = relative_position_bucket(key - query, bidirectional, self.num_buckets, self.max_distance)
        return self.relative_attention_bias(buckets).permute(2, 0, 1)[None]  # (T, K, nh) -> (1, nh, T, K)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.n_heads, self.d_kv).transpose(1, 2)  # (B, nh, L, d_kv)

    def forward(self, x, bias, mask, cache, source, eager):
        """Self-attention over x (B, T, d_model), or cross-attention over `source` (B, S, d_model) when given.
        `bias`: the float (B or 1, nh, T, K) position bias with the mask folded in; `mask`: a bool (B, 1, 1, S)."""
        B, T, _ = x.shape
        q = self._heads(self.q(x))  # (B, nh, T, d_kv)
        if source is None:
            k, v = self._heads(self.k(x)), self._heads(self.v(x))
            if cache is not None:
                k, v = cache.update(k, v, self.layer_idx)  # (B, nh, past+T, d_kv)
        elif cache is not None:  # the encoder's keys and values: projected at the first decoding step only
            k, v = cache.cross(self.layer_idx, lambda s: (self._heads(self.k(s)), self._heads(self.v(s))), source)
        else:
            k, v = self._heads(self.k(source)), self._heads(self.v(source))
        y, weights = attention(q, k, v, mask, scale=1.0, bias=bias, eager=eager, softmax_fp32=False,
                               dropout=self.dropout if self.training else 0.0)
        return self.o(y.transpose(1, 2).reshape(B, T, -1)), weights  # (B, T, d_model)


class T5SubLayer(nn.Module):
    """h + dropout(f(layer_norm(h))), clamped in fp16; `f` under its checkpoint name (SelfAttention,
    EncDecAttention, DenseReluDense). Returns (h, attention weights or None)."""

    def __init__(self, config: T5Config, name: str, f: nn.Module):
        super().__init__()
        self.name = name
        setattr(self, name, f)
        self.layer_norm = T5LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, h, *args):
        y = getattr(self, self.name)(self.layer_norm(h), *args)
        y, weights = y if isinstance(y, tuple) else (y, None)
        return clamp_fp16(h + self.dropout(y)), weights


class T5Block(nn.Module):
    """layer.0 self-attention, layer.1 cross-attention (decoder), then the feed-forward layer."""

    def __init__(self, config: T5Config, is_decoder: bool, layer_idx: int):
        super().__init__()
        attend = lambda relative: T5Attention(config, relative, layer_idx)  # noqa: E731
        self.layer = nn.ModuleList([T5SubLayer(config, "SelfAttention", attend(layer_idx == 0))])
        if is_decoder:
            self.layer.append(T5SubLayer(config, "EncDecAttention", attend(False)))
        self.layer.append(T5SubLayer(config, "DenseReluDense", T5DenseActDense(config)))

    def forward(self, h, bias, source, source_mask, cache, eager):
        h, weights = self.layer[0](h, bias, None, cache, None, eager)
        cross = None
        if len(self.layer) == 3 and source is not None:
            h, cross = self.layer[1](h, None, source_mask, cache, source, eager)
        return self.layer[-1](h)[0], weights, cross


def _keep_wo_in_fp32(model: nn.Module) -> None:
    """Loaded in float16: the feed-forward `wo` projections go to float32, as the reference keeps them."""
    for module in model.modules():
        if isinstance(module, T5DenseActDense) and module.wo.weight.dtype == torch.float16:
            module.wo.float()


class T5PreTrainedModel(PreTrainedModel):
    config_class = T5Config
    base_model_prefix = "transformer"
    supports_gradient_checkpointing = True
    _no_split_modules = ["T5Block"]
    # checkpoints of old transformers versions carry a cross-attention bias nothing reads
    _keys_to_ignore_on_load_unexpected = [r"decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias"]
    _tied_weights_keys = {"encoder.embed_tokens.weight": "shared.weight", "decoder.embed_tokens.weight": "shared.weight"}

    def tied_weights(self) -> dict[str, str]:
        """The stacks' embed_tokens always share `shared`; lm_head does when tie_word_embeddings (also inside a
        head's `transformer`)."""
        names = {n for n, _ in self.named_parameters(remove_duplicate=False)} | set(self.state_dict())
        ties = {**self._tied_weights_keys, **({"lm_head.weight": "shared.weight"} if self.config.tie_word_embeddings
                                              else {})}
        return {p + k: p + v for p in ("", "transformer.") for k, v in ties.items() if p + k in names}

    def _init_weights(self, module: nn.Module) -> None:
        """The reference's init (std x config.initializer_factor): embeddings and an untied lm_head N(0, 1); q
        N(0, (d_model·d_kv)^-0.5), k, v, wi and the bias table N(0, d_model^-0.5), o N(0, (nh·d_kv)^-0.5), wo
        N(0, d_ff^-0.5); the heads' linears N(0, d_model^-0.5) (token classifier N(0, 1)) with zero biases."""
        super()._init_weights(module)
        c = self.config
        d, factor = c.d_model ** -0.5, c.initializer_factor
        weights: list[tuple[nn.Module, float]] = []
        if isinstance(module, T5LayerNorm):
            module.weight.data.fill_(factor)
        elif isinstance(module, T5PreTrainedModel) and hasattr(module, "shared"):
            weights = [(module.shared, 1.0), (getattr(module, "qa_outputs", None), d)]
            if not c.tie_word_embeddings:
                weights.append((getattr(module, "lm_head", None), 1.0))
        elif isinstance(module, T5ForTokenClassification):
            weights = [(module.classifier, 1.0)]
        elif isinstance(module, T5ClassificationHead):
            weights = [(module.dense, d), (module.out_proj, d)]
        elif isinstance(module, T5DenseActDense):
            weights = [(getattr(module, n, None), d) for n in ("wi", "wi_0", "wi_1")] + [(module.wo, c.d_ff ** -0.5)]
        elif isinstance(module, T5Attention):
            weights = [(module.q, (c.d_model * c.d_kv) ** -0.5), (module.k, d), (module.v, d),
                       (module.o, (c.num_heads * c.d_kv) ** -0.5), (getattr(module, "relative_attention_bias", None), d)]
        for layer, std in weights:
            if layer is not None:
                layer.weight.data.normal_(0.0, factor * std)
                if getattr(layer, "bias", None) is not None:
                    layer.bias.data.zero_()

    def get_input_embeddings(self) -> nn.Module:
        return self.shared if hasattr(self, "shared") else self.transformer.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        if not hasattr(self, "shared"):
            return self.transformer.set_input_embeddings(value)
        self.shared = self.encoder.embed_tokens = value
        if hasattr(self, "decoder"):
            self.decoder.embed_tokens = value

    def get_encoder(self) -> nn.Module:
        return self.encoder if hasattr(self, "encoder") else self.transformer.get_encoder()

    def load_extras(self, source) -> None:
        super().load_extras(source)
        _keep_wo_in_fp32(self)

    def _build(self, config: T5Config, decoder: bool = True) -> None:
        """`shared` embeddings, the encoder stack and (decoder=True) the decoder stack."""
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        self.encoder = T5Stack(config, is_decoder=False)
        if decoder:
            self.decoder = T5Stack(config, is_decoder=True)

    def _run(self, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, encoder_outputs,
             past_key_values, inputs_embeds, decoder_inputs_embeds, use_cache, output_attentions,
             output_hidden_states, cache_position=None):
        """(encoder output, decoder output). The encoder runs unless `encoder_outputs` (a BaseModelOutput or a
        tuple whose first item is the (B, S, d_model) states) is given; `attention_mask` is the encoder's."""
        if encoder_outputs is None:
            encoder_outputs = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                           inputs_embeds=inputs_embeds, output_attentions=output_attentions,
                                           output_hidden_states=output_hidden_states, return_dict=True)
        elif not hasattr(encoder_outputs, "last_hidden_state"):
            encoder_outputs = BaseModelOutput(*tuple(encoder_outputs)[:3])
        decoded = self.decoder(input_ids=decoder_input_ids, attention_mask=decoder_attention_mask,
                               inputs_embeds=decoder_inputs_embeds, past_key_values=past_key_values,
                               encoder_hidden_states=encoder_outputs[0], encoder_attention_mask=attention_mask,
                               use_cache=use_cache, output_attentions=output_attentions,
                               output_hidden_states=output_hidden_states, return_dict=True,
                               cache_position=cache_position)
        return encoder_outputs, decoded

    def _shift_right(self, input_ids: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(input_ids, self.config.pad_token_id, self.config.decoder_start_token_id)

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return self._shift_right(labels)


class T5Stack(T5PreTrainedModel):
    """The encoder (is_decoder False) or the decoder: embed_tokens (tied to `shared`), blocks, final_layer_norm."""

    supports_compiled_decode = True  # the decoder under generate(compile=True): bias and mask from the cache index

    def __init__(self, config: T5Config, is_decoder: bool):
        super().__init__(config)
        self.is_decoder = is_decoder
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model)
        layers = config.num_decoder_layers if is_decoder else config.num_layers
        self.block = nn.ModuleList(T5Block(config, is_decoder, i) for i in range(layers))
        self.final_layer_norm = T5LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embed_tokens = value

    def tied_weights(self) -> dict[str, str]:
        return {}

    def forward(self, input_ids=None, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None,
                inputs_embeds=None, past_key_values=None, use_cache=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, cache_position=None):
        """attention_mask: (B, S) for the encoder, (B, past+T) for the decoder (0 at padding). The decoder keeps
        an EncoderDecoderCache when use_cache (default config.use_cache), created when none is given."""
        cfg = self.config
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids and inputs_embeds.")
        output_attentions = cfg.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = cfg.output_hidden_states if output_hidden_states is None else output_hidden_states
        use_cache = self.is_decoder and (cfg.use_cache if use_cache is None else use_cache) and not self.checkpointing()
        cache = (EncoderDecoderCache() if past_key_values is None else past_key_values) if use_cache else None
        if cache is not None and not isinstance(cache, EncoderDecoderCache):
            raise TypeError(f"T5's decoder takes an EncoderDecoderCache, got {type(cache).__name__}.")
        h = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, d_model)
        T = h.shape[1]
        write = write_index(cache)
        if write is not None:  # compiled decoding: query at the (1,) cache index, keys over the whole static cache
            past, K = write, cache.self_attention_cache.max_cache_len
        else:
            past = int(cache_position[0]) if cache_position is not None else \
                cache.get_seq_length() if cache is not None else 0
            K = past + T
        allowed = None  # (B or 1, 1, T, K) bool, True = attend: causal in the decoder, padding hidden
        if self.is_decoder:
            allowed = torch.arange(K, device=h.device)[None] <= torch.arange(T, device=h.device)[:, None] + past
            allowed = allowed[None, None]
        if attention_mask is not None and attention_mask.dim() == 4:  # compiled decoding: (B, 1, T, K) bool
            allowed = attention_mask if allowed is None else allowed & attention_mask
        elif attention_mask is not None:
            if attention_mask.shape[-1] < K:
                raise ValueError(f"attention_mask covers {attention_mask.shape[-1]} positions; {K} keys are attended "
                                 f"(past {past} + new {T}).")
            padding = attention_mask[:, :K].to(h.device, torch.bool)[:, None, None, :]  # (B, 1, 1, K)
            allowed = padding if allowed is None else allowed & padding
        first = self.block[0].layer[0].SelfAttention
        bias = first.compute_bias(T, K, past, not self.is_decoder, h.device).to(h.dtype)  # (1, nh, T, K)
        if allowed is not None:  # the mask folded into the bias
            bias = torch.where(allowed, bias, torch.finfo(h.dtype).min)  # (B, nh, T, K)
        source_mask = None
        if encoder_hidden_states is not None and encoder_attention_mask is not None:
            source_mask = encoder_attention_mask.to(h.device, torch.bool)[:, None, None, :]  # (B, 1, 1, S)
        eager = is_eager(cfg)
        h = self.dropout(h)
        hidden, attentions, cross_attentions = [], [], []
        for block in self.block:
            hidden.append(h)
            h, weights, cross = self.run_layer(block, h, bias, encoder_hidden_states, source_mask, cache, eager)
            attentions.append(weights)
            cross_attentions.append(cross)
        h = self.dropout(self.final_layer_norm(h))

        def collected(items):  # SDPA computes no weights: an empty tuple, as the reference
            return None if not output_attentions else tuple(items) if eager and None not in items else ()

        fields = dict(last_hidden_state=h, hidden_states=(*hidden, h) if output_hidden_states else None,
                      attentions=collected(attentions))
        if not self.is_decoder:
            return finish(cfg, BaseModelOutput(**fields), return_dict)
        out = BaseModelOutputWithPastAndCrossAttentions(past_key_values=cache, **fields,
                                                        cross_attentions=collected(cross_attentions))
        return finish(cfg, out, return_dict)


def _fields(enc, dec) -> dict:
    """The Seq2Seq* output fields other than the head's own."""
    return dict(past_key_values=dec.past_key_values, decoder_hidden_states=dec.hidden_states,
                decoder_attentions=dec.attentions, cross_attentions=dec.cross_attentions,
                encoder_last_hidden_state=enc.last_hidden_state, encoder_hidden_states=enc.hidden_states,
                encoder_attentions=enc.attentions)


class T5Model(T5PreTrainedModel):
    """The bare encoder-decoder: shared embeddings, encoder and decoder stacks; returns the decoder's states."""

    def __init__(self, config: T5Config):
        super().__init__(config)
        self._build(config)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, past_key_values=None, inputs_embeds=None, decoder_inputs_embeds=None,
                use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None,
                cache_position=None):
        enc, dec = self._run(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, encoder_outputs,
                             past_key_values, inputs_embeds, decoder_inputs_embeds, use_cache, output_attentions,
                             output_hidden_states, cache_position)
        out = Seq2SeqModelOutput(last_hidden_state=dec.last_hidden_state, **_fields(enc, dec))
        return finish(self.config, out, return_dict)


class T5ForConditionalGeneration(GenerationMixin, T5PreTrainedModel):
    """T5 with the language-modelling head. `labels` (B, T) are shifted right into decoder_input_ids (start token
    decoder_start_token_id, -100 -> pad) when none are given; the loss is their cross entropy, -100 ignored."""

    def __init__(self, config: T5Config):
        super().__init__(config)
        self._build(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def load_extras(self, source) -> None:
        super().load_extras(source)  # GenerationMixin's: generation_config.json
        _keep_wo_in_fp32(self)

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, past_key_values=None, inputs_embeds=None, decoder_inputs_embeds=None,
                labels=None, use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None,
                cache_position=None):
        if labels is not None and decoder_input_ids is None and decoder_inputs_embeds is None:
            decoder_input_ids = self._shift_right(labels)
        enc, dec = self._run(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, encoder_outputs,
                             past_key_values, inputs_embeds, decoder_inputs_embeds, use_cache, output_attentions,
                             output_hidden_states, cache_position)
        h = dec.last_hidden_state  # (B, T, d_model)
        if self.config.scale_decoder_outputs:
            h = h * self.config.d_model ** -0.5
        logits = self.lm_head(h)  # (B, T, vocab)
        loss = None if labels is None else cross_entropy(logits.float(), labels.to(logits.device))
        return finish(self.config, Seq2SeqLMOutput(loss=loss, logits=logits, **_fields(enc, dec)), return_dict)


class T5EncoderModel(T5PreTrainedModel):
    """The encoder alone (shared embeddings + encoder stack), e.g. the text encoder of sentence-t5 or diffusion
    pipelines; a full seq2seq checkpoint loads into it (its decoder and lm_head are ignored)."""

    _keys_to_ignore_on_load_unexpected = [r"^decoder\.", r"^lm_head\."]

    def __init__(self, config: T5Config):
        super().__init__(config)
        self._build(config, decoder=False)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                            return_dict=return_dict)


class T5ClassificationHead(nn.Module):
    """out_proj(dropout(tanh(dense(dropout(x)))))."""

    def __init__(self, config: T5Config):
        super().__init__()
        self.dense = nn.Linear(config.d_model, config.d_model)
        self.dropout = nn.Dropout(p=config.classifier_dropout)
        self.out_proj = nn.Linear(config.d_model, config.num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.dropout(torch.tanh(self.dense(self.dropout(x)))))


class T5ForSequenceClassification(T5PreTrainedModel):
    """Classifies the decoder state at each row's last EOS; decoder_input_ids default to the shifted input_ids.
    Every row must hold the same number (>= 1) of EOS tokens, as in the reference."""

    def __init__(self, config: T5Config):
        super().__init__(config)
        self.transformer = T5Model(config)
        self.classification_head = T5ClassificationHead(config)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, inputs_embeds=None, decoder_inputs_embeds=None, labels=None, use_cache=None,
                output_attentions=None, output_hidden_states=None, return_dict=None):
        if input_ids is None:
            raise NotImplementedError("T5ForSequenceClassification needs input_ids (it pools at their EOS tokens).")
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            decoder_input_ids = self._shift_right(input_ids)
        use_cache = False if labels is not None else use_cache
        enc, dec = self.transformer._run(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask,
                                         encoder_outputs, None, inputs_embeds, decoder_inputs_embeds, use_cache,
                                         output_attentions, output_hidden_states)
        h = dec.last_hidden_state  # (B, T, d_model)
        eos = input_ids.eq(self.config.eos_token_id).to(h.device)  # (B, T)
        counts = eos.sum(1)
        if int(counts.min()) < 1 or bool((counts != counts[0]).any()):
            raise ValueError("Every row must contain the same number (at least one) of <eos> tokens.")
        logits = self.classification_head(h[eos].view(h.shape[0], -1, h.shape[-1])[:, -1])  # last EOS: (B, labels)
        loss = None if labels is None else sequence_classification_loss(self.config, logits, labels.to(logits.device))
        out = Seq2SeqSequenceClassifierOutput(loss=loss, logits=logits, **_fields(enc, dec))
        return finish(self.config, out, return_dict)


class T5ForTokenClassification(T5PreTrainedModel):
    """Per-token scores on the encoder's states (`transformer` is a T5EncoderModel)."""

    def __init__(self, config: T5Config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.transformer = T5EncoderModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.d_model, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        out = self.transformer(input_ids, attention_mask, inputs_embeds, output_attentions, output_hidden_states,
                               return_dict=True)
        logits = self.classifier(self.dropout(out.last_hidden_state))  # (B, T, num_labels)
        loss = None if labels is None else cross_entropy(logits, labels.to(logits.device))
        result = TokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                       attentions=out.attentions)
        return finish(self.config, result, return_dict)


class T5ForQuestionAnswering(T5PreTrainedModel):
    """Extractive QA on the decoder's states (decoder_input_ids default to the shifted input_ids): `qa_outputs`
    gives start and end logits; the loss averages their cross entropies (positions past T ignored)."""

    def __init__(self, config: T5Config):
        super().__init__(config)
        self._build(config)
        self.qa_outputs = nn.Linear(config.d_model, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, start_positions=None, end_positions=None, inputs_embeds=None,
                decoder_inputs_embeds=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None):
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            if input_ids is None:
                raise ValueError("Pass input_ids, decoder_input_ids or decoder_inputs_embeds.")
            decoder_input_ids = self._shift_right(input_ids)
        labelled = start_positions is not None and end_positions is not None
        enc, dec = self._run(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, encoder_outputs,
                             None, inputs_embeds, decoder_inputs_embeds, False if labelled else use_cache,
                             output_attentions, output_hidden_states)
        start, end = self.qa_outputs(dec.last_hidden_state).split(1, dim=-1)  # (B, T, 1) each
        start, end = start.squeeze(-1).contiguous(), end.squeeze(-1).contiguous()  # (B, T)
        loss = qa_span_loss(start, end, start_positions, end_positions) if labelled else None
        out = Seq2SeqQuestionAnsweringModelOutput(loss=loss, start_logits=start, end_logits=end, **_fields(enc, dec))
        return finish(self.config, out, return_dict)


# mT5: the same classes under their own names and config (MT5Config: never scales the decoder output)
class MT5Model(T5Model): config_class = MT5Config
class MT5ForConditionalGeneration(T5ForConditionalGeneration): config_class = MT5Config
class MT5EncoderModel(T5EncoderModel): config_class = MT5Config
class MT5ForSequenceClassification(T5ForSequenceClassification): config_class = MT5Config
class MT5ForTokenClassification(T5ForTokenClassification): config_class = MT5Config
class MT5ForQuestionAnswering(T5ForQuestionAnswering): config_class = MT5Config
