"""BART and mBART (model_types "bart", "mbart"): a Transformer encoder-decoder with learned positions.

embeddings: shared token embedding (× sqrt(d_model) when scale_embedding) + learned positions (row = position + 2,
            the fairseq offset: max_position_embeddings + 2 rows) -> layernorm_embedding -> dropout; decoder
            positions start at the cache length
layers:     nn.seq2seq's encoder / decoder layers, post-LN (BART) or pre-LN with a final `layer_norm` per stack
            (mBART, `config.pre_layer_norm`)
heads:      lm_head tied to `model.shared` plus the `final_logits_bias` buffer (1, vocab); the sentence classifier
            (bart-large-mnli) reads the decoder state at each row's last <eos>; span logits per decoder token.

Module names are the checkpoint keys (`model.shared.weight`, `model.encoder.layers.0.self_attn.q_proj.weight`,
`model.decoder.layernorm_embedding.bias`, `final_logits_bias`, `classification_head.out_proj.weight`). mBART's classes
are thin subclasses at the end (row "mbart", family "bart"): its labels become decoder inputs by wrapping the last
non-pad token (the language code) to the front instead of prepending decoder_start_token_id.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..generation.mixin import GenerationMixin
from ..modeling import PreTrainedModel
from ..nn.heads import finish
from ..nn.losses import cross_entropy, qa_span_loss, sequence_classification_loss, shift_tokens_right
from ..nn.outputs import (BaseModelOutput, BaseModelOutputWithPastAndCrossAttentions, Seq2SeqLMOutput,
                          Seq2SeqQuestionAnsweringModelOutput, Seq2SeqSequenceClassifierOutput)
from ..nn.seq2seq import (SEQ2SEQ_FIELDS, DecoderLMHead, DecoderWrapper, Seq2SeqDecoderLayer, Seq2SeqEncoderLayer,
                          decoder_cache, encode_and_decode, flag, init_weights, run_decoder, run_encoder)
from .configs import BartConfig, MBartConfig


def mbart_shift_tokens_right(input_ids: torch.Tensor, pad_token_id: int | None) -> torch.Tensor:
    """mBART's teacher forcing: (B, T) labels -> decoder inputs [last non-pad token (the language code), labels[:-1]],
    -100 replaced by the pad id first (the reference's modeling_mbart.shift_tokens_right)."""
    if pad_token_id is None:
        raise ValueError("config.pad_token_id is not set: it is needed to build mBART's decoder_input_ids.")
    ids = input_ids.masked_fill(input_ids == -100, pad_token_id)  # (B, T)
    last = ids.ne(pad_token_id).sum(dim=1, keepdim=True) - 1  # (B, 1) index of the last non-pad token
    shifted = ids.clone()
    shifted[:, 1:] = ids[:, :-1]
    shifted[:, 0] = ids.gather(1, last).squeeze(1)
    return shifted


class BartLearnedPositionalEmbedding(nn.Embedding):
    """max_position_embeddings + 2 rows; position p reads row p + 2 (fairseq kept rows 0-1 for padding)."""

    offset = 2

    def __init__(self, num_positions: int, dim: int):
        super().__init__(num_positions + self.offset, dim)

    def forward(self, past, length: int) -> torch.Tensor:
        """`past`: the first position, an int or (compiled decoding) a (1,) tensor."""
        positions = torch.arange(length, device=self.weight.device) + past + self.offset  # (T,)
        return super().forward(positions)[None]  # (1, T, d)


class BartScaledWordEmbedding(nn.Embedding):
    """Token embedding times `embed_scale` (sqrt(d_model) with scale_embedding, else 1)."""

    def __init__(self, num_embeddings: int, dim: int, padding_idx: int | None, embed_scale: float = 1.0):
        super().__init__(num_embeddings, dim, padding_idx)
        self.embed_scale = embed_scale

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return super().forward(input_ids) * self.embed_scale  # (B, T, d)


class BartEncoderLayer(Seq2SeqEncoderLayer):
    """nn.seq2seq's encoder layer under the reference's name (for _no_split_modules)."""


class BartDecoderLayer(Seq2SeqDecoderLayer):
    """nn.seq2seq's decoder layer under the reference's name (for _no_split_modules)."""


class BartClassificationHead(nn.Module):
    """out_proj(dropout(tanh(dense(dropout(h))))): a sentence state to num_labels scores."""

    def __init__(self, dim: int, inner_dim: int, num_classes: int, dropout: float):
        super().__init__()
        self.dense = nn.Linear(dim, inner_dim)
        self.dropout = nn.Dropout(p=dropout)
        self.out_proj = nn.Linear(inner_dim, num_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.dropout(torch.tanh(self.dense(self.dropout(h)))))  # (B, labels)


class BartPreTrainedModel(PreTrainedModel):
    config_class = BartConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["BartEncoderLayer", "BartDecoderLayer"]
    _keys_to_ignore_on_load_unexpected = [r"encoder\.version", r"decoder\.version"]

    def _init_weights(self, module: nn.Module) -> None:
        init_weights(module, self.config)

    def shift_right(self, ids: torch.Tensor) -> torch.Tensor:
        """Decoder inputs from labels (or from input_ids for BartModel's denoising default)."""
        return shift_tokens_right(ids, self.config.pad_token_id, self.config.decoder_start_token_id)


class _Stack(BartPreTrainedModel):
    """What the encoder and the decoder share: token and position embeddings, layernorm_embedding, and mBART's
    final layer_norm."""

    def __init__(self, config: BartConfig, layer_class):
        super().__init__(config)
        d, self.pre_ln = config.d_model, bool(config.pre_layer_norm)
        scale = math.sqrt(d) if config.scale_embedding else 1.0
        self.embed_tokens = BartScaledWordEmbedding(config.vocab_size, d, config.pad_token_id, scale)
        self.embed_positions = BartLearnedPositionalEmbedding(config.max_position_embeddings, d)
        n = config.encoder_layers if layer_class is BartEncoderLayer else config.decoder_layers
        self.layers = nn.ModuleList(layer_class(config, i, self.pre_ln) for i in range(n))
        self.layernorm_embedding = nn.LayerNorm(d)
        self.layer_norm = nn.LayerNorm(d) if self.pre_ln else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def embed(self, input_ids, inputs_embeds, past: int = 0) -> torch.Tensor:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, d)
        x = self.layernorm_embedding(x + self.embed_positions(past, x.shape[1]).to(x.dtype))
        return nn.functional.dropout(x, p=self.config.dropout, training=self.training)

    def finish(self, x, hidden_states):
        """mBART's final layer_norm (also the last hidden state reported, as the reference)."""
        if self.layer_norm is not None:
            x = self.layer_norm(x)
            hidden_states[-1] = x
        return x


