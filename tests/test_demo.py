"""End to end: the README's first command (`bash scripts/demo`, which runs scripts/demo.py) takes the whole
path on the built-in local hub and gets the same results again offline."""

import pytest

import demo  # scripts/demo.py (conftest puts scripts/ on sys.path)
import demo_repos

needs_data = pytest.mark.usefixtures("demo_data", "qwen_gguf_volumes")  # fails with the install command when a package is missing


@needs_data
def test_demo_end_to_end(isolated_env, capsys):
    assert demo.run(cache_dir=str(isolated_env / "demo-cache"), max_new_tokens=24) == 0  # short answers: CI time
    out = capsys.readouterr().out
    assert "[0] A man is eating food." in out
    row = next(line for line in out.splitlines() if "[0] A man is eating food." in line)
    assert float(row.split()[-3]) > 0.5  # real weights: the two eating sentences are close
    assert "same results offline: True" in out
    assert "google-bert/bert-base-chinese" in out and "links into google-bert/bert-base-chinese" in out
    # the seed's chat on the real Qwen GGUF: two real (Chinese) answers, a history of four messages
    assert ">>> response, history = model.chat(tokenizer, \"你好\", history=[])" in out
    first = next(line for line in out.splitlines() if "assistant> " in line).split("assistant> ", 1)[1]
    assert any("\u4e00" <= c <= "\u9fff" for c in first), first
    second = out.split("user> 晚上睡不着应该怎么办", 1)[1]
    assert sum("\u4e00" <= c <= "\u9fff" for c in second) > 10, second
    assert "history: 4 messages" in out


@needs_data
def test_chat_command(tmp_path, isolated_env):
    """`autoload chat MODEL`: a prompt loop with streamed replies, /reset and /exit."""
    import os
    import subprocess
    import sys

    from conftest import ROOT
    demo_repos.write_tiny_chat(tmp_path / "tiny-chat")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    done = subprocess.run([sys.executable, "-m", "autoload.cli", "chat", str(tmp_path / "tiny-chat"),
                           "--max-new-tokens", "4"], input="你好\n/reset\n再见\n/exit\n", capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("assistant> ") == 2 and "(history cleared)" in done.stdout
