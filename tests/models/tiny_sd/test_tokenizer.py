"""The word-level tokenizer: fixed-length ids, normalisation, unknown words, length limit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hexfleet.errors import InvalidRequest, ModelError
from hexfleet.models.tiny_sd.tokenizer import WordTokenizer
from hexfleet.models.tiny_sd.world import all_scenes, prompt_for


def test_encodes_every_world_prompt_without_unknown_words() -> None:
    tokenizer = WordTokenizer.default()
    for scene in all_scenes():
        encoding = tokenizer.encode_with_report(prompt_for(scene))
        assert encoding.unknown_words == ()
        assert encoding.ids.dtype == np.int64
        assert encoding.ids.shape == (tokenizer.max_length,)
        assert tokenizer.unk_id not in encoding.ids


def test_layout_bos_words_eos_pads() -> None:
    tokenizer = WordTokenizer.default()
    ids = tokenizer.encode("a red circle")
    t = tokenizer.tokens
    assert list(ids[:5]) == [tokenizer.bos_id, t["a"], t["red"], t["circle"], tokenizer.eos_id]
    assert (ids[5:] == tokenizer.pad_id).all()
    empty = tokenizer.encode("")
    assert list(empty[:2]) == [tokenizer.bos_id, tokenizer.eos_id]
    assert (empty[2:] == tokenizer.pad_id).all()


def test_case_and_punctuation_are_normalised() -> None:
    tokenizer = WordTokenizer.default()
    assert np.array_equal(
        tokenizer.encode("A RED circle, on the left!"), tokenizer.encode("a red circle on the left")
    )


def test_unknown_words_map_to_unk_and_are_reported() -> None:
    tokenizer = WordTokenizer.default()
    encoding = tokenizer.encode_with_report("a magenta circle")
    assert encoding.unknown_words == ("magenta",)
    assert encoding.ids[2] == tokenizer.unk_id
    assert tokenizer.unknown_words("a Magenta blob") == ["magenta", "blob"]


def test_too_long_prompt_is_a_clear_error() -> None:
    tokenizer = WordTokenizer.default()
    tokenizer.encode(" ".join(["red"] * (tokenizer.max_length - 2)))
    with pytest.raises(InvalidRequest, match="at most"):
        tokenizer.encode(" ".join(["red"] * (tokenizer.max_length - 1)))


def test_from_file_and_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "vocab.json"
    path.write_text(
        json.dumps(
            {"max_length": 5, "tokens": {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3, "hi": 4}}
        )
    )
    tokenizer = WordTokenizer.from_file(path)
    assert list(tokenizer.encode("hi")) == [1, 4, 2, 0, 0]
    path.write_text(json.dumps({"max_length": 5, "tokens": {"hi": 0}}))
    with pytest.raises(ModelError):
        WordTokenizer.from_file(path)
    path.write_text("{not json")
    with pytest.raises(ModelError):
        WordTokenizer.from_file(path)
    with pytest.raises(ModelError):
        WordTokenizer.from_file(tmp_path / "missing.json")