class BartEncoder(_Stack):
    """The encoder: `encoder(input_ids, attention_mask)` -> BaseModelOutput (last_hidden_state (B, S, d))."""

    def __init__(self, config: BartConfig):
        super().__init__(config, BartEncoderLayer)

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        """input_ids (B, S) or inputs_embeds (B, S, d) (not scaled); attention_mask (B, S), 1 = token, 0 = padding."""
        config = self.config
        x = self.embed(input_ids, inputs_embeds)  # (B, S, d)
        x, hidden_states, attentions = run_encoder(self, self.layers, x, attention_mask, config.encoder_layerdrop)
        x = self.finish(x, hidden_states)
        out = BaseModelOutput(
            last_hidden_state=x,
            hidden_states=tuple(hidden_states) if flag(config, output_hidden_states, "hidden_states") else None,
            attentions=tuple(attentions) if flag(config, output_attentions, "attentions") else None)
        return finish(config, out, return_dict)


class BartDecoder(_Stack):
    """The decoder: causal self-attention over the decoder tokens (an EncoderDecoderCache while decoding) and
    cross-attention over the encoder output."""

    supports_compiled_decode = True  # generate(compile=True): positions and mask from the static cache's index

    def __init__(self, config: BartConfig):
        super().__init__(config, BartDecoderLayer)

    def forward(self, input_ids=None, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None,
                past_key_values=None, inputs_embeds=None, use_cache=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, cache_position=None):
        """input_ids (B, T): the new decoder tokens (only the last one while decoding with a cache);
        attention_mask (B, past+T) decoder padding; encoder_hidden_states (B, S, d) with encoder_attention_mask
        (B, S). Positions start at cache_position[0], else at the cache length."""
        config = self.config
        cache, use_cache, past = decoder_cache(self, past_key_values, use_cache, encoder_hidden_states, cache_position)
        x = self.embed(input_ids, inputs_embeds, past)  # (B, T, d)
        x, hidden_states, attentions, cross_attentions = run_decoder(
            self, self.layers, x, attention_mask, encoder_hidden_states, encoder_attention_mask, cache, past,
            config.decoder_layerdrop)
        x = self.finish(x, hidden_states)
        weights = flag(config, output_attentions, "attentions")
        out = BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=x, past_key_values=cache if use_cache else None,
            hidden_states=tuple(hidden_states) if flag(config, output_hidden_states, "hidden_states") else None,
            attentions=tuple(attentions) if weights else None,
            cross_attentions=tuple(cross_attentions) if weights and encoder_hidden_states is not None else None)
        return finish(config, out, return_dict)


