"""Every byte of a repo is hostile: absurd config sizes, deeply nested or oversized JSON files, and runaway chat
templates each end quickly in a typed error that names the file, key or limit, while valid repos load as before."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest
import torch
import transformers
from safetensors.torch import save_file
from tokenizers import Tokenizer

import autoload
from autoload.errors import ChatTemplateError, ConfigError, ConfigTypeError, ModelTooLargeError, RepoFileError
from autoload.jsonfiles import MAX_DEPTH, read_json
from autoload.models import configs
from autoload.sentence.modules import read_sentence_setup
from autoload.hub.source import FileSource
from autoload.tokenization import BertTokenizer, TokenizersBackend
from decoder_cases import tiny_config
from tokenizer_cases import train_byte_level, write_folder

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

LIMIT_VARIABLES = ("AUTOLOAD_SKIP_SIZE_CHECK", "AUTOLOAD_MAX_JSON_MIB", "AUTOLOAD_CHAT_TEMPLATE_TIMEOUT",
                   "AUTOLOAD_CHAT_TEMPLATE_MAX_STEPS", "AUTOLOAD_CHAT_TEMPLATE_MAX_CHARS")
TINY_BERT = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
DEEP = "[" * 100_000 + "]" * 100_000
CHAT = [{"role": "user", "content": "hi"}]
STEPS_OR_TIME = r"more than 1,000,000 steps|ran for more than 10 s"  # whichever comes first on this machine


@pytest.fixture(autouse=True)
def default_limits(monkeypatch):
    for name in LIMIT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    """A tiny BertForMaskedLM saved by transformers."""
    folder = tmp_path_factory.mktemp("bert")
    torch.manual_seed(0)
    transformers.BertForMaskedLM(transformers.BertConfig(**TINY_BERT)).save_pretrained(folder)
    return folder


def copy_with(source, target, **config_changes):
    shutil.copytree(source, target)
    path = target / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **config_changes}))
    return target


# -- 1. config sizes --------------------------------------------------------------------------------------------

@pytest.mark.timeout(30)
@pytest.mark.parametrize("key,value,error", [
    ("hidden_size", 1e12, ConfigTypeError),
    ("vocab_size", 10**12, ConfigError),
    ("num_hidden_layers", 10**6, ConfigError),
    ("intermediate_size", 2**40, ConfigError),
    ("max_position_embeddings", 2e9, ConfigTypeError),
    ("num_attention_heads", 0, ConfigError),
    ("hidden_size", -32, ConfigError),
    ("num_hidden_layers", True, ConfigTypeError),
    ("intermediate_size", "huge", ConfigTypeError),
    ("num_labels", 10**9, ConfigError),
])
def test_absurd_sizes_are_refused_before_anything_is_built(tmp_path, bert_folder, key, value, error):
    folder = copy_with(bert_folder, tmp_path / "bad", **{key: value})
    for load in (autoload.AutoConfig.from_pretrained, autoload.AutoModelForMaskedLM.from_pretrained):
        with pytest.raises(error) as caught:
            load(folder)
        assert isinstance(caught.value, ValueError)
        message = str(caught.value)
        assert key in message and str(folder) in message and "config.json" in message


def test_size_errors_name_architecture_specific_keys():
    with pytest.raises(ConfigError, match=r"n_layer=1,000,000 is out of bounds"):
        configs.GPT2Config(n_layer=10**6)
    with pytest.raises(ConfigError, match=r"num_layers=20,000"):
        configs.ChatGLMConfig(num_layers=20_000)
    with pytest.raises(ConfigTypeError, match="multi_query_group_num"):
        configs.ChatGLMConfig(multi_query_group_num=1.5)
    with pytest.raises(ConfigError, match="head_dim"):
        configs.LlamaConfig(head_dim=-1)
    with pytest.raises(TypeError, match="hidden_size"):  # a wrong kind of value is still a TypeError as well
        configs.BertConfig(hidden_size="big")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("changes,key", [
    ({"vocab_size": 2**31, "hidden_size": 4096}, "vocab_size=2,147,483,648"),
    ({"max_position_embeddings": 2_000_000_000, "hidden_size": 1024}, "max_position_embeddings=2,000,000,000"),
    ({"intermediate_size": 2**31 - 1, "hidden_size": 65536, "num_hidden_layers": 64}, "intermediate_size"),
])
def test_estimate_far_beyond_memory_is_refused(tmp_path, bert_folder, changes, key):
    folder = copy_with(bert_folder, tmp_path / "huge", **changes)
    with pytest.raises(ModelTooLargeError, match="RAM") as caught:
        autoload.AutoModelForMaskedLM.from_pretrained(folder)
    assert key in str(caught.value) and "check_size=False" in str(caught.value)


@pytest.mark.timeout(30)
def test_gpt2_position_table_counts_in_the_estimate(tmp_path):
    folder = tmp_path / "gpt2"
    transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=4)
                                 ).save_pretrained(folder)
    copy_with(folder, tmp_path / "long", n_positions=2_000_000_000, n_embd=1024)
    with pytest.raises(ModelTooLargeError, match=r"n_positions=2,000,000,000"):
        autoload.AutoModelForCausalLM.from_pretrained(tmp_path / "long")
    assert autoload.AutoModelForCausalLM.from_pretrained(folder).transformer.wpe.num_embeddings == 1024


@pytest.mark.timeout(30)
def test_config_that_disagrees_with_the_checkpoint_is_refused_unless_overridden(tmp_path, bert_folder, monkeypatch):
    folder = copy_with(bert_folder, tmp_path / "mismatch", hidden_size=1024, num_hidden_layers=24,
                       num_attention_heads=16, intermediate_size=4096, vocab_size=30522)
    with pytest.raises(ModelTooLargeError, match=r"model\.safetensors\) holds only .* KB") as caught:
        autoload.AutoModelForMaskedLM.from_pretrained(folder)
    assert "num_hidden_layers=24" in str(caught.value) and "AUTOLOAD_SKIP_SIZE_CHECK" in str(caught.value)
    # with the check off, loading goes on and fails where the shapes do not fit (no size error first)
    with pytest.raises(ValueError, match="Shape mismatch"):
        autoload.AutoModelForMaskedLM.from_pretrained(folder, check_size=False)
    monkeypatch.setenv("AUTOLOAD_SKIP_SIZE_CHECK", "1")
    with pytest.raises(ValueError, match="Shape mismatch"):
        autoload.AutoModelForMaskedLM.from_pretrained(folder)


@pytest.mark.timeout(30)
def test_checkpoint_far_larger_than_its_config_is_refused(tmp_path, bert_folder):
    folder = tmp_path / "padded"
    shutil.copytree(bert_folder, folder)
    save_file({"padding": torch.zeros(10_000_000)}, str(folder / "model.safetensors"))  # 40 MB, no real tensor
    with pytest.raises(ModelTooLargeError, match=r"is 40\.0 MB, more than 16 bytes per parameter"):
        autoload.AutoModelForMaskedLM.from_pretrained(folder)


@pytest.mark.timeout(30)
def test_rotary_models_allocate_nothing_per_position(tmp_path):
    """max_position_embeddings=2e9 is fine for rotary models: nothing is sized by it at init."""
    torch.manual_seed(0)
    reference = transformers.LlamaForCausalLM(tiny_config("llama")).eval()
    reference.save_pretrained(tmp_path / "llama")
    copy_with(tmp_path / "llama", tmp_path / "long", max_position_embeddings=2_000_000_000)
    ours = autoload.AutoModelForCausalLM.from_pretrained(tmp_path / "long")
    buffers = sum(b.numel() for b in ours.buffers())
    assert buffers < 1000 and ours.config.max_position_embeddings == 2_000_000_000
    ids = torch.tensor([[1, 5, 7, 9]])
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, reference(ids).logits, atol=1e-4, rtol=0)

    from autoload.models.chatglm import ChatGLMForConditionalGeneration
    glm = dict(num_layers=2, padded_vocab_size=99, hidden_size=32, ffn_hidden_size=37, kv_channels=8,
               num_attention_heads=4, multi_query_attention=True, multi_query_group_num=2, add_qkv_bias=True)
    ChatGLMForConditionalGeneration(configs.ChatGLMConfig(**glm)).save_pretrained(tmp_path / "glm")
    copy_with(tmp_path / "glm", tmp_path / "glm-long", seq_length=2_000_000_000)
    model = autoload.AutoModelForCausalLM.from_pretrained(tmp_path / "glm-long", trust_remote_code=False)
    assert sum(b.numel() for b in model.buffers()) < 1000


def test_memory_of_the_target_device(monkeypatch):
    """The estimate is compared with the GPU's memory for a cuda target, GPUs + RAM for device_map="auto"."""
    from autoload import loading
    ram, _ = loading._memory_of(torch.device("cpu"), None)
    assert ram > 0
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(total_memory=8 * 2**30))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert loading._memory_of(torch.device("cuda:1"), None) == (8 * 2**30, "GPU cuda:1")
    assert loading._memory_of(torch.device("cpu"), "auto") == (16 * 2**30 + ram, "the GPUs and RAM")


