"""`keel generate` and `keel quantize` as users run them, on a tiny random-weight LLaMA with a
SentencePiece vocabulary trained on a real corpus; expected tokens come from keel._C's session
and tokenizer (themselves tested against PyTorch and libsentencepiece in python/tests)."""

import pathlib
import subprocess

import pytest
import torch

from keel import _C

spm = pytest.importorskip("sentencepiece")
FORTUNES = pathlib.Path("/usr/share/games/fortunes")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    corpus = d / "corpus.txt"
    corpus.write_bytes((FORTUNES / "computers").read_bytes())
    subprocess.run(["spm_train", f"--input={corpus}", f"--model_prefix={d / 'spm'}",
                    "--vocab_size=600", "--model_type=bpe", "--byte_fallback=true",
                    "--normalization_rule_name=identity", "--remove_extra_whitespaces=false",
                    "--minloglevel=2"], check=True, capture_output=True)
    sp = spm.SentencePieceProcessor(model_file=str(d / "spm.model"))
    n = sp.get_piece_size()
    types = [2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i) else 1
             for i in range(n)]
    meta = [("tokenizer.ggml.model", "llama"),
            ("tokenizer.ggml.tokens", [sp.id_to_piece(i) for i in range(n)]),
            ("tokenizer.ggml.scores", [float(sp.get_score(i)) for i in range(n)]),
            ("tokenizer.ggml.token_type", types),
            ("tokenizer.ggml.bos_token_id", sp.bos_id()),
            ("tokenizer.ggml.eos_token_id", sp.eos_id())]
    path = d / "tiny.gguf"
    write_tiny_llama(path, n, meta)
    return path


def write_tiny_llama(path, n_vocab, tokenizer_meta):
    """A 2-layer random-weight LLaMA over `n_vocab` tokens with the given tokenizer keys."""
    n = n_vocab
    g = torch.Generator().manual_seed(0)
    embd, ff, layers = 64, 128, 2
    w = {"token_embd.weight": torch.randn(n, embd, generator=g),
         "output_norm.weight": torch.ones(embd),
         "output.weight": torch.randn(n, embd, generator=g) * 0.3}
    for i in range(layers):
        for name, shape in [("attn_q", (embd, embd)), ("attn_k", (32, embd)),
                            ("attn_v", (32, embd)), ("attn_output", (embd, embd)),
                            ("ffn_gate", (ff, embd)), ("ffn_up", (ff, embd)),
                            ("ffn_down", (embd, ff))]:
            w[f"blk.{i}.{name}.weight"] = torch.randn(*shape, generator=g) * shape[1] ** -0.5
        w[f"blk.{i}.attn_norm.weight"] = torch.ones(embd)
        w[f"blk.{i}.ffn_norm.weight"] = torch.ones(embd)
    meta = [("general.architecture", "llama"), ("llama.context_length", 256),
            ("llama.embedding_length", embd), ("llama.block_count", layers),
            ("llama.feed_forward_length", ff), ("llama.attention.head_count", 4),
            ("llama.attention.head_count_kv", 2),
            ("llama.attention.layer_norm_rms_epsilon", 1e-5),
            *tokenizer_meta]
    _C.gguf_write(str(path), meta, [(k, "f32", v.contiguous()) for k, v in w.items()])


def generate(keel_bin, *args):
    return subprocess.run([keel_bin, "generate", *args], capture_output=True, timeout=120)


def greedy_text(path, prompt, n, eos=2):  # 2: sentencepiece's default </s>
    tok, s = _C.Tokenizer(str(path)), _C.LlamaSession(str(path))
    ids = tok.encode(prompt, add_bos=True)
    logits = s.forward(ids)
    out = []
    for _ in range(n):
        nxt = int(logits.argmax())
        if nxt == eos:
            break
        out.append(nxt)
        logits = s.forward([nxt])
    return b"".join(tok.piece(t) for t in out)