class BartModel(BartPreTrainedModel):
    """The bare encoder-decoder: the decoder's last hidden states (B, T, d) and the encoder's output. Without
    decoder inputs, the decoder reads input_ids shifted right (BART's denoising setup)."""

    _tied_weights_keys = {"encoder.embed_tokens.weight": "shared.weight",
                          "decoder.embed_tokens.weight": "shared.weight"}

    def __init__(self, config: BartConfig):
        super().__init__(config)
        scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        self.shared = BartScaledWordEmbedding(config.vocab_size, config.d_model, config.pad_token_id, scale)
        self.encoder = BartEncoder(config)
        self.decoder = BartDecoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.shared

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.shared = self.encoder.embed_tokens = self.decoder.embed_tokens = value

    def get_encoder(self) -> BartEncoder:
        return self.encoder

    def get_decoder(self) -> BartDecoder:
        return self.decoder

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, past_key_values=None, inputs_embeds=None, decoder_inputs_embeds=None,
                use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None,
                cache_position=None):
        """attention_mask (B, S) is the encoder's padding mask, also hiding those keys from cross-attention.
        `encoder_outputs` (an output object or a tuple) skips the encoder."""
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            if input_ids is None:
                raise ValueError("If no decoder_input_ids or decoder_inputs_embeds are passed, input_ids cannot be "
                                 "None: pass input_ids, decoder_input_ids or decoder_inputs_embeds.")
            decoder_input_ids = self.shift_right(input_ids)
        return encode_and_decode(self, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask,
                                 encoder_outputs, past_key_values, inputs_embeds, decoder_inputs_embeds, use_cache,
                                 output_attentions, output_hidden_states, return_dict, cache_position)


class _BartHead(BartPreTrainedModel):
    """`model` (BartModel) and a head; the encoder's and decoder's embeddings are tied to `model.shared`."""

    _tied_weights_keys = {"model.encoder.embed_tokens.weight": "model.shared.weight",
                          "model.decoder.embed_tokens.weight": "model.shared.weight"}
    model_class = BartModel

    def get_encoder(self) -> BartEncoder:
        return self.model.encoder

    def get_decoder(self) -> BartDecoder:
        return self.model.decoder

    def run_model(self, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, encoder_outputs,
                  past_key_values, inputs_embeds, decoder_inputs_embeds, use_cache, output_attentions,
                  output_hidden_states, cache_position=None):
        return self.model(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, encoder_outputs,
                          past_key_values, inputs_embeds, decoder_inputs_embeds, use_cache, output_attentions,
                          output_hidden_states, return_dict=True, cache_position=cache_position)


class BartForConditionalGeneration(GenerationMixin, _BartHead):
    """Summarisation / translation / denoising: logits = lm_head(decoder states) + final_logits_bias (B, T, V)."""

    _tied_weights_keys = {"lm_head.weight": "model.shared.weight", **_BartHead._tied_weights_keys}
    _keys_to_ignore_on_load_missing = ["final_logits_bias"]

    def __init__(self, config: BartConfig):
        super().__init__(config)
        self.model = self.model_class(config)
        self.register_buffer("final_logits_bias", torch.zeros(1, self.model.shared.num_embeddings))
        self.lm_head = nn.Linear(config.d_model, self.model.shared.num_embeddings, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def resize_token_embeddings(self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None,
                                mean_resizing: bool = True) -> nn.Embedding:
        """The shared embeddings (encoder, decoder, lm_head) and final_logits_bias (cut, or zero-padded)."""
        embeddings = super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        self.model.set_input_embeddings(embeddings)  # the stacks read the resized `shared`, as the reference
        n, old = embeddings.weight.shape[0], self.final_logits_bias
        pad = torch.zeros(1, max(n - old.shape[-1], 0), dtype=old.dtype, device=old.device)
        self.final_logits_bias = torch.cat([old[:, :n], pad], dim=1)  # (1, n); a buffer (the name is registered)
        return embeddings

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, past_key_values=None, inputs_embeds=None, decoder_inputs_embeds=None,
                labels=None, use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None,
                cache_position=None):
        """labels (B, T): target ids, -100 ignored; without decoder inputs they are shifted right into them."""
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = self.shift_right(labels)
        out = self.run_model(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, encoder_outputs,
                             past_key_values, inputs_embeds, decoder_inputs_embeds, use_cache, output_attentions,
                             output_hidden_states, cache_position)
        logits = self.lm_head(out.last_hidden_state)  # (B, T, V)
        logits = logits + self.final_logits_bias.to(logits.device, logits.dtype)
        loss = None if labels is None else cross_entropy(logits.float(), labels.to(logits.device))
        fields = {k: out.get(k) for k in SEQ2SEQ_FIELDS}  # the decoder's and encoder's outputs
        return finish(self.config, Seq2SeqLMOutput(loss=loss, logits=logits, **fields), return_dict)

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return self.shift_right(labels)