@pytest.mark.parametrize("family,reference_class", [
    ("bert", transformers.BertForMaskedLM), ("gpt2", transformers.GPT2LMHeadModel),
    ("llama", transformers.LlamaForCausalLM), ("qwen2", transformers.Qwen2ForCausalLM),
])
def test_parameter_estimate_is_close_to_the_real_count(family, reference_class):
    if family == "bert":
        reference_config = transformers.BertConfig(**TINY_BERT)
    elif family == "gpt2":
        reference_config = transformers.GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=4)
    else:
        reference_config = tiny_config(family, tie_word_embeddings=False)
    config = getattr(configs, type(reference_config).__name__)(**reference_config.to_dict())
    estimate = sum(n for _, n in config.parameter_estimate())
    real = reference_class(reference_config).num_parameters()
    assert real / 1.5 < estimate < real * 1.5, (estimate, real)


def test_estimates_of_published_sizes():
    """bert-base 110M, gpt2 124M, Llama-2-7B 6.74B, Mistral-7B 7.24B, chatglm3-6b 6.24B (within 2%)."""
    cases = [(configs.BertConfig(), 110e6), (configs.GPT2Config(), 124e6), (configs.LlamaConfig(), 6.74e9),
             (configs.MistralConfig(), 7.24e9),
             (configs.ChatGLMConfig(multi_query_attention=True, multi_query_group_num=2), 6.24e9)]
    for config, published in cases:
        estimate = sum(n for _, n in config.parameter_estimate())
        assert abs(estimate / published - 1) < 0.02, (type(config).__name__, estimate)


