"""ChatGLM end to end: the repos' layout served by the local hub (auto_map + .py files that must never run),
chat()/stream_chat() in each generation's format and history shape, the tool-call parser, the overflow guard,
and `autoload chat` on a chatglm folder."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
import torch

import demo_repos  # scripts/demo_repos.py (conftest puts scripts/ on sys.path)
from autoload import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer
from autoload.generation import generate
from autoload.models.chatglm import ChatGLMForConditionalGeneration
from autoload.models.chatglm_chat import InvalidScoreGuard, _parse_reply
from conftest import ROOT, write_repo

pytestmark = pytest.mark.usefixtures("chinese_vocab")  # the tiny chatglm tokenizer is built from its pieces
GREEDY = dict(do_sample=False, max_new_tokens=8)


@pytest.fixture(scope="module")
def chatglm2(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hub") / "THUDM" / "chatglm2-tiny-random"
    demo_repos.write_chatglm2_tiny(folder)
    return folder


@pytest.fixture(scope="module")
def chatglm3(chatglm2, tmp_path_factory):
    """The same weights and SentencePiece model, with chatglm3's tokenizer config (role tokens)."""
    folder = tmp_path_factory.mktemp("chatglm3")
    for name in ("config.json", "model.safetensors", "tokenizer.model"):
        (folder / name).write_bytes((chatglm2 / name).read_bytes())
    config = json.loads((chatglm2 / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "_name_or_path": "THUDM/chatglm3-6b"}))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "name_or_path": "THUDM/chatglm3-6b", "tokenizer_class": "ChatGLMTokenizer", "padding_side": "left",
        "auto_map": {"AutoTokenizer": ["tokenization_chatglm.ChatGLMTokenizer", None]}}))
    return folder


def load(folder, **kwargs):
    tokenizer = AutoTokenizer.from_pretrained(str(folder), **kwargs)
    model = AutoModel.from_pretrained(str(folder), dtype=torch.float32, **kwargs)
    return tokenizer, model


# -- registry: native code for the repos' auto_map ------------------------------------------------------------

def test_repo_code_never_runs_and_automodel_is_the_lm(chatglm2, hub, hub_root, caplog):
    target = hub_root / "THUDM" / "chatglm2-tiny-random"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(chatglm2, target_is_directory=True)
    hub.follow_symlinks_outside = True  # the repo folder links out of the served root
    with caplog.at_level(logging.INFO, logger="autoload"):
        tokenizer, model = load("THUDM/chatglm2-tiny-random", trust_remote_code=True)
    assert type(model) is ChatGLMForConditionalGeneration and tokenizer.variant == "chatglm2"
    assert type(AutoModelForCausalLM.from_pretrained("THUDM/chatglm2-tiny-random")) is ChatGLMForConditionalGeneration
    assert not [r.path for r in hub.requests if ".py" in r.path]  # the raising .py files were never fetched
    assert "built-in 'chatglm' implementation is used instead" in caplog.text and "native=False" in caplog.text
    assert "built-in ChatGLMTokenizer is used instead" in caplog.text
    # opting back into the repo's code really runs it (these files only raise)
    with pytest.raises(RuntimeError, match="must never run"):
        AutoConfig.from_pretrained("THUDM/chatglm2-tiny-random", trust_remote_code=True, native=False)
    with pytest.raises(RuntimeError, match="must never run"):
        AutoTokenizer.from_pretrained("THUDM/chatglm2-tiny-random", trust_remote_code=True, native=False)


V1_CONFIG = {"model_type": "chatglm", "architectures": ["ChatGLMModel"], "vocab_size": 130528, "hidden_size": 4096,
             "num_layers": 28, "num_attention_heads": 32, "inner_hidden_size": 16384, "max_sequence_length": 2048,
             "position_encoding_2d": True, "bos_token_id": 130004, "eos_token_id": 130005,
             "auto_map": {"AutoConfig": "configuration_chatglm.ChatGLMConfig",
                          "AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration"}}


@pytest.mark.parametrize("change, match", [
    ({}, "first-generation"), ({"quantization_bit": 4}, "quantization_bit"), ({"pre_seq_len": 128}, "pre_seq_len")])
