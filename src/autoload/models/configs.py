"""Configs of the built-in architectures: config.json key names with transformers 5.24's defaults.

Kept apart from the model files so that AutoConfig and AutoTokenizer never import torch.
"""

from __future__ import annotations

import logging
from typing import ClassVar

from ..configuration import PretrainedConfig
from ..errors import ConfigError

logger = logging.getLogger("autoload")


class BertConfig(PretrainedConfig):
    model_type = "bert"
    mlp_matrices, learned_positions = 2, True
    position_buffer_bytes = 16  # BertEmbeddings' position_ids and token_type_ids: int64, one per position
    defaults = {
        "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
        "intermediate_size": 3072, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512, "type_vocab_size": 2,
        "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0, "use_cache": True,
        "classifier_dropout": None, "is_decoder": False, "add_cross_attention": False, "bos_token_id": None,
        "eos_token_id": None, "tie_word_embeddings": True,
    }


class GPT2Config(PretrainedConfig):
    model_type = "gpt2"
    mlp_matrices, learned_positions = 2, True
    defaults = {
        "vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12, "n_inner": None,
        "activation_function": "gelu_new", "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1,
        "layer_norm_epsilon": 1e-5, "initializer_range": 0.02, "summary_type": "cls_index",
        "summary_use_proj": True, "summary_activation": None, "summary_proj_to_labels": True,
        "summary_first_dropout": 0.1, "scale_attn_weights": True, "use_cache": True, "bos_token_id": 50256,
        "eos_token_id": 50256, "pad_token_id": None, "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False, "add_cross_attention": False, "tie_word_embeddings": True,
    }
    attribute_map = {"hidden_size": "n_embd", "max_position_embeddings": "n_positions",
                     "num_attention_heads": "n_head", "num_hidden_layers": "n_layer"}


class AlbertConfig(PretrainedConfig):
    """ALBERT: BERT-like sizes plus factorised embeddings (`embedding_size`) and layer sharing: num_hidden_groups
    groups of inner_group_num layers carry the weights of all num_hidden_layers steps."""

    model_type = "albert"
    mlp_matrices, learned_positions = 2, True
    position_buffer_bytes = 16  # AlbertEmbeddings' position_ids and token_type_ids: int64, one per position
    defaults = {
        "vocab_size": 30000, "embedding_size": 128, "hidden_size": 4096, "num_hidden_layers": 12,
        "num_hidden_groups": 1, "num_attention_heads": 64, "intermediate_size": 16384, "inner_group_num": 1,
        "hidden_act": "gelu_new", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
        "max_position_embeddings": 512, "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12,
        "classifier_dropout_prob": 0.1, "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3,
        "tie_word_embeddings": True,
    }

    def parameter_estimate(self) -> list[tuple[str, int]]:
        """Embeddings of embedding_size and only num_hidden_groups × inner_group_num layers of weights."""
        def size(name: str) -> int:
            value = getattr(self, name, None)
            return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

        vocab, emb, hidden, inner = (size(k) for k in ("vocab_size", "embedding_size", "hidden_size",
                                                        "intermediate_size"))
        groups, per_group = size("num_hidden_groups"), size("inner_group_num")
        positions = size("max_position_embeddings")
        return [(f"embeddings ((vocab_size={vocab:,} + max_position_embeddings={positions:,}) x "
                 f"embedding_size={emb:,})", (vocab + positions) * emb),
                (f"num_hidden_groups={groups:,} x inner_group_num={per_group:,} shared layers (hidden_size={hidden:,}, "
                 f"intermediate_size={inner:,})", groups * per_group * (4 * hidden * hidden + 2 * hidden * inner))]


class _RopeConfig(PretrainedConfig):
    """Decoder configs with rotary embeddings: legacy `rope_theta`/`rope_scaling` fold into `rope_parameters`;
    `default_theta` is the base when neither gives one."""

    default_theta: ClassVar[float] = 10000.0

    def __init__(self, **kwargs):
        theta = kwargs.pop("rope_theta", None)
        scaling = kwargs.pop("rope_scaling", None)
        super().__init__(**kwargs)
        params = dict(self.rope_parameters or {})
        if scaling:
            params.update(scaling)
            params.setdefault("rope_type", scaling.get("type", "default"))
        if theta is not None:
            params["rope_theta"] = float(theta)
        params.setdefault("rope_theta", self.default_theta)
        params.setdefault("rope_type", "default")
        if params["rope_type"] in ("llama3", "yarn", "longrope"):
            params.setdefault("original_max_position_embeddings", self.max_position_embeddings)
        self.rope_parameters = params


class _LlamaFamilyConfig(_RopeConfig):
    """The configs of the Llama-style decoders (llama, mistral, qwen2, qwen3), all built by `models/llama.py`.
    What differs between them is read through these hooks, each written once, in the config that differs. They
    are properties, not config.json keys: never saved, and a stray key of the same name cannot override them."""

    @property
    def qkv_bias(self) -> bool:
        """Biases on q_proj, k_proj and v_proj."""
        return False

    @property
    def o_bias(self) -> bool:
        """A bias on o_proj."""
        return False

    @property
    def mlp_proj_bias(self) -> bool:
        """Biases on the MLP's gate_proj, up_proj and down_proj."""
        return False

    @property
    def qk_norm(self) -> bool:
        """A per-head RMSNorm on queries and keys (q_norm, k_norm over head_dim), applied before RoPE."""
        return False

    def window_of(self, layer_idx: int) -> int | None:
        """The sliding window of layer `layer_idx` (its most recent positions, itself included); None: full causal."""
        return None

    def is_sparse(self, layer_idx: int) -> bool:
        """Whether layer `layer_idx` has a sparse mixture-of-experts block (`nn/moe.py`) in place of the MLP."""
        return False


class LlamaConfig(_LlamaFamilyConfig):
    model_type = "llama"
    defaults = {
        "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": None, "hidden_act": "silu",
        "max_position_embeddings": 2048, "initializer_range": 0.02, "rms_norm_eps": 1e-6, "use_cache": True,
        "pad_token_id": None, "bos_token_id": 1, "eos_token_id": 2, "pretraining_tp": 1,
        "tie_word_embeddings": False, "rope_parameters": None, "attention_bias": False, "attention_dropout": 0.0,
        "mlp_bias": False, "head_dim": None,
    }

    def _post_init(self) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads

    qkv_bias = o_bias = property(lambda self: self.attention_bias, doc="`attention_bias`: all four projections.")
    mlp_proj_bias = property(lambda self: self.mlp_bias, doc="`mlp_bias`.")


class MistralConfig(_LlamaFamilyConfig):
    """Llama without biases, with a sliding window on every layer when `sliding_window` is set."""

    model_type = "mistral"
    defaults = {
        "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": None, "hidden_act": "silu",
        "max_position_embeddings": 131072, "initializer_range": 0.02, "rms_norm_eps": 1e-6, "use_cache": True,
        "pad_token_id": None, "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": False,
        "rope_parameters": None, "sliding_window": 4096, "attention_dropout": 0.0,
    }

    def _post_init(self) -> None:
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads

    def window_of(self, layer_idx: int) -> int | None:
        return self.sliding_window


