"""Word-level tokenizer for tiny-sd, reading the vocabulary shipped in vocab.json.

Text is lower-cased, every run of characters outside [a-z0-9] becomes a space, and the words
are looked up; unknown words map to <unk> and are reported. Ids are <bos> words <eos> <pad>...
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hexfleet.errors import InvalidRequest, ModelError

DEFAULT_VOCAB = Path(__file__).with_name("vocab.json")


@dataclass(frozen=True)
class Encoding:
    """Token ids (int64, fixed length) and the words that were not in the vocabulary."""

    ids: np.ndarray
    unknown_words: tuple[str, ...]


class WordTokenizer:
    """Maps prompts to fixed-length int64 id arrays of ``max_length`` (bos, words, eos, pads)."""

    def __init__(
        self,
        tokens: dict[str, int],
        max_length: int,
        pad_token: str = "<pad>",
        bos_token: str = "<bos>",
        eos_token: str = "<eos>",
        unk_token: str = "<unk>",
    ) -> None:
        missing = [t for t in (pad_token, bos_token, eos_token, unk_token) if t not in tokens]
        if missing:
            raise ModelError(f"vocabulary lacks the special tokens {missing}")
        if max_length < 3:
            raise ModelError(f"max_length must be at least 3, got {max_length}")
        self.tokens = dict(tokens)
        self.max_length = max_length
        self.pad_id = tokens[pad_token]
        self.bos_id = tokens[bos_token]
        self.eos_id = tokens[eos_token]
        self.unk_id = tokens[unk_token]

    @classmethod
    def from_file(cls, path: str | Path) -> WordTokenizer:
        try:
            data = json.loads(Path(path).read_text())
            return cls(
                tokens={str(k): int(v) for k, v in data["tokens"].items()},
                max_length=int(data["max_length"]),
                pad_token=data.get("pad_token", "<pad>"),
                bos_token=data.get("bos_token", "<bos>"),
                eos_token=data.get("eos_token", "<eos>"),
                unk_token=data.get("unk_token", "<unk>"),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise ModelError(f"cannot read tokenizer vocabulary {path}: {err}") from err

    @classmethod
    def default(cls) -> WordTokenizer:
        """The tokenizer of the shipped tiny-sd vocabulary."""
        return cls.from_file(DEFAULT_VOCAB)

    @property
    def vocab_size(self) -> int:
        return max(self.tokens.values()) + 1

    @staticmethod
    def words(text: str) -> list[str]:
        """The normalised words of a text: lower case, non-alphanumerics as separators."""
        return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()

    def unknown_words(self, text: str) -> list[str]:
        return [word for word in self.words(text) if word not in self.tokens]

    def encode_with_report(self, text: str) -> Encoding:
        """Ids plus the out-of-vocabulary words (encoded as <unk>); InvalidRequest if too long."""
        words = self.words(text)
        if len(words) > self.max_length - 2:
            raise InvalidRequest(
                f"prompt has {len(words)} words; the tokenizer takes at most "
                f"{self.max_length - 2} (max_length {self.max_length} includes <bos> and <eos>)"
            )
        ids = np.full(self.max_length, self.pad_id, dtype=np.int64)
        body = [self.tokens.get(word, self.unk_id) for word in words]
        ids[: len(body) + 2] = [self.bos_id, *body, self.eos_id]
        unknown = tuple(word for word in words if word not in self.tokens)
        return Encoding(ids=ids, unknown_words=unknown)

    def encode(self, text: str) -> np.ndarray:
        """Int64 ids of shape (max_length,); unknown words become <unk> silently."""
        return self.encode_with_report(text).ids
