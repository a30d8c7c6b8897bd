"""Train -> serve end to end: examples/train_llama.py under `keel run`, then `keel convert` and
`keel generate` on what it saved (the README's walkthrough)."""

import re
import subprocess
import sys

import pytest

pytest.importorskip("sentencepiece")


def test_train_convert_generate(keel_bin, tmp_path):
    out = tmp_path / "tiny"
    r = subprocess.run([keel_bin, "run", "--nproc-per-node", "1", "examples/train_llama.py",
                        "--out", str(out), "--steps", "60"], capture_output=True, text=True,
                       timeout=600, cwd=pytest.importorskip("pathlib").Path(__file__).parents[1])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    losses = [float(x) for x in re.findall(r"step \d+ loss ([\d.]+)", r.stdout + r.stderr)]
    assert len(losses) >= 2 and losses[-1] < losses[0], losses
    gguf = out / "tiny.gguf"
    c = subprocess.run([keel_bin, "convert", "--from-checkpoint", str(out / "ckpt"), "--config",
                        str(out / "config.json"), "--vocab", str(out / "vocab.gguf"), "--out",
                        str(gguf), "--type", "q8_0"], capture_output=True, text=True, timeout=120)
    assert c.returncode == 0, c.stderr
    g = subprocess.run([keel_bin, "generate", "--model", str(gguf), "--prompt", "The computer",
                        "-n", "20", "--seed", "1"], capture_output=True, timeout=120)
    assert g.returncode == 0, g.stderr
    assert g.stdout.startswith(b"The computer") and len(g.stdout) > len(b"The computer")
    assert b"tok/s" in g.stderr
