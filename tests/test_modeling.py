"""PreTrainedModel loading and saving, on a tiny model defined here (the families have their own parity
tests): round trips, shards, dtype, renames, tying, reports, keyword checks, and bad files."""

from __future__ import annotations

import json
import logging
import os
import pickle

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from autoload.modeling import PreTrainedModel
from autoload.models.configs import BertConfig


class TinyBase(PreTrainedModel):
    config_class = BertConfig
    base_model_prefix = "bert"

    def __init__(self, config):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.LayerNorm = nn.LayerNorm(config.hidden_size)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.register_buffer("position_ids", torch.arange(8), persistent=False)
        self.post_init()

    def forward(self, ids):
        return self.dense(self.LayerNorm(self.embeddings(ids)))


class TinyHead(PreTrainedModel):
    config_class = BertConfig
    base_model_prefix = "bert"
    _tied_weights_keys = {"decoder.weight": "bert.embeddings.weight"}

    def __init__(self, config):
        super().__init__(config)
        self.bert = TinyBase(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, ids):
        return self.decoder(self.bert(ids))


def tiny_config(**kw):
    return BertConfig(vocab_size=50, hidden_size=8, **kw)


@pytest.fixture
def saved_head(tmp_path):
    torch.manual_seed(0)
    model = TinyHead(tiny_config())
    model.save_pretrained(tmp_path / "head")
    return model, tmp_path / "head"


IDS = torch.tensor([[1, 2, 3, 0]])


def test_round_trip_eval_mode_and_tied_saved_once(saved_head):
    model, folder = saved_head
    assert model.decoder.weight is model.bert.embeddings.weight
    keys = set(load_file(folder / "model.safetensors"))
    assert "bert.embeddings.weight" in keys and "decoder.weight" not in keys
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["TinyHead"] and config["dtype"] == "float32"
    loaded = TinyHead.from_pretrained(folder)
    assert not loaded.training
    assert loaded.decoder.weight is loaded.bert.embeddings.weight
    torch.testing.assert_close(loaded(IDS), model.eval()(IDS), atol=0, rtol=0)


def test_cpu_tensors_stay_memory_mapped(saved_head):
    _, folder = saved_head
    loaded = TinyHead.from_pretrained(folder)
    # assigned straight from the file: the storage is the safetensors mapping, not a private copy
    storage = loaded.bert.dense.weight.untyped_storage()
    assert storage.nbytes() >= loaded.bert.dense.weight.numel() * 4
    assert loaded.bert.position_ids.tolist() == list(range(8))  # buffers are real, computed in __init__


def test_prefixes_both_ways(saved_head, tmp_path, caplog):
    model, folder = saved_head
    base = TinyBase.from_pretrained(folder)  # head checkpoint -> bare model: 'bert.' stripped
    torch.testing.assert_close(base(IDS), model.bert(IDS), atol=0, rtol=0)
    base.save_pretrained(tmp_path / "base")
    with caplog.at_level(logging.WARNING, logger="autoload"):
        head, info = TinyHead.from_pretrained(tmp_path / "base", output_loading_info=True)
    assert info["missing_keys"] == ["classifier.weight", "classifier.bias"]
    assert info["unexpected_keys"] == []
    assert head.decoder.weight is head.bert.embeddings.weight  # tied to the loaded embeddings
    report = [r.message for r in caplog.records if r.message.startswith("TinyHead load report")]
    assert len(report) == 1 and "classifier.weight" in report[0]
    torch.testing.assert_close(head.bert(IDS), model.bert(IDS), atol=0, rtol=0)
    assert head.classifier.bias.abs().sum() == 0  # initialised the reference's way: zero bias