def test_unsupported_checkpoints_are_refused(hub, hub_root, change, match):
    if change:  # a chatglm2-style config with one unsupported option
        config = {**demo_repos.CHATGLM2_TINY_CONFIG, "padded_vocab_size": 64, **change}
    else:
        config = V1_CONFIG
    write_repo(hub_root / "THUDM" / "odd", {"config.json": json.dumps(config),
                                            "modeling_chatglm.py": "raise RuntimeError('ran the repo code')\n",
                                            "configuration_chatglm.py": "raise RuntimeError('ran the repo code')\n"})
    for trust in (None, False):
        with pytest.raises(ValueError, match=match) as info:
            AutoModel.from_pretrained("THUDM/odd", trust_remote_code=trust)
        assert "THUDM/odd" in str(info.value) and "trust_remote_code=True" in str(info.value)
    with pytest.raises(RuntimeError, match="ran the repo code"):  # trusted: the repo's own code is tried
        AutoConfig.from_pretrained("THUDM/odd", trust_remote_code=True)


# -- chatglm2 ------------------------------------------------------------------------------------------------

def test_chatglm2_chat_is_the_round_prompt_and_pairs(chatglm2):
    tokenizer, model = load(chatglm2)
    history = [("你好", "你好！有什么可以帮你？")]
    prompt = tokenizer.build_prompt("晚上睡不着", history)
    assert prompt == "[Round 1]\n\n问：你好\n\n答：你好！有什么可以帮你？\n\n[Round 2]\n\n问：晚上睡不着\n\n答："
    inputs = tokenizer([prompt], return_tensors="pt")
    expected = generate(model, inputs["input_ids"], inputs["attention_mask"], **GREEDY)
    reply = tokenizer.decode(expected[0, inputs["input_ids"].shape[1]:].tolist()).strip()
    caller = list(history)
    response, new_history = model.chat(tokenizer, "晚上睡不着", history=caller, **GREEDY)
    assert response == reply and caller == history  # the caller's list is left alone
    assert new_history == [*history, ("晚上睡不着", response)] and isinstance(new_history[-1], tuple)
    partials = list(model.stream_chat(tokenizer, "晚上睡不着", history=caller, **GREEDY))
    assert partials[-1] == (response, new_history)
    assert all(response.startswith(p) for p, _ in partials)


def test_chatglm2_stream_chat_continues_from_the_cache(chatglm2):
    tokenizer, model = load(chatglm2)
    *_, (first, history, cache) = model.stream_chat(tokenizer, "你好", return_past_key_values=True, **GREEDY)
    prompt = tokenizer([tokenizer.build_prompt("你好")], return_tensors="pt")["input_ids"]
    generated = generate(model, prompt, **GREEDY)[0, prompt.shape[1]:].tolist()
    held = prompt[0].tolist() + generated[:-1]  # the cache holds all but the last generated token
    assert cache.get_seq_length() == len(held)
    *_, (second, history2) = model.stream_chat(tokenizer, "再见", history=history, past_key_values=cache, **GREEDY)
    assert [q for q, _ in history2] == ["你好", "再见"]
    # the same tokens without a cache: what the cache held, then the new round without [gMASK] sop and "▁"
    round_ids = tokenizer("\n\n[Round 2]\n\n问：再见\n\n答：", add_special_tokens=False)["input_ids"][1:]
    whole = torch.tensor([held + round_ids])
    expected = generate(model, whole, **GREEDY)[0, whole.shape[1]:].tolist()
    assert second == tokenizer.decode(expected).strip()


# -- chatglm3 ------------------------------------------------------------------------------------------------

def test_chatglm3_chat_roles_and_dict_history(chatglm3):
    tokenizer, model = load(chatglm3)
    assert tokenizer.variant == "chatglm3"
    history = [{"role": "system", "content": "You are helpful."}]
    inputs = tokenizer.build_chat_input("你好", history=history)
    ids = inputs["input_ids"][0].tolist()
    assert ids[:3] == [tokenizer.get_command("[gMASK]"), tokenizer.get_command("sop"),
                       tokenizer.get_command("<|system|>")] and ids[-1] == tokenizer.get_command("<|assistant|>")
    caller = [dict(m) for m in history]
    response, new_history = model.chat(tokenizer, "你好", history=caller, **GREEDY)
    assert caller == history
    assert new_history[:2] == [*history, {"role": "user", "content": "你好"}]
    assert new_history[2]["role"] == "assistant" and isinstance(response, (str, dict))
    expected = generate(model, inputs["input_ids"], inputs["attention_mask"],
                        eos_token_id=[2, tokenizer.get_command("<|user|>"), tokenizer.get_command("<|observation|>")],
                        **GREEDY)
    new_ids = expected[0, inputs["input_ids"].shape[1]:].tolist()
    stops = {2, tokenizer.get_command("<|user|>"), tokenizer.get_command("<|observation|>")}
    text = tokenizer.decode(new_ids[:-1] if new_ids[-1] in stops else new_ids, skip_special_tokens=False)
    assert response == _parse_reply(text, [])[0]
    assert list(model.stream_chat(tokenizer, "你好", history=caller, **GREEDY))[-1] == (response, new_history)