# -- 2. JSON files ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer_json():
    return train_byte_level().to_str()


def vocab_folder(folder, extra=None):
    vocab = "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"])
    return write_folder(folder, {"vocab.txt": vocab, **(extra or {})})


@pytest.mark.timeout(30)
def test_deeply_nested_json_is_a_clear_error_everywhere(tmp_path, bert_folder, tokenizer_json):
    def refused(load, filename):
        with pytest.raises(RepoFileError, match=rf"{filename} nests JSON arrays/objects more than {MAX_DEPTH} levels"):
            load()

    folder = copy_with(bert_folder, tmp_path / "config")
    (folder / "config.json").write_text(DEEP)
    refused(lambda: autoload.AutoConfig.from_pretrained(folder), "config.json")
    refused(lambda: autoload.AutoModelForMaskedLM.from_pretrained(folder), "config.json")
    folder = write_folder(tmp_path / "tokconfig", {"tokenizer.json": tokenizer_json, "tokenizer_config.json": DEEP})
    refused(lambda: autoload.AutoTokenizer.from_pretrained(folder), "tokenizer_config.json")
    for name in ("special_tokens_map.json", "added_tokens.json"):
        folder = vocab_folder(tmp_path / name, {name: DEEP})
        refused(lambda: BertTokenizer.from_pretrained(folder), name)
    folder = vocab_folder(tmp_path / "bert-tokenizer-json", {"tokenizer.json": DEEP})
    refused(lambda: BertTokenizer.from_pretrained(folder), "tokenizer.json")
    folder = write_folder(tmp_path / "generic", {"tokenizer.json": DEEP})
    refused(lambda: TokenizersBackend.from_pretrained(folder), "tokenizer.json")
    # with added_tokens_decoder in the config, only tokenizers' own (Rust) parser reads tokenizer.json
    folder = write_folder(tmp_path / "rust", {"tokenizer.json": '{"model": ' + DEEP + "}",
                                              "tokenizer_config.json": '{"added_tokens_decoder": {}}'})
    with pytest.raises(RepoFileError, match=r"tokenizer\.json cannot be loaded as a tokenizer\.json .*recursion"):
        TokenizersBackend.from_pretrained(folder)

    gpt2 = tmp_path / "gpt2"
    transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=4)
                                 ).save_pretrained(gpt2)
    (gpt2 / "generation_config.json").write_text(DEEP)
    refused(lambda: autoload.AutoModelForCausalLM.from_pretrained(gpt2), "generation_config.json")

    sharded = copy_with(bert_folder, tmp_path / "sharded")
    (sharded / "model.safetensors").rename(sharded / "model-00001-of-00001.safetensors")
    (sharded / "model.safetensors.index.json").write_text(DEEP)
    refused(lambda: autoload.AutoModelForMaskedLM.from_pretrained(sharded), "model.safetensors.index.json")

    sentence = write_folder(tmp_path / "sentence", {"modules.json": DEEP})
    refused(lambda: read_sentence_setup(FileSource(sentence)), "modules.json")
    pooling = write_folder(tmp_path / "pooling", {
        "modules.json": json.dumps([{"idx": 0, "type": "sentence_transformers.models.Pooling", "path": "1_Pooling"}]),
        "1_Pooling/config.json": DEEP})
    refused(lambda: read_sentence_setup(FileSource(pooling)), "config.json")


