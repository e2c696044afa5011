"""`tastemaker chat` in a terminal: a trained pipeline answers line by line, grounded in its catalog."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PIPELINE = """
[[sources]]
kind = "model"
model = "itemknn"
[[sources]]
kind = "popularity"
"""


def test_chat_cli_answers_each_line(tmp_path: Path) -> None:
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(PIPELINE)
    out = tmp_path / "artifact"
    train = subprocess.run([sys.executable, "-m", "tastemaker.cli", "train", "--dataset", "movielens-latest-small",
                            "--pipeline", str(pipeline), "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr
    chat = subprocess.run([sys.executable, "-m", "tastemaker.cli", "chat", "--artifact", str(out), "-n", "3"],
                          input="I loved Toy Story, any animation?\nSomething from the 90s?\n\n",
                          capture_output=True, text=True, timeout=120)
    assert chat.returncode == 0, chat.stderr
    lines = chat.stdout.splitlines()
    answers = [line for line in lines if "tastemaker> " in line]  # after the "you> " prompt
    assert len(answers) == 2
    listed = [line for line in lines if line.startswith("  ") and "[" in line]
    assert len(listed) == 6  # 3 items per answer
    assert not any("Toy Story (1995)" in line.split("[")[0] for line in listed)  # liked: history, not a suggestion
    bad = subprocess.run([sys.executable, "-m", "tastemaker.cli", "chat", "--artifact", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "not a pipeline artifact" in bad.stderr
