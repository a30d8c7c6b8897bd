"""`keel convert`: a LLaMA saved with keel.ckpt under Hugging Face names and its config.json
become a GGUF model whose logits equal a Hugging Face-style forward pass (half-split rotary
embedding) written here in PyTorch."""

import json
import subprocess

import torch

import keel.ckpt
from keel import _C

CFG = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
           intermediate_size=96, vocab_size=101, rms_norm_eps=1e-5, rope_theta=10000.0,
           max_position_embeddings=128)


def hf_state(seed=0, tied=False):
    g = torch.Generator().manual_seed(seed)
    e, f, v = CFG["hidden_size"], CFG["intermediate_size"], CFG["vocab_size"]
    kv = CFG["num_key_value_heads"] * e // CFG["num_attention_heads"]

    def rnd(*shape):
        return torch.randn(*shape, generator=g) * shape[-1] ** -0.5

    sd = {"model.embed_tokens.weight": torch.randn(v, e, generator=g),
          "model.norm.weight": 1 + 0.1 * torch.randn(e, generator=g)}
    if not tied:
        sd["lm_head.weight"] = rnd(v, e)
    for i in range(CFG["num_hidden_layers"]):
        p = f"model.layers.{i}."
        sd[p + "input_layernorm.weight"] = 1 + 0.1 * torch.randn(e, generator=g)
        sd[p + "post_attention_layernorm.weight"] = 1 + 0.1 * torch.randn(e, generator=g)
        sd[p + "self_attn.q_proj.weight"] = rnd(e, e)
        sd[p + "self_attn.k_proj.weight"] = rnd(kv, e)
        sd[p + "self_attn.v_proj.weight"] = rnd(kv, e)
        sd[p + "self_attn.o_proj.weight"] = rnd(e, e)
        sd[p + "mlp.gate_proj.weight"] = rnd(f, e)
        sd[p + "mlp.up_proj.weight"] = rnd(f, e)
        sd[p + "mlp.down_proj.weight"] = rnd(e, f)
    return sd


