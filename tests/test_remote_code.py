"""Remote code (`auto_map` + `trust_remote_code`): repos with their own Python files, served by the local hub."""

from __future__ import annotations

import json
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from autoload.registry import remote
from autoload.registry.auto import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer
from autoload.hub.source import FileSource
from conftest import BERT_CONFIG, write_repo

CHAT_CONFIG = '''
from autoload.configuration import PretrainedConfig


class ChatConfig(PretrainedConfig):
    model_type = "chatglm-like"
    defaults = {"prefix": "", "num_layers": 1}
'''

CHAT_TOKENIZER = '''
import json

from autoload.hub.source import FileSource


class ChatTokenizer:
    def __init__(self, vocab):
        self.vocab, self.tokens = vocab, {i: t for t, i in vocab.items()}

    @classmethod
    def from_pretrained(cls, name_or_path, **kwargs):
        with open(FileSource(name_or_path, **kwargs).require("vocab.json"), encoding="utf-8") as f:
            return cls(json.load(f))

    def encode(self, text):
        return [self.vocab.get(ch, self.vocab["<unk>"]) for ch in text]

    def decode(self, ids):
        return "".join(self.tokens[i] for i in ids)
'''

CHAT_MODEL = '''
import torch

from .configuration_chat import ChatConfig


class ChatModel(torch.nn.Module):
    config_class = ChatConfig

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.flip = torch.nn.Parameter(torch.tensor(-1), requires_grad=False)

    @classmethod
    def from_pretrained(cls, name_or_path, *, config=None, **kwargs):
        return cls(config or ChatConfig.from_pretrained(name_or_path, **kwargs)).eval()

    def chat(self, tokenizer, query, history=None, **kw):
        ids = torch.tensor(tokenizer.encode(query))
        reply = ids.flip(0).tolist() if self.flip.item() < 0 else ids.tolist()  # the "model": reverse the query
        response = self.config.prefix + tokenizer.decode(reply)
        return response, list(history or []) + [(query, response)]
'''


def config_code(name: str, model_type: str, body: str = "", base: str = "PretrainedConfig",
                module: str = "autoload.configuration") -> str:
    return (f"from {module} import {base}\n\n\nclass {name}({base}):\n    model_type = {model_type!r}\n"
            + (body or "    pass\n"))


def model_code(name: str, imports: str = "", body: str = "") -> str:
    return (f"{imports}\n\nclass {name}:\n    def __init__(self, config):\n        self.config = config\n\n"
            "    @classmethod\n    def from_pretrained(cls, name_or_path, *, config=None, **kwargs):\n"
            f"        return cls(config)\n{body}")


def commit_of(server, repo_id: str, revision: str = "main") -> str:
    repo, _ = server.lookup("model", repo_id)
    return server.snapshot(repo, revision).commit


def py_requests(server) -> list[str]:
    return [r.path for r in server.requests if r.path.split("?")[0].endswith(".py")]


@pytest.fixture(autouse=True)
def modules(tmp_path, monkeypatch):
    """A private modules cache; the imported autoload_modules.* are forgotten after each test."""
    monkeypatch.setenv("AUTOLOAD_MODULES_CACHE", str(tmp_path / "modules"))
    yield tmp_path / "modules"
    for name in [n for n in sys.modules if n == "autoload_modules" or n.startswith("autoload_modules.")]:
        del sys.modules[name]


@pytest.fixture
def chat_repo(hub, hub_root):
    write_repo(hub_root / "org" / "chat-like", {
        "config.json": json.dumps({"model_type": "chatglm-like", "prefix": "答:", "auto_map": {
            "AutoConfig": "configuration_chat.ChatConfig", "AutoModel": "modeling_chat.ChatModel",
            "AutoModelForCausalLM": "modeling_chat.ChatModel"}}),
        "tokenizer_config.json": json.dumps({"auto_map": {
            "AutoTokenizer": [None, "tokenization_chat.ChatTokenizer"]}}),
        "vocab.json": json.dumps({t: i for i, t in enumerate(["<unk>", "你", "好", "早", "上", "答", ":"])},
                                 ensure_ascii=False),
        "configuration_chat.py": CHAT_CONFIG, "modeling_chat.py": CHAT_MODEL, "tokenization_chat.py": CHAT_TOKENIZER,
    })
    return "org/chat-like"


