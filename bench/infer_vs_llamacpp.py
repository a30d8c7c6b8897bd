#!/usr/bin/env python3
"""keel vs llama.cpp on the same GGUF files: prefill and decode tokens/s, one sequence, 1 and 2
threads, plus the memory-bandwidth bound for decode.

    PYTHONPATH=build/python /usr/bin/python3 bench/infer_vs_llamacpp.py [--models small,1b]
        [--types q8_0,q4_0] [--threads 1,2] [--runs 3]

llama.cpp is node-llama-cpp 3.21.1's prebuilt CPU build (`npm install` in bench/llamacpp,
done here on first use; no network needed after that), driven by bench/llamacpp/
time_llamacpp.mjs. Models have random weights written with keel's GGUF writer and a synthetic
SentencePiece vocabulary: "small" ~30M parameters (E 512, 8 layers, F 1408, vocab 4096) and
"1b" TinyLlama-1.1B's shape (E 2048, 22 layers, F 5632, 32 heads / 4 KV heads, vocab 32000).
Both engines get the same token ids: a 64-token prompt, then 32 greedy decode steps.
Bound: bytes of every weight read per decoded token (all matrices but the embedding, which
is one row) ÷ the best read bandwidth measured in the same run (torch.sum over 1 GiB, on all
cores, before every cell: this VM's bandwidth varies by 2x from minute to minute).
Each (model, type, threads) cell runs the engines alternately `--runs` times; medians.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import tempfile
import time

import torch

from keel import _C

ROOT = pathlib.Path(__file__).resolve().parent
SHAPES = {
    "small": dict(embd=512, layers=8, ff=1408, heads=8, kv_heads=8, vocab=4096),
    "1b": dict(embd=2048, layers=22, ff=5632, heads=32, kv_heads=4, vocab=32000),
}


def write_model(path, wtype, embd, layers, ff, heads, kv_heads, vocab):
    g = torch.Generator().manual_seed(0)
    hd = embd // heads

    def rnd(rows, cols):
        return (torch.randn(rows, cols, generator=g) * cols ** -0.5).contiguous()

    tensors = [("token_embd.weight", wtype, rnd(vocab, embd)),
               ("output_norm.weight", "f32", torch.ones(embd)),
               ("output.weight", wtype, rnd(vocab, embd))]
    for i in range(layers):
        p = f"blk.{i}."
        tensors += [(p + "attn_norm.weight", "f32", torch.ones(embd)),
                    (p + "ffn_norm.weight", "f32", torch.ones(embd)),
                    (p + "attn_q.weight", wtype, rnd(embd, embd)),
                    (p + "attn_k.weight", wtype, rnd(kv_heads * hd, embd)),
                    (p + "attn_v.weight", wtype, rnd(kv_heads * hd, embd)),
                    (p + "attn_output.weight", wtype, rnd(embd, embd)),
                    (p + "ffn_gate.weight", wtype, rnd(ff, embd)),
                    (p + "ffn_up.weight", wtype, rnd(ff, embd)),
                    (p + "ffn_down.weight", wtype, rnd(embd, ff))]
    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    pieces += [f"\u2581t{i}" for i in range(vocab - len(pieces))]
    types = [2, 3, 3] + [6] * 256 + [1] * (vocab - 259)
    meta = [("general.architecture", "llama"), ("general.name", f"random-{embd}x{layers}"),
            ("llama.context_length", 2048), ("llama.embedding_length", embd),
            ("llama.block_count", layers), ("llama.feed_forward_length", ff),
            ("llama.attention.head_count", heads), ("llama.attention.head_count_kv", kv_heads),
            ("llama.attention.layer_norm_rms_epsilon", 1e-5), ("llama.rope.freq_base", 10000.0),
            ("llama.rope.dimension_count", hd),
            ("general.file_type", {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7}[wtype]),
            ("general.quantization_version", 2),
            ("tokenizer.ggml.model", "llama"), ("tokenizer.ggml.tokens", pieces),
            ("tokenizer.ggml.scores", [-float(i) for i in range(vocab)]),
            ("tokenizer.ggml.token_type", types), ("tokenizer.ggml.bos_token_id", 1),
            ("tokenizer.ggml.eos_token_id", 2), ("tokenizer.ggml.unknown_token_id", 0)]
    _C.gguf_write(str(path), meta, tensors)
    bytes_per_weight = {"f32": 4, "f16": 2, "q8_0": 34 / 32, "q4_0": 18 / 32}[wtype]
    per_token = sum(t.numel() for n, _, t in tensors if n != "token_embd.weight" and t.dim() == 2)
    return per_token * bytes_per_weight


def read_bandwidth():
    a = torch.ones(256 * 1024 * 1024)  # 1 GiB
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        a.sum()
        best = max(best, a.numel() * 4 / (time.perf_counter() - t))
    return best


def time_keel(path, threads, ids, n_decode):
    s = _C.LlamaSession(str(path), threads)
    t = time.perf_counter()
    s.forward(ids[:-1])
    prefill = time.perf_counter() - t
    t = time.perf_counter()
    nxt = ids[-1]
    for _ in range(n_decode):
        nxt = int(s.forward([nxt]).argmax())
    return dict(prefill_s=prefill, prompt_tokens=len(ids) - 1,
                decode_s=time.perf_counter() - t, decode_tokens=n_decode)


def time_llamacpp(path, threads, ids, n_decode):
    r = subprocess.run(["node", str(ROOT / "llamacpp" / "time_llamacpp.mjs"), str(path),
                        str(threads), json.dumps(ids), str(n_decode)],
                       capture_output=True, text=True, cwd=ROOT / "llamacpp", timeout=1800)
    if r.returncode != 0:
        raise SystemExit(f"llama.cpp run failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="small,1b")
    ap.add_argument("--types", default="q8_0,q4_0")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--dir", default="/var/tmp")
    args = ap.parse_args()
    if not (ROOT / "llamacpp" / "node_modules" / "node-llama-cpp").exists():
        subprocess.run(["npm", "install", "--omit=optional", "--no-audit", "--no-fund"],
                       cwd=ROOT / "llamacpp", check=True)
    torch.set_num_threads(os.cpu_count())  # the bound uses every core's bandwidth
    bw = read_bandwidth()  # and measured again before every cell: the best of the run counts
    ids = [1] + [259 + (i * 37) % 3000 for i in range(args.prompt)]
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        for model in args.models.split(","):
            for wtype in args.types.split(","):
                path = pathlib.Path(d) / f"{model}-{wtype}.gguf"
                weight_bytes = write_model(path, wtype, **SHAPES[model])
                for threads in [int(x) for x in args.threads.split(",")]:
                    bw = max(bw, read_bandwidth())
                    res = {"keel": [], "llama.cpp": []}
                    for _ in range(args.runs):
                        res["keel"].append(time_keel(path, threads, ids, args.decode))
                        res["llama.cpp"].append(time_llamacpp(path, threads, ids, args.decode))
                    med = {}
                    for eng, runs in res.items():
                        pp = statistics.median(r["prompt_tokens"] / r["prefill_s"] for r in runs)
                        tg = statistics.median(r["decode_tokens"] / r["decode_s"] for r in runs)
                        med[eng] = (pp, tg)
                    rows.append((model, wtype, threads, med, weight_bytes))
                    print(f"{model} {wtype} t{threads}: keel pp {med['keel'][0]:.1f} tg "
                          f"{med['keel'][1]:.2f} | llama.cpp pp {med['llama.cpp'][0]:.1f} tg "
                          f"{med['llama.cpp'][1]:.2f} | bound tg {bw / weight_bytes:.2f}", flush=True)
                path.unlink()
    print(f"\nread bandwidth {bw / 1e9:.1f} GB/s (torch.sum, {torch.get_num_threads()} threads, best "
          f"of the run); "
          f"prompt {args.prompt} tokens, decode {args.decode} tokens, {args.runs} runs, medians")
    print(f"{'model':6} {'type':5} {'thr':>3} | {'prefill tok/s':>22} | {'decode tok/s':>22} | "
          f"{'bound':>6} {'keel/bound':>10}")
    print(f"{'':16} | {'keel':>7} {'llama.cpp':>9} {'ratio':>5} | {'keel':>7} {'llama.cpp':>9} "
          f"{'ratio':>5} |")
    for model, wtype, threads, med, weight_bytes in rows:
        (kp, kt), (lp, lt) = med["keel"], med["llama.cpp"]
        bound = bw / weight_bytes
        print(f"{model:6} {wtype:5} {threads:3} | {kp:7.1f} {lp:9.1f} {kp / lp:5.2f} | {kt:7.2f} "
              f"{lt:9.2f} {kt / lt:5.2f} | {bound:6.2f} {kt / bound:9.0%}")


if __name__ == "__main__":
    os.environ.setdefault("KEEL_LOG_LEVEL", "warn")
    main()