def hf_logits(sd, tokens):
    """Hugging Face LLaMA semantics in float64: rotary pairs (i, i + head_dim/2)."""
    sd = {k: v.double() for k, v in sd.items()}
    h, kvh = CFG["num_attention_heads"], CFG["num_key_value_heads"]
    x = sd["model.embed_tokens.weight"][torch.tensor(tokens)]
    n, e = x.shape
    hd = e // h
    inv = CFG["rope_theta"] ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.arange(n, dtype=torch.float64)[:, None] * inv[None]
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)

    def rope(t):  # [heads, n, hd]
        t1, t2 = t[..., :hd // 2], t[..., hd // 2:]
        return t * cos + torch.cat([-t2, t1], -1) * sin

    def rms(v, w):
        return v / torch.sqrt((v * v).mean(-1, keepdim=True) + CFG["rms_norm_eps"]) * w

    mask = torch.ones(n, n).tril().bool()
    for i in range(CFG["num_hidden_layers"]):
        p = f"model.layers.{i}."
        a = rms(x, sd[p + "input_layernorm.weight"])
        q = rope((a @ sd[p + "self_attn.q_proj.weight"].T).view(n, h, hd).transpose(0, 1))
        k = rope((a @ sd[p + "self_attn.k_proj.weight"].T).view(n, kvh, hd).transpose(0, 1))
        v = (a @ sd[p + "self_attn.v_proj.weight"].T).view(n, kvh, hd).transpose(0, 1)
        k, v = k.repeat_interleave(h // kvh, 0), v.repeat_interleave(h // kvh, 0)
        att = ((q @ k.transpose(1, 2)) / hd ** 0.5).masked_fill(~mask, float("-inf")).softmax(-1)
        x = x + (att @ v).transpose(0, 1).reshape(n, e) @ sd[p + "self_attn.o_proj.weight"].T
        m = rms(x, sd[p + "post_attention_layernorm.weight"])
        x = x + (torch.nn.functional.silu(m @ sd[p + "mlp.gate_proj.weight"].T)
                 * (m @ sd[p + "mlp.up_proj.weight"].T)) @ sd[p + "mlp.down_proj.weight"].T
    head = sd.get("lm_head.weight", sd["model.embed_tokens.weight"])
    return rms(x, sd["model.norm.weight"]) @ head.T


def convert(keel_bin, *args):
    return subprocess.run([keel_bin, "convert", *args], capture_output=True, text=True,
                          timeout=120)


def test_keel_checkpoint_to_gguf_matches_the_hugging_face_forward(keel_bin, tmp_path):
    for tied in (False, True):
        sd = hf_state(tied=tied)
        ckpt_dir = tmp_path / f"ckpt-{tied}"
        keel.ckpt.Checkpointer(str(ckpt_dir)).save(7, {"model": sd, "step": 7})
        (tmp_path / "config.json").write_text(json.dumps(CFG))
        out = tmp_path / f"m-{tied}.gguf"
        r = convert(keel_bin, "--from-checkpoint", str(ckpt_dir), "--config",
                    str(tmp_path / "config.json"), "--out", str(out))
        assert r.returncode == 0, r.stderr
        tokens = list(range(3, 40))
        got = _C.LlamaSession(str(out)).forward(tokens, all_logits=True)
        want = hf_logits(sd, tokens)
        torch.testing.assert_close(got.double(), want, rtol=1e-4,
                                   atol=1e-4 * want.abs().max().item())
        assert _C.LlamaSession(str(out)).config["tied_output"] == tied


def test_quantized_conversion_and_bad_inputs(keel_bin, tmp_path):
    sd = hf_state(seed=1)
    keel.ckpt.Checkpointer(str(tmp_path / "c")).save(3, {"model": sd})
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(CFG))
    r = convert(keel_bin, "--from", str(tmp_path / "c" / "step-3"), "--config", str(cfg),
                "--out", str(tmp_path / "q.gguf"), "--type", "q8_0")
    assert r.returncode == 0, r.stderr
    ref = _C.LlamaSession(str(tmp_path / "q.gguf")).forward(list(range(3, 40)), all_logits=True)
    want = hf_logits(sd, list(range(3, 40)))
    assert (ref.argmax(-1) == want.argmax(-1)).float().mean() >= 0.9

    bad = dict(CFG, intermediate_size=128)  # the checkpoint's MLP is 96 wide
    cfg.write_text(json.dumps(bad))
    r = convert(keel_bin, "--from", str(tmp_path / "c"), "--config", str(cfg), "--out",
                str(tmp_path / "x.gguf"))
    assert r.returncode == 1 and "expected 128x64 (from the config)" in r.stderr, r.stderr
    cfg.write_text("{not json")
    r = convert(keel_bin, "--from", str(tmp_path / "c"), "--config", str(cfg), "--out",
                str(tmp_path / "x.gguf"))
    assert r.returncode == 1 and "is not a JSON object" in r.stderr
    cfg.write_text(json.dumps({k: v for k, v in CFG.items() if k != "hidden_size"}))
    r = convert(keel_bin, "--from", str(tmp_path / "c"), "--config", str(cfg), "--out",
                str(tmp_path / "x.gguf"))
    assert r.returncode == 1 and "'hidden_size' is missing" in r.stderr
    cfg.write_text(json.dumps(CFG))
    del sd["model.layers.1.mlp.up_proj.weight"]
    keel.ckpt.Checkpointer(str(tmp_path / "d")).save(1, {"model": sd})
    r = convert(keel_bin, "--from", str(tmp_path / "d"), "--config", str(cfg), "--out",
                str(tmp_path / "x.gguf"))
    assert r.returncode == 1 and "model/model.layers.1.mlp.up_proj.weight" in r.stderr
    assert not (tmp_path / "x.gguf").exists()
    r = convert(keel_bin, "--from", str(tmp_path / "nope"), "--config", str(cfg), "--out", "x")
    assert r.returncode == 2
