"""Built-in table of the Hugging Face hub's legacy "canonical" model ids.

Until early 2024 the hub hosted a set of *canonical* model repositories whose
ids had no namespace at all (``gpt2``, ``bert-base-uncased``, ``t5-small``...).
They were the checkpoints that shipped with the first versions of
``transformers``. On 2024-01-31 the hub moved every one of them into an
organisation (transformers PR #28795, "canonical repos moves"): the repository
keeps its name and gains an owner, e.g. ``gpt2`` -> ``openai-community/gpt2``.
The hub still answers the old id with a redirect to the new one, so old code
keeps working online; this table lets autoload resolve the short ids without
asking the network (offline mode, cache lookups, stable cache folder names).

Where the table comes from (all public):

* ``transformers`` v4.40, ``src/transformers/models/deprecated/_archive_maps.py``:
  the per-architecture checkpoint lists after PR #28795 rewrote them to the
  namespaced ids (albert, bert, camembert, ctrl, gpt2 + distilgpt2, openai-gpt,
  roberta + distilroberta + openai detectors, t5, transfo-xl, xlm, xlm-roberta,
  xlnet). The same lists in earlier releases carry the bare legacy ids.
* ``sentence-transformers``, ``sentence_transformers/SentenceTransformer.py``:
  ``basic_transformer_models``, the complete list of "old models that don't
  belong to any organization" (68 ids); every one of them appears below.
* The DistilBERT checkpoints kept their bare ids in the archive maps above; their
  namespace (``distilbert/``) is confirmed by the defaults and docs of current
  ``transformers`` (e.g. ``distilbert/distilbert-base-uncased-finetuned-sst-2-english``,
  ``distilbert/distilbert-base-cased-distilled-squad``) and by model cards.

Every move kept the repository name, so each canonical id is
``<organisation>/<legacy id>``. No two legacy ids share a target.

Not legacy ids (and therefore absent): ``facebook/bart-*``, ``flaubert/*``,
``Helsinki-NLP/opus-mt-*`` and the like always had a namespace on the hub; the
bare ``bart-large``/``flaubert-*`` names were only ``transformers`` shortcuts,
removed in 2020 (transformers PR #4636) and never hub repositories.

Repository ids are case-insensitive on the hub (huggingface_hub issues #1453 and
#2090: "repo ids are case insensitive across the Hub"), and
sentence-transformers matches its legacy list on ``name.lower()``. So a legacy
id typed with other casing (``GPT2``, ``BERT-base-uncased``) is mapped too.
"""

from __future__ import annotations

__all__ = ["LEGACY_IDS", "canonical_id", "legacy_id"]