def test_nesting_just_under_the_limit_still_parses(tmp_path):
    path = tmp_path / "ok.json"
    path.write_text('{"a": ' * (MAX_DEPTH - 1) + "1" + "}" * (MAX_DEPTH - 1))
    assert isinstance(read_json(path), dict)
    path.write_text('{"a": ' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1))
    with pytest.raises(RepoFileError, match="nests"):
        read_json(path)


@pytest.mark.timeout(30)
def test_json_files_of_the_wrong_shape_or_encoding(tmp_path, bert_folder, tokenizer_json):
    folder = write_folder(tmp_path / "list", {"tokenizer.json": tokenizer_json, "tokenizer_config.json": "[1, 2]"})
    with pytest.raises(RepoFileError, match=r"tokenizer_config\.json must hold a JSON object, not array"):
        autoload.AutoTokenizer.from_pretrained(folder)
    gen = copy_with(bert_folder, tmp_path / "gen")
    (gen / "generation_config.json").write_text('"greedy"')
    with pytest.raises(RepoFileError, match=r"generation_config\.json must hold a JSON object, not string"):
        autoload.GenerationConfig.from_pretrained(gen)
    sentence = write_folder(tmp_path / "sentence", {"modules.json": "{}"})
    with pytest.raises(RepoFileError, match=r"modules\.json must hold a JSON array, not object"):
        read_sentence_setup(FileSource(sentence))
    broken = copy_with(bert_folder, tmp_path / "latin1")
    (broken / "config.json").write_bytes(b'{"model_type": "bert", "name": "caf\xe9"}')
    with pytest.raises(RepoFileError, match=r"config\.json is not UTF-8 text"):
        autoload.AutoConfig.from_pretrained(broken)
    (broken / "config.json").write_text('{"model_type": "bert", "vocab_size": ' + "9" * 5000 + "}")
    with pytest.raises(RepoFileError, match=r"config\.json cannot be read as JSON"):
        autoload.AutoConfig.from_pretrained(broken)