class Qwen2Config(_LlamaFamilyConfig):
    """Qwen1.5 / Qwen2 / Qwen2.5: Llama with q/k/v biases always on (none on o_proj or the MLP). With
    `use_sliding_window`, the layers marked "sliding_attention" in `layer_types` (by default those from
    `max_window_layers` on) use a window of `sliding_window` positions."""

    model_type = "qwen2"
    defaults = {
        "vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 22016, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 32, "hidden_act": "silu",
        "max_position_embeddings": 32768, "initializer_range": 0.02, "rms_norm_eps": 1e-6, "use_cache": True,
        "tie_word_embeddings": False, "rope_parameters": None, "use_sliding_window": False,
        "sliding_window": None, "max_window_layers": 28, "layer_types": None, "attention_dropout": 0.0,
        "pad_token_id": None, "bos_token_id": None, "eos_token_id": None,
    }

    def _post_init(self) -> None:
        if not self.use_sliding_window:
            self.sliding_window = None
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.layer_types is None:
            # layers from max_window_layers on use the sliding window, when one is set
            self.layer_types = ["sliding_attention" if self.sliding_window is not None and i >= self.max_window_layers
                                else "full_attention" for i in range(self.num_hidden_layers)]

    qkv_bias = property(lambda self: True, doc="Always on.")

    def window_of(self, layer_idx: int) -> int | None:
        return self.sliding_window if self.layer_types[layer_idx] == "sliding_attention" else None


class Qwen3Config(Qwen2Config):
    """Qwen2's layout and windows with `attention_bias` for all four projections (off by default), per-head q/k
    RMSNorm, and `head_dim` 128 by default, independent of hidden_size."""

    model_type = "qwen3"
    defaults = {**Qwen2Config.defaults, "head_dim": 128, "attention_bias": False}

    qkv_bias = o_bias = property(lambda self: self.attention_bias, doc="`attention_bias`: all four projections.")
    qk_norm = property(lambda self: True, doc="Always on.")


class _GemmaFamilyConfig(_RopeConfig):
    """The configs of `models/gemma.py` (gemma, gemma2, gemma3_text). What differs between them is read through
    these hooks (properties, never saved), each written once, in the config that differs."""

    @classmethod
    def _check_types(cls, values: dict) -> None:  # eos_token_id is an int or a list (gemma-3: [1, 106])
        super()._check_types({k: v for k, v in values.items() if k != "eos_token_id"})

    @property
    def activation(self) -> str:
        """The GeGLU MLP's activation name (gemma: `hidden_act`; gemma2/3: `hidden_activation`)."""
        return self.hidden_act

    sandwich_norms = False  # gemma2/3: RMSNorms after attention and around the MLP (four per layer)
    qk_norm = False  # gemma3: per-head RMSNorm on queries and keys, before RoPE

    @property
    def attention_scale(self) -> float:
        """The factor of the attention scores: head_dim**-0.5 (gemma2/3: query_pre_attn_scalar**-0.5)."""
        return self.head_dim ** -0.5

    @property
    def attention_softcap(self) -> float | None:
        """softcap·tanh(scores/softcap) on the attention scores (gemma2's attn_logit_softcapping), or None."""
        return None

    @property
    def final_softcap(self) -> float | None:
        """The same on the LM head's logits (gemma2/3's final_logit_softcapping), or None."""
        return None

    def window_of(self, layer_idx: int) -> int | None:
        """The sliding window of layer `layer_idx` (the layers `layer_types` marks "sliding_attention"); None: full."""
        types = getattr(self, "layer_types", None)
        return self.sliding_window if types and types[layer_idx] == "sliding_attention" else None

    def rope_of(self, layer_type: str) -> dict:
        """The rope parameters of a layer type (gemma3 has one set per type; the others one for all)."""
        return self.rope_parameters


class GemmaConfig(_GemmaFamilyConfig):
    """Gemma: Llama's block with a (1 + w) RMSNorm, embeddings scaled by sqrt(hidden_size), a GeGLU MLP (tanh GELU;
    the legacy hidden_act "gelu" of the released configs means it too), head_dim 256 and tied embeddings."""

    model_type = "gemma"
    defaults = {
        "vocab_size": 256000, "hidden_size": 3072, "intermediate_size": 24576, "num_hidden_layers": 28,
        "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 256, "hidden_act": "gelu_pytorch_tanh",
        "max_position_embeddings": 8192, "initializer_range": 0.02, "rms_norm_eps": 1e-6, "use_cache": True,
        "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2, "tie_word_embeddings": True,
        "rope_parameters": None, "attention_bias": False, "attention_dropout": 0.0,
        "use_bidirectional_attention": None,
    }

    def _post_init(self) -> None:
        if self.hidden_act == "gelu":
            logger.warning("Gemma config with hidden_act='gelu': the released checkpoints mean GELU's tanh "
                           "approximation; using 'gelu_pytorch_tanh' (as the reference does).")
            self.hidden_act = "gelu_pytorch_tanh"


class Gemma2Config(_GemmaFamilyConfig):
    """Gemma 2: four RMSNorms per layer, scores scaled by query_pre_attn_scalar**-0.5 and soft-capped
    (attn_logit_softcapping), final logits soft-capped (final_logit_softcapping), and a sliding window on the
    layers `layer_types` marks "sliding_attention" (by default every other one, starting with layer 0)."""

    model_type = "gemma2"
    defaults = {
        "vocab_size": 256000, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
        "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "hidden_activation": "gelu_pytorch_tanh",
        "max_position_embeddings": 8192, "initializer_range": 0.02, "rms_norm_eps": 1e-6, "use_cache": True,
        "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2, "tie_word_embeddings": True,
        "rope_parameters": None, "attention_bias": False, "attention_dropout": 0.0, "query_pre_attn_scalar": 256,
        "sliding_window": 4096, "layer_types": None, "final_logit_softcapping": 30.0, "attn_logit_softcapping": 50.0,
        "use_bidirectional_attention": None,
    }
    sandwich_norms = True
    activation = property(lambda self: self.hidden_activation, doc="`hidden_activation`.")
    attention_scale = property(lambda self: self.query_pre_attn_scalar ** -0.5, doc="query_pre_attn_scalar**-0.5.")
    attention_softcap = property(lambda self: self.attn_logit_softcapping, doc="`attn_logit_softcapping`.")
    final_softcap = property(lambda self: self.final_logit_softcapping, doc="`final_logit_softcapping`.")

    def _post_init(self) -> None:
        if self.layer_types is None:
            self.layer_types = ["sliding_attention" if (i + 1) % 2 else "full_attention"
                                for i in range(self.num_hidden_layers)]


