"""Text-level generation with a real (small, trained) byte-level BPE tokenizer: stop strings against the reference,
TextStreamer / TextIteratorStreamer (the reference's chunking rules, threads, errors, cancel), and chat() /
stream_chat() with a ChatML template (responses, history shapes, the caller's list untouched)."""

from __future__ import annotations

import copy
import threading
import warnings

import pytest
import torch
import transformers
from transformers.generation import streamers as ref_streamers

import autoload
from autoload.generation import TextIteratorStreamer, TextStreamer, chat, generate, stream_chat
from autoload.generation.chat import CHAT_MAX_NEW_TOKENS, _generation_kwargs
from autoload.generation.streamers import BackgroundGeneration, TokenStreamer
from autoload.models.llama import LlamaForCausalLM
from tokenizer_cases import train_byte_level, write_folder

transformers.logging.set_verbosity_error()
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
IM_END = 2  # train_byte_level puts <|endoftext|>, <|im_start|>, <|im_end|> at 0, 1, 2
RULES_TEXT = "Hello, world! 你好世界 and more.\nSecond line: café, naïve — 12345.\n\nEnd"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(ours model, ref model, our tokenizer, ref tokenizer): a tiny Llama whose vocab is the tokenizer's."""
    folder = tmp_path_factory.mktemp("chat")
    tokenizer = train_byte_level()
    write_folder(folder, {"tokenizer.json": tokenizer.to_str(),
                          "tokenizer_config.json": {"tokenizer_class": "PreTrainedTokenizerFast",
                                                    "bos_token": "<|endoftext|>", "eos_token": "<|im_end|>",
                                                    "pad_token": "<|endoftext|>", "chat_template": CHATML}})
    config = transformers.LlamaConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, intermediate_size=37,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=256, bos_token_id=0, eos_token_id=IM_END,
                                      pad_token_id=0, initializer_range=0.2)
    torch.manual_seed(0)
    ref = transformers.LlamaForCausalLM(config).eval()
    ref.save_pretrained(folder)
    ours = LlamaForCausalLM.from_pretrained(folder)
    return ours, ref, autoload.AutoTokenizer.from_pretrained(folder), transformers.AutoTokenizer.from_pretrained(folder)


def encode(tok, text):
    return tok(text, return_tensors="pt")["input_ids"]


# -- stop strings ----------------------------------------------------------------------------------------------

def test_stop_strings_match_reference(setup):
    ours, ref, tok, ref_tok = setup
    ids = encode(tok, "The quick brown fox jumps")
    t = ids.shape[1]
    free = generate(ours, ids, max_new_tokens=20, eos_token_id=[])
    texts = [tok.decode(free[0, :t + k].tolist()) for k in range(21)]
    # a stop string made of the end of new token k-1 and all of new token k (printable, not seen before)
    k = next(k for k in range(3, 20) if texts[k + 1][len(texts[k]):].strip().isascii()
             and texts[k + 1][len(texts[k]):].strip() and texts[k][-2:].isprintable()
             and texts[k + 1][len(texts[k]) - 2:] not in texts[k])
    stop = texts[k + 1][len(texts[k]) - 2:]
    for stops in ([stop], ["never-here", stop], stop, ["quick"]):  # "quick" is in the prompt only: no stop
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = ref.generate(ids, max_new_tokens=20, eos_token_id=None, stop_strings=stops, tokenizer=ref_tok)
        mine = generate(ours, ids, max_new_tokens=20, eos_token_id=None, stop_strings=stops, tokenizer=tok)
        assert torch.equal(mine, theirs), stops
    assert generate(ours, ids, max_new_tokens=20, eos_token_id=[], stop_strings=stop, tokenizer=tok).shape[1] == t + k + 1


# -- streamers ---------------------------------------------------------------------------------------------------

class Recorder:
    """Collects what a streamer emits instead of printing it."""

    def __init__(self, base, tok, **kwargs):
        self.chunks = []
        recorder = self

        class Streamer(base):
            def on_finalized_text(self, text, stream_end=False):
                recorder.chunks.append((text, stream_end))

        self.streamer = Streamer(tok, **kwargs)


def feed(streamer, ids):
    """What generate does: the prompt as (1, T), then each token as (1,), then end()."""
    streamer.put(torch.tensor([ids[:3]]))
    for token in ids[3:]:
        streamer.put(torch.tensor([token]))
    streamer.end()


