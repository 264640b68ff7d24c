"""CLIP's real vocabulary, from the BPE merges open-clip-torch ships, in Hugging Face's files.

`bpe_simple_vocab_16e6.txt.gz` holds OpenAI CLIP's merges; its first 48894 (49152 - 256 - 2)
define the 49408-token vocabulary SD 1.5's tokenizer uses: every byte symbol alone and
word-final, one token per merge, then <|startoftext|> and <|endoftext|> (as open_clip's
SimpleTokenizer and transformers' CLIPTokenizer both build it). The file is found without
importing open_clip (which would import torch and torchvision).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

from hexfleet.errors import InvalidRequest, ModelError
from hexfleet.models.clip_tokenizer import END, START, WORD_END, byte_to_unicode
from hexfleet.models.sd15.config import CLIP_VOCAB_SIZE

BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
MERGE_COUNT = 49152 - 256 - 2


def open_clip_merges_file() -> Path:
    """open-clip-torch's merges file (the `export` extra installs it)."""
    spec = importlib.util.find_spec("open_clip")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / BPE_FILE
        if path.is_file():
            return path
    raise InvalidRequest(
        f"CLIP's merges ({BPE_FILE}) come from open-clip-torch, which is not installed: "
        "pip install --no-deps open-clip-torch (its torchvision would break the CPU torch)"
    )


def read_merges(path: Path) -> list[tuple[str, str]]:
    """The merges that make CLIP's vocabulary, in rank order."""
    try:
        lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise ModelError(f"{path} is not a gzipped BPE merges file: {err}") from err
    merges = [tuple(line.split()) for line in lines[1 : MERGE_COUNT + 1]]
    if len(merges) != MERGE_COUNT or any(len(m) != 2 for m in merges):
        raise ModelError(f"{path} does not hold CLIP's {MERGE_COUNT} merges")
    return merges  # type: ignore[return-value]


def clip_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """Token → id, in the order CLIP numbers them."""
    symbols = list(byte_to_unicode().values())
    tokens = [*symbols, *(s + WORD_END for s in symbols), *("".join(m) for m in merges), START, END]
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != CLIP_VOCAB_SIZE:
        raise ModelError(f"CLIP's vocabulary has {len(vocab)} distinct tokens, not 49408")
    return vocab


def write_vocab_files(folder: Path, merges_file: Path | None = None) -> tuple[Path, Path]:
    """vocab.json and merges.txt as transformers' CLIPTokenizer reads them."""
    merges = read_merges(merges_file or open_clip_merges_file())
    folder.mkdir(parents=True, exist_ok=True)
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    vocab_path.write_text(json.dumps(clip_vocab(merges), ensure_ascii=False), encoding="utf-8")
    merges_path.write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
    )
    return vocab_path, merges_path
