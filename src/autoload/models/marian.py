"""Marian (model_type "marian", Helsinki-NLP opus-mt): BART's post-LN encoder-decoder with fixed sinusoidal positions.

embeddings: token embedding × sqrt(d_model) (scale_embedding; from the encoder's inputs_embeds unscaled, the
            decoder's scaled, as the reference) + the sinusoidal table, no layernorm_embedding
table:      row p = [sin(p / 10000^(2i/d)) for i < d/2] ++ [cos(p / 10000^(2i/d)) for i < d/2] (halves, not
            interleaved; no offset). A non-persistent buffer, derived at build: the reference does not save it
            either (`_keys_to_ignore_on_save`), and the copies old checkpoints carry are ignored on load
layers:     nn.seq2seq's post-LN encoder / decoder layers
heads:      lm_head (tied to the decoder's embeddings) + final_logits_bias. With share_encoder_decoder_embeddings
            (default) one `model.shared` table serves both sides; without it the decoder has its own vocabulary
            (`decoder_vocab_size`, opus-mt models with separate source / target vocabularies).

Module names are the checkpoint keys (`model.shared.weight` or `model.encoder.embed_tokens.weight` /
`model.decoder.embed_tokens.weight`, `model.encoder.layers.0.fc1.weight`, `final_logits_bias`). The decoder starts
from decoder_start_token_id = pad_token_id.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..generation.mixin import GenerationMixin
from ..modeling import PreTrainedModel
from ..nn.heads import finish
from ..nn.losses import cross_entropy, shift_tokens_right
from ..nn.outputs import BaseModelOutput, BaseModelOutputWithPastAndCrossAttentions, Seq2SeqLMOutput
from ..nn.seq2seq import (SEQ2SEQ_FIELDS, DecoderLMHead, DecoderWrapper, Seq2SeqDecoderLayer, Seq2SeqEncoderLayer,
                          decoder_cache, encode_and_decode, flag, init_weights, run_decoder, run_encoder)
from .configs import MarianConfig


def sinusoidal_table(num_positions: int, dim: int) -> torch.Tensor:
    """(P, d) fp32: sin features in the first ceil(d/2) columns, cos in the rest (the reference's create_weight)."""
    position = torch.arange(num_positions, dtype=torch.float64)[:, None]  # (P, 1)
    j = torch.arange(dim, dtype=torch.float64)
    angle = position / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)  # (P, d)
    return torch.cat([torch.sin(angle[:, 0::2]), torch.cos(angle[:, 1::2])], dim=1).float()  # (P, d)


class MarianSinusoidalPositionalEmbedding(nn.Module):
    """The fixed table as a non-persistent buffer `weight`; forward(past, T) -> rows past..past+T-1 (1, T, d)."""

    def __init__(self, num_positions: int, dim: int):
        super().__init__()
        nn.init.normal_(torch.empty(num_positions, dim))  # the draws of the reference's nn.Embedding (seeded builds)
        self.register_buffer("weight", sinusoidal_table(num_positions, dim), persistent=False)

    def forward(self, past, length: int) -> torch.Tensor:
        """`past`: the first position, an int or (compiled decoding) a (1,) tensor."""
        if isinstance(past, torch.Tensor):
            return self.weight[torch.arange(length, device=past.device) + past][None]  # (1, T, d)
        return self.weight[past:past + length][None]  # (1, T, d)


class MarianEncoderLayer(Seq2SeqEncoderLayer):
    """nn.seq2seq's encoder layer (post-LN) under the reference's name (for _no_split_modules)."""


class MarianDecoderLayer(Seq2SeqDecoderLayer):
    """nn.seq2seq's decoder layer (post-LN) under the reference's name (for _no_split_modules)."""


class MarianPreTrainedModel(PreTrainedModel):
    config_class = MarianConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["MarianEncoderLayer", "MarianDecoderLayer"]
    _keys_to_ignore_on_load_unexpected = [r"embed_positions\.weight$"]  # old checkpoints saved the fixed table

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, MarianSinusoidalPositionalEmbedding):  # the reference draws a normal table, then
            torch.empty_like(module.weight).normal_()  # overwrites it with the sinusoids: the same draws here
        init_weights(module, self.config)


