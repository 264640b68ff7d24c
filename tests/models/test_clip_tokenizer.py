"""CLIP BPE tokenizer on a small hand-written vocabulary: pre-tokenizing, merge order, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hexfleet.errors import ModelError
from hexfleet.models.clip_tokenizer import END, START, CLIPTokenizer, byte_to_unicode, pre_tokenize

MERGES = ["r e", "re d</w>", "c i", "ci r", "cir c", "circ l", "circl e</w>", "l o", "lo w</w>"]


def _vocab(merges: list[str]) -> dict[str, int]:
    symbols = list(byte_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + [m.replace(" ", "") for m in merges]
    tokens += [START, END]
    return {token: i for i, token in enumerate(dict.fromkeys(tokens))}


def _write(folder: Path, merges: list[str], vocab: dict[str, int] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab or _vocab(merges)), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder


@pytest.fixture
def tokenizer(tmp_path: Path) -> CLIPTokenizer:
    return CLIPTokenizer.from_dir(_write(tmp_path / "tokenizer", MERGES), max_length=12)


def test_pre_tokenize_follows_clips_pattern() -> None:
    assert pre_tokenize("  A  Red's  cat!?  ") == ["a", "red", "'s", "cat", "!?"]
    assert pre_tokenize("x2024 é-ü") == ["x", "2", "0", "2", "4", "é", "-", "ü"]
    assert pre_tokenize("<|startoftext|>hi<|endoftext|>") == [START, "hi", END]
    assert pre_tokenize("don't") == ["don", "'t"]
    assert pre_tokenize("!'s") == ["!'", "s"]  # the punctuation run is greedy, as in the regex


def test_merges_apply_in_rank_order(tokenizer: CLIPTokenizer) -> None:
    assert tokenizer.bpe("red") == ["red</w>"]
    assert tokenizer.bpe("circle") == ["circle</w>"]
    assert tokenizer.bpe("low") == ["low</w>"]
    assert tokenizer.bpe("lower") == ["lo", "w", "e", "r</w>"]
    other = CLIPTokenizer(_vocab(MERGES), [("o", "w</w>"), ("l", "o")])
    assert other.bpe("low") == ["l", "ow</w>"]  # (o, w</w>) ranks first, then no pair applies


def test_encode_pads_with_end_token(tokenizer: CLIPTokenizer) -> None:
    v = tokenizer.vocab
    ids = tokenizer.encode("Red circle")
    assert ids.dtype == np.int64 and ids.shape == (12,)
    expected = [v[START], v["red</w>"], v["circle</w>"], v[END]] + [v[END]] * 8
    assert ids.tolist() == expected
    assert tokenizer.unknown_words("red circle") == []


def test_pad_token_from_special_tokens_map(tmp_path: Path) -> None:
    folder = _write(tmp_path / "tok", MERGES)
    (folder / "special_tokens_map.json").write_text(json.dumps({"pad_token": "!"}))
    tokenizer = CLIPTokenizer.from_dir(folder, max_length=6)
    assert tokenizer.encode("red")[-1] == tokenizer.vocab["!"]


def test_too_long_prompt_is_cut_to_fit_keeping_the_end_token(tokenizer: CLIPTokenizer) -> None:
    v = tokenizer.vocab
    assert tokenizer.encode("red " * 11).tolist() == [v[START]] + [v["red</w>"]] * 10 + [v[END]]


def test_symbols_outside_an_incomplete_vocabulary_are_reported(tmp_path: Path) -> None:
    vocab = {k: i for i, k in enumerate([START, END, "r", "e", "d</w>", "re", "red</w>"])}
    tokenizer = CLIPTokenizer.from_dir(_write(tmp_path / "t", ["r e", "re d</w>"], vocab))
    assert tokenizer.unknown_words("red zebra") == ["zebra"]
    assert tokenizer.tokens("red zebra")[0] == vocab["red</w>"]
    end, e, r = vocab[END], vocab["e"], vocab["r"]
    assert tokenizer.tokens("zebra") == [end, e, end, r, end]  # z, b, a</w> are unknown


def test_unreadable_tokenizer_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read the CLIP tokenizer"):
        CLIPTokenizer.from_dir(tmp_path)
    folder = _write(tmp_path / "bad", ["r e d"])
    with pytest.raises(ModelError, match="line 2 is not a pair"):
        CLIPTokenizer.from_dir(folder)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_text_round_trips_through_byte_level_symbols(text: str) -> None:
    """With every byte in the vocabulary nothing is unknown, and the symbols spell the text."""
    tokenizer = CLIPTokenizer(_vocab(MERGES), [tuple(m.split()) for m in MERGES])  # type: ignore[misc]
    assert tokenizer.unknown_words(text) == []
    decode = {c: b for b, c in byte_to_unicode().items()}
    inverse = {i: s for s, i in tokenizer.vocab.items()}
    spelled = "".join(inverse[i].replace("</w>", "") for i in tokenizer.tokens(text))
    as_bytes = bytes(decode[c] for c in spelled if c in decode)
    assert as_bytes.decode("utf-8") == "".join(pre_tokenize(text))
