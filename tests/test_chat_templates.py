"""apply_chat_template parity with transformers 5.x: templates of several families (ChatML/Qwen2 with tools, Llama-3
with a date from strftime_now, Mistral with raise_exception, Gemma, loop controls, {% generation %}), rendered and
tokenized identically; template files and their precedence; the sandbox's guards."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import jinja2
import pytest

from autoload.tokenization import TokenizersBackend
from tokenizer_cases import plain, train_byte_level, transformers_auto, write_folder

CHATML_TOOLS = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}{%- else %}{{- 'You are a helpful assistant.' }}{%- endif %}
    {{- "\\n\\n# Tools\\n\\n<tools>" }}
    {%- for tool in tools %}{{- "\\n" }}{{- tool | tojson }}{%- endfor %}
    {{- "\\n</tools><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}{{- '\\n' + message.content }}{%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}{{- tool_call.name }}{{- '", "arguments": ' }}{{- tool_call.arguments | tojson }}{{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}{{- '<|im_start|>user' }}{%- endif %}
        {{- '\\n<tool_response>\\n' }}{{- message.content }}{{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}{{- '<|im_end|>\\n' }}{%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}
"""

LLAMA3 = """{{- bos_token }}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}{%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}{%- set date_string = "26 Jul 2024" %}{%- endif %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{{- system_message }}{{- "<|eot_id|>" }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}
"""

MISTRAL = """{{- bos_token }}
{%- for message in messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}{{- '[INST] ' + message['content'] + ' [/INST]' }}
    {%- elif message['role'] == 'assistant' %}{{- message['content'] + eos_token }}
    {%- else %}{{- raise_exception('Only user and assistant roles are supported!') }}
    {%- endif %}
{%- endfor %}"""

GEMMA = ("{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set first_user_prefix = messages[0]['content'] + "
         "'\\n\\n' %}{% set loop_messages = messages[1:] %}{% else %}{% set first_user_prefix = \"\" %}"
         "{% set loop_messages = messages %}{% endif %}{% for message in loop_messages %}"
         "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception(\"Conversation roles must "
         "alternate user/assistant/user/assistant/...\") }}{% endif %}{% if (message['role'] == 'assistant') %}"
         "{% set role = \"model\" %}{% else %}{% set role = message['role'] %}{% endif %}"
         "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}"
         "{% if message['content'] is string %}{{ message['content'] | trim }}{% elif message['content'] is iterable %}"
         "{% for item in message['content'] %}{% if item['type'] == 'image' %}{{ '<start_of_image>' }}"
         "{% elif item['type'] == 'text' %}{{ item['text'] | trim }}{% endif %}{% endfor %}{% endif %}"
         "{{ '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}")

LOOP_CONTROLS = """{% for message in messages %}
{% if message['role'] == 'stop' %}{% break %}{% endif %}
{% if message['role'] == 'skip' %}{% continue %}{% endif %}
<{{ message['role'] }}>{{ message['content'] }}
{% endfor %}
{% if add_generation_prompt %}<assistant>{% endif %}"""