class Gemma3TextConfig(Gemma2Config):
    """Gemma 3's language model: Gemma 2's layer with per-head q/k RMSNorms, 5 sliding layers to 1 global
    (`sliding_window_pattern` 6, or `layer_types`), and one rope per layer type: `rope_parameters` =
    {"sliding_attention": {rope_theta 10_000 (legacy key rope_local_base_freq)}, "full_attention": {rope_theta
    1_000_000 (legacy rope_theta), plus the legacy rope_scaling, e.g. linear x8}}. No attention soft-capping: the
    reference ignores attn_logit_softcapping here. Read from a gemma3 config.json, its `text_config` is used.
    `use_bidirectional_attention` (EmbeddingGemma): no causal mask, the sliding layers see |q - k| < window // 2 + 1
    (the window is stored halved, as the reference does)."""

    model_type = "gemma3_text"
    defaults = {**Gemma2Config.defaults, "vocab_size": 262208, "max_position_embeddings": 131072,
                "final_logit_softcapping": None, "attn_logit_softcapping": None, "use_bidirectional_attention": False}
    qk_norm = True
    attention_softcap = property(lambda self: None, doc="None: the reference does not soft-cap gemma3's scores.")

    def __init__(self, **kwargs):
        theta, local = kwargs.pop("rope_theta", None), kwargs.pop("rope_local_base_freq", None)
        scaling, pattern = kwargs.pop("rope_scaling", None), kwargs.pop("sliding_window_pattern", None)
        kwargs.pop("_sliding_window_pattern", None)  # the reference writes it; layer_types says the same
        PretrainedConfig.__init__(self, **kwargs)  # not _RopeConfig's folding: one rope per layer type
        params = {k: dict(v or {}) for k, v in (self.rope_parameters or {}).items()}
        full, sliding = params.setdefault("full_attention", {}), params.setdefault("sliding_attention", {})
        if scaling:
            full.update(scaling)
            full.setdefault("rope_type", scaling.get("type", "default"))
        full.setdefault("rope_theta", float(theta) if theta is not None else 1_000_000.0)
        sliding.setdefault("rope_theta", float(local) if local is not None else 10_000.0)
        for part in (full, sliding):
            part.setdefault("rope_type", "default")
            part.pop("type", None)
            if part["rope_type"] in ("llama3", "yarn", "longrope"):
                part.setdefault("original_max_position_embeddings", self.max_position_embeddings)
        self.rope_parameters = params
        if self.__dict__.get("layer_types") is None:
            every = pattern or 6
            self.layer_types = ["sliding_attention" if (i + 1) % every else "full_attention"
                                for i in range(self.num_hidden_layers)]
        if pattern is not None:
            self.sliding_window_pattern = pattern
        if self.use_bidirectional_attention and self.sliding_window:  # EmbeddingGemma: |q - k| < window // 2 + 1
            self.sliding_window = self.sliding_window // 2 + 1  # as the reference; to_dict writes the original back

    def _post_init(self) -> None:
        pass  # layer_types is derived in __init__ (from sliding_window_pattern)

    def to_dict(self) -> dict:
        out = super().to_dict()
        if self.use_bidirectional_attention and self.sliding_window:
            out["sliding_window"] = (self.sliding_window - 1) * 2
        return out

    def rope_of(self, layer_type: str) -> dict:
        return self.rope_parameters[layer_type]

    @classmethod
    def from_dict(cls, config_dict: dict, *, return_unused_kwargs: bool = False, **kwargs):
        if config_dict.get("model_type") == "gemma3" and isinstance(config_dict.get("text_config"), dict):
            # a multimodal gemma3 config.json: its language model's config, as the reference reads it
            config_dict = {**config_dict["text_config"], "model_type": cls.model_type,
                           "_name_or_path": config_dict.get("_name_or_path", "")}
        return super().from_dict(config_dict, return_unused_kwargs=return_unused_kwargs, **kwargs)


class Gemma3Config(PretrainedConfig):
    """Gemma 3 (multimodal checkpoints such as gemma-3-4b-it): `text_config` (a Gemma3TextConfig) nested with a
    SigLIP `vision_config`. autoload implements the language model only: the gemma3 classes of models/gemma.py
    build the text model from `text_config` (see there); `vision_config` is kept as a dict and saved back."""

    model_type = "gemma3"
    defaults = {
        "text_config": None, "vision_config": None, "mm_tokens_per_image": 256, "boi_token_index": 255_999,
        "eoi_token_index": 256_000, "image_token_index": 262_144, "initializer_range": 0.02,
        "tie_word_embeddings": True,
    }
    attribute_map = {"image_token_id": "image_token_index", "boi_token_id": "boi_token_index",
                     "eoi_token_id": "eoi_token_index"}

    def _post_init(self) -> None:
        text = self.text_config
        if not isinstance(text, Gemma3TextConfig):
            text = Gemma3TextConfig.from_dict({**(text or {}), "model_type": "gemma3_text"})
        self.text_config = text

    def get_text_config(self, decoder: bool | None = None, encoder: bool | None = None) -> Gemma3TextConfig:
        return self.text_config

    def parameter_estimate(self) -> list[tuple[str, int]]:
        return [(f"text_config: {label}", n) for label, n in self.text_config.parameter_estimate()]

    def to_dict(self) -> dict:
        out = super().to_dict()
        text = self.text_config.to_dict()
        text.pop("_name_or_path", None)
        out["text_config"] = text
        return out


class _MoeConfig(_LlamaFamilyConfig):
    """The Llama-family decoders whose MLPs are (some or all) sparse mixtures of experts (`nn/moe.py`): a router
    picks `num_experts_per_tok` of `num_experts` SwiGLU experts per token. The hooks below say what differs."""

    expert_keys: ClassVar[tuple[str, str, str, str]] = ("mlp", "gate_proj", "up_proj", "down_proj")
    """The one-module-per-expert checkpoint layout: `layers.N.<block>.experts.E.<gate|up|down>.weight`."""
    experts_first: ClassVar[bool] = False
    """The sparse block registers `experts` before `gate` (the reference's order, which seeded init follows)."""

    @property
    def expert_size(self) -> int:
        """The intermediate size of each routed expert."""
        return self.moe_intermediate_size

    @property
    def normalize_top_k(self) -> bool:
        """Whether the top-k routing probabilities are divided by their sum."""
        return self.norm_topk_prob

    @property
    def shared_expert_size(self) -> int:
        """The intermediate size of the always-on shared expert (Qwen2-MoE); 0: none."""
        return 0

    def is_sparse(self, layer_idx: int) -> bool:
        """Every `decoder_sparse_step`-th layer, except those in `mlp_only_layers` (a dense MLP of
        `intermediate_size`)."""
        return (layer_idx not in self.mlp_only_layers and self.num_experts > 0
                and (layer_idx + 1) % self.decoder_sparse_step == 0)

    def _post_init(self) -> None:
        if getattr(self, "mlp_only_layers", ()) is None:
            self.mlp_only_layers = []
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        top_k, experts = self.num_experts_per_tok, self.num_experts
        if any(self.is_sparse(i) for i in range(self.num_hidden_layers)) and not (
                isinstance(top_k, int) and isinstance(experts, int) and 1 <= top_k <= experts):
            raise ConfigError(f"{type(self).__name__}: num_experts_per_tok={top_k!r} must be an integer from 1 to "
                              f"the number of experts ({experts!r}). Fix config.json or the keyword argument.")

    def parameter_estimate(self) -> list[tuple[str, int]]:
        """The dense estimate with each sparse layer's MLP replaced by its experts, router and shared expert."""
        parts = super().parameter_estimate()
        hidden, layers = self.hidden_size, self.num_hidden_layers
        sparse = sum(self.is_sparse(i) for i in range(layers))
        experts = self.num_experts * 3 * hidden * self.expert_size + self.num_experts * hidden
        shared = 3 * hidden * self.shared_expert_size + hidden if self.shared_expert_size else 0
        parts.append((f"{sparse:,} sparse layers of num_experts={self.num_experts:,} experts (hidden_size={hidden:,}, "
                      f"expert size {self.expert_size:,}), router and shared expert, in place of their MLP",
                      sparse * (experts + shared - 3 * hidden * self.intermediate_size)))
        return parts


class MixtralConfig(_MoeConfig):
    """Mixtral: Mistral's attention (no biases, `sliding_window` on every layer when set) with a sparse block on
    every layer: `num_local_experts` experts of `intermediate_size`, softmax then top-k, always renormalised; the
    per-expert checkpoint keys are `block_sparse_moe.experts.E.w1` (gate) / `w3` (up) / `w2` (down)."""

    model_type = "mixtral"
    default_theta = 1000000.0
    attribute_map = {"num_experts": "num_local_experts"}
    expert_keys = ("block_sparse_moe", "w1", "w3", "w2")
    defaults = {
        "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": None, "hidden_act": "silu",
        "max_position_embeddings": 131072, "initializer_range": 0.02, "rms_norm_eps": 1e-5, "use_cache": True,
        "pad_token_id": None, "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": False,
        "sliding_window": None, "attention_dropout": 0.0, "num_experts_per_tok": 2, "num_local_experts": 8,
        "output_router_logits": False, "router_aux_loss_coef": 0.001, "router_jitter_noise": 0.0,
        "rope_parameters": None,
    }

    expert_size = property(lambda self: self.intermediate_size, doc="`intermediate_size`.")
    normalize_top_k = property(lambda self: True, doc="Always.")

    def is_sparse(self, layer_idx: int) -> bool:
        return True

    def window_of(self, layer_idx: int) -> int | None:
        return self.sliding_window


