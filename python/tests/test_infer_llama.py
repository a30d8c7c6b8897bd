"""keel's LLaMA forward pass against a reference written here in PyTorch from the architecture's
equations, on tiny random-weight models written with keel's GGUF writer."""

import pytest
import torch

from keel import _C


def make_model(path, vocab=97, embd=64, layers=2, ff=96, heads=4, kv_heads=2, tied=False,
               wtype="f32", seed=0, rope_base=10000.0, ctx=512):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).contiguous()

    hd = embd // heads
    w = {"token_embd.weight": rnd(vocab, embd), "output_norm.weight": 1 + rnd(embd, scale=0.1)}
    if not tied:
        w["output.weight"] = rnd(vocab, embd, scale=embd ** -0.5)
    for i in range(layers):
        p = f"blk.{i}."
        w[p + "attn_norm.weight"] = 1 + rnd(embd, scale=0.1)
        w[p + "ffn_norm.weight"] = 1 + rnd(embd, scale=0.1)
        w[p + "attn_q.weight"] = rnd(embd, embd, scale=embd ** -0.5)
        w[p + "attn_k.weight"] = rnd(kv_heads * hd, embd, scale=embd ** -0.5)
        w[p + "attn_v.weight"] = rnd(kv_heads * hd, embd, scale=embd ** -0.5)
        w[p + "attn_output.weight"] = rnd(embd, embd, scale=embd ** -0.5)
        w[p + "ffn_gate.weight"] = rnd(ff, embd, scale=embd ** -0.5)
        w[p + "ffn_up.weight"] = rnd(ff, embd, scale=embd ** -0.5)
        w[p + "ffn_down.weight"] = rnd(embd, ff, scale=ff ** -0.5)
    meta = [("general.architecture", "llama"), ("llama.context_length", ctx),
            ("llama.embedding_length", embd), ("llama.block_count", layers),
            ("llama.feed_forward_length", ff), ("llama.attention.head_count", heads),
            ("llama.attention.head_count_kv", kv_heads),
            ("llama.attention.layer_norm_rms_epsilon", 1e-5),
            ("llama.rope.freq_base", rope_base), ("llama.rope.dimension_count", hd)]
    tensors = [(name, wtype if t.dim() == 2 else "f32", t) for name, t in w.items()]
    _C.gguf_write(str(path), meta, tensors)
    cfg = dict(heads=heads, kv_heads=kv_heads, layers=layers, eps=1e-5, base=rope_base,
               tied=tied)
    return w, cfg


def quantized_activations(x):
    """Activations as keel's integer path sees them: blocks of 32 along the last dimension,
    d = max|x| / 127 (float32), q = x / d rounded half away from zero."""
    b = x.float().reshape(-1, 32)
    d = b.abs().amax(1, keepdim=True) / 127
    inv = torch.where(d != 0, 1 / d, torch.zeros_like(d))
    v = b * inv
    q = torch.sign(v) * torch.floor(v.abs() + 0.5)
    return (q.double() * d.double()).reshape(x.shape)


