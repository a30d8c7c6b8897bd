"""keel's SentencePiece-BPE tokenizer against libsentencepiece (Debian's sentencepiece and
python3-sentencepiece): a BPE model trained with spm_train on a real corpus, its vocabulary
written to GGUF with keel's writer, identical ids on every line of held-out text."""

import pathlib
import subprocess

import pytest

from keel import _C

spm = pytest.importorskip("sentencepiece")  # installed by scripts/install-deps.sh

FORTUNES = pathlib.Path("/usr/share/games/fortunes")


def train(tmp_path, vocab=800, coverage=0.9995):
    corpus = tmp_path / "train.txt"
    corpus.write_bytes((FORTUNES / "computers").read_bytes() + (FORTUNES / "people").read_bytes())
    prefix = tmp_path / "spm"
    subprocess.run(["spm_train", f"--input={corpus}", f"--model_prefix={prefix}",
                    f"--vocab_size={vocab}", "--model_type=bpe", "--byte_fallback=true",
                    "--normalization_rule_name=identity", "--remove_extra_whitespaces=false",
                    f"--character_coverage={coverage}", "--minloglevel=2"],
                   check=True, capture_output=True)
    sp = spm.SentencePieceProcessor(model_file=str(prefix) + ".model")
    types = []
    for i in range(sp.get_piece_size()):
        types.append(2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i)
                     else 5 if sp.is_unused(i) else 1)
    meta = [("general.architecture", "llama"), ("tokenizer.ggml.model", "llama"),
            ("tokenizer.ggml.tokens", [sp.id_to_piece(i) for i in range(sp.get_piece_size())]),
            ("tokenizer.ggml.scores", [float(sp.get_score(i)) for i in range(sp.get_piece_size())]),
            ("tokenizer.ggml.token_type", types),
            ("tokenizer.ggml.bos_token_id", sp.bos_id()),
            ("tokenizer.ggml.eos_token_id", sp.eos_id()),
            ("tokenizer.ggml.unknown_token_id", sp.unk_id())]
    _C.gguf_write(str(tmp_path / "tok.gguf"), meta, [])
    return sp, _C.Tokenizer(str(tmp_path / "tok.gguf"))


def test_ids_identical_to_sentencepiece_on_every_line(tmp_path):
    sp, tok = train(tmp_path)
    held_out = [l for f in ("literature", "fortunes", "definitions")
                for l in (FORTUNES / f).read_text(encoding="utf-8").splitlines()]
    assert len(held_out) > 1000
    mismatches = []
    for line in held_out:
        want = sp.encode(line)
        got = tok.encode(line)
        if got != want:
            mismatches.append((line, want, got))
        assert tok.decode(got).decode("utf-8") == line
    assert not mismatches, f"{len(mismatches)} of {len(held_out)} lines differ; first: " \
                           f"{mismatches[0]}"


def test_byte_fallback_and_bos(tmp_path):
    sp, tok = train(tmp_path, coverage=0.98)
    for text in ["naïve café — 東京 🙂", "tabs\tand\nnewlines", "  two leading spaces", ""]:
        assert tok.encode(text) == sp.encode(text), text
        assert tok.decode(tok.encode(text)).decode("utf-8") == text
    assert tok.encode("hi", add_bos=True)[0] == sp.bos_id()


def test_unsupported_or_broken_vocabularies_are_rejected(tmp_path):
    _C.gguf_write(str(tmp_path / "bert.gguf"), [("tokenizer.ggml.model", "bert"),
                                               ("tokenizer.ggml.tokens", ["a"])], [])
    with pytest.raises(ValueError, match="'bert' is not supported"):
        _C.Tokenizer(str(tmp_path / "bert.gguf"))
    _C.gguf_write(str(tmp_path / "bad.gguf"), [("tokenizer.ggml.model", "llama"),
                                              ("tokenizer.ggml.tokens", ["a", "b"]),
                                              ("tokenizer.ggml.scores", [0.0])], [])
    with pytest.raises(ValueError, match="1 scores for 2 tokens"):
        _C.Tokenizer(str(tmp_path / "bad.gguf"))
    _C.gguf_write(str(tmp_path / "bos.gguf"), [("tokenizer.ggml.model", "llama"),
                                              ("tokenizer.ggml.tokens", ["a"]),
                                              ("tokenizer.ggml.bos_token_id", 5)], [])
    with pytest.raises(ValueError, match="bos_token_id = 5 is outside the 1 tokens"):
        _C.Tokenizer(str(tmp_path / "bos.gguf"))