# ---- 1. a ChatGLM-like repo: config, tokenizer and model from the repo's code ----

def test_chat_repo_loads_and_chats(chat_repo, hub, modules, monkeypatch):
    tok = AutoTokenizer.from_pretrained(chat_repo, trust_remote_code=True)
    model = AutoModel.from_pretrained(chat_repo, trust_remote_code=True)
    response, history = model.chat(tok, "你好", history=[])
    assert (response, history) == ("答:好你", [("你好", "答:好你")])
    response, history = model.chat(tok, "早上好", history=history)
    assert response == "答:好上早" and history == [("你好", "答:好你"), ("早上好", "答:好上早")]

    commit = commit_of(hub, chat_repo)
    package = f"autoload_modules.org.chat_hyphen_like.{commit}"
    assert type(model).__module__ == f"{package}.modeling_chat"
    assert type(tok).__module__ == f"{package}.tokenization_chat"
    assert type(model.config) is model.config_class  # the config's module is shared, not imported twice
    assert type(model.config).__module__ == f"{package}.configuration_chat" and model.config.prefix == "答:"
    assert type(AutoModelForCausalLM.from_pretrained(chat_repo, trust_remote_code=True)) is type(model)
    assert (modules / "autoload_modules" / "__init__.py").is_file()
    assert sorted(p.name for p in (modules / "autoload_modules" / "org" / "chat_hyphen_like" / commit).glob("*.py")) \
        == ["__init__.py", "configuration_chat.py", "modeling_chat.py", "tokenization_chat.py"]

    for name in [n for n in sys.modules if n.startswith("autoload_modules")]:  # a new process, offline
        del sys.modules[name]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.reset_requests()
    offline = AutoModel.from_pretrained(chat_repo, trust_remote_code=True)
    assert offline.chat(tok, "你好")[0] == "答:好你" and hub.requests == []


# ---- 2. relative imports, nested, in functions, in a subpackage ----

def test_relative_imports_are_fetched_recursively(hub, hub_root, modules):
    write_repo(hub_root / "org" / "rel.code", {
        "config.json": json.dumps({"model_type": "scaled", "auto_map": {
            "AutoConfig": "configuration_s.SConfig", "AutoModel": "modeling_s.SModel"}}),
        "configuration_s.py": config_code("SConfig", "scaled"),
        "modeling_s.py": model_code("SModel", "from .helpers import scale\nfrom .ops.util import twice",
                                    "    def run(self, x):\n        return twice(scale(x))\n"),
        "helpers.py": "from .constants import FACTOR\n\n\ndef scale(x):\n"
                      "    from . import late  # inside a function: fetched too\n    return x * FACTOR + late.OFFSET\n",
        "constants.py": "FACTOR = 3\n", "late.py": "OFFSET = 1\n",
        "ops/util.py": "from ..constants import FACTOR\n\n\ndef twice(x):\n    return 2 * x + 0 * FACTOR\n",
        "unused.py": "raise SystemExit('never fetched')\n",
    })
    model = AutoModel.from_pretrained("org/rel.code", trust_remote_code=True)
    assert model.run(5) == 32
    folder = modules / "autoload_modules" / "org" / "rel_dot_code" / commit_of(hub, "org/rel.code")
    for name in ("modeling_s.py", "helpers.py", "constants.py", "late.py", "ops/util.py", "ops/__init__.py",
                 "configuration_s.py", "__init__.py"):
        assert (folder / name).is_file(), name
    assert not (folder / "unused.py").exists()
    assert not any("unused.py" in path for path in py_requests(hub))


# ---- 3. no trust: a clear error, nothing downloaded, nothing run ----