@pytest.mark.timeout(30)
def test_json_size_limits_and_their_override(tmp_path, bert_folder, tokenizer_json, monkeypatch):
    folder = copy_with(bert_folder, tmp_path / "padded", padding="x" * 4096)
    monkeypatch.setenv("AUTOLOAD_MAX_JSON_MIB", "0.002")  # 2 KiB
    with pytest.raises(RepoFileError, match=r"config\.json is [\d,]+ bytes, over autoload's limit of 2,097 ") as caught:
        autoload.AutoConfig.from_pretrained(folder)
    assert "AUTOLOAD_MAX_JSON_MIB" in str(caught.value)
    generic = write_folder(tmp_path / "generic", {"tokenizer.json": tokenizer_json})
    with pytest.raises(RepoFileError, match=r"tokenizer\.json is [\d,]+ bytes, over"):
        TokenizersBackend.from_pretrained(generic)
    monkeypatch.delenv("AUTOLOAD_MAX_JSON_MIB")
    assert autoload.AutoConfig.from_pretrained(folder).padding == "x" * 4096
    assert TokenizersBackend.from_pretrained(generic).name_or_path == str(generic)
    big_template = write_folder(tmp_path / "template", {"tokenizer.json": tokenizer_json,
                                                         "chat_template.jinja": "x" * (16 * 2**20 + 1)})
    with pytest.raises(RepoFileError, match=r"chat_template\.jinja is 16,777,217 bytes, over autoload's limit of "
                                             r"16,777,216 bytes"):
        TokenizersBackend.from_pretrained(big_template)


# -- 3. chat templates ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer(tokenizer_json):
    return TokenizersBackend(Tokenizer.from_str(tokenizer_json), eos_token="<|endoftext|>")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("template,message", [
    ("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}", STEPS_OR_TIME),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", STEPS_OR_TIME),
    ("{{ 'x' * 10**10 }}", "a repetition of about 10,000,000,000 characters"),
    ("{% for i in range(10**9) %}{% endfor %}", r"range\(\) of 1,000,000,000 items"),
    ("{{ 'x'|center(10**10) }}", "a centered string"),
    ("{{ 'x'.ljust(10**10) }}", r"str\.ljust\(\) result"),
    ("{{ '{:>10000000000}'.format(1) }}", "a formatted string"),
    ("{{ '%10000000000d' % 1 }}", "a formatted string"),
    ("{{ 2 ** 100000000 }}", "more than 65,536 bits"),
    ("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
     "a ~ concatenation"),
    ("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}", "a string"),
    ("{% set b = 'x' * 10000000 %}{% set out %}{% for i in range(1000) %}{{ b }}{% endfor %}{% endset %}",
     "a block"),
    ("{% set b = 'x' * 10000000 %}{{ [b, b, b] }}", "an output"),
    ("{% set b = 'x' * 10000000 %}{% for i in range(100) %}{{ b }}{% endfor %}", "an output"),
    ("{{ ('x' * 1000000)|replace('x', 'y' * 1000) }}", "a replaced string"),
    ("{% set b = 'x' * 10000000 %}{{ [b, b]|join }}", "a joined string"),
    ("{{ [1]|batch(100000000, 0)|list }}", "batches or slices"),
    ("{{ lipsum(1000000) }}", "lorem ipsum"),
    ("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}", STEPS_OR_TIME),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recursed too deeply"),
])
def test_runaway_templates_stop_with_a_clear_error(tokenizer, template, message):
    with pytest.raises(ChatTemplateError, match=message) as caught:
        tokenizer.apply_chat_template(CHAT, chat_template=template, tokenize=False)
    assert "given as chat_template=" in str(caught.value)


