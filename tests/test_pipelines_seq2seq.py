"""The text2text-generation, summarization and translation pipelines (t5, bart, mBART-50, Marian), and zero-shot
classification with a BART NLI head, against transformers on the same tiny checkpoints (tests/seq2seq_folders.py).

transformers 5 removed the text2text / summarization / translation pipelines, so their oracle is `reference()`
below: what transformers 4.x's pipelines did, written out over transformers' own tokenizer and `generate`
(`config.task_specific_params[task]` -> the input prefix and the generate defaults, the call's options winning;
`config.prefix` otherwise; one text tokenized at a time without padding; `skip_special_tokens=True`,
`clean_up_tokenization_spaces=False` by default; mBART-50's `_build_translation_inputs` with src_lang / tgt_lang
-> forced_bos_token_id; the 4.x output shapes). zero-shot-classification is still in transformers 5: its own
pipeline is the oracle.
"""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
import transformers

import autoload
from autoload.pipelines import pipeline
from seq2seq_folders import NLI, save_bart, save_marian, save_mbart50, save_t5

transformers.logging.set_verbosity_error()
TEXTS = ["The house is wonderful.", "Hello", "A much longer sentence about the weather in Paris and Berlin today, "
         "and about the trains between them."]
NAMES = {"text2text-generation": "generated", "summarization": "summary", "translation": "translation"}


