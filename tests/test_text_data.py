"""Text calibration / validation data: a .txt file tokenised with a tokenizer.json or a WordPiece
vocab.txt fills a BERT-style model's inputs (tests/fixtures/text: a 56-token vocabulary)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

pytest.importorskip("tokenizers")

from vitc.cli import main  # noqa: E402
from vitc.core.errors import VitcInputError  # noqa: E402
from vitc.runtime.data import load_dataset  # noqa: E402

TEXT = Path(__file__).parent / "fixtures" / "text"
BERT = Path(__file__).parent / "fixtures" / "exporters" / "hf_bert_eager_legacy_op17.onnx"


def test_text_fills_ids_mask_and_types_with_labels():
    data = load_dataset(TEXT / "sentences.txt", onnx.load(str(BERT)), tokenizer=TEXT / "vocab.txt")
    assert data.size == 6 and list(data.labels) == [1, 0, 1, 0, 1, 0]
    ids, mask, types = (data.feeds[k] for k in ("input_ids", "attention_mask", "token_type_ids"))
    assert ids.shape == mask.shape == types.shape and ids.dtype == np.int64
    vocab = (TEXT / "vocab.txt").read_text().split()
    # [CLS] the cat sat on the mat . [SEP], padded to the longest line
    assert [vocab[i] for i in ids[0][:9]] == ["[CLS]", "the", "cat", "sat", "on", "the", "mat", ".", "[SEP]"]
    assert mask[0].sum() == 9 and ids[0][9:].sum() == 0 and not types.any()
    assert ids.shape[1] == mask.sum(axis=1).max()            # dynamic sequence: the longest line
    assert "compile" in vocab and vocab.index("##rs") in ids[4]   # WordPiece split of "compilers"


def test_tokenizer_is_found_beside_the_text(tmp_path):
    for name in ("sentences.txt", "vocab.txt"):
        (tmp_path / name).write_bytes((TEXT / name).read_bytes())
    data = load_dataset(tmp_path / "sentences.txt", onnx.load(str(BERT)))
    assert data.size == 6


@pytest.mark.parametrize("setup,words", [
    ("no-tokenizer", "no tokenizer for"),
    ("bad-vocab", "cannot read tokenizer"),
    ("tokenizer-for-npz", "--tokenizer applies to text data"),
])
def test_text_data_errors(tmp_path, setup, words):
    text = tmp_path / "s.txt"
    text.write_text("hello world\n")
    tok = None
    if setup == "bad-vocab":
        tok = tmp_path / "vocab.txt"
        tok.write_text("just\nwords\n")
    if setup == "tokenizer-for-npz":
        text = tmp_path / "d.npz"
        np.savez(text, input_ids=np.zeros((1, 4), np.int64))
        tok = TEXT / "vocab.txt"
    with pytest.raises(VitcInputError, match=words):
        load_dataset(text, onnx.load(str(BERT)), tokenizer=tok)


def test_validate_on_text_from_the_cli(tmp_path, capsys):
    assert main(["-q", "compile", str(BERT), "-o", str(tmp_path), "--target", "none"]) == 0
    cand = next(tmp_path.glob("*.vitc.onnx"))
    assert main(["validate", str(BERT), str(cand), "--inputs", str(TEXT / "sentences.txt"), "--tokenizer",
                 str(TEXT / "vocab.txt"), "--labels"]) == 0
    out = capsys.readouterr().out
    assert "validated on 6 samples" in out and "PASSED" in out