def test_tool_calls_are_parsed_without_eval():
    tools = [{"role": "system", "content": "tools", "tools": [{"name": "get_weather"}]}]
    reply = "get_weather\n```python\ntool_call(location='北京', unit=\"celsius\", days=3)\n```"
    content, history = _parse_reply(reply, [*tools, {"role": "user", "content": "天气"}])
    assert content == {"name": "get_weather", "parameters": {"location": "北京", "unit": "celsius", "days": 3}}
    assert history[-1] == {"role": "assistant", "metadata": "get_weather", "content": reply.split("\n", 1)[1]}
    hostile = "get_weather\n```python\ntool_call(x=__import__('os').system('touch /tmp/pwned'))\n```"
    content, _ = _parse_reply(hostile, list(tools))
    assert content["parameters"] == {"raw": hostile.split("\n", 1)[1]} and not os.path.exists("/tmp/pwned")
    assert _parse_reply('get_weather\n{"city": "北京"}', list(tools))[0]["parameters"] == {"city": "北京"}  # glm-4
    assert _parse_reply("get_weather\nhello", [])[0] == {"name": "get_weather", "content": "hello"}
    content, history = _parse_reply("\n 你好 [[训练时间]]", [])
    assert content == "你好 2023年" and history == [{"role": "assistant", "metadata": "", "content": "你好 [[训练时间]]"}]


def test_invalid_score_guard():
    scores = torch.tensor([[0.0, float("nan"), 1.0, 2.0, 0.0, 0.0],
                           [1.0, float("-inf"), 3.0, 0.0, 0.0, 0.0],
                           [float("inf"), 0.0, 0.0, 0.0, 0.0, 0.0]])
    out = InvalidScoreGuard(5)(None, scores)
    assert out[0].argmax() == 5 and out[0, 5] == 5e4 and out[0, :5].eq(0).all()
    assert torch.equal(out[1], scores[1])  # a masked (-inf) entry is not an overflow
    assert out[2].argmax() == 5


def test_chat_command_on_chatglm(chatglm2, isolated_env):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    done = subprocess.run([sys.executable, "-m", "autoload.cli", "chat", str(chatglm2), "--max-new-tokens", "4"],
                          input="你好\n/reset\n再见\n/exit\n", capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("assistant> ") == 2 and "(history cleared)" in done.stdout


# -- glm-4 ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def glm4(tmp_path_factory):
    """A GLM-4-format repo: a rank file of the 256 bytes (GPT-2 byte order, so "\\n" is 198 as in GLM-4), the
    14 specials after them, random chatglm weights with glm-4's config keys."""
    import base64

    from autoload.models.configs import ChatGLMConfig
    from autoload.tokenization.tiktoken_ranks import bytes_to_unicode
    folder = tmp_path_factory.mktemp("glm-4-9b-chat")
    order = list(bytes_to_unicode())
    (folder / "tokenizer.model").write_text("".join(f"{base64.b64encode(bytes([b])).decode()} {i}\n"
                                                    for i, b in enumerate(order)))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "ChatGLM4Tokenizer", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "padding_side": "left", "auto_map": {"AutoTokenizer": ["tokenization_chatglm.ChatGLM4Tokenizer", None]}}))
    values = {**demo_repos.CHATGLM2_TINY_CONFIG, "_name_or_path": "THUDM/glm-4-9b-chat", "padded_vocab_size": 320,
              "vocab_size": 320, "num_hidden_layers": 2, "rope_ratio": 500, "layernorm_epsilon": 1.5625e-07,
              "eos_token_id": [256, 263, 265], "pad_token_id": 256, "torch_dtype": "bfloat16"}
    torch.manual_seed(1)
    model = ChatGLMForConditionalGeneration(ChatGLMConfig(**values))
    with torch.no_grad():
        model.transformer.output_layer.weight.mul_(20)
    model.save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps(values))
    return folder


