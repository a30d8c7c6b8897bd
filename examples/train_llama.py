"""Train a tiny LLaMA on a real corpus with keel, then serve it: train -> convert -> generate.

    keel run --nproc-per-node 1 examples/train_llama.py --out /tmp/tiny --steps 300
    keel convert --from-checkpoint /tmp/tiny/ckpt --config /tmp/tiny/config.json \
        --vocab /tmp/tiny/vocab.gguf --out /tmp/tiny/tiny.gguf --type q8_0
    keel generate --model /tmp/tiny/tiny.gguf --prompt "The computer" -n 60 --seed 1

The corpus is Debian's `fortunes` (installed by scripts/install-deps.sh). A SentencePiece BPE
vocabulary is trained on it with spm_train and written to vocab.gguf with keel's GGUF writer;
the model is a Hugging Face-layout LLaMA (half-split rotary embedding) in plain PyTorch,
trained with keel.optim.AdamW and saved with keel.ckpt as {"model": state_dict} (the names
`keel convert` maps); config.json is the Hugging Face config. Runs with plain python3 too.
"""

import argparse
import json
import math
import os
import pathlib
import subprocess

import torch
import torch.nn as nn
import torch.nn.functional as F

import keel.ckpt
import keel.optim
from keel import _C

FORTUNES = pathlib.Path("/usr/share/games/fortunes")


def train_vocab(out, vocab_size):
    import sentencepiece as spm
    corpus = out / "corpus.txt"
    corpus.write_bytes(b"".join((FORTUNES / f).read_bytes()
                                for f in ("fortunes", "computers", "people", "literature")))
    subprocess.run(["spm_train", f"--input={corpus}", f"--model_prefix={out / 'spm'}",
                    f"--vocab_size={vocab_size}", "--model_type=bpe", "--byte_fallback=true",
                    "--normalization_rule_name=identity", "--remove_extra_whitespaces=false",
                    "--minloglevel=2"], check=True)
    sp = spm.SentencePieceProcessor(model_file=str(out / "spm.model"))
    n = sp.get_piece_size()
    types = [2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i) else 1
             for i in range(n)]
    _C.gguf_write(str(out / "vocab.gguf"), [
        ("tokenizer.ggml.model", "llama"),
        ("tokenizer.ggml.tokens", [sp.id_to_piece(i) for i in range(n)]),
        ("tokenizer.ggml.scores", [float(sp.get_score(i)) for i in range(n)]),
        ("tokenizer.ggml.token_type", types),
        ("tokenizer.ggml.bos_token_id", sp.bos_id()),
        ("tokenizer.ggml.eos_token_id", sp.eos_id()),
        ("tokenizer.ggml.unknown_token_id", sp.unk_id())], [])
    ids = sp.encode(corpus.read_text(encoding="utf-8"))
    return torch.tensor(ids, dtype=torch.long), n


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        e, self.h, self.kv = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
        self.hd = e // self.h
        self.q_proj = nn.Linear(e, e, bias=False)
        self.k_proj = nn.Linear(e, self.kv * self.hd, bias=False)
        self.v_proj = nn.Linear(e, self.kv * self.hd, bias=False)
        self.o_proj = nn.Linear(e, e, bias=False)
        inv = c["rope_theta"] ** (-torch.arange(0, self.hd, 2).float() / self.hd)
        ang = torch.arange(c["max_position_embeddings"]).float()[:, None] * inv[None]
        self.register_buffer("cos", torch.cat([ang.cos()] * 2, -1), persistent=False)
        self.register_buffer("sin", torch.cat([ang.sin()] * 2, -1), persistent=False)

    def rope(self, t):
        n = t.shape[-2]
        t1, t2 = t[..., :self.hd // 2], t[..., self.hd // 2:]
        return t * self.cos[:n] + torch.cat([-t2, t1], -1) * self.sin[:n]

    def forward(self, x):
        b, n, e = x.shape
        q = self.rope(self.q_proj(x).view(b, n, self.h, self.hd).transpose(1, 2))
        k = self.rope(self.k_proj(x).view(b, n, self.kv, self.hd).transpose(1, 2))
        v = self.v_proj(x).view(b, n, self.kv, self.hd).transpose(1, 2)
        k = k.repeat_interleave(self.h // self.kv, 1)
        v = v.repeat_interleave(self.h // self.kv, 1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True) if hasattr(
            F, "scaled_dot_product_attention") else self.naive(q, k, v)
        return self.o_proj(y.transpose(1, 2).reshape(b, n, e))

    @staticmethod
    def naive(q, k, v):
        n = q.shape[-2]
        att = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        att = att.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf"))
        return att.softmax(-1) @ v


class RMSNorm(nn.Module):
    def __init__(self, e, eps):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(e)), eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        e, f = c["hidden_size"], c["intermediate_size"]
        self.input_layernorm = RMSNorm(e, c["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(e, c["rms_norm_eps"])
        self.self_attn = Attention(c)
        self.mlp = nn.ModuleDict(dict(gate_proj=nn.Linear(e, f, bias=False),
                                      up_proj=nn.Linear(e, f, bias=False),
                                      down_proj=nn.Linear(f, e, bias=False)))

    def forward(self, x):
        x = x + self.self_attn(self.input_layernorm(x))
        h = self.post_attention_layernorm(x)
        return x + self.mlp["down_proj"](F.silu(self.mlp["gate_proj"](h)) * self.mlp["up_proj"](h))


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.model = nn.ModuleDict(dict(
            embed_tokens=nn.Embedding(c["vocab_size"], c["hidden_size"]),
            layers=nn.ModuleList([Layer(c) for _ in range(c["num_hidden_layers"])]),
            norm=RMSNorm(c["hidden_size"], c["rms_norm_eps"])))
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)

    def forward(self, idx):
        x = self.model["embed_tokens"](idx)
        for layer in self.model["layers"]:
            x = layer(x)
        return self.lm_head(self.model["norm"](x))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, help="directory for vocab, checkpoint and config")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--ctx", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=3e-3)
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    data, vocab = train_vocab(out, args.vocab)
    cfg = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
               intermediate_size=352, vocab_size=vocab, rms_norm_eps=1e-5, rope_theta=10000.0,
               max_position_embeddings=256, _name_or_path="keel-tiny-llama-fortunes")
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    model = Llama(cfg)
    opt = keel.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1)
    ckpt = keel.ckpt.Checkpointer(str(out / "ckpt"), keep_last=1)
    g = torch.Generator().manual_seed(int(os.environ.get("RANK", "0")))
    for step in range(1, args.steps + 1):
        starts = torch.randint(0, len(data) - args.ctx - 1, (args.batch,), generator=g)
        x = torch.stack([data[s:s + args.ctx] for s in starts])
        y = torch.stack([data[s + 1:s + args.ctx + 1] for s in starts])
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step == 1 or step % 50 == 0 or step == args.steps:
            print(f"step {step} loss {loss.item():.3f}", flush=True)
    ckpt.save(args.steps, {"model": model.state_dict()})
    print(f"saved step {args.steps} to {out / 'ckpt'}; next: keel convert (see the docstring)")


if __name__ == "__main__":
    main()