class _Stack(MarianPreTrainedModel):
    def __init__(self, config: MarianConfig, vocab_size: int, layer_class, num_layers: int):
        super().__init__(config)
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        self.embed_tokens = nn.Embedding(vocab_size, config.d_model, config.pad_token_id)
        self.embed_positions = MarianSinusoidalPositionalEmbedding(config.max_position_embeddings, config.d_model)
        self.layers = nn.ModuleList(layer_class(config, i) for i in range(num_layers))
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def embed(self, input_ids, inputs_embeds, past: int, scale_given: bool) -> torch.Tensor:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            x = self.embed_tokens(input_ids) * self.embed_scale  # (B, T, d)
        else:
            x = inputs_embeds * self.embed_scale if scale_given else inputs_embeds
        x = x + self.embed_positions(past, x.shape[1]).to(x.dtype)
        return nn.functional.dropout(x, p=self.config.dropout, training=self.training)


class MarianEncoder(_Stack):
    """The encoder: `encoder(input_ids, attention_mask)` -> BaseModelOutput (last_hidden_state (B, S, d))."""

    def __init__(self, config: MarianConfig):
        super().__init__(config, config.vocab_size, MarianEncoderLayer, config.encoder_layers)

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        config = self.config
        x = self.embed(input_ids, inputs_embeds, 0, scale_given=False)  # (B, S, d)
        x, hidden_states, attentions = run_encoder(self, self.layers, x, attention_mask, config.encoder_layerdrop)
        out = BaseModelOutput(
            last_hidden_state=x,
            hidden_states=tuple(hidden_states) if flag(config, output_hidden_states, "hidden_states") else None,
            attentions=tuple(attentions) if flag(config, output_attentions, "attentions") else None)
        return finish(config, out, return_dict)


class MarianDecoder(_Stack):
    """The decoder over its own vocabulary (decoder_vocab_size): causal self-attention (an EncoderDecoderCache while
    decoding) and cross-attention over the encoder output; positions start at the cache length."""

    supports_compiled_decode = True  # generate(compile=True): positions and mask from the static cache's index

    def __init__(self, config: MarianConfig):
        super().__init__(config, config.decoder_vocab_size, MarianDecoderLayer, config.decoder_layers)

    def forward(self, input_ids=None, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None,
                past_key_values=None, inputs_embeds=None, use_cache=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, cache_position=None):
        config = self.config
        cache, use_cache, past = decoder_cache(self, past_key_values, use_cache, encoder_hidden_states, cache_position)
        x = self.embed(input_ids, inputs_embeds, past, scale_given=True)  # (B, T, d)
        x, hidden_states, attentions, cross_attentions = run_decoder(
            self, self.layers, x, attention_mask, encoder_hidden_states, encoder_attention_mask, cache, past,
            config.decoder_layerdrop)
        weights = flag(config, output_attentions, "attentions")
        out = BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=x, past_key_values=cache if use_cache else None,
            hidden_states=tuple(hidden_states) if flag(config, output_hidden_states, "hidden_states") else None,
            attentions=tuple(attentions) if weights else None,
            cross_attentions=tuple(cross_attentions) if weights and encoder_hidden_states is not None else None)
        return finish(config, out, return_dict)


def _shared_keys(prefix: str) -> dict[str, str]:
    return {f"{prefix}encoder.embed_tokens.weight": f"{prefix}shared.weight",
            f"{prefix}decoder.embed_tokens.weight": f"{prefix}shared.weight"}


class MarianModel(MarianPreTrainedModel):
    """The bare encoder-decoder: the decoder's last hidden states (B, T, d) and the encoder's output."""

    def __init__(self, config: MarianConfig):
        super().__init__(config)
        if config.share_encoder_decoder_embeddings:
            self.shared = nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id)
        self._tied_weights_keys = _shared_keys("") if config.share_encoder_decoder_embeddings else {}
        self.encoder = MarianEncoder(config)
        self.decoder = MarianDecoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embed_tokens  # the shared table when shared

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        if self.config.share_encoder_decoder_embeddings:
            self.shared = self.encoder.embed_tokens = self.decoder.embed_tokens = value
        else:
            self.encoder.embed_tokens = value

    def get_encoder(self) -> MarianEncoder:
        return self.encoder

    def get_decoder(self) -> MarianDecoder:
        return self.decoder

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, past_key_values=None, inputs_embeds=None, decoder_inputs_embeds=None,
                use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None,
                cache_position=None):
        """attention_mask (B, S) is the encoder's padding mask (also for cross-attention); decoder inputs are
        required (Marian does not derive them from input_ids)."""
        return encode_and_decode(self, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask,
                                 encoder_outputs, past_key_values, inputs_embeds, decoder_inputs_embeds, use_cache,
                                 output_attentions, output_hidden_states, return_dict, cache_position)