class Qwen2MoeConfig(_MoeConfig):
    """Qwen1.5-MoE / Qwen2-MoE: Qwen2's attention (q/k/v biases from `qkv_bias`, on by default) with sparse blocks
    of `num_experts` experts of `moe_intermediate_size` plus a shared expert of `shared_expert_intermediate_size`
    behind a sigmoid gate; `norm_topk_prob`, `decoder_sparse_step` and `mlp_only_layers` as the reference. With
    `use_sliding_window`, the even layers below `max_window_layers` are sliding by default (`layer_types`)."""

    model_type = "qwen2_moe"
    defaults = {
        "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 24,
        "num_attention_heads": 16, "num_key_value_heads": 16, "hidden_act": "silu", "max_position_embeddings": 32768,
        "initializer_range": 0.02, "rms_norm_eps": 1e-6, "use_cache": True, "tie_word_embeddings": False,
        "rope_parameters": None, "use_sliding_window": False, "sliding_window": 4096, "max_window_layers": 28,
        "attention_dropout": 0.0, "decoder_sparse_step": 1, "moe_intermediate_size": 1408,
        "shared_expert_intermediate_size": 5632, "num_experts_per_tok": 4, "num_experts": 60,
        "norm_topk_prob": False, "output_router_logits": False, "router_aux_loss_coef": 0.001,
        "mlp_only_layers": None, "qkv_bias": True, "layer_types": None, "pad_token_id": None, "bos_token_id": None,
        "eos_token_id": None,
    }

    def _post_init(self) -> None:
        super()._post_init()
        if not self.use_sliding_window:
            self.sliding_window = 0
        if self.layer_types is None:
            self.layer_types = ["sliding_attention" if (i + 1) % 2 and i < self.max_window_layers
                                and self.use_sliding_window else "full_attention"
                                for i in range(self.num_hidden_layers)]

    # `qkv_bias` is a config.json key here: the hook reads (and writes) it
    qkv_bias = property(lambda self: self.__dict__["qkv_bias"],
                        lambda self, value: self.__dict__.__setitem__("qkv_bias", value), doc="`qkv_bias`.")
    shared_expert_size = property(lambda self: self.shared_expert_intermediate_size,
                                  doc="`shared_expert_intermediate_size`.")

    def window_of(self, layer_idx: int) -> int | None:
        return (self.sliding_window or None) if self.layer_types[layer_idx] == "sliding_attention" else None


class Qwen3MoeConfig(_MoeConfig):
    """Qwen3-MoE: Qwen3's attention (per-head q/k RMSNorm, `attention_bias` on all four projections,
    `sliding_window` on every layer with `use_sliding_window`) with sparse blocks of `num_experts` experts of
    `moe_intermediate_size` (no shared expert); saved as `num_local_experts`, as the reference."""

    model_type = "qwen3_moe"
    attribute_map = {"num_experts": "num_local_experts"}
    experts_first = True
    defaults = {
        "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 24,
        "num_attention_heads": 32, "num_key_value_heads": 4, "hidden_act": "silu", "max_position_embeddings": 32768,
        "initializer_range": 0.02, "rms_norm_eps": 1e-6, "use_cache": True, "tie_word_embeddings": False,
        "rope_parameters": None, "attention_bias": False, "use_sliding_window": False, "sliding_window": 4096,
        "attention_dropout": 0.0, "decoder_sparse_step": 1, "moe_intermediate_size": 768, "num_experts_per_tok": 8,
        "num_local_experts": 128, "norm_topk_prob": False, "output_router_logits": False,
        "router_aux_loss_coef": 0.001, "mlp_only_layers": None, "pad_token_id": None, "bos_token_id": None,
        "eos_token_id": None,
    }

    def _post_init(self) -> None:
        super()._post_init()
        if not self.use_sliding_window:
            self.sliding_window = None

    qkv_bias = o_bias = property(lambda self: self.attention_bias, doc="`attention_bias`: all four projections.")
    qk_norm = property(lambda self: True, doc="Always on.")

    def window_of(self, layer_idx: int) -> int | None:
        return self.sliding_window


class ChatGLMConfig(PretrainedConfig):
    """ChatGLM2 / ChatGLM3 / GLM-4 (THUDM's `configuration_chatglm.py` keys and defaults).

    The generic names the rest of autoload reads are derived, never saved: `num_hidden_layers`, `vocab_size`,
    `head_dim`, `max_position_embeddings`, `intermediate_size`, `rms_norm_eps` are aliases of the chatglm keys
    (glm-4 files carry `num_hidden_layers` / `vocab_size` too: the chatglm key wins), and `num_key_value_heads` is
    `multi_query_group_num` under multi-query attention, else `num_attention_heads`.

    `rope_ratio` scales the rotary embedding in two incompatible ways: chatglm2-6b-32k (and codegeex2) divide the
    positions by it, chatglm3 and glm-4 multiply the base (theta = 10000 * rope_ratio). `rope_ratio_meaning`
    ("base" | "positions") says which; when config.json and the caller leave it unset it is derived (glm-4 vocabulary
    -> "base", a name with chatglm2 / codegeex2 -> "positions", chatglm3 / glm-4 -> "base", else "base" with a
    warning if rope_ratio != 1); `save_pretrained` writes it only when rope_ratio != 1, where it matters and a saved
    folder's name may no longer tell it.
    """

    model_type = "chatglm"
    defaults = {
        "num_layers": 28, "padded_vocab_size": 65024, "hidden_size": 4096, "ffn_hidden_size": 13696,
        "kv_channels": 128, "num_attention_heads": 32, "seq_length": 2048, "hidden_dropout": 0.0,
        "classifier_dropout": None, "attention_dropout": 0.0, "layernorm_epsilon": 1e-5, "rmsnorm": True,
        "apply_residual_connection_post_layernorm": False, "post_layer_norm": True, "add_bias_linear": False,
        "add_qkv_bias": False, "bias_dropout_fusion": True, "multi_query_attention": False,
        "multi_query_group_num": 1, "rope_ratio": 1.0,  # a float default so that 16 and 16.0 both pass the check
        "apply_query_key_layer_scaling": True, "attention_softmax_in_fp32": True, "fp32_residual_connection": False,
        "quantization_bit": 0, "pre_seq_len": None, "prefix_projection": False, "original_rope": True,
        "use_cache": True, "tie_word_embeddings": False, "eos_token_id": 2, "pad_token_id": 0,
        "rope_ratio_meaning": None,
    }
    attribute_map = {"num_hidden_layers": "num_layers", "vocab_size": "padded_vocab_size", "head_dim": "kv_channels",
                     "max_position_embeddings": "seq_length", "intermediate_size": "ffn_hidden_size",
                     "rms_norm_eps": "layernorm_epsilon"}
    ROPE_RATIO_MEANINGS = ("base", "positions")

    def __init__(self, **kwargs):
        for alias, real in self.attribute_map.items():  # glm-4 saves both names: keep the chatglm one
            if alias in kwargs and real in kwargs:
                kwargs.pop(alias)
        kwargs.pop("num_key_value_heads", None)  # derived (a property), never stored
        super().__init__(**kwargs)

    @property
    def num_key_value_heads(self) -> int:
        return self.multi_query_group_num if self.multi_query_attention else self.num_attention_heads

    @classmethod
    def _check_types(cls, values: dict) -> None:
        # eos_token_id is an int (chatglm2/3) or a list (glm-4)
        super()._check_types({k: v for k, v in values.items() if k != "eos_token_id"})

    @classmethod
    def from_dict(cls, config_dict: dict, *, return_unused_kwargs: bool = False, **kwargs):
        # a rope_ratio_meaning override is part of the data, so that nothing is derived (or warned about) first
        if "rope_ratio_meaning" in kwargs:
            config_dict = {**config_dict, "rope_ratio_meaning": kwargs.pop("rope_ratio_meaning")}
        return super().from_dict(config_dict, return_unused_kwargs=return_unused_kwargs, **kwargs)

    def _post_init(self) -> None:
        self._resolve_rope_ratio_meaning()

    def __setattr__(self, name: str, value) -> None:
        super().__setattr__(name, value)
        if name == "rope_ratio_meaning":  # set by hand: explicit (None derives it again)
            self._resolve_rope_ratio_meaning()

    def _resolve_rope_ratio_meaning(self) -> None:
        given = self.__dict__.get("rope_ratio_meaning")
        self.__dict__["_rope_ratio_meaning_explicit"] = given is not None
        if given is not None:
            if given not in self.ROPE_RATIO_MEANINGS:
                raise ValueError(f"rope_ratio_meaning must be one of {self.ROPE_RATIO_MEANINGS}, got {given!r}.")
            return
        name = str(self.__dict__.get("_name_or_path") or "").lower()
        settled = True
        if (self.padded_vocab_size or 0) >= 151552:  # glm-4's vocabulary: its code multiplies the base
            meaning = "base"
        elif "chatglm2" in name or "codegeex2" in name:  # chatglm2-6b-32k's code divides the positions
            meaning = "positions"
        else:
            meaning, settled = "base", any(s in name for s in ("chatglm3", "glm-4", "glm4"))
        self.__dict__["rope_ratio_meaning"] = meaning
        if not settled and self.rope_ratio != 1:
            logger.warning("ChatGLM config with rope_ratio=%s and no rope_ratio_meaning: assuming 'base' (theta = "
                           "10000 * rope_ratio, as chatglm3 and glm-4 do). chatglm2-6b-32k-style checkpoints divide "
                           "the positions instead: pass rope_ratio_meaning=\"positions\" to from_pretrained.",
                           self.rope_ratio)

    def to_dict(self) -> dict:
        out = super().to_dict()
        if not self.__dict__.get("_rope_ratio_meaning_explicit") and self.rope_ratio == 1:
            out.pop("rope_ratio_meaning", None)  # derived and irrelevant: config.json stays as the original wrote it
        # with rope_ratio != 1 the meaning is saved: a folder's name may not tell it again
        return out

    @classmethod
    def unsupported_reason(cls, data: dict) -> str | None:
        """Why the native implementation cannot run a raw config.json dict, or None when it can."""
        v1_keys = [k for k in ("position_encoding_2d", "inner_hidden_size", "max_sequence_length") if k in data]
        if v1_keys or ("multi_query_attention" not in data and "padded_vocab_size" not in data):
            found = f" (it has {', '.join(v1_keys)})" if v1_keys else \
                " (it has neither multi_query_attention nor padded_vocab_size)"
            return ("this is a first-generation ChatGLM-6B config" + found + ": the GLM-130B-style architecture "
                    "with 2-D position encoding, which autoload does not implement natively (only ChatGLM2, "
                    "ChatGLM3 and GLM-4).")
        if data.get("quantization_bit") not in (None, 0):
            return (f"quantization_bit={data['quantization_bit']}: int4/int8 ChatGLM checkpoints need the repo's "
                    "custom quantization kernels, which autoload does not implement; use the full-precision repo.")
        if data.get("pre_seq_len") is not None:
            return (f"pre_seq_len={data['pre_seq_len']}: a P-tuning v2 prefix-encoder checkpoint, which autoload's "
                    "native ChatGLM does not implement.")
        for key, supported in (("rmsnorm", True), ("post_layer_norm", True),
                               ("apply_residual_connection_post_layernorm", False), ("add_bias_linear", False)):
            if key in data and bool(data[key]) != supported:
                return (f"{key}={str(data[key]).lower()}: no released ChatGLM uses it and autoload's native "
                        f"ChatGLM implements only {key}={str(supported).lower()}.")
        return None