#: Legacy (namespace-less) hub model id -> the id it moved to in 2024.
#: Keys are lowercase, as the hub created them; sorted; one comment per family.
LEGACY_IDS: dict[str, str] = {
    # ALBERT -> albert/
    "albert-base-v1": "albert/albert-base-v1",
    "albert-base-v2": "albert/albert-base-v2",
    "albert-large-v1": "albert/albert-large-v1",
    "albert-large-v2": "albert/albert-large-v2",
    "albert-xlarge-v1": "albert/albert-xlarge-v1",
    "albert-xlarge-v2": "albert/albert-xlarge-v2",
    "albert-xxlarge-v1": "albert/albert-xxlarge-v1",
    "albert-xxlarge-v2": "albert/albert-xxlarge-v2",
    # BERT (Google's original checkpoints, incl. the dbmdz German ones) -> google-bert/
    "bert-base-cased": "google-bert/bert-base-cased",
    "bert-base-cased-finetuned-mrpc": "google-bert/bert-base-cased-finetuned-mrpc",
    "bert-base-chinese": "google-bert/bert-base-chinese",
    "bert-base-german-cased": "google-bert/bert-base-german-cased",
    "bert-base-german-dbmdz-cased": "google-bert/bert-base-german-dbmdz-cased",
    "bert-base-german-dbmdz-uncased": "google-bert/bert-base-german-dbmdz-uncased",
    "bert-base-multilingual-cased": "google-bert/bert-base-multilingual-cased",
    "bert-base-multilingual-uncased": "google-bert/bert-base-multilingual-uncased",
    "bert-base-uncased": "google-bert/bert-base-uncased",
    "bert-large-cased": "google-bert/bert-large-cased",
    "bert-large-cased-whole-word-masking": "google-bert/bert-large-cased-whole-word-masking",
    "bert-large-cased-whole-word-masking-finetuned-squad": (
        "google-bert/bert-large-cased-whole-word-masking-finetuned-squad"
    ),
    "bert-large-uncased": "google-bert/bert-large-uncased",
    "bert-large-uncased-whole-word-masking": "google-bert/bert-large-uncased-whole-word-masking",
    "bert-large-uncased-whole-word-masking-finetuned-squad": (
        "google-bert/bert-large-uncased-whole-word-masking-finetuned-squad"
    ),
    # CamemBERT -> almanach/
    "camembert-base": "almanach/camembert-base",
    # CTRL -> Salesforce/
    "ctrl": "Salesforce/ctrl",
    # DistilBERT, DistilGPT2, DistilRoBERTa -> distilbert/
    "distilbert-base-cased": "distilbert/distilbert-base-cased",
    "distilbert-base-cased-distilled-squad": "distilbert/distilbert-base-cased-distilled-squad",
    "distilbert-base-german-cased": "distilbert/distilbert-base-german-cased",
    "distilbert-base-multilingual-cased": "distilbert/distilbert-base-multilingual-cased",
    "distilbert-base-uncased": "distilbert/distilbert-base-uncased",
    "distilbert-base-uncased-distilled-squad": "distilbert/distilbert-base-uncased-distilled-squad",
    "distilbert-base-uncased-finetuned-sst-2-english": (
        "distilbert/distilbert-base-uncased-finetuned-sst-2-english"
    ),
    "distilgpt2": "distilbert/distilgpt2",
    "distilroberta-base": "distilbert/distilroberta-base",
    # GPT-2 -> openai-community/
    "gpt2": "openai-community/gpt2",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-xl": "openai-community/gpt2-xl",
    # GPT (the original "openai-gpt") -> openai-community/
    "openai-gpt": "openai-community/openai-gpt",
    # RoBERTa -> FacebookAI/ (OpenAI's GPT-2 output detectors -> openai-community/)
    "roberta-base": "FacebookAI/roberta-base",
    "roberta-base-openai-detector": "openai-community/roberta-base-openai-detector",
    "roberta-large": "FacebookAI/roberta-large",
    "roberta-large-mnli": "FacebookAI/roberta-large-mnli",
    "roberta-large-openai-detector": "openai-community/roberta-large-openai-detector",
    # T5 -> google-t5/
    "t5-11b": "google-t5/t5-11b",
    "t5-3b": "google-t5/t5-3b",
    "t5-base": "google-t5/t5-base",
    "t5-large": "google-t5/t5-large",
    "t5-small": "google-t5/t5-small",
    # Transformer-XL -> transfo-xl/
    "transfo-xl-wt103": "transfo-xl/transfo-xl-wt103",
    # XLM -> FacebookAI/
    "xlm-clm-ende-1024": "FacebookAI/xlm-clm-ende-1024",
    "xlm-clm-enfr-1024": "FacebookAI/xlm-clm-enfr-1024",
    "xlm-mlm-100-1280": "FacebookAI/xlm-mlm-100-1280",
    "xlm-mlm-17-1280": "FacebookAI/xlm-mlm-17-1280",
    "xlm-mlm-en-2048": "FacebookAI/xlm-mlm-en-2048",
    "xlm-mlm-ende-1024": "FacebookAI/xlm-mlm-ende-1024",
    "xlm-mlm-enfr-1024": "FacebookAI/xlm-mlm-enfr-1024",
    "xlm-mlm-enro-1024": "FacebookAI/xlm-mlm-enro-1024",
    "xlm-mlm-tlm-xnli15-1024": "FacebookAI/xlm-mlm-tlm-xnli15-1024",
    "xlm-mlm-xnli15-1024": "FacebookAI/xlm-mlm-xnli15-1024",
    # XLM-RoBERTa -> FacebookAI/
    "xlm-roberta-base": "FacebookAI/xlm-roberta-base",
    "xlm-roberta-large": "FacebookAI/xlm-roberta-large",
    "xlm-roberta-large-finetuned-conll02-dutch": "FacebookAI/xlm-roberta-large-finetuned-conll02-dutch",
    "xlm-roberta-large-finetuned-conll02-spanish": "FacebookAI/xlm-roberta-large-finetuned-conll02-spanish",
    "xlm-roberta-large-finetuned-conll03-english": "FacebookAI/xlm-roberta-large-finetuned-conll03-english",
    "xlm-roberta-large-finetuned-conll03-german": "FacebookAI/xlm-roberta-large-finetuned-conll03-german",
    # XLNet -> xlnet/
    "xlnet-base-cased": "xlnet/xlnet-base-cased",
    "xlnet-large-cased": "xlnet/xlnet-large-cased",
}

# Reverse lookup (canonical -> legacy) and its case-insensitive twin. The keys
# of LEGACY_IDS are already lowercase, so they double as the folded forward map.
_CANONICAL_TO_LEGACY: dict[str, str] = {new: old for old, new in LEGACY_IDS.items()}
_CANONICAL_TO_LEGACY_FOLDED: dict[str, str] = {new.lower(): old for old, new in LEGACY_IDS.items()}


def canonical_id(repo_id: str) -> str:
    """Return the id a legacy namespace-less hub id moved to, else ``repo_id``.

    ``canonical_id("gpt2")`` is ``"openai-community/gpt2"``. The match ignores
    case, as the hub does (``"GPT2"`` maps too). Anything else, including ids
    that already have a namespace, is returned unchanged.
    """
    new = LEGACY_IDS.get(repo_id)
    if new is not None:
        return new
    if "/" in repo_id:  # a legacy id never has a namespace
        return repo_id
    return LEGACY_IDS.get(repo_id.lower(), repo_id)


def legacy_id(repo_id: str) -> str | None:
    """Return the legacy namespace-less id of a moved canonical repo, else ``None``.

    ``legacy_id("openai-community/gpt2")`` is ``"gpt2"``; the match ignores
    case, as the hub does. Any other id, a legacy id itself included, gives
    ``None``.
    """
    old = _CANONICAL_TO_LEGACY.get(repo_id)
    if old is not None:
        return old
    if "/" not in repo_id:  # every canonical id has a namespace
        return None
    return _CANONICAL_TO_LEGACY_FOLDED.get(repo_id.lower())