class MarianMTModel(GenerationMixin, MarianPreTrainedModel):
    """Translation: logits = lm_head(decoder states) + final_logits_bias over the target vocabulary (B, T, V_dec)."""

    _keys_to_ignore_on_load_missing = ["final_logits_bias"]

    def __init__(self, config: MarianConfig):
        super().__init__(config)
        self.model = MarianModel(config)
        shared = config.share_encoder_decoder_embeddings
        self._tied_weights_keys = ({"lm_head.weight": "model.shared.weight", **_shared_keys("model.")} if shared
                                   else {"lm_head.weight": "model.decoder.embed_tokens.weight"})
        target = config.vocab_size if shared else config.decoder_vocab_size
        self.register_buffer("final_logits_bias", torch.zeros(1, target))
        self.lm_head = nn.Linear(config.d_model, target, bias=False)
        self.post_init()

    def get_encoder(self) -> MarianEncoder:
        return self.model.encoder

    def get_decoder(self) -> MarianDecoder:
        return self.model.decoder

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def _resize_final_logits_bias(self, n: int) -> None:
        old = self.final_logits_bias
        pad = torch.zeros(1, max(n - old.shape[-1], 0), dtype=old.dtype, device=old.device)
        self.final_logits_bias = torch.cat([old[:, :n], pad], dim=1)  # (1, n)

    def resize_token_embeddings(self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None,
                                mean_resizing: bool = True) -> nn.Embedding:
        """The source vocabulary. Shared: also the decoder's, lm_head and final_logits_bias (decoder_vocab_size
        follows); separate vocabularies: the encoder's only (see resize_decoder_token_embeddings). New rows are
        mean-initialised whatever `mean_resizing` says, as the reference's Marian."""
        if not self.config.share_encoder_decoder_embeddings:
            embeddings = self._resized_embedding(self.get_input_embeddings(), new_num_tokens, pad_to_multiple_of, True)
            if new_num_tokens is not None or pad_to_multiple_of is not None:
                self.config.vocab_size = embeddings.weight.shape[0]
            return embeddings
        embeddings = super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, True)
        self.model.set_input_embeddings(embeddings)
        self.config.decoder_vocab_size = embeddings.weight.shape[0]
        self._resize_final_logits_bias(embeddings.weight.shape[0])
        return embeddings

    def resize_decoder_token_embeddings(self, new_num_tokens: int | None) -> nn.Embedding:
        """Separate vocabularies only: the decoder's embeddings, lm_head and final_logits_bias."""
        if self.config.share_encoder_decoder_embeddings:
            raise ValueError("resize_decoder_token_embeddings is for share_encoder_decoder_embeddings=False; use "
                             "resize_token_embeddings for a shared vocabulary.")
        embeddings = self._resized_embedding(self.model.decoder.embed_tokens, new_num_tokens, None, True)
        if new_num_tokens is None:
            return embeddings
        n = embeddings.weight.shape[0]
        if self.tied_weights():
            self.lm_head.out_features = n
        else:
            self.lm_head = self._resized_lm_head(self.lm_head, n, True)
        self.config.decoder_vocab_size = n
        self.tie_weights()
        self._resize_final_logits_bias(n)
        return embeddings

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, past_key_values=None, inputs_embeds=None, decoder_inputs_embeds=None,
                labels=None, use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None,
                cache_position=None):
        """labels (B, T): target ids, -100 ignored; without decoder inputs they are shifted right (after the pad id,
        decoder_start_token_id)."""
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        out = self.model(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, encoder_outputs,
                         past_key_values, inputs_embeds, decoder_inputs_embeds, use_cache, output_attentions,
                         output_hidden_states, return_dict=True, cache_position=cache_position)
        logits = self.lm_head(out.last_hidden_state)  # (B, T, V_dec)
        logits = logits + self.final_logits_bias.to(logits.device, logits.dtype)
        loss = None if labels is None else cross_entropy(logits.float(), labels.to(logits.device))
        fields = {k: out.get(k) for k in SEQ2SEQ_FIELDS}  # the decoder's and encoder's outputs
        return finish(self.config, Seq2SeqLMOutput(loss=loss, logits=logits, **fields), return_dict)

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)


class MarianDecoderWrapper(DecoderWrapper, MarianPreTrainedModel):
    """The decoder alone under `model.decoder` (MarianForCausalLM's checkpoint keys)."""

    decoder_class = MarianDecoder


class MarianForCausalLM(GenerationMixin, DecoderLMHead, MarianPreTrainedModel):
    """The decoder as a left-to-right LM over the target vocabulary; labels are NOT shifted (labels[t] is the
    target of logits[t]), as the reference. The config becomes is_decoder=True, is_encoder_decoder=False."""

    wrapper_class = MarianDecoderWrapper
    lm_vocab = "decoder_vocab_size"