@pytest.mark.timeout(30)
def test_limits_name_the_repo_template_and_can_be_raised(tmp_path, tokenizer_json, monkeypatch):
    loop = "{% for i in range(20) %}{{ i }}{% endfor %}"
    folder = write_folder(tmp_path / "repo", {"tokenizer.json": tokenizer_json, "chat_template.jinja": loop})
    tok = TokenizersBackend.from_pretrained(folder)
    assert tok.apply_chat_template(CHAT, tokenize=False) == "".join(map(str, range(20)))
    monkeypatch.setenv("AUTOLOAD_CHAT_TEMPLATE_MAX_STEPS", "10")
    with pytest.raises(ChatTemplateError, match=r"more than 10 steps.*AUTOLOAD_CHAT_TEMPLATE_MAX_STEPS") as caught:
        tok.apply_chat_template(CHAT, tokenize=False)
    assert f"TokenizersBackend '{folder}'" in str(caught.value)
    monkeypatch.setenv("AUTOLOAD_CHAT_TEMPLATE_MAX_STEPS", "100")
    monkeypatch.setenv("AUTOLOAD_CHAT_TEMPLATE_MAX_CHARS", "15")
    with pytest.raises(ChatTemplateError, match=r"an output of about .* over the limit of 15.*MAX_CHARS"):
        tok.apply_chat_template(CHAT, tokenize=False)
    monkeypatch.delenv("AUTOLOAD_CHAT_TEMPLATE_MAX_STEPS")
    monkeypatch.delenv("AUTOLOAD_CHAT_TEMPLATE_MAX_CHARS")
    monkeypatch.setenv("AUTOLOAD_CHAT_TEMPLATE_TIMEOUT", "0.2")
    silent = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    monkeypatch.setenv("AUTOLOAD_CHAT_TEMPLATE_MAX_STEPS", str(10**12))
    with pytest.raises(ChatTemplateError, match=r"ran for more than 0\.2 s.*AUTOLOAD_CHAT_TEMPLATE_TIMEOUT"):
        tok.apply_chat_template(CHAT, chat_template=silent, tokenize=False)


def test_bounded_features_render_as_before(tokenizer):
    """Everything the checks touch renders exactly as in Jinja's plain sandbox: loops (with loop.*), recursive
    loops, ~, +, *, %, **, str methods and the guarded filters."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from autoload.tokenization.chat import _environment
    template = ("{% for m in messages %}{{ loop.index }}/{{ loop.length }}{{ '!' if loop.last }} {% endfor %}|"
                "{% for i in [[1, [2]], [3]] recursive %}({% if i is iterable %}{{ loop(i) }}{% else %}{{ i }}"
                "{% endif %}){% endfor %}|{{ 'a' ~ 1 ~ none }}|{{ 'ab' + 'c' }}|{{ '-' * 3 }}|{{ [1] * 2 }}|"
                "{{ '%03d' % 7 }}|{{ '{}-{}'.format(1, 2) }}|{{ [1, 2, 3]|join(',') }}|{{ 'a b'|replace('a', 'c') }}|"
                "{{ [[1], [2]]|sum(start=[]) }}|{{ 'x'|center(5) }}|{{ range(3)|batch(2, 0)|list }}|"
                "{{ range(5)|slice(2)|list }}|{{ 'a\nb'|indent(2, true) }}|{{ 'abc def'|wordwrap(3) }}|"
                "{{ messages|tojson }}|{{ 2 ** 10 }}|{{ 'ab'.ljust(4, '.') }}|{{ ', '.join(['p', 'q']) }}|"
                "{{ 'x\ty'.expandtabs(4) }}|{% set block %}{{ 'in' }}{% endset %}{{ block }}|{{ [1, 2]|string }}")
    plain = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    plain.filters["tojson"] = _environment().filters["tojson"].__wrapped__
    conversation = [*CHAT, {"role": "assistant", "content": "yo"}]
    expected = plain.from_string(template).render(messages=conversation)
    assert expected.startswith("1/2 2/2! |((1)((2)))((3))|a1None|abc|---|[1, 1]|007|1-2|")
    assert tokenizer.apply_chat_template(conversation, chat_template=template, tokenize=False) == expected