@pytest.mark.parametrize("kwargs", [{}, {"skip_prompt": True}, {"skip_special_tokens": True}])
def test_text_streamer_rules_match_reference(setup, kwargs):
    _, _, tok, _ = setup
    ids = tok(RULES_TEXT + "<|im_end|>")["input_ids"]
    mine, theirs = Recorder(TextStreamer, tok, **kwargs), Recorder(ref_streamers.TextStreamer, tok, **kwargs)
    feed(mine.streamer, ids)
    feed(theirs.streamer, ids)
    assert mine.chunks == theirs.chunks
    emitted = "".join(text for text, _ in mine.chunks)
    start = 3 if kwargs.get("skip_prompt") else 0
    assert emitted == tok.decode(ids[start:], skip_special_tokens=kwargs.get("skip_special_tokens", False))
    assert any("你" in text and "好" not in text for text, _ in mine.chunks)  # CJK goes out at once
    assert mine.chunks[-1][1] and sum(end for _, end in mine.chunks) == 1


def test_text_streamer_prints_like_reference(setup, capsys):
    ours, ref, tok, _ = setup
    ids = encode(tok, "Hello world")
    out = generate(ours, ids, max_new_tokens=15, streamer=TextStreamer(tok))
    mine = capsys.readouterr().out
    ref.generate(ids, max_new_tokens=15, streamer=ref_streamers.TextStreamer(tok))
    assert mine == capsys.readouterr().out
    assert mine.endswith("\n") and mine.startswith("Hello world")
    if "\ufffd" not in mine:
        assert mine == tok.decode(out[0].tolist()) + "\n"
    with pytest.raises(ValueError, match="batch size 1"):
        generate(ours, torch.cat([ids, ids]), max_new_tokens=2, streamer=TextStreamer(tok))


def test_iterator_streamer_from_a_thread(setup):
    ours, _, tok, _ = setup
    ids = encode(tok, "Once upon a time")
    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True, timeout=60)
    thread = threading.Thread(target=ours.generate, kwargs=dict(input_ids=ids, max_new_tokens=20, streamer=streamer))
    thread.start()
    chunks = list(streamer)
    thread.join()
    out = generate(ours, ids, max_new_tokens=20)
    recorder = Recorder(TextStreamer, tok, skip_prompt=True, skip_special_tokens=True)
    feed_ids = out[0].tolist()
    recorder.streamer.put(out[:, :ids.shape[1]])
    for token in feed_ids[ids.shape[1]:]:
        recorder.streamer.put(torch.tensor([token]))
    recorder.streamer.end()
    assert chunks == [text for text, _ in recorder.chunks]
    joined = "".join(chunks)
    if "\ufffd" not in joined:
        assert joined == tok.decode(feed_ids[ids.shape[1]:], skip_special_tokens=True)


def test_iterator_streamer_errors_and_cancel(setup):
    ours, _, tok, _ = setup
    ids = encode(tok, "Once upon a time")
    for bad in (dict(top_p=2.0, do_sample=True), dict(max_new_token=3)):  # a failing generate ends the iteration
        streamer = TextIteratorStreamer(tok, timeout=60)
        thread = threading.Thread(target=lambda: pytest.raises(Exception, generate, ours, ids, streamer=streamer,
                                                               **bad))
        thread.start()
        with pytest.raises(RuntimeError, match="generate\\(\\) failed"):
            list(streamer)
        thread.join()
    streamer = TextIteratorStreamer(tok)
    streamer.cancel()  # a consumer that went away: generate stops after the current token
    assert generate(ours, ids, max_new_tokens=20, streamer=streamer).shape[1] == ids.shape[1] + 1


# -- chat --------------------------------------------------------------------------------------------------------

def expected_reply(model, tok, messages, **kwargs):
    inputs = tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=True, return_tensors="pt")
    out = generate(model, inputs["input_ids"], inputs["attention_mask"], **kwargs)
    return tok.decode(out[0, inputs["input_ids"].shape[1]:].tolist(), skip_special_tokens=True).strip()