def test_glm4_chat_through_its_template(glm4):
    tokenizer, model = load(glm4)
    assert tokenizer.variant == "glm4" and model.config.rope_ratio_meaning == "base"
    stops = [tokenizer.eos_token_id, tokenizer.get_command("<|user|>"), tokenizer.get_command("<|observation|>")]
    assert stops == [256, 263, 265]
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "metadata": "", "content": "hello"}]
    inputs = tokenizer.build_chat_input("你好", history=history)
    expected = generate(model, inputs["input_ids"], inputs["attention_mask"], eos_token_id=stops, **GREEDY)
    new_ids = expected[0, inputs["input_ids"].shape[1]:].tolist()
    text = tokenizer.decode(new_ids[:-1] if new_ids[-1] in stops else new_ids, skip_special_tokens=False)
    response, new_history = model.chat(tokenizer, "你好", history=history, **GREEDY)
    assert response == _parse_reply(text, [])[0]
    assert new_history[:3] == [*history, {"role": "user", "content": "你好"}] and len(history) == 2
    assert list(model.stream_chat(tokenizer, "你好", history=history, **GREEDY))[-1] == (response, new_history)


# -- the repos' own chat templates (the strings llama.cpp's template tests carry for these models) --------------

CHATGLM3_TEMPLATE = ("{% for message in messages %}{% if loop.first %}[gMASK]sop<|{{ message['role'] }}|>\n "
                     "{{ message['content'] }}{% else %}<|{{ message['role'] }}|>\n {{ message['content'] }}{% endif %}"
                     "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
GLM4_TEMPLATE = ("[gMASK]<sop>{% for item in messages %}{% if item['tools'] is defined %}<|system|>\n你是一个名为 ChatGLM 的"
                 "人工智能助手。\n\n# 可用工具{% set tools = item['tools'] %}{% for tool in tools %}"
                 "{% if tool['type'] == 'function' %}\n\n## {{ tool['function']['name'] }}\n\n"
                 "{{ tool['function'] | tojson(indent=4) }}\n......{% endif %}{% endfor %}{% endif %}"
                 "{% if item['content'] %}<|{{ item['role'] }}|>{{ item['metadata'] }}\n{{ item['content'] }}{% endif %}"
                 "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
CONVERSATION = [{"role": "system", "content": "You are a helpful assistant"}, {"role": "user", "content": "Hello"},
                {"role": "assistant", "content": "Hi there"}, {"role": "user", "content": "Who are you"},
                {"role": "assistant", "content": "   I am an assistant   "},
                {"role": "user", "content": "Another question"}]


def test_repo_templates_render_and_tokenize_like_build_chat_input(chatglm3, glm4):
    tok3 = AutoTokenizer.from_pretrained(str(chatglm3))
    tok3.chat_template = CHATGLM3_TEMPLATE
    text = tok3.apply_chat_template(CONVERSATION, add_generation_prompt=True, tokenize=False)
    assert text == ("[gMASK]sop<|system|>\n You are a helpful assistant<|user|>\n Hello<|assistant|>\n Hi there"
                    "<|user|>\n Who are you<|assistant|>\n    I am an assistant   <|user|>\n Another question"
                    "<|assistant|>")
    history = [dict(m, metadata="") for m in CONVERSATION[:-1]]
    ids = tok3.apply_chat_template(CONVERSATION, add_generation_prompt=True)
    assert list(ids["input_ids"] if isinstance(ids, dict) else ids) == \
        tok3.build_chat_input("Another question", history=history)["input_ids"][0].tolist()

    tok4 = AutoTokenizer.from_pretrained(str(glm4))
    tok4.chat_template = GLM4_TEMPLATE
    text = tok4.apply_chat_template(CONVERSATION, add_generation_prompt=True, tokenize=False)
    assert text == ("[gMASK]<sop><|system|>\nYou are a helpful assistant<|user|>\nHello<|assistant|>\nHi there"
                    "<|user|>\nWho are you<|assistant|>\n   I am an assistant   <|user|>\nAnother question"
                    "<|assistant|>")  # a missing metadata renders as "" (Jinja's undefined), as the repo relies on
    ids = tok4.apply_chat_template(CONVERSATION, add_generation_prompt=True)
    assert list(ids["input_ids"] if isinstance(ids, dict) else ids) == \
        tok4.build_chat_input("Another question", history=CONVERSATION[:-1])["input_ids"][0].tolist()
    tools = [{"role": "system", "content": "", "tools": [{"type": "function", "function": {"name": "get_weather",
                                                                                       "parameters": {}}}]},
             {"role": "user", "content": "天气"}]
    text = tok4.apply_chat_template(tools, add_generation_prompt=True, tokenize=False)
    assert '## get_weather\n\n{\n    "name": "get_weather",' in text and text.endswith("<|user|>\n天气<|assistant|>")