class BartForSequenceClassification(_BartHead):
    """Sentence classification (bart-large-mnli's zero-shot NLI): the decoder state at each row's last <eos>
    (config.eos_token_id in input_ids; every row must hold the same number of them) through the head."""

    def __init__(self, config: BartConfig):
        super().__init__(config)
        self.model = self.model_class(config)
        self.classification_head = BartClassificationHead(config.d_model, config.d_model, config.num_labels,
                                                          config.classifier_dropout)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, inputs_embeds=None, decoder_inputs_embeds=None, labels=None, use_cache=None,
                output_attentions=None, output_hidden_states=None, return_dict=None):
        if labels is not None:
            use_cache = False
        if input_ids is None:
            raise NotImplementedError(f"{type(self).__name__} pools at the <eos> tokens of input_ids: "
                                      "inputs_embeds alone are not supported (as the reference).")
        out = self.run_model(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, encoder_outputs,
                             None, inputs_embeds, decoder_inputs_embeds, use_cache, output_attentions,
                             output_hidden_states)
        h = out.last_hidden_state  # (B, T, d)
        eos = input_ids.eq(self.config.eos_token_id).to(h.device)  # (B, T)
        counts = eos.sum(1)
        if bool((counts != counts[0]).any()):
            raise ValueError("All examples must have the same number of <eos> tokens.")
        if int(counts[0]) == 0:
            raise ValueError(f"Each example must contain at least one <eos> token (id {self.config.eos_token_id}).")
        sentence = h[eos, :].view(h.shape[0], -1, h.shape[-1])[:, -1, :]  # (B, d): the last <eos> of each row
        logits = self.classification_head(sentence)  # (B, labels)
        loss = None if labels is None else sequence_classification_loss(self.config, logits, labels.to(logits.device))
        fields = {k: out.get(k) for k in SEQ2SEQ_FIELDS}
        return finish(self.config, Seq2SeqSequenceClassifierOutput(loss=loss, logits=logits, **fields), return_dict)


class BartForQuestionAnswering(_BartHead):
    """Extractive QA: start / end logits (B, T) per decoder token from `qa_outputs`."""

    def __init__(self, config: BartConfig):
        super().__init__(config)
        config.num_labels = 2  # as the reference
        self.model = self.model_class(config)
        self.qa_outputs = nn.Linear(config.d_model, 2)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, start_positions=None, end_positions=None, inputs_embeds=None,
                decoder_inputs_embeds=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None):
        if start_positions is not None and end_positions is not None:
            use_cache = False
        out = self.run_model(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, encoder_outputs,
                             None, inputs_embeds, decoder_inputs_embeds, use_cache, output_attentions,
                             output_hidden_states)
        start, end = (t.squeeze(-1).contiguous() for t in self.qa_outputs(out.last_hidden_state).split(1, dim=-1))
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = qa_span_loss(start, end, start_positions, end_positions)
        return finish(self.config, Seq2SeqQuestionAnsweringModelOutput(
            loss=loss, start_logits=start, end_logits=end, **{k: out.get(k) for k in SEQ2SEQ_FIELDS}), return_dict)


class BartDecoderWrapper(DecoderWrapper, BartPreTrainedModel):
    """The decoder alone under `model.decoder` (BartForCausalLM's checkpoint keys)."""

    decoder_class = BartDecoder


class BartForCausalLM(GenerationMixin, DecoderLMHead, BartPreTrainedModel):
    """The decoder as a left-to-right LM (optionally cross-attending to `encoder_hidden_states`); `labels` are NOT
    shifted here (labels[t] is the target of logits[t]), as the reference. The config becomes is_decoder=True,
    is_encoder_decoder=False, as the reference sets it."""

    wrapper_class = BartDecoderWrapper


# -- mBART: the same modules with pre-LN layers (MBartConfig.pre_layer_norm) and its own label shift ----------------

class MBartPreTrainedModel(BartPreTrainedModel):
    config_class = MBartConfig

    def shift_right(self, ids: torch.Tensor) -> torch.Tensor:
        return mbart_shift_tokens_right(ids, self.config.pad_token_id)


class MBartModel(MBartPreTrainedModel, BartModel):
    """BartModel for mBART configs (input_ids wrapped as mBART does when no decoder inputs are given)."""


class MBartForConditionalGeneration(MBartPreTrainedModel, BartForConditionalGeneration):
    """Translation: the target language code is the decoder's first token (`forced_bos_token_id` at generation)."""

    model_class = MBartModel


class MBartForSequenceClassification(MBartPreTrainedModel, BartForSequenceClassification):
    model_class = MBartModel


class MBartForQuestionAnswering(MBartPreTrainedModel, BartForQuestionAnswering):
    model_class = MBartModel


class MBartForCausalLM(MBartPreTrainedModel, BartForCausalLM):
    """BartForCausalLM with mBART's pre-LN decoder."""