def reference(model, tokenizer, inputs, task: str, *, return_tensors=False, clean_up_tokenization_spaces=False,
              truncation=False, src_lang=None, tgt_lang=None, **generate_kwargs):
    """transformers 4.x's Text2TextGeneration / Summarization / TranslationPipeline, on transformers 5 parts."""
    params = dict((getattr(model.config, "task_specific_params", None) or {}).get(task) or {})
    prefix = params.pop("prefix", None) or getattr(model.config, "prefix", None) or ""
    name = NAMES["translation" if task.startswith("translation") else task]
    if task.startswith("translation_") and src_lang is None and tgt_lang is None:
        _, src_lang, _, tgt_lang = task.split("_")
    results = []
    for text in [inputs] if isinstance(inputs, str) else inputs:  # 4.x ran a list item by item
        if task.startswith("translation") and hasattr(tokenizer, "_build_translation_inputs"):
            encoding = tokenizer._build_translation_inputs(text, return_tensors="pt", truncation=truncation,
                                                           src_lang=src_lang, tgt_lang=tgt_lang)
        else:
            encoding = tokenizer(prefix + text, padding=False, truncation=truncation, return_tensors="pt")
        encoding.pop("token_type_ids", None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            output = model.generate(**encoding, **{**params, **generate_kwargs})
        results.append([{f"{name}_token_ids": ids.tolist()} if return_tensors else
                         {f"{name}_text": tokenizer.decode(ids, skip_special_tokens=True,
                                                           clean_up_tokenization_spaces=clean_up_tokenization_spaces)}
                         for ids in output])
    if isinstance(inputs, str):
        return results[0]
    return [r[0] for r in results] if all(len(r) == 1 for r in results) else results


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    folder = save_t5(tmp_path_factory.mktemp("t5"))
    return folder, transformers.T5ForConditionalGeneration.from_pretrained(folder).eval(), \
        transformers.AutoTokenizer.from_pretrained(str(folder))


@pytest.fixture(scope="module")
def bart(tmp_path_factory):
    folder = save_bart(tmp_path_factory.mktemp("bart"), task_specific_params={"summarization": {
        "early_stopping": True, "length_penalty": 2.0, "max_length": 24, "min_length": 8, "no_repeat_ngram_size": 3,
        "num_beams": 4}})  # bart-large-cnn's summarization params, shorter
    return folder, transformers.BartForConditionalGeneration.from_pretrained(folder).eval(), \
        transformers.AutoTokenizer.from_pretrained(str(folder))


@pytest.fixture(scope="module")
def mbart(tmp_path_factory):
    folder = save_mbart50(tmp_path_factory.mktemp("mbart50"))
    return folder, transformers.MBartForConditionalGeneration.from_pretrained(folder).eval(), \
        transformers.AutoTokenizer.from_pretrained(str(folder))


def test_t5_translation_uses_the_task_prefix_and_params(t5):
    folder, ref, tok = t5
    ours = pipeline("translation_en_to_de", folder)
    assert ours.task_params() == ref.config.task_specific_params["translation_en_to_de"]
    # t5-small's own translation_en_to_de defaults (beam-4, max_length 300, early stopping) on one input
    assert ours(TEXTS[0]) == reference(ref, tok, TEXTS[0], "translation_en_to_de")
    for inputs in (TEXTS, TEXTS[:1]):  # a list: one dict per text
        assert ours(inputs, max_length=20) == reference(ref, tok, inputs, "translation_en_to_de", max_length=20)
    assert ours(TEXTS, max_length=12, batch_size=1) == ours(TEXTS, max_length=12, batch_size=2)
    # the call's generate options win over the task's, and reach generate()
    for options in ({"num_beams": 1, "max_new_tokens": 6}, {"num_beams": 3, "num_return_sequences": 2, "max_length": 9},
                    {"repetition_penalty": 1.5, "no_repeat_ngram_size": 2, "max_length": 10}):
        assert ours(TEXTS[1], **options) == reference(ref, tok, TEXTS[1], "translation_en_to_de", **options)
        assert ours(TEXTS, **options) == reference(ref, tok, TEXTS, "translation_en_to_de", **options)
    many = ours(TEXTS, num_beams=2, num_return_sequences=2, max_length=8)
    assert [len(r) for r in many] == [2, 2, 2] and all("translation_text" in d for r in many for d in r)
    torch.manual_seed(3)
    expected = reference(ref, tok, TEXTS[0], "translation_en_to_de", do_sample=True, top_k=20, num_beams=1,
                         max_new_tokens=8)
    torch.manual_seed(3)
    assert ours(TEXTS[0], do_sample=True, top_k=20, num_beams=1, max_new_tokens=8) == expected
    # ids instead of text, and the decoding option
    ids = ours(TEXTS, return_tensors=True, max_length=10)
    assert ids == reference(ref, tok, TEXTS, "translation_en_to_de", return_tensors=True, max_length=10)
    assert list(ids[0]) == ["translation_token_ids"] and isinstance(ids[0]["translation_token_ids"][0], int)
    clean = dict(clean_up_tokenization_spaces=True, max_length=15)
    assert ours(TEXTS, **clean) == reference(ref, tok, TEXTS, "translation_en_to_de", **clean)


def test_t5_summarization_and_text2text(t5):
    folder, ref, tok = t5
    summarize = pipeline("summarization", folder, max_length=40)  # pipeline-level options are call defaults
    assert summarize.task_params()["prefix"] == "summarize: "
    assert summarize(TEXTS[2]) == reference(ref, tok, TEXTS[2], "summarization", max_length=40)
    assert summarize(TEXTS, min_length=3, max_length=12) == reference(ref, tok, TEXTS, "summarization",
                                                                        min_length=3, max_length=12)
    t2t = pipeline("text2text-generation", autoload.AutoModelForSeq2SeqLM.from_pretrained(folder))
    assert t2t.task_params() == {}  # t5 has no text2text params and no config.prefix: the text as it is
    with pytest.warns(UserWarning, match="model-agnostic default `max_length`"):  # the reference's warning
        assert t2t(TEXTS[1]) == reference(ref, tok, TEXTS[1], "text2text-generation")  # no length given
    for inputs in (TEXTS[0], TEXTS):
        assert t2t(inputs, max_new_tokens=7) == reference(ref, tok, inputs, "text2text-generation", max_new_tokens=7)
    assert t2t(TEXTS[0], prefix="translate English to German: ", max_new_tokens=7) == reference(
        ref, tok, "translate English to German: " + TEXTS[0], "text2text-generation", max_new_tokens=7)
    result = t2t(TEXTS[0], num_beams=2, num_return_sequences=2, max_new_tokens=5)
    assert len(result) == 2 and list(result[0]) == ["generated_text"]
    assert list(t2t(TEXTS[0], return_tensors=True, max_new_tokens=3)[0]) == ["generated_token_ids"]


def test_translation_without_languages_takes_the_models_first_translation_params(t5, caplog):
    folder, ref, tok = t5
    with caplog.at_level("WARNING", logger="autoload"):
        ours = pipeline("translation", folder)
    assert "translation_en_to_de" in caplog.text  # as 4.x: "translation" on t5 defaults to its first pair
    assert ours(TEXTS[0], max_length=14) == reference(ref, tok, TEXTS[0], "translation_en_to_de", max_length=14)


def test_bart_summarization_with_the_gpt2_bpe(bart):
    folder, ref, tok = bart
    ours = pipeline("summarization", folder)
    assert type(ours.tokenizer).__name__ == "RobertaTokenizer"
    assert ours(TEXTS[2]) == reference(ref, tok, TEXTS[2], "summarization")  # its task params: beam-4 etc.
    assert ours(TEXTS) == reference(ref, tok, TEXTS, "summarization")
    assert ours(TEXTS, batch_size=1) == ours(TEXTS)
    options = dict(num_beams=1, min_length=0, max_length=6, clean_up_tokenization_spaces=True)
    assert ours(TEXTS, **options) == reference(ref, tok, TEXTS, "summarization", **options)
    tensors = ours(TEXTS[1], return_tensors=True, num_beams=1, max_length=6)
    assert tensors == reference(ref, tok, TEXTS[1], "summarization", return_tensors=True, num_beams=1, max_length=6)
    assert tensors[0]["summary_token_ids"][:2] == [2, 0]  # decoder start </s>, then the forced <s>
    # truncation=True cuts the input at the tokenizer's model_max_length
    ours.tokenizer.model_max_length = tok.model_max_length = 8
    try:
        cut = dict(truncation=True, num_beams=1, min_length=0, max_length=5)
        assert ours(TEXTS[2], **cut) == reference(ref, tok, TEXTS[2], "summarization", **cut)
        assert ours(TEXTS[2], **cut) != ours(TEXTS[2], **{**cut, "truncation": False})
    finally:
        tok.model_max_length = 1024
    # config.prefix is used where the task has no prefix (bart-large-cnn's is " ")
    model = autoload.AutoModelForSeq2SeqLM.from_pretrained(folder)
    model.config.prefix = " "
    ref.config.prefix = " "
    try:
        assert pipeline("summarization", model)(TEXTS[0]) == reference(ref, tok, TEXTS[0], "summarization")
    finally:
        ref.config.prefix = None


def test_length_warnings(bart, t5, caplog):
    folder, _, _ = bart
    summarize = pipeline("summarization", folder, num_beams=1)
    with caplog.at_level("WARNING", logger="autoload"):
        summarize(TEXTS[1], max_length=20, min_length=0)  # 3 tokens in, max_length 20
    assert "Your max_length is set to 20, but your input_length is only 3" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="autoload"):
        summarize(TEXTS[1], max_length=6, min_length=8)
    assert "min_length=8 must be smaller than your max_length=6" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="autoload"):
        summarize(TEXTS[2], max_length=6, min_length=1)  # a long input, a short summary: no warning
    assert caplog.text == ""
    translate = pipeline("translation_en_to_de", t5[0], num_beams=1)
    length = len(t5[2]("translate English to German: " + TEXTS[2])["input_ids"])
    with caplog.at_level("WARNING", logger="autoload"):
        translate(TEXTS[2], max_length=length)
    assert f"Your input_length: {length} is bigger than 0.9 * max_length: {length}" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="autoload"):
        translate(TEXTS[2], max_length=2 * length)
    assert caplog.text == ""


