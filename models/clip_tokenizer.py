"""CLIP's byte-level BPE tokenizer (Stable Diffusion's), read from `vocab.json` + `merges.txt`.

Written from the algorithm (clean the text with ftfy as CLIP and transformers do, lower-case,
split into letter runs / single digits / punctuation runs / contractions, map bytes to printable
characters, merge the best-ranked pair until none applies); no `regex` dependency: Unicode letter
and number classes come from `unicodedata`. It gives the ids transformers' CLIPTokenizer gives
(tests/models/test_clip_tokenizer_fidelity.py), truncation to max_length included.
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import lru_cache
from pathlib import Path

import ftfy
import numpy as np

from hexfleet.errors import ModelError

START = "<|startoftext|>"
END = "<|endoftext|>"
CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")
WORD_END = "</w>"


@lru_cache(maxsize=1)
def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (no spaces or controls)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    codes = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, codes, strict=True)}


def _kind(char: str) -> str:
    if char.isspace():
        return "space"
    category = unicodedata.category(char)
    if category.startswith("L"):
        return "letter"
    if category.startswith("N"):
        return "number"
    return "other"


def clean(text: str) -> str:
    """CLIP's text cleaning: ftfy's fixes (mojibake, NFC, ligatures, full-width forms, control
    characters), whitespace runs to one space, lower case."""
    return re.sub(r"\s+", " ", ftfy.fix_text(text)).strip().lower()


def pre_tokenize(text: str) -> list[str]:
    """Split cleaned text like CLIP's pattern: specials, contractions, \\p{L}+, \\p{N}, others+."""
    text = clean(text)
    pieces: list[str] = []
    i = 0
    while i < len(text):
        special = next((s for s in (START, END) if text.startswith(s, i)), None)
        contraction = next((c for c in CONTRACTIONS if text.startswith(c, i)), None)
        kind = _kind(text[i])
        if special or contraction:
            token = special or contraction or ""
        elif kind == "space":
            i += 1
            continue
        elif kind == "number":
            token = text[i]
        else:
            j = i + 1
            while j < len(text) and _kind(text[j]) == kind:
                j += 1
            token = text[i:j]
        pieces.append(token)
        i += len(token)
    return pieces


class CLIPTokenizer:
    """Prompts → int64 ids of fixed length: <|startoftext|> pieces <|endoftext|> pad..."""

    def __init__(
        self,
        vocab: dict[str, int],
        merges: list[tuple[str, str]],
        max_length: int = 77,
        pad_token: str = END,
    ) -> None:
        for token in (START, END, pad_token):
            if token not in vocab:
                raise ModelError(f"CLIP vocabulary lacks the special token {token!r}")
        self.vocab = vocab
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.max_length = max_length
        self.start_id = vocab[START]
        self.end_id = vocab[END]
        self.pad_id = vocab[pad_token]
        self._cache: dict[str, list[str]] = {START: [START], END: [END]}

    @classmethod
    def from_dir(cls, folder: str | Path, max_length: int = 77) -> CLIPTokenizer:
        """Read a Hugging Face `tokenizer/` folder (vocab.json, merges.txt, optional maps)."""
        folder = Path(folder)
        maps = [folder / n for n in ("special_tokens_map.json", "tokenizer_config.json")]
        return cls.from_files(
            folder / "vocab.json",
            folder / "merges.txt",
            [m for m in maps if m.is_file()],
            max_length=max_length,
        )

    @classmethod
    def from_files(
        cls,
        vocab_path: Path,
        merges_path: Path,
        token_maps: list[Path] | None = None,
        max_length: int = 77,
    ) -> CLIPTokenizer:
        """Read vocab.json + merges.txt; `token_maps` (special_tokens_map.json...) give the pad."""
        try:
            vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
            lines = merges_path.read_text(encoding="utf-8").splitlines()
        except (OSError, ValueError) as err:
            raise ModelError(f"cannot read the CLIP tokenizer {vocab_path.parent}: {err}") from err
        merges = []
        for number, line in enumerate(lines, start=1):
            if not line.strip() or line.startswith("#version"):
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ModelError(f"{merges_path.name} line {number} is not a pair: {line!r}")
            merges.append((parts[0], parts[1]))
        pad = _pad_token(token_maps or [])
        return cls(vocab, merges, max_length=max_length, pad_token=pad)

    def bpe(self, piece: str) -> list[str]:
        """The BPE symbols of one pre-tokenized piece (already byte-mapped)."""
        cached = self._cache.get(piece)
        if cached is not None:
            return cached
        word = [*piece[:-1], piece[-1] + WORD_END]
        while len(word) > 1:
            pairs = [(word[k], word[k + 1]) for k in range(len(word) - 1)]
            best = min(pairs, key=lambda pair: self.ranks.get(pair, len(self.ranks)))
            if best not in self.ranks:
                break
            merged: list[str] = []
            k = 0
            while k < len(word):
                if k < len(word) - 1 and (word[k], word[k + 1]) == best:
                    merged.append(word[k] + word[k + 1])
                    k += 2
                else:
                    merged.append(word[k])
                    k += 1
            word = merged
        self._cache[piece] = word
        return word

    def _symbols(self, text: str) -> list[tuple[str, list[str]]]:
        mapping = byte_to_unicode()
        out = []
        for piece in pre_tokenize(text):
            if piece in (START, END):
                out.append((piece, [piece]))
                continue
            mapped = "".join(mapping[b] for b in piece.encode("utf-8"))
            out.append((piece, self.bpe(mapped)))
        return out

    def unknown_words(self, text: str) -> list[str]:
        """Pieces with a symbol outside the vocabulary (only an incomplete vocabulary has any)."""
        return [
            piece
            for piece, symbols in self._symbols(text)
            if any(s not in self.vocab for s in symbols)
        ]

    def tokens(self, text: str) -> list[int]:
        """Ids of the text without start/end/padding; unknown symbols become <|endoftext|>."""
        return [
            self.vocab.get(s, self.end_id) for _, symbols in self._symbols(text) for s in symbols
        ]

    def encode(self, text: str) -> np.ndarray:
        """Int64 ids of shape (max_length,): a longer prompt is cut to fit, end token kept (as
        Stable Diffusion's pipelines do: the text encoder sees its first max_length - 2)."""
        body = self.tokens(text)[: self.max_length - 2]
        ids = np.full(self.max_length, self.pad_id, dtype=np.int64)
        ids[: len(body) + 2] = [self.start_id, *body, self.end_id]
        return ids


def _pad_token(maps: list[Path]) -> str:
    """SD 1.x pads with <|endoftext|>, SD 2.x with "!": the tokenizer's own maps say which."""
    for path in maps:
        try:
            pad = json.loads(path.read_text(encoding="utf-8")).get("pad_token")
        except (OSError, ValueError) as err:
            raise ModelError(f"cannot read {path}: {err}") from err
        if isinstance(pad, dict):
            pad = pad.get("content")
        if isinstance(pad, str):
            return pad
    return END
