"""Tests for autoload.hub.aliases: the legacy canonical hub id table."""

from __future__ import annotations

import ast
import collections
import re
import subprocess
import sys
from pathlib import Path

import pytest

from autoload.hub import aliases
from autoload.hub.aliases import LEGACY_IDS, canonical_id, legacy_id

# Every legacy id found with evidence (see the module docstring). The table may
# grow, never shrink below this.
MIN_ENTRIES = 68

# Hub rules for one path segment (huggingface_hub.utils.validate_repo_id):
# alphanumerics, '-', '_', '.', not starting/ending with '-' or '.', no '--'/'..'.
_SEGMENT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?")


def _valid_segment(name: str) -> bool:
    return (
        bool(_SEGMENT.fullmatch(name))
        and "--" not in name
        and ".." not in name
        and not name.endswith(".git")
    )


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("bert-base-chinese", "google-bert/bert-base-chinese"),
        ("gpt2", "openai-community/gpt2"),
        ("t5-small", "google-t5/t5-small"),
        ("roberta-base", "FacebookAI/roberta-base"),
        ("distilbert-base-uncased", "distilbert/distilbert-base-uncased"),
        ("bert-base-uncased", "google-bert/bert-base-uncased"),
        ("gpt2-medium", "openai-community/gpt2-medium"),
        ("openai-gpt", "openai-community/openai-gpt"),
        ("roberta-base-openai-detector", "openai-community/roberta-base-openai-detector"),
        ("roberta-large-mnli", "FacebookAI/roberta-large-mnli"),
        ("distilgpt2", "distilbert/distilgpt2"),
        ("distilroberta-base", "distilbert/distilroberta-base"),
        ("t5-11b", "google-t5/t5-11b"),
        ("xlm-mlm-en-2048", "FacebookAI/xlm-mlm-en-2048"),
        ("xlm-clm-enfr-1024", "FacebookAI/xlm-clm-enfr-1024"),
        ("xlm-roberta-base", "FacebookAI/xlm-roberta-base"),
        ("albert-xxlarge-v2", "albert/albert-xxlarge-v2"),
        ("xlnet-large-cased", "xlnet/xlnet-large-cased"),
        ("ctrl", "Salesforce/ctrl"),
        ("camembert-base", "almanach/camembert-base"),
        ("transfo-xl-wt103", "transfo-xl/transfo-xl-wt103"),
        (
            "bert-large-uncased-whole-word-masking-finetuned-squad",
            "google-bert/bert-large-uncased-whole-word-masking-finetuned-squad",
        ),
    ],
)
def test_known_moves(old: str, new: str) -> None:
    assert LEGACY_IDS[old] == new
    assert canonical_id(old) == new
    assert legacy_id(new) == old


@pytest.mark.parametrize(
    "repo_id",
    [
        "org/model",
        "unknown-model",
        "openai-community/gpt2",  # already canonical
        "FacebookAI/roberta-base",
        "facebook/bart-large",  # always had a namespace
        "bart-large",  # a 2020 transformers shortcut, never a hub repo
        "flaubert/flaubert_base_cased",
        "someone/gpt2",  # same name, other owner
        "gpt2/",
        "gpt2-small",
        "",
    ],
)
def test_other_ids_unchanged(repo_id: str) -> None:
    assert canonical_id(repo_id) == repo_id


@pytest.mark.parametrize("repo_id", ["org/model", "unknown-model", "gpt2", "someone/gpt2", ""])
def test_legacy_id_of_non_canonical_is_none(repo_id: str) -> None:
    assert legacy_id(repo_id) is None


def test_case_insensitive_like_the_hub() -> None:
    assert canonical_id("GPT2") == "openai-community/gpt2"
    assert canonical_id("BERT-base-uncased") == "google-bert/bert-base-uncased"
    assert canonical_id("Org/GPT2") == "Org/GPT2"
    assert legacy_id("OpenAI-Community/GPT2") == "gpt2"
    assert legacy_id("facebookai/roberta-base") == "roberta-base"


def test_entry_count_lower_bound() -> None:
    assert len(LEGACY_IDS) >= MIN_ENTRIES


def test_keys_are_legacy_ids() -> None:
    for old in LEGACY_IDS:
        assert "/" not in old
        assert old == old.lower() == old.strip()
        assert _valid_segment(old), old


def test_canonical_ids_are_valid() -> None:
    for old, new in LEGACY_IDS.items():
        assert new.count("/") == 1, new
        owner, name = new.split("/")
        assert _valid_segment(owner), new
        assert _valid_segment(name), new
        assert len(new) <= 96
        # Every move kept the repository name and only added an owner.
        assert name == old, (old, new)


def test_canonical_ids_pass_huggingface_hub_validation() -> None:
    from huggingface_hub import utils as validators
    for new in LEGACY_IDS.values():
        validators.validate_repo_id(new)


def test_values_unique() -> None:
    # No two legacy ids were moved to the same repository.
    dupes = [v for v, n in collections.Counter(LEGACY_IDS.values()).items() if n > 1]
    assert dupes == []


def test_round_trip() -> None:
    for old, new in LEGACY_IDS.items():
        assert canonical_id(old) == new
        assert legacy_id(new) == old
        assert canonical_id(legacy_id(new)) == new
        assert canonical_id(new) == new  # idempotent


def test_table_sorted() -> None:
    assert list(LEGACY_IDS) == sorted(LEGACY_IDS)


def test_families_covered() -> None:
    owners = {new.split("/")[0] for new in LEGACY_IDS.values()}
    assert owners == {
        "FacebookAI",
        "Salesforce",
        "albert",
        "almanach",
        "distilbert",
        "google-bert",
        "google-t5",
        "openai-community",
        "transfo-xl",
        "xlnet",
    }
    per_owner = collections.Counter(new.split("/")[0] for new in LEGACY_IDS.values())
    assert per_owner["google-bert"] >= 15
    assert per_owner["FacebookAI"] >= 19  # 3 roberta + 10 xlm + 6 xlm-roberta
    assert per_owner["distilbert"] >= 9
    assert per_owner["openai-community"] >= 7
    assert per_owner["albert"] >= 8
    assert per_owner["google-t5"] >= 5


def test_table_is_a_plain_literal_and_stdlib_only() -> None:
    source = Path(aliases.__file__).read_text(encoding="utf-8")
    tree = ast.parse(source)
    table = None
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                assert top in {"__future__"} | set(sys.stdlib_module_names), name
                assert top != "autoload", name
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "LEGACY_IDS":
            table = node.value
    assert isinstance(table, ast.Dict)
    assert ast.literal_eval(table) == LEGACY_IDS


def test_import_is_fast() -> None:
    # -X importtime reports each module's own import time in microseconds.
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import autoload.hub.aliases"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(aliases.__file__).parents[2],
    )
    self_us = None
    for line in proc.stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == "autoload.hub.aliases":
            self_us = int(parts[0].split(":")[-1])
    assert self_us is not None, proc.stderr
    # Typically ~0.1-0.3 ms; a loose bound keeps slow CI machines green.
    assert self_us < 20_000, self_us