GENERATION = """{% for message in messages %}{% if message['role'] == 'assistant' %}<|im_start|>assistant
{% generation %}{{ message['content'] }}<|im_end|>{% endgeneration %}
{% else %}<|im_start|>{{ message['role'] }}
{{ message['content'] }}<|im_end|>
{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

EXTRAS = """{% set ns = namespace(count=0) %}{% for m in messages %}{% set ns.count = ns.count + 1 %}{{ m | tojson }}
{{ dict(a=1, b='é<') | tojson }}{% endfor %}{{ ns.count }} {{ extra_var | default('none') }} {{ bos_token }}
{{ tools | tojson(indent=2) }}{{ documents | tojson }}{% if enable_thinking is defined %}think={{ enable_thinking }}{% endif %}
{% for m in messages %}{% if m.reasoning_content %}[{{ m.reasoning_content }}]{% endif %}{% endfor %}"""

CHAT = [{"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi there! 你好 😀"},
        {"role": "assistant", "content": "Hello. How can I help?"},
        {"role": "user", "content": "What's the weather in Paris?"}]
ALTERNATING = CHAT[1:]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city, é",
                                           "parameters": {"type": "object", "properties": {
                                               "city": {"type": "string"}}, "required": ["city"]}}}]
TOOL_CHAT = CHAT + [
    {"role": "assistant", "content": None,
     "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "content": "22°C, sunny"}, {"role": "tool", "content": "wind 5 km/h"}]


@pytest.fixture(scope="module")
def tokenizer_json():
    return train_byte_level().to_str()


def folder_with(tmp_path, tokenizer_json, template=None, config=None, extra_files=None):
    files = {"tokenizer.json": tokenizer_json,
             "tokenizer_config.json": {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>",
                                       "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", **(config or {})}}
    if template is not None:
        files["chat_template.jinja"] = template
    files.update(extra_files or {})
    return write_folder(tmp_path / "chat", files)


def load_both(folder):
    return TokenizersBackend.from_pretrained(folder), transformers_auto(folder)


def assert_same_chat(ours, theirs, conversation, **kwargs):
    """Same text, same ids/BatchEncoding for every output form (or the same error)."""
    for extra in ({"tokenize": False}, {}, {"return_dict": False}, {"return_tensors": "pt"},
                  {"padding": True, "return_tensors": "pt"}):
        call = {**kwargs, **extra}
        outcomes = []
        for tok in (ours, theirs):
            try:
                outcomes.append(("ok", tok.apply_chat_template(conversation, **call)))
            except Exception as err:
                # same exception type; the template's own messages (raise_exception) must match word for word
                message = str(err) if isinstance(err, jinja2.exceptions.TemplateError) else ""
                outcomes.append(("error", f"{type(err).__name__}: {message}"))
        (status_a, a), (status_b, b) = outcomes
        assert status_a == status_b, (call, a, b)
        if status_a == "error":
            assert a == b
        elif isinstance(a, str) or (isinstance(a, list) and a and isinstance(a[0], str)):
            assert a == b, call
        elif isinstance(a, list):
            assert plain(a) == plain(b), call
        else:
            assert list(a.keys()) == list(b.keys()) and {k: plain(v) for k, v in a.items()} == {
                k: plain(v) for k, v in b.items()}, call


@pytest.fixture
def fixed_date(monkeypatch):
    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2025, 3, 14, 15, 9, 26)

    import autoload.tokenization.chat as ours_module
    monkeypatch.setattr(ours_module, "datetime", Frozen)
    from transformers.utils import chat_template_utils as theirs_module
    monkeypatch.setattr(theirs_module, "datetime", Frozen)


def test_chatml_with_tools(tmp_path, tokenizer_json):
    ours, theirs = load_both(folder_with(tmp_path, tokenizer_json, CHATML_TOOLS))
    for conversation in (CHAT, TOOL_CHAT, CHAT[1:2]):
        for kwargs in ({}, {"add_generation_prompt": True}, {"tools": TOOLS}, {"tools": TOOLS,
                                                                              "add_generation_prompt": True}):
            assert_same_chat(ours, theirs, conversation, **kwargs)
    text = ours.apply_chat_template(TOOL_CHAT, tools=TOOLS, tokenize=False)
    assert '"description": "Weather for a city, é"' in text  # tojson keeps non-ASCII, no HTML escaping
    assert '"arguments": {"city": "Paris"}' in text
    ids = ours.apply_chat_template(CHAT, add_generation_prompt=True)["input_ids"]
    assert ids[0] == ours.convert_tokens_to_ids("<|im_start|>")  # special tokens matched, none added around


def test_llama3_date_from_strftime_now(tmp_path, tokenizer_json, fixed_date):
    ours, theirs = load_both(folder_with(tmp_path, tokenizer_json, LLAMA3))
    for kwargs in ({}, {"add_generation_prompt": True}, {"date_string": "01 Jan 2000"}):
        assert_same_chat(ours, theirs, CHAT, **kwargs)
    assert "Today Date: 14 Mar 2025" in ours.apply_chat_template(CHAT, tokenize=False)
    assert "Today Date: 01 Jan 2000" in ours.apply_chat_template(CHAT, tokenize=False, date_string="01 Jan 2000")


def test_mistral_raise_exception(tmp_path, tokenizer_json):
    ours, theirs = load_both(folder_with(tmp_path, tokenizer_json, MISTRAL))
    assert_same_chat(ours, theirs, ALTERNATING)
    for bad in (CHAT, [CHAT[1], CHAT[1]], [{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}]):
        assert_same_chat(ours, theirs, bad)
        with pytest.raises(jinja2.exceptions.TemplateError, match="roles"):
            ours.apply_chat_template(bad)


def test_gemma_roles_and_content_blocks(tmp_path, tokenizer_json):
    ours, theirs = load_both(folder_with(tmp_path, tokenizer_json, GEMMA))
    blocks = [{"role": "user", "content": [{"type": "image", "image": object()},
                                            {"type": "text", "text": "  What is this?  "}]}]
    for conversation in (CHAT, ALTERNATING, blocks):
        assert_same_chat(ours, theirs, conversation, add_generation_prompt=True)
    assert "<start_of_turn>model\nHello." in ours.apply_chat_template(CHAT, tokenize=False)


def test_loop_controls(tmp_path, tokenizer_json):
    ours, theirs = load_both(folder_with(tmp_path, tokenizer_json, LOOP_CONTROLS))
    conversation = [{"role": "user", "content": "a"}, {"role": "skip", "content": "hidden"},
                    {"role": "assistant", "content": "b"}, {"role": "stop", "content": ""},
                    {"role": "user", "content": "never"}]
    assert_same_chat(ours, theirs, conversation, add_generation_prompt=True)
    assert ours.apply_chat_template(conversation, tokenize=False) == "<user>a\n<assistant>b\n"


def test_continue_final_message(tmp_path, tokenizer_json):
    ours, theirs = load_both(folder_with(tmp_path, tokenizer_json, CHATML_TOOLS))
    prefill = CHAT + [{"role": "assistant", "content": "The weather in Paris is"}]
    assert_same_chat(ours, theirs, prefill, continue_final_message=True)
    text = ours.apply_chat_template(prefill, continue_final_message=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\nThe weather in Paris is")
    with pytest.raises(ValueError, match="cannot be combined"):
        ours.apply_chat_template(prefill, continue_final_message=True, add_generation_prompt=True)
    # trailing spaces trimmed by the template: cut before them too
    ours2, theirs2 = load_both(folder_with(tmp_path / "trim", tokenizer_json, LLAMA3))
    spaced = ALTERNATING + [{"role": "assistant", "content": "Partial answer   "}]
    assert_same_chat(ours2, theirs2, spaced, continue_final_message=True, date_string="x")


def test_batched_conversations_padding(tmp_path, tokenizer_json):
    ours, theirs = load_both(folder_with(tmp_path, tokenizer_json, CHATML_TOOLS))
    batch = [CHAT, CHAT[1:2], TOOL_CHAT]
    assert_same_chat(ours, theirs, batch, add_generation_prompt=True)
    out = ours.apply_chat_template(batch, padding=True, return_tensors="pt")
    assert out["input_ids"].shape[0] == 3 and out["attention_mask"].shape == out["input_ids"].shape
    left = ours.apply_chat_template(batch, padding=True, tokenizer_kwargs={"padding_side": "left"})
    assert left["attention_mask"][1][0] == 0


def test_assistant_tokens_mask(tmp_path, tokenizer_json):
    ours, theirs = load_both(folder_with(tmp_path, tokenizer_json, GENERATION))
    for conversation in (ALTERNATING, [ALTERNATING, ALTERNATING[:2]]):
        a = ours.apply_chat_template(conversation, return_assistant_tokens_mask=True)
        b = theirs.apply_chat_template(conversation, return_assistant_tokens_mask=True)
        assert {k: plain(v) for k, v in a.items()} == {k: plain(v) for k, v in b.items()}
    out = ours.apply_chat_template(ALTERNATING, return_assistant_tokens_mask=True)
    masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert ours.decode(masked) == "Hello. How can I help?<|im_end|>"
    assert "\U000f0002" not in ours.apply_chat_template(ALTERNATING, tokenize=False)


def test_template_variables_and_normalisation(tmp_path, tokenizer_json):
    ours, theirs = load_both(folder_with(tmp_path, tokenizer_json, EXTRAS))

    @dataclasses.dataclass
    class Message:
        role: str
        content: str
        name: str | None = None

    conversation = [Message("user", "dataclass é"), {"role": "assistant", "content": "x", "tool_calls": None,
                                                     "thinking": "pondering"}]
    for kwargs in ({}, {"extra_var": "given", "bos_token": "OVERRIDE"}, {"tools": TOOLS},
                   {"documents": [{"title": "t", "text": "d"}]}, {"enable_thinking": False}):
        assert_same_chat(ours, theirs, conversation, **kwargs)
    text = ours.apply_chat_template(conversation, tokenize=False)
    assert '"name"' not in text and "tool_calls" not in text  # None values dropped
    assert '{"a": 1, "b": "é<"}' in text and "[pondering]" in text


def test_sandbox_guards(tmp_path, tokenizer_json):
    ours = TokenizersBackend.from_pretrained(folder_with(tmp_path, tokenizer_json))
    with pytest.raises(jinja2.exceptions.SecurityError):
        ours.apply_chat_template(CHAT, chat_template="{% set ns = namespace(_x=1) %}")
    with pytest.raises(jinja2.exceptions.SecurityError):
        ours.apply_chat_template(CHAT, chat_template="{{ messages.__class__.__mro__ }}", tokenize=False)
    with pytest.raises(jinja2.exceptions.SecurityError):  # immutable sandbox: no mutation of inputs
        ours.apply_chat_template(CHAT, chat_template="{{ messages.append(1) }}", tokenize=False)
    with pytest.raises(ValueError, match="no chat template"):
        ours.apply_chat_template(CHAT)
    with pytest.raises(ValueError, match="empty conversation"):
        ours.apply_chat_template([], chat_template="x")
    with pytest.raises(ValueError, match="JSON schemas"):
        ours.apply_chat_template(CHAT, chat_template="x", tools=[len])


def test_template_files_and_precedence(tmp_path, tokenizer_json):
    # chat_template.jinja wins over the inline config template
    folder = folder_with(tmp_path / "a", tokenizer_json, "FILE{{ messages|length }}", {"chat_template": "INLINE"})
    ours, theirs = load_both(folder)
    assert ours.chat_template == theirs.chat_template == "FILE{{ messages|length }}"
    # several templates: a dict; tools pick "tool_use", a name picks that one
    folder = folder_with(tmp_path / "b", tokenizer_json, "DEFAULT", extra_files={
        "additional_chat_templates/tool_use.jinja": "TOOLS {{ tools|length }}",
        "additional_chat_templates/rag.jinja": "RAG"})
    ours, theirs = load_both(folder)
    assert ours.chat_template == theirs.chat_template
    assert set(ours.chat_template) == {"default", "tool_use", "rag"}
    for kwargs in ({}, {"tools": TOOLS}, {"chat_template": "rag"}, {"chat_template": "inline {{ 1 + 1 }}"}):
        assert_same_chat(ours, theirs, CHAT, **kwargs)
    # the legacy list form in tokenizer_config.json
    config = {"chat_template": [{"name": "default", "template": "D"}, {"name": "other", "template": "O"}]}
    ours, theirs = load_both(folder_with(tmp_path / "c", tokenizer_json, config=config))
    assert ours.chat_template == theirs.chat_template == {"default": "D", "other": "O"}
    # a processor's chat_template.json is used when nothing else has a template (transformers would have none)
    ours = TokenizersBackend.from_pretrained(folder_with(tmp_path / "d", tokenizer_json, extra_files={
        "chat_template.json": {"chat_template": "LEGACY {{ messages|length }}"}}))
    assert ours.apply_chat_template(CHAT, tokenize=False) == "LEGACY 4"


def test_saved_templates_load_back_in_transformers(tmp_path, tokenizer_json):
    folder = folder_with(tmp_path / "src", tokenizer_json, CHATML_TOOLS, extra_files={
        "additional_chat_templates/tool_use.jinja": LLAMA3})
    ours = TokenizersBackend.from_pretrained(folder)
    ours.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "chat_template.jinja").read_text() == CHATML_TOOLS
    assert (tmp_path / "saved" / "additional_chat_templates" / "tool_use.jinja").read_text() == LLAMA3
    assert "chat_template" not in json.loads((tmp_path / "saved" / "tokenizer_config.json").read_text())
    theirs = transformers_auto(tmp_path / "saved")
    assert theirs.chat_template == ours.chat_template
    assert_same_chat(ours, theirs, CHAT, add_generation_prompt=True)