def test_untrusted_code_is_neither_downloaded_nor_run(hub, hub_root, tmp_path, chat_repo):
    marker = tmp_path / "ran.txt"
    write_repo(hub_root / "org" / "untrusted", {
        "config.json": json.dumps({"model_type": "evil", "auto_map": {
            "AutoConfig": "configuration_u.UConfig", "AutoModel": "modeling_u.UModel"}}),
        "configuration_u.py": f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
                              + config_code("UConfig", "evil"),
        "modeling_u.py": f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n" + model_code("UModel"),
    })
    for load in (AutoConfig.from_pretrained, AutoModel.from_pretrained):
        with pytest.raises(ValueError) as info:
            load("org/untrusted")
        text = str(info.value)
        assert "repo 'org/untrusted'" in text and "configuration_u.py" in text and "trust_remote_code=True" in text
    with pytest.raises(remote.UntrustedCodeError, match="trust_remote_code=False was passed"):
        AutoConfig.from_pretrained("org/untrusted", trust_remote_code=False)
    with pytest.raises(ValueError, match=r"repo 'org/chat-like'.*tokenization_chat\.py"):
        AutoTokenizer.from_pretrained(chat_repo)
    assert py_requests(hub) == []
    assert not marker.exists()
    assert not any(n.startswith("autoload_modules") for n in sys.modules)


def test_trust_decision_table(chat_repo, caplog):
    source = FileSource(chat_repo)
    refs = ["modeling_chat.ChatModel", "org/other--modeling_x.X"]
    assert remote.resolve_trust(True, source=source, references=refs, has_builtin=False)
    assert remote.resolve_trust(True, source=source, references=refs, has_builtin=True)
    assert not remote.resolve_trust(False, source=source, references=refs, has_builtin=True)
    with caplog.at_level(logging.INFO, logger="autoload"):
        assert not remote.resolve_trust(None, source=source, references=refs, has_builtin=True)
    assert "trust_remote_code=True" in caplog.text and "modeling_chat.py" in caplog.text
    with pytest.raises(ValueError, match=r"modeling_chat\.py, modeling_x\.py \(from repo 'org/other'\)"):
        remote.resolve_trust(None, source=source, references=refs, has_builtin=False)


# ---- 4. a built-in model_type wins unless the repo's code is trusted ----

def test_builtin_model_type_wins_without_trust(hub, hub_root, caplog):
    from autoload.models.configs import BertConfig
    write_repo(hub_root / "org" / "bert-custom", {
        "config.json": json.dumps({**BERT_CONFIG, "auto_map": {
            "AutoConfig": "configuration_b.CustomBertConfig", "AutoModel": "modeling_b.CustomBert"}}),
        "configuration_b.py": config_code("CustomBertConfig", "bert", "    custom = True\n", "BertConfig",
                                          "autoload.models.configs"),
        "modeling_b.py": model_code("CustomBert"),
    })
    with caplog.at_level(logging.INFO, logger="autoload"):
        assert type(AutoConfig.from_pretrained("org/bert-custom")) is BertConfig
    assert "built-in" in caplog.text and "trust_remote_code=True" in caplog.text
    assert type(AutoConfig.from_pretrained("org/bert-custom", trust_remote_code=False)) is BertConfig
    assert py_requests(hub) == []
    config = AutoConfig.from_pretrained("org/bert-custom", trust_remote_code=True)
    assert type(config).__name__ == "CustomBertConfig" and config.custom and isinstance(config, BertConfig)
    model = AutoModel.from_pretrained("org/bert-custom", trust_remote_code=True)
    assert type(model).__name__ == "CustomBert" and model.config.hidden_size == 32


# ---- 5. code_revision pins the code; the commit used is logged ----

