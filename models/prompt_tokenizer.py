"""The tokenizer interface the pipeline needs, and how a manifest's tokenizer kind picks one.

"word" is tiny-sd's word-level tokenizer (models.tiny_sd.tokenizer); "clip-bpe" is CLIP's BPE.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from hexfleet.errors import ModelError
from hexfleet.manifest import TokenizerSpec
from hexfleet.models.clip_tokenizer import CLIPTokenizer


class PromptTokenizer(Protocol):
    """Text → fixed-length int64 ids; reports words it cannot represent."""

    max_length: int

    def encode(self, text: str) -> np.ndarray: ...

    def unknown_words(self, text: str) -> list[str]: ...


def load_tokenizer(spec: TokenizerSpec, paths: dict[str, Path]) -> PromptTokenizer:
    """Build the tokenizer of a manifest from its files (by file name → verified path)."""
    if spec.kind == "word":
        from hexfleet.models.tiny_sd.tokenizer import WordTokenizer

        tokenizer: PromptTokenizer = WordTokenizer.from_file(_one(paths, "vocab.json"))
    else:
        maps = [
            paths[n] for n in ("special_tokens_map.json", "tokenizer_config.json") if n in paths
        ]
        tokenizer = CLIPTokenizer.from_files(
            _one(paths, "vocab.json"), _one(paths, "merges.txt"), maps, max_length=spec.max_length
        )
    if tokenizer.max_length != spec.max_length:
        raise ModelError(
            f"tokenizer max_length is {tokenizer.max_length}, the manifest says {spec.max_length}"
        )
    return tokenizer


def _one(paths: dict[str, Path], name: str) -> Path:
    if name not in paths:
        raise ModelError(f"the tokenizer needs {name}; the manifest lists {sorted(paths)}")
    return paths[name]