def test_greedy_generation_streams_the_models_tokens(keel_bin, model):
    r = generate(keel_bin, "--model", str(model), "--prompt", "The computer", "-n", "24",
                 "--temperature", "0", "--threads", "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"The computer")
    assert r.stdout[len(b"The computer"):] == greedy_text(model, "The computer", 24)
    err = r.stderr.decode()
    assert "prompt:" in err and "generation: 24 tokens" in err and "tok/s" in err


def gpt2_byte_chars():
    """GPT-2's byte alphabet: printable Latin-1 bytes are themselves, the rest U+0100.. in order."""
    printable = [b for b in range(256) if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or b >= 0xAE]
    others = [b for b in range(256) if b not in printable]
    table = {b: chr(b) for b in printable}
    table.update({b: chr(0x100 + i) for i, b in enumerate(others)})
    return [table[b] for b in range(256)]


def test_generate_with_a_gpt2_vocabulary(keel_bin, tmp_path):
    tokens = gpt2_byte_chars()
    merges = ["T h", "Th e", "\u0120 c", "o m", "\u0120c om", "p u", "t e"]
    for m in merges:
        tokens.append(m.replace(" ", ""))
    tokens.append("<|endoftext|>")
    eot = len(tokens) - 1
    path = tmp_path / "tiny-gpt2.gguf"
    write_tiny_llama(path, len(tokens), [
        ("tokenizer.ggml.model", "gpt2"), ("tokenizer.ggml.pre", "gpt-2"),
        ("tokenizer.ggml.tokens", tokens), ("tokenizer.ggml.merges", merges),
        ("tokenizer.ggml.token_type", [1] * eot + [3]),
        ("tokenizer.ggml.bos_token_id", eot), ("tokenizer.ggml.eos_token_id", eot)])
    # No BOS (gpt2's default), no leading space: "The", " com", "pu", "te", "r".
    ids = _C.Tokenizer(str(path)).encode("The computer", add_bos=True)
    assert ids == [tokens.index(t) for t in ["The", "\u0120com", "pu", "te", "r"]]
    r = generate(keel_bin, "--model", str(path), "--prompt", "The computer", "-n", "24",
                 "--temperature", "0", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"The computer" + greedy_text(path, "The computer", 24, eos=eot)
    assert "prompt: 5 tokens" in r.stderr.decode()


def test_seeded_sampling_is_reproducible(keel_bin, model):
    args = ["--model", str(model), "--prompt", "Hello", "-n", "30", "--temperature", "1.0",
            "--top-p", "0.95"]
    a = generate(keel_bin, *args, "--seed", "7")
    b = generate(keel_bin, *args, "--seed", "7")
    c = generate(keel_bin, *args, "--seed", "8")
    assert a.returncode == 0 and a.stdout == b.stdout
    assert a.stdout != c.stdout
    assert "seed: 7" in a.stderr.decode()


def test_stop_strings_end_the_output_before_them(keel_bin, model):
    full = greedy_text(model, "The computer", 24)
    stop = full[6:9].decode("utf-8", errors="ignore")
    assert stop.strip(), full
    r = generate(keel_bin, "--model", str(model), "--prompt", "The computer", "-n", "24",
                 "--temperature", "0", "--stop", stop)
    assert r.returncode == 0, r.stderr
    body = r.stdout[len(b"The computer"):]
    assert body == full[:full.find(stop.encode())]
    assert "stopped: stop string" in r.stderr.decode()


def test_quantize_then_generate(keel_bin, model, tmp_path):
    for t in ("q8_0", "q4_0", "f16"):
        out = tmp_path / f"tiny-{t}.gguf"
        r = subprocess.run([keel_bin, "quantize", str(model), str(out), t], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert f"16 of 21 tensors converted to {t}" in r.stdout  # matrices, not norms
        assert out.stat().st_size < model.stat().st_size
        g = generate(keel_bin, "--model", str(out), "--prompt", "The computer", "-n", "8",
                     "--temperature", "0")
        assert g.returncode == 0 and g.stdout.startswith(b"The computer"), g.stderr
    # Q8_0 stays close to the float32 model.
    ref = _C.LlamaSession(str(model)).forward(list(range(3, 60)), all_logits=True)
    q8 = _C.LlamaSession(str(tmp_path / "tiny-q8_0.gguf")).forward(list(range(3, 60)),
                                                                  all_logits=True)
    assert (ref.argmax(-1) == q8.argmax(-1)).float().mean() >= 0.9


def test_bad_flags_and_files_are_rejected_with_the_reason(keel_bin, model, tmp_path):
    for args, code, needle in [
        (["--prompt", "x"], 2, "--model is required"),
        (["--model", str(model), "--prompt", "x", "--top-p", "2"], 2, "--top-p"),
        (["--model", str(model), "--prompt", "x", "--temperature", "-1"], 2, "--temperature"),
        (["--model", str(model), "--prompt", "x", "--stop", ""], 2, "empty stop string"),
        (["--model", str(model), "--prompt", "x", "-n", "abc"], 2, "-n"),
    ]:
        r = generate(keel_bin, *args)
        assert r.returncode == code, (args, r.stderr)
        assert needle in r.stderr.decode(), (args, r.stderr)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 7)
    r = generate(keel_bin, "--model", str(junk), "--prompt", "x")
    assert r.returncode == 1 and b"truncated" in r.stderr
    r = subprocess.run([keel_bin, "quantize", str(junk), str(tmp_path / "o.gguf"), "q8_0"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "keel quantize:" in r.stderr
    r = subprocess.run([keel_bin, "quantize", str(model), str(tmp_path / "o.gguf"), "q5_k"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "type" in r.stderr
