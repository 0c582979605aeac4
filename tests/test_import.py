"""`import autoload` stays cheap: no torch, transformers, requests or tqdm until a name is used."""

import subprocess
import sys

from conftest import ROOT

HEAVY = ["torch", "transformers", "huggingface_hub", "requests", "tqdm", "safetensors", "tokenizers", "filelock"]


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys; sys.path.insert(0, {str(ROOT / 'src')!r}); {code}; print(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_import_is_light():
    loaded = _loaded_after("import autoload; autoload.__version__; dir(autoload)")
    assert not loaded & set(HEAVY), loaded & set(HEAVY)
    loaded = _loaded_after("import autoload.hub; autoload.hub.RepositoryNotFoundError")
    assert not loaded & set(HEAVY)


def test_auto_config_and_tokenizer_do_not_import_torch():
    loaded = _loaded_after("from autoload import AutoConfig, AutoTokenizer, PretrainedConfig; "
                           "AutoConfig.config_class('bert'); AutoTokenizer.tokenizer_class('BertTokenizer')")
    assert "torch" not in loaded and "transformers" not in loaded


def test_lazy_names_resolve():
    loaded = _loaded_after("import autoload; autoload.hub_download; autoload.EntryNotFoundError")
    assert "requests" in loaded and "torch" not in loaded and "transformers" not in loaded


def test_public_api_listed():
    import autoload
    for name in autoload.__all__:
        assert getattr(autoload, name) is not None
    assert issubclass(autoload.EntryNotFoundError, FileNotFoundError)
    assert issubclass(autoload.GatedRepoError, autoload.RepositoryNotFoundError)