def test_chat_response_and_history_shapes(setup):
    ours, _, tok, _ = setup
    response, history = chat(ours, tok, "Hello there", max_new_tokens=12)
    assert response == expected_reply(ours, tok, [{"role": "user", "content": "Hello there"}], max_new_tokens=12)
    assert history == [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": response}]

    pairs = [("Hi", "Hello!"), ("How are you?", "Fine.")]
    before = copy.deepcopy(pairs)
    response, new = ours.chat(tok, "And you?", history=pairs, max_new_tokens=12)  # through the model method
    assert pairs == before and new is not pairs
    assert new == pairs + [("And you?", response)] and isinstance(new[-1], tuple)
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "How are you?"}, {"role": "assistant", "content": "Fine."},
                {"role": "user", "content": "And you?"}]
    assert response == expected_reply(ours, tok, messages, max_new_tokens=12)
    _, new = chat(ours, tok, "Next", history=[["Hi", "Hello!"]], max_new_tokens=3)
    assert new[0] == ["Hi", "Hello!"] and isinstance(new[-1], list)

    dicts = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
             {"role": "assistant", "content": "Hello!"}]
    before = copy.deepcopy(dicts)
    response, new = chat(ours, tok, "Bye", history=dicts, max_new_tokens=12)
    assert dicts == before and new[:3] == dicts and new[3:] == [{"role": "user", "content": "Bye"},
                                                                 {"role": "assistant", "content": response}]
    assert response == expected_reply(ours, tok, dicts + [{"role": "user", "content": "Bye"}], max_new_tokens=12)


def test_chat_system_and_options(setup):
    ours, _, tok, _ = setup
    response, history = chat(ours, tok, "Hi", system="You are a pirate.", max_new_tokens=10)
    assert response == expected_reply(ours, tok, [{"role": "system", "content": "You are a pirate."},
                                                  {"role": "user", "content": "Hi"}], max_new_tokens=10)
    assert [m["role"] for m in history] == ["user", "assistant"]  # the per-call system message is not stored
    a, _ = chat(ours, tok, "Hi", max_new_tokens=10, do_sample=True, seed=3)
    assert a == chat(ours, tok, "Hi", max_new_tokens=10, do_sample=True, seed=3)[0]
    assert _generation_kwargs(ours, tok, {})["max_new_tokens"] == CHAT_MAX_NEW_TOKENS
    assert "max_new_tokens" not in _generation_kwargs(ours, tok, {"max_length": 50})


def test_stream_chat_grows_to_the_final_response(setup):
    ours, _, tok, _ = setup
    pairs = [("Hi", "Hello!")]
    final, _ = chat(ours, tok, "Tell me a story", history=pairs, max_new_tokens=24)
    items = list(stream_chat(ours, tok, "Tell me a story", history=pairs, max_new_tokens=24))
    assert items and items[-1][0] == final
    assert items[-1][1] == pairs + [("Tell me a story", final)] and pairs == [("Hi", "Hello!")]
    partials = [text for text, _ in items]
    assert all(final.startswith(p) for p in partials) and partials == sorted(partials, key=len)
    streamed = list(chat(ours, tok, "Tell me a story", history=pairs, max_new_tokens=24, stream=True))
    assert streamed == items
    gen = stream_chat(ours, tok, "Tell me a story", max_new_tokens=200)
    next(gen)
    gen.close()  # closing early stops the worker thread (no hang, no leftover)
    assert not any(t.name == "autoload-stream" and t.is_alive() for t in threading.enumerate())


def test_background_generation_streams_tokens_and_raises_generates_error(setup):
    """The one threading helper behind both stream_chat paths: token ids as they come, generate's output after
    the loop, generate's own error in the iterating thread, cancellation when the loop is left early."""
    ours, _, tok, _ = setup
    ids = encode(tok, "The quick brown fox")
    expected = generate(ours, ids, max_new_tokens=12, eos_token_id=[])
    run = BackgroundGeneration(ours, TokenStreamer(), input_ids=ids, max_new_tokens=12, eos_token_id=[])
    assert list(run) == expected[0, ids.shape[1]:].tolist()
    assert torch.equal(run.output, expected)
    with pytest.raises(ValueError, match="top_p must be in"):
        list(BackgroundGeneration(ours, TokenStreamer(), input_ids=ids, do_sample=True, top_p=3.0))
    tokens = iter(BackgroundGeneration(ours, TokenStreamer(), input_ids=ids, max_new_tokens=200, eos_token_id=[]))
    next(tokens)
    tokens.close()
    assert not any(t.name == "autoload-stream" and t.is_alive() for t in threading.enumerate())


def test_chat_errors(setup, tmp_path):
    ours, _, tok, _ = setup
    bare = copy.copy(tok)
    bare.chat_template = None
    with pytest.raises(ValueError, match="has no chat template"):
        chat(ours, bare, "Hi")
    with pytest.raises(ValueError, match="pairs or a list of"):
        chat(ours, tok, "Hi", history=[("a", "b"), {"role": "user", "content": "c"}])
    with pytest.raises(ValueError, match="top_p must be in"):
        list(stream_chat(ours, tok, "Hi", do_sample=True, top_p=3.0))