def test_mbart50_translation_forces_the_target_code(mbart):
    folder, ref, tok = mbart
    ours = pipeline("translation", folder, max_new_tokens=8)
    for src, tgt in (("en_XX", "fr_XX"), ("de_DE", "ro_RO")):
        for inputs in (TEXTS[0], TEXTS):
            expected = reference(ref, tok, inputs, "translation", src_lang=src, tgt_lang=tgt, max_new_tokens=8)
            assert ours(inputs, src_lang=src, tgt_lang=tgt) == expected
        ids = ours(TEXTS[1], src_lang=src, tgt_lang=tgt, return_tensors=True)[0]["translation_token_ids"]
        assert ids[:2] == [2, tok.convert_tokens_to_ids(tgt)]  # decoder start, then the forced target code
        assert ids == reference(ref, tok, TEXTS[1], "translation", src_lang=src, tgt_lang=tgt, return_tensors=True,
                                max_new_tokens=8)[0]["translation_token_ids"]
    assert ours.tokenizer.src_lang == "en_XX"  # the tokenizer's own source language is restored
    preset = pipeline("translation", folder, src_lang="en_XX", tgt_lang="de_DE", num_beams=3, max_new_tokens=6)
    assert preset(TEXTS) == reference(ref, tok, TEXTS, "translation", src_lang="en_XX", tgt_lang="de_DE",
                                      num_beams=3, max_new_tokens=6)
    # translation_en_to_fr: the short names are the tokenizer's codes; tgt_lang alone: the tokenizer's src_lang
    named = pipeline("translation_en_to_fr", folder, max_new_tokens=8)
    assert named(TEXTS) == reference(ref, tok, TEXTS, "translation", src_lang="en_XX", tgt_lang="fr_XX",
                                     max_new_tokens=8)
    assert ours(TEXTS[0], tgt_lang="fr_XX") == reference(ref, tok, TEXTS[0], "translation", src_lang="en_XX",
                                                         tgt_lang="fr_XX", max_new_tokens=8)
    # an explicit forced_bos_token_id wins over the target code
    forced = ours(TEXTS[1], src_lang="en_XX", tgt_lang="fr_XX", forced_bos_token_id=7, return_tensors=True)
    assert forced[0]["translation_token_ids"][1] == 7
    with pytest.raises(ValueError, match="needs tgt_lang"):
        ours(TEXTS[0], src_lang="en_XX")
    with pytest.raises(ValueError, match="'xx_YY' is not a language code"):
        ours(TEXTS[0], src_lang="en_XX", tgt_lang="xx_YY")