class Phi3Config(_RopeConfig):
    """Phi-3 / Phi-3.5 / Phi-4-mini: Llama's block with fused `qkv_proj` / `gate_up_proj`, residual dropout
    (`resid_pdrop`), a sliding window on every layer when `sliding_window` is set, and rotary embeddings that are
    default or LongRoPE (`rope_scaling` type "longrope", or its old names "su" / "yarn"), on the first
    `partial_rotary_factor` of each head (Phi-4-mini: 0.75). The top-level `original_max_position_embeddings` is
    where LongRoPE switches from its short to its long factors (it wins over the one in rope_parameters, as in the
    reference); a top-level `partial_rotary_factor` goes into rope_parameters unless that has one."""

    model_type = "phi3"
    defaults = {
        "vocab_size": 32064, "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": None, "resid_pdrop": 0.0, "embd_pdrop": 0.0,
        "attention_dropout": 0.0, "hidden_act": "silu", "max_position_embeddings": 4096,
        "original_max_position_embeddings": 4096, "initializer_range": 0.02, "rms_norm_eps": 1e-5, "use_cache": True,
        "tie_word_embeddings": False, "rope_parameters": None, "bos_token_id": 1, "eos_token_id": 32000,
        "pad_token_id": 32000, "sliding_window": None,
    }

    def __init__(self, **kwargs):
        scaling = kwargs.get("rope_scaling") or kwargs.get("rope_parameters") or {}
        if scaling.get("rope_type", scaling.get("type")) in ("su", "yarn"):  # the old names of longrope
            kwargs["rope_scaling"] = {**scaling, "type": "longrope", "rope_type": "longrope"}
            kwargs.pop("rope_parameters", None)
        super().__init__(**kwargs)
        params = self.rope_parameters
        params.setdefault("partial_rotary_factor", self.__dict__.get("partial_rotary_factor") or 1.0)
        kind = params["rope_type"]
        if kind in ("llama3", "yarn", "longrope"):
            params["original_max_position_embeddings"] = self.original_max_position_embeddings
        if kind not in ("default", "longrope"):
            raise ConfigError(f"Phi3Config: rope type must be 'default' or 'longrope', got {kind!r}.")
        half = int(self.hidden_size // self.num_attention_heads * params["partial_rotary_factor"]) // 2
        for key in ("short_factor", "long_factor"):
            factors = params.get(key)
            if kind == "longrope" and (not isinstance(factors, list) or len(factors) != half):
                raise ConfigError(f"Phi3Config: rope_parameters['{key}'] must be a list of {half} numbers (half the "
                                  f"rotated dims of a head), got {factors!r}.")

    @classmethod
    def _check_types(cls, values: dict) -> None:  # eos_token_id is an int or a list
        super()._check_types({k: v for k, v in values.items() if k != "eos_token_id"})

    def _post_init(self) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads

    def window_of(self, layer_idx: int) -> int | None:
        return self.sliding_window


class GlmConfig(_RopeConfig):
    """GLM-4 (THUDM/glm-4-9b, the HF-native port; model_type "glm"): grouped-query attention with q/k/v biases
    (`attention_bias`), a fused `gate_up_proj`, and rotary embeddings as interleaved pairs on the first
    `partial_rotary_factor` (0.5 by default) of each head."""

    model_type = "glm"
    defaults = {
        "vocab_size": 151552, "hidden_size": 4096, "intermediate_size": 13696, "num_hidden_layers": 40,
        "num_attention_heads": 32, "num_key_value_heads": 2, "head_dim": 128, "hidden_act": "silu",
        "attention_dropout": 0.0, "max_position_embeddings": 131072, "initializer_range": 0.02,
        "rms_norm_eps": 1.5625e-07, "use_cache": True, "tie_word_embeddings": False, "rope_parameters": None,
        "pad_token_id": 151329, "eos_token_id": None, "bos_token_id": None, "attention_bias": True,
    }
    post_norms = False  # GLM-4-0414 (glm4): post_self_attn_layernorm and post_mlp_layernorm on each branch

    def __init__(self, **kwargs):
        partial = kwargs.pop("partial_rotary_factor", 0.5)
        super().__init__(**kwargs)
        self.rope_parameters.setdefault("partial_rotary_factor", partial)

    def _post_init(self) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.eos_token_id is None:
            self.eos_token_id = [151329, 151336, 151338]


class Glm4Config(GlmConfig):
    """GLM-4-0414 (THUDM/GLM-4-9B-0414, GLM-Z1; model_type "glm4"): GLM with an RMSNorm after the attention and
    after the MLP of each layer, before the residual add."""

    model_type = "glm4"
    post_norms = True


class BaichuanConfig(PretrainedConfig):
    """Baichuan / Baichuan2, 7B and 13B (baichuan-inc's `configuration_baichuan.py` keys and defaults; the repos'
    auto_map names `modeling_baichuan.BaichuanForCausalLM`, which models/baichuan.py replaces).

    Two things the repos' config.json files do not say (the 7B and 13B repos ship different modeling files) are
    decided here. Each is an autoload key that wins when given, and is written back only when it differs from
    what the rule derives:
    * `position_embedding`: "rope" (rotary, base 10000: the 7B files) or "alibi" (the 13B files). Derived:
      "alibi" when hidden_size == 5120 and num_hidden_layers == 40 (the shape of Baichuan-13B and
      Baichuan2-13B), else "rope".
    * `norm_head`: the lm_head is a NormHead (each row L2-normalised before the product: Baichuan2). Derived:
      True unless vocab_size == 64000 (Baichuan 1's vocabulary; every Baichuan2 has 125696).
    `num_key_value_heads` (= num_attention_heads), `head_dim` and `rope_parameters` are derived, never saved.
    """

    model_type = "baichuan"
    defaults = {
        "vocab_size": 125696, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
        "num_attention_heads": 32, "hidden_act": "silu", "max_position_embeddings": 4096, "model_max_length": 4096,
        "initializer_range": 0.02, "rms_norm_eps": 1e-6, "use_cache": True, "pad_token_id": 0, "bos_token_id": 1,
        "eos_token_id": 2, "tie_word_embeddings": False, "z_loss_weight": 0.0, "position_embedding": None,
        "norm_head": None,
    }
    POSITION_EMBEDDINGS = ("rope", "alibi")

    def __init__(self, **kwargs):
        for derived in ("num_key_value_heads", "head_dim", "rope_parameters"):
            kwargs.pop(derived, None)
        super().__init__(**kwargs)

    def _post_init(self) -> None:
        if self.position_embedding is None:
            self.position_embedding = self.derived_position_embedding()
        if self.position_embedding not in self.POSITION_EMBEDDINGS:
            raise ConfigError(f"BaichuanConfig: position_embedding must be 'rope' or 'alibi', "
                              f"got {self.position_embedding!r}.")
        if self.norm_head is None:
            self.norm_head = self.derived_norm_head()
        if self.norm_head and self.tie_word_embeddings:
            raise ConfigError("BaichuanConfig: a NormHead (norm_head) cannot be tied to the input embeddings "
                              "(tie_word_embeddings): no Baichuan checkpoint does that.")

    def derived_position_embedding(self) -> str:
        """The rule used when `position_embedding` is not given: ALiBi for the 13B shape (5120 x 40 layers)."""
        return "alibi" if (self.hidden_size, self.num_hidden_layers) == (5120, 40) else "rope"

    def derived_norm_head(self) -> bool:
        """The rule used when `norm_head` is not given: a NormHead unless Baichuan 1's 64000-token vocabulary."""
        return self.vocab_size != 64000

    num_key_value_heads = property(lambda self: self.num_attention_heads, doc="No grouped-query attention.")
    head_dim = property(lambda self: self.hidden_size // self.num_attention_heads)
    rope_parameters = property(lambda self: {"rope_type": "default", "rope_theta": 10000.0},
                               doc="The 7B files' fixed rotary base (unused with ALiBi).")

    def to_dict(self) -> dict:
        out = super().to_dict()
        if out.get("position_embedding") == self.derived_position_embedding():
            out.pop("position_embedding")
        if out.get("norm_head") == self.derived_norm_head():
            out.pop("norm_head")
        return out


class InternLM2Config(_RopeConfig):
    """InternLM2 / InternLM2.5 (internlm's `configuration_internlm2.py` keys and defaults; the repos' auto_map names
    `modeling_internlm2.InternLM2ForCausalLM`, which models/internlm2.py replaces). `bias` puts biases on `wqkv`
    and `wo` (the class default is True; the released config.json files say false). `rope_theta` and
    `rope_scaling` ({"type": "dynamic" | "linear", "factor": f}) are read into `rope_parameters` and written back
    under the repos' names, so the original code can read a saved folder. The files' `attn_implementation`
    ("eager") is kept as a plain key: autoload runs SDPA unless `attn_implementation="eager"` is passed."""

    model_type = "internlm2"
    defaults = {
        "vocab_size": 103168, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": None, "hidden_act": "silu", "max_position_embeddings": 2048,
        "initializer_range": 0.02, "rms_norm_eps": 1e-6, "use_cache": True, "pad_token_id": 0, "bos_token_id": 1,
        "eos_token_id": 2, "pretraining_tp": 1, "tie_word_embeddings": False, "bias": True, "rope_parameters": None,
    }

    def _post_init(self) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads

    head_dim = property(lambda self: self.hidden_size // self.num_attention_heads)

    def to_dict(self) -> dict:
        out = super().to_dict()
        params = dict(out.pop("rope_parameters") or {})
        out["rope_theta"] = params.pop("rope_theta", self.default_theta)
        kind = params.pop("rope_type", "default")
        params.pop("type", None)
        out["rope_scaling"] = None if kind == "default" else {"type": kind, **params}
        return out


class RobertaConfig(PretrainedConfig):
    """RoBERTa: BERT's encoder with positions from pad_token_id + 1 (padding skipped) and no NSP; xlm-roberta and
    camembert are the same architecture under their own model_type (classes in models/roberta.py)."""

    model_type = "roberta"
    mlp_matrices, learned_positions = 2, True
    position_buffer_bytes = 16  # RobertaEmbeddings' position_ids and token_type_ids: int64, one per position
    defaults = {
        "vocab_size": 50265, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
        "intermediate_size": 3072, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512, "type_vocab_size": 2,
        "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 1, "bos_token_id": 0,
        "eos_token_id": 2, "use_cache": True, "classifier_dropout": None, "is_decoder": False,
        "add_cross_attention": False, "tie_word_embeddings": True,
    }


class XLMRobertaConfig(RobertaConfig):
    model_type = "xlm-roberta"
    defaults = {**RobertaConfig.defaults, "vocab_size": 30522}


class CamembertConfig(RobertaConfig):
    model_type = "camembert"
    defaults = {**RobertaConfig.defaults, "vocab_size": 30522}


class _BartFamilyConfig(PretrainedConfig):
    """The BART-shaped encoder-decoders (bart, mbart, marian): the reference's key names, `attribute_map` from the
    standard names to the encoder's sizes. `pre_layer_norm` is a class hook, not a config.json key: mBART's layers
    normalise before each block (plus a final layer_norm per stack), BART's and Marian's after."""

    mlp_matrices, learned_positions = 2, True
    pre_layer_norm = False
    attribute_map = {"num_attention_heads": "encoder_attention_heads", "hidden_size": "d_model",
                     "num_hidden_layers": "encoder_layers"}
    defaults = {
        "vocab_size": 50265, "max_position_embeddings": 1024, "encoder_layers": 12, "encoder_ffn_dim": 4096,
        "encoder_attention_heads": 16, "decoder_layers": 12, "decoder_ffn_dim": 4096, "decoder_attention_heads": 16,
        "encoder_layerdrop": 0.0, "decoder_layerdrop": 0.0, "activation_function": "gelu", "d_model": 1024,
        "dropout": 0.1, "attention_dropout": 0.0, "activation_dropout": 0.0, "init_std": 0.02,
        "classifier_dropout": 0.0, "scale_embedding": False, "use_cache": True, "pad_token_id": 1,
        "bos_token_id": 0, "eos_token_id": 2, "is_encoder_decoder": True, "decoder_start_token_id": 2,
        "forced_bos_token_id": None, "forced_eos_token_id": 2, "is_decoder": False, "tie_word_embeddings": True,
    }

    def _post_init(self) -> None:
        from ..errors import ConfigError  # (a local import: this hunk leaves the module's imports alone)

        for key in ("decoder_layers", "decoder_attention_heads", "decoder_ffn_dim", "encoder_ffn_dim",
                    "decoder_vocab_size"):
            value = self.__dict__.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not
                                      0 < value <= (10_000 if key == "decoder_layers" else 2**31)):
                raise ConfigError(f"{type(self).__name__}: {key}={value!r} must be a positive integer "
                                  "(the config is corrupt or hostile).")

    def parameter_estimate(self) -> list[tuple[str, int]]:
        """Token and position embeddings, encoder layers (attention + MLP), decoder layers (self- and
        cross-attention + MLP), an untied or separate-vocabulary output projection."""
        d, positions = self.d_model, self.max_position_embeddings
        target = getattr(self, "decoder_vocab_size", None) or self.vocab_size
        parts = [(f"embeddings ((vocab_size={self.vocab_size:,} + 2 x max_position_embeddings={positions:,}) x "
                  f"d_model={d:,})", (self.vocab_size + 2 * positions) * d),
                 (f"encoder_layers={self.encoder_layers:,} (d_model={d:,}, encoder_ffn_dim={self.encoder_ffn_dim:,})",
                  self.encoder_layers * (4 * d * d + 2 * d * self.encoder_ffn_dim)),
                 (f"decoder_layers={self.decoder_layers:,} (d_model={d:,}, decoder_ffn_dim={self.decoder_ffn_dim:,})",
                  self.decoder_layers * (8 * d * d + 2 * d * self.decoder_ffn_dim))]
        if target != self.vocab_size or not self.tie_word_embeddings:
            parts.append((f"decoder embeddings / lm_head (vocab {target:,} x d_model={d:,})",
                           (1 if self.tie_word_embeddings else 2) * target * d))
        return parts


class BartConfig(_BartFamilyConfig):
    """BART: post-LN layers, learned positions (offset 2), layernorm_embedding, final_logits_bias. Three labels by
    default (bart-large-mnli's entailment classes), as the reference."""

    model_type = "bart"

    def __init__(self, **kwargs):
        if kwargs.get("id2label") is None and kwargs.get("num_labels") is None:
            kwargs["num_labels"] = 3
        super().__init__(**kwargs)


class MBartConfig(_BartFamilyConfig):
    """mBART: BART with pre-LN layers and a final layer_norm per stack; the decoder starts with the target language
    code (labels are wrapped, see models/bart.py), so decoder_start_token_id is unset."""

    model_type = "mbart"
    pre_layer_norm = True
    defaults = {**_BartFamilyConfig.defaults, "decoder_start_token_id": None}


class MarianConfig(_BartFamilyConfig):
    """Marian (opus-mt): post-LN, sinusoidal positions, no layernorm_embedding; the decoder starts with the pad id.
    With `share_encoder_decoder_embeddings` false the decoder has its own vocabulary of `decoder_vocab_size`."""

    model_type = "marian"
    learned_positions = False
    defaults = {**_BartFamilyConfig.defaults, "vocab_size": 58101, "decoder_vocab_size": None,
                "decoder_start_token_id": 58100, "pad_token_id": 58100, "eos_token_id": 0, "bos_token_id": None,
                "forced_eos_token_id": 0, "share_encoder_decoder_embeddings": True}
    del defaults["classifier_dropout"]

    def _post_init(self) -> None:
        super()._post_init()
        self.decoder_vocab_size = self.decoder_vocab_size or self.vocab_size


class DebertaV2Config(PretrainedConfig):
    """DeBERTa v2 and v3. The keys the reference reads with a fallback and never declares (`position_buckets`,
    `share_att_key`, `norm_rel_ebd`, `conv_kernel_size`, `conv_act`, `conv_groups`, `embedding_size`,
    `attention_head_size`, `cls_dropout`) stay unset unless config.json has them; models/deberta_v2.py reads
    them with the reference's fallbacks. `pos_att_type` "p2c|c2p" becomes a list; `pooler_hidden_size` defaults
    to hidden_size."""

    model_type = "deberta-v2"
    mlp_matrices, learned_positions = 2, True
    position_buffer_bytes = 8  # DebertaV2Embeddings' position_ids: int64, one per position
    defaults = {
        "vocab_size": 128100, "hidden_size": 1536, "num_hidden_layers": 24, "num_attention_heads": 24,
        "intermediate_size": 6144, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512, "type_vocab_size": 0,
        "initializer_range": 0.02, "layer_norm_eps": 1e-7, "relative_attention": False, "max_relative_positions": -1,
        "pad_token_id": 0, "bos_token_id": None, "eos_token_id": None, "position_biased_input": True,
        "pos_att_type": None, "pooler_dropout": 0.0, "pooler_hidden_act": "gelu", "legacy": True,
        "tie_word_embeddings": True,
    }

    def _post_init(self) -> None:
        if isinstance(self.pos_att_type, str):
            self.pos_att_type = [x.strip() for x in self.pos_att_type.lower().split("|")]
        if self.__dict__.get("pooler_hidden_size") is None:
            self.pooler_hidden_size = self.hidden_size


class DistilBertConfig(PretrainedConfig):
    """DistilBERT: its own key names (dim, n_layers, n_heads, hidden_dim, activation), the standard names through
    attribute_map as the reference."""

    model_type = "distilbert"
    mlp_matrices, learned_positions = 2, True
    position_buffer_bytes = 8  # the embeddings' position_ids: int64, one per position
    defaults = {
        "vocab_size": 30522, "max_position_embeddings": 512, "sinusoidal_pos_embds": False, "n_layers": 6,
        "n_heads": 12, "dim": 768, "hidden_dim": 3072, "dropout": 0.1, "attention_dropout": 0.1,
        "activation": "gelu", "initializer_range": 0.02, "qa_dropout": 0.1, "seq_classif_dropout": 0.2,
        "pad_token_id": 0, "eos_token_id": None, "bos_token_id": None, "tie_word_embeddings": True,
    }
    attribute_map = {"hidden_size": "dim", "num_attention_heads": "n_heads", "num_hidden_layers": "n_layers"}


class ElectraConfig(PretrainedConfig):
    """ELECTRA: BERT's encoder over embeddings of `embedding_size` (projected to hidden_size when they differ)."""

    model_type = "electra"
    mlp_matrices, learned_positions = 2, True
    position_buffer_bytes = 16  # ElectraEmbeddings' position_ids and token_type_ids: int64, one per position
    defaults = {
        "vocab_size": 30522, "embedding_size": 128, "hidden_size": 256, "num_hidden_layers": 12,
        "num_attention_heads": 4, "intermediate_size": 1024, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512, "type_vocab_size": 2,
        "initializer_range": 0.02, "layer_norm_eps": 1e-12, "summary_type": "first", "summary_use_proj": True,
        "summary_activation": "gelu", "summary_last_dropout": 0.1, "pad_token_id": 0, "use_cache": True,
        "classifier_dropout": None, "is_decoder": False, "add_cross_attention": False, "bos_token_id": None,
        "eos_token_id": None, "tie_word_embeddings": True,
    }


class MPNetConfig(PretrainedConfig):
    """MPNet: BERT's encoder sizes plus `relative_attention_num_buckets` (rows of the relative position bias)."""

    model_type = "mpnet"
    mlp_matrices, learned_positions = 2, True
    defaults = {
        "vocab_size": 30527, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
        "intermediate_size": 3072, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512, "initializer_range": 0.02,
        "layer_norm_eps": 1e-12, "relative_attention_num_buckets": 32, "pad_token_id": 1, "bos_token_id": 0,
        "eos_token_id": 2, "tie_word_embeddings": True,
    }


class ModernBertConfig(PretrainedConfig):
    """ModernBERT: a pre-norm encoder with RoPE, GeGLU and alternating global / local (sliding-window) attention.

    `layer_types` marks each layer "full_attention" or "sliding_attention"; when absent (older config.json files)
    every `global_attn_every_n_layers`-th layer (default 3, counting from layer 0) is global. A local layer sees
    `local_attention // 2` tokens on each side. `rope_parameters` holds one RoPE dict per layer type; the older
    keys `global_rope_theta` / `local_rope_theta` (and `rope_scaling`, applied to both) fold into it."""

    model_type = "modernbert"
    mlp_matrices = 3  # Wi holds the GeGLU input and gate halves
    default_theta = {"full_attention": 160_000.0, "sliding_attention": 10_000.0}
    defaults = {
        "vocab_size": 50368, "hidden_size": 768, "intermediate_size": 1152, "num_hidden_layers": 22,
        "num_attention_heads": 12, "hidden_activation": "gelu", "max_position_embeddings": 8192,
        "initializer_range": 0.02, "initializer_cutoff_factor": 2.0, "norm_eps": 1e-5, "norm_bias": False,
        "pad_token_id": 50283, "eos_token_id": 50282, "bos_token_id": 50281, "cls_token_id": 50281,
        "sep_token_id": 50282, "attention_bias": False, "attention_dropout": 0.0, "layer_types": None,
        "rope_parameters": None, "local_attention": 128, "embedding_dropout": 0.0, "mlp_bias": False,
        "mlp_dropout": 0.0, "decoder_bias": True, "classifier_pooling": "cls", "classifier_dropout": 0.0,
        "classifier_bias": False, "classifier_activation": "gelu", "deterministic_flash_attn": False,
        "sparse_prediction": False, "sparse_pred_ignore_index": -100, "tie_word_embeddings": True,
    }

    def __init__(self, **kwargs):
        thetas = {"full_attention": kwargs.pop("global_rope_theta", None),
                  "sliding_attention": kwargs.pop("local_rope_theta", None)}
        scaling = kwargs.pop("rope_scaling", None)
        kwargs.pop("reference_compile", None)  # a torch.compile switch of older files, dropped as the reference does
        super().__init__(**kwargs)
        if self.layer_types is None:  # `global_attn_every_n_layers` is kept as given (the reference keeps it too)
            every = getattr(self, "global_attn_every_n_layers", 3)
            self.layer_types = ["sliding_attention" if i % every else "full_attention"
                                for i in range(self.num_hidden_layers)]
        params = {kind: dict(p) if p is not None else None for kind, p in (self.rope_parameters or {}).items()}
        for kind in ("full_attention", "sliding_attention"):
            if params.get(kind) is None:
                params[kind] = {"rope_type": "default"}
            if scaling:
                params[kind].update(scaling)
            theta = thetas[kind] if thetas[kind] is not None else self.default_theta[kind]
            params[kind].setdefault("rope_theta", theta)
            params[kind].setdefault("rope_type", params[kind].get("type", "default"))
            if params[kind]["rope_type"] in ("llama3", "yarn", "longrope"):
                params[kind].setdefault("original_max_position_embeddings", self.max_position_embeddings)
        self.rope_parameters = params

    @property
    def sliding_window(self) -> int:
        """Tokens a local layer sees on each side: `local_attention // 2` (the reference's name)."""
        return self.local_attention // 2


class T5Config(PretrainedConfig):
    """T5 (v1.0: `feed_forward_proj` "relu"; v1.1 / flan: "gated-gelu" = gelu_new(wi_0 x) * wi_1 x). Derived, as
    the reference: `dense_act_fn` and `is_gated_act` from feed_forward_proj, `num_decoder_layers` defaults to
    num_layers, and `scale_decoder_outputs` (the decoder output times d_model**-0.5 before lm_head) defaults to
    tie_word_embeddings. Unlike transformers 5, tie_word_embeddings=False really unties lm_head (transformers 5
    forces it True and unties only when a checkpoint holds two different matrices)."""

    model_type = "t5"
    defaults = {
        "vocab_size": 32128, "d_model": 512, "d_kv": 64, "d_ff": 2048, "num_layers": 6, "num_decoder_layers": None,
        "num_heads": 8, "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
        "dropout_rate": 0.1, "layer_norm_epsilon": 1e-6, "initializer_factor": 1.0, "feed_forward_proj": "relu",
        "is_encoder_decoder": True, "use_cache": True, "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": None,
        "decoder_start_token_id": 0, "forced_bos_token_id": None, "forced_eos_token_id": None,
        "classifier_dropout": 0.0, "is_decoder": False, "tie_word_embeddings": True,
    }
    attribute_map = {"hidden_size": "d_model", "num_attention_heads": "num_heads", "num_hidden_layers": "num_layers",
                     "head_dim": "d_kv"}

    def _post_init(self) -> None:
        for key in ("d_ff", "num_decoder_layers", "relative_attention_num_buckets"):
            value = self.__dict__.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not
                                      0 < value <= (10_000 if key == "num_decoder_layers" else 2**31)):
                raise ConfigError(f"{type(self).__name__}: {key}={value!r} must be a positive integer "
                                  "(the config is corrupt or hostile).")
        if self.num_decoder_layers is None:
            self.num_decoder_layers = self.num_layers
        parts = str(self.feed_forward_proj).split("-")
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
            raise ConfigError(f"{type(self).__name__}: feed_forward_proj={self.feed_forward_proj!r} is not "
                              "'{ACT}' or 'gated-{ACT}' (e.g. 'relu', 'gated-gelu').")
        self.is_gated_act = parts[0] == "gated"
        self.dense_act_fn = "gelu_new" if self.feed_forward_proj == "gated-gelu" else parts[-1]
        if self.__dict__.get("scale_decoder_outputs") is None:
            self.scale_decoder_outputs = bool(self.tie_word_embeddings)

    def parameter_estimate(self) -> list[tuple[str, int]]:
        """Shared embeddings (+ an untied lm_head), encoder blocks (attention + MLP), decoder blocks (self- and
        cross-attention + MLP)."""
        d, inner, ff = self.d_model, self.num_heads * self.d_kv, self.d_ff
        mlp = (3 if self.is_gated_act else 2) * d * ff
        parts = [(f"shared embeddings (vocab_size={self.vocab_size:,} x d_model={d:,})", self.vocab_size * d),
                 (f"num_layers={self.num_layers:,} encoder blocks (d_model={d:,}, num_heads x d_kv={inner:,}, "
                  f"d_ff={ff:,})", self.num_layers * (4 * d * inner + mlp)),
                 (f"num_decoder_layers={self.num_decoder_layers:,} decoder blocks", self.num_decoder_layers *
                  (8 * d * inner + mlp))]
        if not self.tie_word_embeddings:
            parts.append((f"lm_head (vocab_size={self.vocab_size:,} x d_model={d:,})", self.vocab_size * d))
        return parts


class MT5Config(T5Config):
    """mT5: T5 v1.1 sizes with a 250k vocabulary. As transformers 5's MT5ForConditionalGeneration, the decoder output
    is never scaled by d_model**-0.5 (`scale_decoder_outputs` is always False)."""

    model_type = "mt5"
    defaults = {**T5Config.defaults, "vocab_size": 250112, "d_ff": 1024, "num_layers": 8, "num_heads": 6,
                "feed_forward_proj": "gated-gelu"}

    def _post_init(self) -> None:
        super()._post_init()
        self.scale_decoder_outputs = False
