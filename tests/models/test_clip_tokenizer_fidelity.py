"""Our CLIP tokenizer against transformers' CLIPTokenizer on CLIP's real vocabulary and merges.

The vocabulary is SD 1.5's: built from open-clip-torch's `bpe_simple_vocab_16e6.txt.gz`
(models/sd15/vocab.py). Prompts vary case, punctuation, digits, scripts, whitespace and length
(past 77 tokens, where both truncate and keep the end token).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from transformers import CLIPTokenizer as ReferenceTokenizer

from hexfleet.models.clip_tokenizer import CLIPTokenizer
from hexfleet.models.sd15.vocab import write_vocab_files

HANDWRITTEN = [
    "a photo of an astronaut riding a horse on mars",
    "A Photo Of An ASTRONAUT Riding A Horse On MARS",
    "",
    " ",
    "   leading and trailing   ",
    "tabs\tand\nnew\r\nlines",
    "don't stop, it's 3:45 pm; we'll see. they're here, I'm sure you've been",
    "DON'T SHOUT IT'S LOUD",
    "O'Neil's ''quoted'' \"double\" `back`",
    "3.14159 1,000,000 #hashtag @user $100 50% 2024-01-01",
    "x2024 e-u 1st 2nd 3rd 10th",
    "naïve café résumé façade jalapeño",
    "Ångström Øre Æsir Straße İstanbul ǅ",
    "e\u0301 combining accent vs é",
    "ligatures ﬁ ﬂ ﬀ",
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "日本語のテキスト、漢字とかな",
    "中文提示词：一只猫坐在窗台上",
    "한국어 프롬프트",
    "Привет МИР, как дела?",
    "ΑΒΓ αβγ Σίσυφος",
    "عربى مرحبا",
    "हिन्दी मराठी",
    "emoji 🐱🚀✨ test 👍🏽",
    "math ∑ ∫ √ ≤ ≥ ≠ ∞ π",
    "Ⅻ ½ ² ³ ⁴ ①",
    "zero\u200bwidth and nbsp\u00a0here and thin\u2009space",
    "control\x07char and \x1b escape",
    "mojibake: cafÃ© donâ€™t",
    "html &amp; entities &lt;b&gt;",
    "<|startoftext|>hi<|endoftext|>",
    "hello—world – dash … ellipsis",
    "...!!!???,,,;;;::",
    "a,b.c;d:e!f?g",
    "CamelCaseWordsTogether and snake_case_words",
    "https://example.com/path?query=1&x=2",
    "photorealistic, 8k, ultra-detailed, (masterpiece:1.2), [blurry]",
    "a " * 100,
    "astronaut " * 40,
    "1234567890" * 10,
    "🐱" * 90,
]
WORDS = (
    "a the photo painting portrait of an by on in with at astronaut horse cat dog city forest "
    "mountain lake sunset night neon cyberpunk watercolor oil sketch detailed 4k 8k HDR "
    "Greg Rutkowski trending artstation unreal engine octane render bokeh macro lens 35mm f/1.8 "
    "château über crème brûlée ñandú smörgåsbord Ærø Łódź 東京 北京 서울 Москва Αθήνα"
).split()
PUNCTUATION = [",", ".", "!", "?", ";", ":", "-", "'", '"', "(", ")", "[", "]", "...", "&", "/"]
SPACES = [" ", "  ", "\t", "\n", " \u00a0", "\u3000"]


def _generated(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    prompts = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 60)):
            word = rng.choice(WORDS)
            word = rng.choice([word, word.upper(), word.capitalize(), word.lower()])
            if rng.random() < 0.2:
                word += str(rng.randint(0, 99999))
            if rng.random() < 0.25:
                word += rng.choice(PUNCTUATION)
            parts.append(word)
            parts.append(rng.choice(SPACES) if rng.random() < 0.15 else " ")
        prompts.append("".join(parts))
    return prompts


PROMPTS = HANDWRITTEN + _generated(300)


@pytest.fixture(scope="module")
def vocab_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clip-vocab")
    write_vocab_files(folder)
    return folder


def test_same_ids_as_transformers(vocab_folder: Path) -> None:
    reference = ReferenceTokenizer(
        str(vocab_folder / "vocab.json"), str(vocab_folder / "merges.txt"), model_max_length=77
    )
    assert reference.fix_text is not None, "ftfy is a dependency of ours: both clean with it"
    ours = CLIPTokenizer.from_dir(vocab_folder)
    assert len(ours.vocab) == 49408 and ours.end_id == 49407 and ours.start_id == 49406
    differing = []
    truncated = 0
    for prompt in PROMPTS:
        expected = reference(
            prompt, padding="max_length", max_length=77, truncation=True
        ).input_ids
        actual = ours.encode(prompt).tolist()
        if actual != expected:
            differing.append((prompt, expected, actual))
        truncated += len(reference(prompt).input_ids) > 77
    assert not differing, f"{len(differing)} of {len(PROMPTS)} differ; first: {differing[0]}"
    assert len(PROMPTS) >= 300 and truncated >= 20  # the over-long case is well covered


def test_known_ids_of_sd15_vocabulary(vocab_folder: Path) -> None:
    """Ids every SD 1.5 user has seen: the vocabulary is CLIP's, not a lookalike."""
    ids = CLIPTokenizer.from_dir(vocab_folder).encode("a photo of an astronaut riding a horse")
    assert ids[:9].tolist() == [49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558]
    assert ids[9:].tolist() == [49407] * 68