def test_marian_translation(tmp_path):
    folder = save_marian(tmp_path / "opus-mt-en-de")
    ref = transformers.MarianMTModel.from_pretrained(folder).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers' MarianTokenizer recommends sacremoses
        tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    for task in ("translation", "translation_en_to_de"):
        ours = pipeline(task, folder)
        assert type(ours.tokenizer).__name__ == type(tok).__name__ == "MarianTokenizer"
        assert ours(TEXTS[0]) == reference(ref, tok, TEXTS[0], task)  # its generation_config: beam-4, max_length 64
        assert ours(TEXTS, num_beams=1, max_new_tokens=10) == reference(ref, tok, TEXTS, task, num_beams=1,
                                                                        max_new_tokens=10)
    ids = ours(TEXTS[1], return_tensors=True, num_beams=1, max_new_tokens=4)[0]["translation_token_ids"]
    assert ids[0] == tok.pad_token_id  # Marian's decoder starts at <pad>
    assert ours(TEXTS, num_beams=2, num_return_sequences=2, max_new_tokens=6) == reference(
        ref, tok, TEXTS, "translation", num_beams=2, num_return_sequences=2, max_new_tokens=6)


def test_bad_arguments(t5, bart, tmp_path):
    folder = t5[0]
    translate = pipeline("translation_en_to_de", folder, max_length=5)
    with pytest.raises(TypeError, match="unknown option 'num_beam'. Did you mean 'num_beams'"):
        translate(TEXTS[0], num_beam=2)
    with pytest.raises(TypeError, match="takes a str or a list of str"):
        translate(12)
    with pytest.raises(TypeError, match="takes a str or a list of str"):
        translate([TEXTS[0], None])
    with pytest.raises(ValueError, match="at least one input"):
        translate([])
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        translate(TEXTS, batch_size=0)
    with pytest.raises(ValueError, match="Unknown task 'translation_en_de'"):
        pipeline("translation_en_de", folder)
    classifier = save_bart(tmp_path / "cls", "BartForSequenceClassification", num_labels=3)
    with pytest.raises(ValueError, match="BartForSequenceClassification is not an encoder-decoder"):
        pipeline("summarization", autoload.AutoModelForSequenceClassification.from_pretrained(classifier))
    encoder = autoload.AutoModelForTextEncoding.from_pretrained(folder)
    with pytest.raises(ValueError, match="T5EncoderModel is not an encoder-decoder"):
        pipeline("text2text-generation", encoder, tokenizer=folder)


# -- zero-shot-classification with a BART NLI head (facebook/bart-large-mnli's shape) ------------------------------

@pytest.fixture(scope="module")
def mnli(tmp_path_factory):
    return save_bart(tmp_path_factory.mktemp("mnli"), "BartForSequenceClassification", id2label={
        i: label for label, i in NLI.items()}, label2id=NLI, init_std=0.5)


def test_zero_shot_with_bart_mnli(mnli):
    ours = pipeline("zero-shot-classification", mnli)
    ref = transformers.pipeline("zero-shot-classification", model=str(mnli))
    assert type(ours.model).__name__ == "BartForSequenceClassification"
    assert ours.entailment_id == ref.entailment_id == 2
    labels = ["politics", "weather", "cooking", "travel"]
    for options in ({}, {"multi_label": True}, {"multi_label": False, "hypothesis_template": "The topic is {}."},
                    {"multi_label": True, "hypothesis_template": "Es geht um {}."}):
        for inputs in (TEXTS[2], TEXTS):
            mine, theirs = ours(inputs, labels, **options), ref(inputs, candidate_labels=labels, **options)
            for a, b in zip([mine] if isinstance(mine, dict) else mine, [theirs] if isinstance(theirs, dict) else
                            theirs):
                assert a["sequence"] == b["sequence"] and a["labels"] == b["labels"]
                assert max(abs(x - y) for x, y in zip(a["scores"], b["scores"])) < 1e-4
    single = ours(TEXTS[0], ["weather"])  # one label: entailment vs contradiction
    assert abs(single["scores"][0] - ref(TEXTS[0], candidate_labels=["weather"])["scores"][0]) < 1e-4
    assert abs(sum(ours(TEXTS[0], labels)["scores"]) - 1) < 1e-5
    assert abs(sum(ours(TEXTS[0], labels, multi_label=True)["scores"]) - 1) > 1e-3
    ours.tokenizer.model_max_length = ref.tokenizer.model_max_length = 16  # the text is cut, never the hypothesis
    mine, theirs = ours(TEXTS[2], labels), ref(TEXTS[2], candidate_labels=labels)
    assert mine["labels"] == theirs["labels"]
    assert max(abs(x - y) for x, y in zip(mine["scores"], theirs["scores"])) < 1e-4
