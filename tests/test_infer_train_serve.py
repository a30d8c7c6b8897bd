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
    top1_agreement(keel_bin, out)


def top1_agreement(keel_bin, out):
    """Quantized copies of the trained model against its float32 copy: the argmax of every
    position of held-out text, with float32 and with 8-bit activations (the default)."""
    from keel import _C
    import torch
    for t in ("f32", "q4_0"):
        c = subprocess.run([keel_bin, "convert", "--from-checkpoint", str(out / "ckpt"),
                            "--config", str(out / "config.json"), "--out",
                            str(out / f"{t}.gguf"), "--type", t], capture_output=True,
                           text=True, timeout=120)
        assert c.returncode == 0, c.stderr
    tok = _C.Tokenizer(str(out / "vocab.gguf"))
    text = open("/usr/share/games/fortunes/literature", encoding="utf-8").read()[:20000]
    ids = tok.encode(text)[:1024]
    ctx = 64  # the length it was trained on

    def logits(path, quantize_activations):
        return torch.cat([_C.LlamaSession(str(path), 2, quantize_activations)
                          .forward(ids[i:i + ctx], all_logits=True)
                          for i in range(0, len(ids) - ctx + 1, ctx)])

    ref = logits(out / "f32.gguf", False).argmax(-1)
    # Q8_0 meets the 98%; Q4_0 does not (measured 0.89-0.90 on this model with
    # llama.cpp's reference quantizer: the format's error, see docs/results/inference.md), so
    # its bound guards against regressions only.
    for t, bound in (("tiny", 0.98), ("q4_0", 0.85)):
        for quantize_activations in (False, True):
            got = logits(out / f"{t}.gguf", quantize_activations).argmax(-1)
            same = (got == ref).float().mean().item()
            print(f"{t} activations {'8-bit' if quantize_activations else 'f32'}: top-1 {same:.3f}")
            assert same >= bound, (t, quantize_activations, same)