def test_code_revision_pins_the_code(hub, hub_root, caplog):
    def files(version: str) -> dict[str, str]:
        return {"config.json": json.dumps({"model_type": "pinned", "auto_map": {"AutoConfig": "configuration_p.PConfig"}}),
                "configuration_p.py": config_code("PConfig", "pinned", f"    version = {version!r}\n")}
    write_repo(hub_root / "org" / "pinned", files("v2"))
    write_repo(hub_root / "versions" / "pinned-v1", files("v1"))
    (hub_root / "hub.json").write_text(json.dumps({"repos": {"org/pinned": {"refs": {"v1": "versions/pinned-v1"}}}}))
    v1, v2 = commit_of(hub, "org/pinned", "v1"), commit_of(hub, "org/pinned")
    assert v1 != v2

    with caplog.at_level(logging.INFO, logger="autoload"):
        assert AutoConfig.from_pretrained("org/pinned", trust_remote_code=True).version == "v2"
    assert v2 in caplog.text and "pin a revision" in caplog.text  # new code from a branch: the warning
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="autoload"):
        config = AutoConfig.from_pretrained("org/pinned", trust_remote_code=True, code_revision=v1)
    assert config.version == "v1" and type(config).__module__ == f"autoload_modules.org.pinned.{v1}.configuration_p"
    assert f"commit {v1}" in caplog.text and not [r for r in caplog.records if r.levelno >= logging.WARNING]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="autoload"):
        assert AutoConfig.from_pretrained("org/pinned", trust_remote_code=True, code_revision="v1").version == "v1"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # already cached: nothing new
    with caplog.at_level(logging.INFO, logger="autoload"):
        assert AutoConfig.from_pretrained("org/pinned", trust_remote_code=True, revision=v2).version == "v2"


# ---- 6. a local folder: package keyed by the sources' hash ----

def local_model(folder, offset: int):
    return write_repo(folder, {
        "config.json": json.dumps({"model_type": "local-thing", "auto_map": {
            "AutoConfig": "configuration_l.LConfig", "AutoModel": "modeling_l.LModel"}}),
        "configuration_l.py": config_code("LConfig", "local-thing"),
        "modeling_l.py": model_code("LModel", "from .configuration_l import LConfig\nfrom .helpers import OFFSET",
                                    "    def run(self, x):\n        return x + OFFSET\n"),
        "helpers.py": f"OFFSET = {offset}\n",
    })


def test_local_folder_with_relative_import(isolated_env, tmp_path, modules):
    folder = local_model(tmp_path / "my-model", offset=10)
    model = AutoModel.from_pretrained(str(folder), trust_remote_code=True)
    assert model.run(1) == 11 and type(model.config).__name__ == "LConfig"
    assert type(model.config) is sys.modules[type(model).__module__].LConfig
    packages = modules / "autoload_modules" / "local" / "my_hyphen_model"
    (first,) = [p for p in packages.iterdir() if p.is_dir()]
    assert len(first.name) == 16 and int(first.name, 16) >= 0
    assert {p.name for p in first.glob("*.py")} == {"__init__.py", "configuration_l.py", "modeling_l.py", "helpers.py"}

    local_model(folder, offset=20)  # edited sources: a new package, imported afresh
    assert AutoModel.from_pretrained(str(folder), trust_remote_code=True).run(1) == 21
    assert len([p for p in packages.iterdir() if p.is_dir()]) == 2
    assert model.run(1) == 11  # the object loaded before keeps its code


def test_concurrent_loads_import_once(isolated_env, tmp_path):
    folder = local_model(tmp_path / "shared", offset=1)
    barrier = threading.Barrier(8)

    def load(_):
        barrier.wait()
        return remote.get_class("modeling_l.LModel", FileSource(str(folder)))

    with ThreadPoolExecutor(8) as pool:
        classes = set(pool.map(load, range(8)))
    assert len(classes) == 1


def test_edited_cached_copy_is_replaced(isolated_env, tmp_path, modules, caplog):
    folder = local_model(tmp_path / "m", offset=1)
    cls = remote.get_class("modeling_l.LModel", FileSource(str(folder)))
    cached = sys.modules[cls.__module__].__file__
    with open(cached, "w") as f:
        f.write("raise RuntimeError('tampered')\n")
    for name in [n for n in sys.modules if n.startswith("autoload_modules.")]:
        del sys.modules[name]
    assert remote.get_class("modeling_l.LModel", FileSource(str(folder)))(None).run(1) == 2
    assert "Replaced edited copies of modeling_l.py" in caplog.text


# ---- 7. missing third-party packages ----