def test_sharded_save_and_load(saved_head, tmp_path):
    model, _ = saved_head
    model.save_pretrained(tmp_path / "sharded", max_shard_size=1000)
    files = sorted(os.listdir(tmp_path / "sharded"))
    assert "model.safetensors.index.json" in files and "model-00001-of-00003.safetensors" in files
    index = json.loads((tmp_path / "sharded" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(load_file_all(tmp_path / "sharded"))
    loaded = TinyHead.from_pretrained(tmp_path / "sharded")
    torch.testing.assert_close(loaded(IDS), model.eval()(IDS), atol=0, rtol=0)


def load_file_all(folder):
    keys = set()
    for name in os.listdir(folder):
        if name.endswith(".safetensors"):
            keys |= set(load_file(folder / name))
    return keys


def test_dtype_auto_and_explicit(saved_head, tmp_path):
    model, folder = saved_head
    model.half().save_pretrained(tmp_path / "fp16")
    assert TinyHead.from_pretrained(tmp_path / "fp16").dtype == torch.float16
    config = json.loads((tmp_path / "fp16" / "config.json").read_text())
    del config["dtype"]
    (tmp_path / "fp16" / "config.json").write_text(json.dumps(config))
    assert TinyHead.from_pretrained(tmp_path / "fp16").dtype == torch.float16  # from the first tensor
    assert TinyHead.from_pretrained(tmp_path / "fp16", dtype=torch.float32).dtype == torch.float32
    bf16 = TinyHead.from_pretrained(folder, torch_dtype="bfloat16")
    assert bf16.dtype == torch.bfloat16 and bf16.config.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="floating-point"):
        TinyHead.from_pretrained(folder, dtype="int8")


def test_keywords(saved_head, caplog):
    _, folder = saved_head
    with caplog.at_level(logging.INFO, logger="autoload"):
        model = TinyHead.from_pretrained(folder, low_cpu_mem_usage=True, hidden_dropout_prob=0.3,
                                         attn_implementation="eager")
    assert model.config.hidden_dropout_prob == 0.3 and model.config._attn_implementation == "eager"
    assert any("low_cpu_mem_usage" in r.message and "no effect" in r.message for r in caplog.records)
    with pytest.raises(TypeError, match=r"'hiden_size' \(did you mean 'hidden_size'\?\)"):
        TinyHead.from_pretrained(folder, hiden_size=4)
    with pytest.raises(TypeError, match="device_mapp"):
        TinyHead.from_pretrained(folder, device_mapp="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            TinyHead.from_pretrained(folder, device="cuda")


def test_shape_mismatch(saved_head):
    _, folder = saved_head
    with pytest.raises(ValueError, match=r"'classifier.weight': checkpoint \(2, 8\) vs model \(5, 8\)"):
        TinyHead.from_pretrained(folder, num_labels=5)
    model, info = TinyHead.from_pretrained(folder, num_labels=5, ignore_mismatched_sizes=True,
                                           output_loading_info=True)
    assert model.classifier.weight.shape == (5, 8)
    assert {k for k, _, _ in info["mismatched_keys"]} == {"classifier.weight", "classifier.bias"}
    assert info["missing_keys"] == []  # reported as mismatched, not twice


def test_legacy_bin_with_gamma_beta(saved_head, tmp_path):
    model, _ = saved_head
    state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
             for k, v in model.state_dict().items()}
    (tmp_path / "legacy").mkdir()
    model.config.save_pretrained(tmp_path / "legacy")
    torch.save(state, tmp_path / "legacy" / "pytorch_model.bin")
    loaded, info = TinyHead.from_pretrained(tmp_path / "legacy", output_loading_info=True)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == []
    torch.testing.assert_close(loaded(IDS), model.eval()(IDS), atol=0, rtol=0)


class Boom:
    def __reduce__(self):
        return (os.system, ("touch /tmp/autoload-pwned-marker",))


def test_bad_weight_files(saved_head, tmp_path):
    model, folder = saved_head
    data = (folder / "model.safetensors").read_bytes()
    for name, content in {"truncated": data[: len(data) // 2], "garbage": b"\x00" * 64,
                          "lying": _lying_header(data)}.items():
        bad = tmp_path / name
        bad.mkdir()
        model.config.save_pretrained(bad)
        (bad / "model.safetensors").write_bytes(content)
        with pytest.raises(OSError, match=rf"{name}/model.safetensors"):
            TinyHead.from_pretrained(bad)
    evil = tmp_path / "evil"
    evil.mkdir()
    model.config.save_pretrained(evil)
    with open(evil / "pytorch_model.bin", "wb") as f:
        pickle.dump({"w": Boom()}, f)
    if os.path.exists("/tmp/autoload-pwned-marker"):
        os.unlink("/tmp/autoload-pwned-marker")
    with pytest.raises(OSError, match=r"evil/pytorch_model.bin.*Nothing in it was executed"):
        TinyHead.from_pretrained(evil)
    assert not os.path.exists("/tmp/autoload-pwned-marker")
    empty = tmp_path / "noweights"
    empty.mkdir()
    model.config.save_pretrained(empty)
    with pytest.raises(OSError, match="has no model weights"):
        TinyHead.from_pretrained(empty)


def _lying_header(data: bytes) -> bytes:
    """Same file, but the header claims the first tensor ends far beyond the data."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    key = next(k for k in header if k != "__metadata__")
    header[key]["data_offsets"][1] += 10_000
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + data[8 + n:]


def test_state_dict_argument_and_hub(saved_head, hub, hub_root):
    model, folder = saved_head
    loaded = TinyHead.from_pretrained(folder, state_dict=model.state_dict())
    torch.testing.assert_close(loaded(IDS), model.eval()(IDS), atol=0, rtol=0)
    repo = hub_root / "org" / "tiny-head"
    repo.mkdir(parents=True)
    for name in os.listdir(folder):
        (repo / name).write_bytes((folder / name).read_bytes())
    from_hub = TinyHead.from_pretrained("org/tiny-head")
    from_folder = TinyHead.from_pretrained(folder)
    for (k1, v1), (k2, v2) in zip(from_hub.state_dict().items(), from_folder.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)


def test_direct_construction_initialises_like_the_reference():
    torch.manual_seed(0)
    model = TinyHead(tiny_config(initializer_range=0.5))
    assert model.bert.LayerNorm.weight.eq(1).all() and model.bert.dense.bias.eq(0).all()
    assert model.bert.embeddings.weight[0].eq(0).all()  # padding row
    assert 0.3 < model.bert.dense.weight.std() < 0.7


def test_missing_bias_next_to_a_tied_weight_keeps_the_loaded_embeddings(tmp_path):
    """A head whose Linear has a tied weight and a missing bias: initialising the bias must not re-initialise
    (through the tie) the loaded embeddings."""
    class BiasedHead(TinyHead):
        def __init__(self, config):
            super().__init__(config)
            self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=True)
            self.post_init()

    torch.manual_seed(0)
    base = TinyBase(tiny_config())
    base.save_pretrained(tmp_path)
    head = BiasedHead.from_pretrained(tmp_path)
    assert torch.equal(head.bert.embeddings.weight, base.embeddings.weight)
    assert head.decoder.weight is head.bert.embeddings.weight and head.decoder.bias.eq(0).all()


def test_loading_leaves_other_threads_alone(saved_head):
    """Building the skeleton touches only the loading thread: modules built meanwhile in another thread get real,
    initialised parameters in torch's default dtype, and never see torch.nn patched."""
    import threading

    _, folder = saved_head
    originals = (nn.Module.register_parameter, nn.init.normal_, nn.init.kaiming_uniform_)
    built, patched, stop = [], [], threading.Event()

    def build_modules():
        while not stop.is_set():
            built.append(nn.Linear(4, 4))
            patched.append((nn.Module.register_parameter, nn.init.normal_, nn.init.kaiming_uniform_) != originals)
    worker = threading.Thread(target=build_modules)
    worker.start()
    try:
        for _ in range(30):
            loaded = TinyHead.from_pretrained(folder, dtype=torch.float16)
            assert all(p.device.type == "cpu" and p.dtype == torch.float16 for p in loaded.parameters())
    finally:
        stop.set()
        worker.join()
    assert built and not any(patched)
    for module in built:
        for param in module.parameters():
            assert param.device.type == "cpu" and param.dtype == torch.float32
        assert module.weight.abs().sum() > 0  # initialised (kaiming), not left empty by a skipped init
    assert nn.Linear(2, 2).weight.device.type == "cpu"  # nothing lingers in the loading thread either