def reference_logits(w, cfg, tokens, act=lambda x: x):
    """LLaMA in float64 from the equations: RMSNorm, RoPE on adjacent pairs (GGUF's layout),
    causal grouped-query attention, SwiGLU, tied or separate output. `act` is applied to the
    input of every weight product."""
    w = {k: v.double() for k, v in w.items()}
    x = w["token_embd.weight"][torch.tensor(tokens)]
    n, embd = x.shape
    heads, kv_heads = cfg["heads"], cfg["kv_heads"]
    hd = embd // heads

    def rms(v, weight):
        return v / torch.sqrt((v * v).mean(-1, keepdim=True) + cfg["eps"]) * weight

    def rope(t, nh):
        t = t.view(n, nh, hd // 2, 2)
        pos = torch.arange(n, dtype=torch.float64)[:, None]
        theta = pos * cfg["base"] ** (-2 * torch.arange(hd // 2, dtype=torch.float64) / hd)
        c, s = torch.cos(theta)[:, None, :], torch.sin(theta)[:, None, :]
        a, b = t[..., 0], t[..., 1]
        return torch.stack([a * c - b * s, a * s + b * c], -1).view(n, nh * hd)

    mask = torch.ones(n, n).tril().bool()
    for i in range(cfg["layers"]):
        p = f"blk.{i}."
        h = act(rms(x, w[p + "attn_norm.weight"]))
        q = rope(h @ w[p + "attn_q.weight"].T, heads).view(n, heads, hd).transpose(0, 1)
        k = rope(h @ w[p + "attn_k.weight"].T, kv_heads).view(n, kv_heads, hd).transpose(0, 1)
        v = (h @ w[p + "attn_v.weight"].T).view(n, kv_heads, hd).transpose(0, 1)
        k = k.repeat_interleave(heads // kv_heads, 0)
        v = v.repeat_interleave(heads // kv_heads, 0)
        att = (q @ k.transpose(1, 2)) / hd ** 0.5
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        x = x + act((att @ v).transpose(0, 1).reshape(n, embd)) @ w[p + "attn_output.weight"].T
        h = act(rms(x, w[p + "ffn_norm.weight"]))
        gate, up = h @ w[p + "ffn_gate.weight"].T, h @ w[p + "ffn_up.weight"].T
        x = x + act(torch.nn.functional.silu(gate) * up) @ w[p + "ffn_down.weight"].T
    out = w["token_embd.weight"] if cfg["tied"] else w["output.weight"]
    return act(rms(x, w["output_norm.weight"])) @ out.T


SHAPES = [
    dict(),                                          # GQA 4/2, separate output
    dict(kv_heads=4, tied=True),                     # multi-head, tied
    dict(heads=8, kv_heads=1, embd=128, ff=160, layers=3, rope_base=500000.0),  # MQA
]


@pytest.mark.parametrize("shape", SHAPES, ids=["gqa", "mha-tied", "mqa"])
@pytest.mark.parametrize("threads", [1, 3])
def test_float32_logits_match_the_reference(tmp_path, shape, threads):
    w, cfg = make_model(tmp_path / "m.gguf", **shape)
    tokens = torch.randint(0, 97, (40,), generator=torch.Generator().manual_seed(1)).tolist()
    want = reference_logits(w, cfg, tokens)
    s = _C.LlamaSession(str(tmp_path / "m.gguf"), threads)
    got = s.forward(tokens, all_logits=True)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
    # Incremental decoding over the paged cache gives the same logits as one prefill.
    s2 = _C.LlamaSession(str(tmp_path / "m.gguf"), threads)
    s2.forward(tokens[:17], all_logits=True)
    for i in range(17, 40):
        step = s2.forward([tokens[i]])
        torch.testing.assert_close(step.double(), want[i], rtol=1e-4,
                                   atol=1e-4 * want.abs().max().item())
    assert s2.position == 40


def test_greedy_generation_of_64_tokens_is_identical(tmp_path):
    w, cfg = make_model(tmp_path / "m.gguf", vocab=97)
    s = _C.LlamaSession(str(tmp_path / "m.gguf"), 2)
    seq = [5, 17, 33]
    logits = s.forward(seq)
    ours = []
    for _ in range(64):
        nxt = int(logits.argmax())
        ours.append(nxt)
        logits = s.forward([nxt])
    ref = list(seq)
    for _ in range(64):
        ref.append(int(reference_logits(w, cfg, ref)[-1].argmax()))
    assert ours == ref[3:]


def dequantized(t, wtype):
    """The weights a GGUF reader sees after `wtype` quantization, from the format definitions
    (llama.cpp's reference quantizers), computed here independently of keel."""
    if wtype == "f16":
        return t.half().float()
    if wtype == "bf16":
        return t.bfloat16().float()
    b = t.reshape(-1, 32)
    if wtype == "q8_0":
        d = b.abs().max(1, keepdim=True).values / 127
        inv = torch.where(d > 0, 1 / d, torch.zeros_like(d))
        scaled = b * inv
        q = torch.sign(scaled) * torch.floor(scaled.abs() + 0.5)  # roundf: half away from 0
        return (q * d.half().float()).reshape(t.shape)
    if wtype == "q4_0":
        idx = b.abs().argmax(1, keepdim=True)  # first largest magnitude, with its sign
        d = b.gather(1, idx) / -8
        inv = torch.where(d != 0, 1 / d, torch.zeros_like(d))
        q = torch.clamp(torch.floor(b * inv + 8.5), max=15)
        return ((q - 8) * d.half().float()).reshape(t.shape)
    raise ValueError(wtype)


@pytest.mark.parametrize("wtype", ["f16", "bf16", "q8_0", "q4_0"])
def test_quantized_logits_match_the_reference_on_the_formats_weights(tmp_path, wtype):
    w, cfg = make_model(tmp_path / "q.gguf", wtype=wtype, seed=4)
    deq = {k: dequantized(v, wtype) if v.dim() == 2 else v for k, v in w.items()}
    tokens = torch.randint(0, 97, (30,), generator=torch.Generator().manual_seed(5)).tolist()
    want = reference_logits(deq, cfg, tokens)
    got = _C.LlamaSession(str(tmp_path / "q.gguf"), 2,
                          quantize_activations=False).forward(tokens, all_logits=True)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


@pytest.mark.parametrize("wtype", ["q8_0", "q4_0"])
@pytest.mark.parametrize("threads", [1, 2])
def test_integer_path_matches_the_reference_with_8bit_activations(tmp_path, wtype, threads):
    """The default path for Q8_0/Q4_0: activations quantized per block of 32 before each
    weight product (the reference does the same in float64)."""
    w, cfg = make_model(tmp_path / "q.gguf", wtype=wtype, seed=4)
    deq = {k: dequantized(v, wtype) if v.dim() == 2 else v for k, v in w.items()}
    tokens = torch.randint(0, 97, (30,), generator=torch.Generator().manual_seed(5)).tolist()
    want = reference_logits(deq, cfg, tokens, act=quantized_activations)
    got = _C.LlamaSession(str(tmp_path / "q.gguf"), threads).forward(tokens, all_logits=True)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
    # and it is a different computation from the float path (the test can tell them apart)
    exact = reference_logits(deq, cfg, tokens)
    assert (exact - want).abs().max() > 10 * 1e-4 * want.abs().max()


# The weight formats' own error (float32 activations; the default 8-bit activation path is
# measured on a trained model in tests/test_infer_train_serve.py). Q4_0 on a random-weight
# model of this size flips many near-tie argmaxes (measured 0.75): the format's error, not the
# kernel's (the test above checks the kernel on Q4_0 weights exactly).
@pytest.mark.parametrize("wtype,agreement", [("f16", 0.99), ("bf16", 0.98), ("q8_0", 0.98),
                                             ("q4_0", 0.70)])
def test_quantized_weights_keep_top1_agreement(tmp_path, wtype, agreement):
    w, cfg = make_model(tmp_path / "f32.gguf", vocab=97, seed=3)
    make_model(tmp_path / "q.gguf", vocab=97, seed=3, wtype=wtype)
    tokens = torch.randint(0, 97, (300,), generator=torch.Generator().manual_seed(2)).tolist()
    ref = _C.LlamaSession(str(tmp_path / "f32.gguf")).forward(tokens, all_logits=True)
    got = _C.LlamaSession(str(tmp_path / "q.gguf"),
                          quantize_activations=False).forward(tokens, all_logits=True)
    same = (ref.argmax(-1) == got.argmax(-1)).float().mean().item()
    print(f"{wtype}: top-1 agreement {same:.3f}")
    assert same >= agreement


def test_bad_models_and_inputs_are_rejected_with_the_reason(tmp_path):
    w, cfg = make_model(tmp_path / "m.gguf", ctx=16)
    s = _C.LlamaSession(str(tmp_path / "m.gguf"))
    with pytest.raises(ValueError, match=r"token id 97 is outside the vocabulary \[0, 97\)"):
        s.forward([1, 97])
    with pytest.raises(ValueError, match="exceed the context length 16"):
        s.forward(list(range(17)))
    assert s.position == 0  # nothing was consumed by the failed calls
    s.forward([1, 2])
    assert s.position == 2

    meta = [("general.architecture", "gpt2")]
    _C.gguf_write(str(tmp_path / "gpt2.gguf"), meta, [])
    with pytest.raises(ValueError, match="'gpt2', not 'llama'"):
        _C.LlamaSession(str(tmp_path / "gpt2.gguf"))
    # A tensor with the wrong shape.
    w2 = dict(w)
    del w2["blk.1.ffn_up.weight"]
    bad = [("general.architecture", "llama"), ("llama.context_length", 16),
           ("llama.embedding_length", 64), ("llama.block_count", 2),
           ("llama.feed_forward_length", 96), ("llama.attention.head_count", 4),
           ("llama.attention.head_count_kv", 2), ("llama.attention.layer_norm_rms_epsilon", 1e-5)]
    _C.gguf_write(str(tmp_path / "missing.gguf"), bad,
                  [(k, "f32", v) for k, v in w2.items()])
    with pytest.raises(ValueError, match="tensor 'blk.1.ffn_up.weight' is missing"):
        _C.LlamaSession(str(tmp_path / "missing.gguf"))
    w2["blk.1.ffn_up.weight"] = torch.zeros(96, 32)
    _C.gguf_write(str(tmp_path / "shape.gguf"), bad, [(k, "f32", v) for k, v in w2.items()])
    with pytest.raises(ValueError, match=r"has shape \[32, 96\], expected \[64, 96\]"):
        _C.LlamaSession(str(tmp_path / "shape.gguf"))
    with pytest.raises(FileNotFoundError):
        _C.LlamaSession(str(tmp_path / "nope.gguf"))
    (tmp_path / "junk.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 16)
    with pytest.raises(ValueError, match="cannot fit"):
        _C.LlamaSession(str(tmp_path / "junk.gguf"))