def test_missing_package_is_named_before_running(isolated_env, tmp_path):
    marker = tmp_path / "ran.txt"
    folder = write_repo(tmp_path / "needs", {
        "config.json": json.dumps({"model_type": "needy", "auto_map": {"AutoConfig": "configuration_n.NConfig"}}),
        "configuration_n.py": "import os\nimport json, not_a_real_package_xyz.sub\nfrom .helpers import X\n"
                              "try:\n    import optional_missing_pkg\nexcept ImportError:\n    pass\n\n\n"
                              "def later():\n    import lazily_missing_pkg\n\n\n"
                              f"open({str(marker)!r}, 'w').write('ran')\n" + config_code("NConfig", "needy"),
        "helpers.py": "from missing_helper_pkg.sub import thing\nX = 1\n",
    })
    with pytest.raises(ImportError) as info:
        AutoConfig.from_pretrained(str(folder), trust_remote_code=True)
    text = str(info.value)
    assert "missing_helper_pkg, not_a_real_package_xyz" in text
    assert "pip install missing_helper_pkg not_a_real_package_xyz" in text
    assert "optional_missing_pkg" not in text and "lazily_missing_pkg" not in text
    assert not marker.exists()


# ---- 8. code kept in another repo ----

def test_code_from_another_repo(hub, hub_root, modules):
    write_repo(hub_root / "org" / "host", {"config.json": json.dumps({"model_type": "hosted", "auto_map": {
        "AutoConfig": "org/code-home--configuration_x.XConfig", "AutoModel": "org/code-home--modeling_x.Model"}})})
    write_repo(hub_root / "org" / "code-home", {
        "configuration_x.py": config_code("XConfig", "hosted"),
        "modeling_x.py": model_code("Model", "from .configuration_x import XConfig"),
    })
    with pytest.raises(ValueError, match=r"configuration_x\.py \(from repo 'org/code-home'\)"):
        AutoModel.from_pretrained("org/host")
    model = AutoModel.from_pretrained("org/host", trust_remote_code=True)
    assert type(model).__name__ == "Model" and type(model.config).__name__ == "XConfig"
    folder = modules / "autoload_modules" / "org" / "code_hyphen_home" / commit_of(hub, "org/code-home")
    assert (folder / "modeling_x.py").is_file() and (folder / "configuration_x.py").is_file()
    assert not any("/org/host/" in path for path in py_requests(hub))


# ---- safety and naming ----

@pytest.mark.parametrize("reference", ["../evil.Class", "a/b.Class", "mod.Class.attr", "mod", "mod.", "__init__.C",
                                       "org/repo--../x.C", "bad id--m.C", "a--b--m.C", "class.C", "m.1C"])
def test_malformed_references_are_refused(reference):
    with pytest.raises(ValueError, match="Invalid"):
        remote.parse_reference(reference)


def test_relative_import_escaping_the_repo_is_refused(isolated_env, tmp_path):
    folder = write_repo(tmp_path / "escape", {"modeling_e.py": "from ..outside import secret\n" + model_code("E")})
    with pytest.raises(ImportError, match="outside the repo"):
        remote.get_class("modeling_e.E", FileSource(str(folder)))


def test_missing_code_file_and_class(isolated_env, tmp_path):
    folder = write_repo(tmp_path / "gaps", {"modeling_g.py": "from .nowhere import x\n", "other.py": "A = 1\n"})
    with pytest.raises(OSError, match="no file 'nowhere.py'"):
        remote.get_class("modeling_g.G", FileSource(str(folder)))
    with pytest.raises(OSError, match="no file 'absent.py'"):
        remote.get_class("absent.G", FileSource(str(folder)))
    with pytest.raises(AttributeError, match="no class 'B'"):
        remote.get_class("other.B", FileSource(str(folder)))


def test_modules_cache_location(monkeypatch, tmp_path):
    monkeypatch.delenv("AUTOLOAD_MODULES_CACHE")
    monkeypatch.delenv("HF_MODULES_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert remote.modules_cache() == str((tmp_path / "home" / "modules").resolve())
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "hf"))
    assert remote.modules_cache() == str((tmp_path / "hf").resolve())
    monkeypatch.setenv("AUTOLOAD_MODULES_CACHE", str(tmp_path / "ours"))
    assert remote.modules_cache() == str((tmp_path / "ours").resolve())


def test_sanitize_matches_the_reference():
    from transformers.dynamic_module_utils import _sanitize_module_name as reference
    for name in ("chat-like", "rel.code", "3b-model", "Qwen2.5-7B", "plain_name", "org"):
        assert remote.sanitize(name) == reference(name)
