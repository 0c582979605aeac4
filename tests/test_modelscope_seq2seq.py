"""Seq2seq models and their tokenizers from ModelScope (`hub="modelscope"`) on the local server's ModelScope routes:
AutoModelForSeq2SeqLM + AutoTokenizer give generated ids equal to transformers' on the same checkpoint (t5 with
its spiece.model, bart with the GPT-2 BPE and a generation_config.json), AutoModelForTextEncoding gives
T5EncoderModel with transformers' outputs, and the translation pipeline loads by name from ModelScope."""

from __future__ import annotations

import warnings

import pytest
import torch
import transformers

import autoload
from autoload.server import HubServer
from seq2seq_folders import save_bart, save_t5

transformers.logging.set_verbosity_error()
TEXTS = ["translate English to German: The house is wonderful.", "Hello world, how are you?"]


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory):
    """A hub folder with ModelScope-shaped repos (owner/name), saved by transformers."""
    root = tmp_path_factory.mktemp("ms_hub")
    save_t5(root / "owner" / "t5-tiny")
    save_t5(root / "owner" / "t5-encoder", encoder_only=True, seed=1)
    save_bart(root / "owner" / "bart-tiny")
    return root


@pytest.fixture(scope="module")
def server(hub_root):
    with HubServer(hub_root) as srv:
        yield srv


@pytest.fixture
def ms(server, isolated_env, monkeypatch):
    """The server as the ModelScope endpoint, the ModelScope cache in tmp_path, no Hugging Face endpoint."""
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", server.url)
    monkeypatch.setenv("MODELSCOPE_CACHE", str(isolated_env / "ms_cache"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: HF routes must not be used
    for name in ("MODELSCOPE_DOMAIN", "MODELSCOPE_API_TOKEN", "AUTOLOAD_HUB"):
        monkeypatch.delenv(name, raising=False)
    server.reset_requests()
    return server


def reference_generate(model, ids, mask, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.generate(input_ids=ids, attention_mask=mask, **kwargs)


@pytest.mark.parametrize("name", ["t5-tiny", "bart-tiny"])
def test_seq2seq_model_and_tokenizer_from_modelscope(ms, hub_root, isolated_env, name):
    model = autoload.AutoModelForSeq2SeqLM.from_pretrained(f"owner/{name}", hub="modelscope")
    tokenizer = autoload.AutoTokenizer.from_pretrained(f"owner/{name}", hub="modelscope")
    assert model.name_or_path == f"owner/{name}" and list((isolated_env / "ms_cache").rglob("model.safetensors"))
    assert all("/api/v1/models/owner/" in r.path for r in ms.requests)  # only the ModelScope routes
    ref = transformers.AutoModelForSeq2SeqLM.from_pretrained(hub_root / "owner" / name).eval()
    ref_tok = transformers.AutoTokenizer.from_pretrained(str(hub_root / "owner" / name))
    assert type(model).__name__ == type(ref).__name__ and type(tokenizer).__name__ == type(ref_tok).__name__
    encoding = tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert encoding["input_ids"].tolist() == ref_tok(TEXTS, padding=True)["input_ids"]
    ids, mask = encoding["input_ids"], encoding["attention_mask"]
    decoder = torch.tensor([[model.config.decoder_start_token_id, 5, 9]] * 2)
    with torch.no_grad():
        torch.testing.assert_close(model(ids, mask, decoder_input_ids=decoder).logits,
                                   ref(ids, attention_mask=mask, decoder_input_ids=decoder).logits, atol=1e-4, rtol=0)
    for kwargs in (dict(max_new_tokens=10), dict(max_new_tokens=8, num_beams=4, num_return_sequences=2)):
        mine = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        assert torch.equal(mine, reference_generate(ref, ids, mask, **kwargs)), kwargs
        assert tokenizer.batch_decode(mine, skip_special_tokens=True) == ref_tok.batch_decode(
            mine, skip_special_tokens=True)
    if name == "bart-tiny":  # generation_config.json came along: its forced BOS is applied
        assert model.generation_config.forced_bos_token_id == 0 and bool((mine[:, 1] == 0).all())


def test_text_encoding_gives_t5_encoder_model(ms, hub_root, caplog):
    for name in ("t5-encoder", "t5-tiny"):  # an encoder-only checkpoint, and the encoder of a seq2seq one
        model = autoload.AutoModelForTextEncoding.from_pretrained(f"owner/{name}", hub="modelscope")
        ref = transformers.T5EncoderModel.from_pretrained(hub_root / "owner" / name).eval()
        assert type(model).__name__ == "T5EncoderModel"
        tokenizer = autoload.AutoTokenizer.from_pretrained(f"owner/{name}", hub="modelscope")
        encoding = tokenizer(TEXTS, padding=True, return_tensors="pt")
        with torch.no_grad():
            mine = model(**encoding, output_hidden_states=True)
            theirs = ref(**encoding, output_hidden_states=True)
        torch.testing.assert_close(mine.last_hidden_state, theirs.last_hidden_state, atol=1e-4, rtol=0)
        assert len(mine.hidden_states) == len(theirs.hidden_states) == 3
        for a, b in zip(mine.hidden_states, theirs.hidden_states):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    with caplog.at_level("WARNING", logger="autoload"):  # as transformers: a new decoder, and a warning naming it
        autoload.AutoModelForSeq2SeqLM.from_pretrained("owner/t5-encoder", hub="modelscope")
    assert "MISSING" in caplog.text and "decoder.block.0.layer.0.SelfAttention.q.weight" in caplog.text


def test_translation_pipeline_by_name_from_modelscope(ms, hub_root):
    translate = autoload.pipeline("translation_en_to_de", "owner/t5-tiny", hub="modelscope", max_length=12)
    ref = transformers.T5ForConditionalGeneration.from_pretrained(hub_root / "owner" / "t5-tiny").eval()
    ref_tok = transformers.AutoTokenizer.from_pretrained(str(hub_root / "owner" / "t5-tiny"))
    encoding = ref_tok("translate English to German: " + TEXTS[1], return_tensors="pt")
    ids = reference_generate(ref, encoding["input_ids"], encoding["attention_mask"], num_beams=4, early_stopping=True,
                             max_length=12)  # t5's task_specific_params, the call's max_length
    assert translate(TEXTS[1]) == [{"translation_text": ref_tok.decode(ids[0], skip_special_tokens=True)}]
    assert all("/api/v1/" in r.path for r in ms.requests)
