"""The page's tokenizer (web/src/tokenizer.js) gives transformers' CLIPTokenizer ids exactly.

The text encoder sees the same ids in the page and in Python only if BOS/EOS, truncation to
77 and padding match transformers with padding="max_length", max_length=77,
truncation=True. The tokenizer files come from the real stage (stages/tokenizer.py); the
ids are compared in Node and, through the esbuild bundle the page will use, in Chromium.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from transformers import CLIPTokenizer, CLIPTokenizerFast

from stages.engine import config, dag
from stages import tokenizer

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "web"
CHROMIUM = Path("/usr/bin/chromium")
BOS, EOS = 49406, 49407

if not (WEB / "node_modules" / "@mlc-ai" / "web-tokenizers").is_dir():
    pytest.skip("web/node_modules is missing; fix: (cd web && npm ci)", allow_module_level=True)


def _words(n: int) -> str:
    vocab = ["a", "majestic", "castle", "on", "the", "hill", "at", "sunset,", "oil", "painting",
             "by", "Greg", "Rutkowski", "trending", "ArtStation", "highly-detailed", "8k",
             "bokeh", "(masterpiece)", "café", "🙂", "dragon's", "fire", "&", "ice!"]
    rnd = random.Random(0)
    return " ".join(rnd.choice(vocab) for _ in range(n))


PROMPTS = {
    "empty": "",
    "simple": "a photo of a cat",
    "punctuation": "Hello, World!!! ... ?!;: (foo) [bar] {baz} -- 'quoted' \"double\" #tag @x",
    "uppercase": "A PHOTO OF AN ASTRONAUT Riding A Horse ON MARS",
    "spaces": "multiple    spaces\tand\ttabs\nand\n\nnewlines   ",
    "edges": "   leading and trailing   ",
    "unicode": "café naïve Zürich Ελληνικά русский 東京 日本語 한국어 עברית",
    "emoji": "🙂🚀 a 🏳️‍🌈 flag and a family 👩‍👩‍👧 🇯🇵",
    "nfd": "cafe\u0301 and Å vs A\u030a",
    "contractions": "don't it's we're I'll you've she'd I'M",
    "numbers": "1234567890 3.14159 1,000,000 v1.5 SD2",
    "eot": "<|endoftext|>",
    "eot_inside": "a cat <|endoftext|> a dog<|endoftext|>x",
    "sot_inside": "<|startoftext|>hello <|startoftext|>",
    "eot_many": "<|endoftext|>" * 100,
    "words_74": "word " * 74,
    "words_75": "word " * 75,
    "words_76": "word " * 76,
    "emoji_long": "🙂" * 60,
    "words_500": _words(500),
}


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    """tokenizer.json + tokenizer_config.json made by the real tokenizer stage."""
    cfg = config.load("tiny", "llvm", None)
    spec = dag.spec(cfg, "tokenizer")
    out = tmp_path_factory.mktemp("tokenizer")
    tokenizer.run(spec.inputs, {name: out / path.name for name, path in spec.outputs.items()},
                  spec.config)
    return out


def reference(directory: Path, prompts: list[str]) -> list[list[int]]:
    ids = []
    for cls in (CLIPTokenizer, CLIPTokenizerFast):
        tok = cls.from_pretrained(str(directory), local_files_only=True)
        ids.append(tok(prompts, padding="max_length", max_length=77, truncation=True).input_ids)
    assert ids[0] == ids[1]
    return ids[0]


def run_js(script: str, directory: Path, prompts: list[str]) -> list[list[int]]:
    node = shutil.which("node")
    assert node, "node is not on PATH"
    proc = subprocess.run([node, str(WEB / "test" / script), str(directory)],
                          input=json.dumps(prompts), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout)


def check_same(js: list[list[int]], ref: list[list[int]], names: list[str]) -> None:
    assert len(js) == len(ref) == len(names)
    bad = {n: (j, r) for n, j, r in zip(names, js, ref) if j != r}
    assert not bad, f"ids differ from transformers for {sorted(bad)}: {bad}"


def test_reference_is_what_we_expect(tok_dir):
    """The things the page relies on, seen in transformers itself."""
    ref = dict(zip(PROMPTS, reference(tok_dir, list(PROMPTS.values()))))
    assert all(len(ids) == 77 for ids in ref.values())
    assert ref["simple"][:7] == [BOS, 320, 1125, 539, 320, 2368, EOS]
    assert ref["empty"] == [BOS] + [EOS] * 76            # SD v1.5 pads with <|endoftext|>
    long = ref["words_500"]
    assert long[0] == BOS and long[-1] == EOS and EOS not in long[1:-1]
    assert ref["words_75"][76] == EOS and ref["words_76"][76] == EOS


def test_node_ids_equal_transformers(tok_dir):
    names, prompts = list(PROMPTS), list(PROMPTS.values())
    check_same(run_js("tokenize.mjs", tok_dir, prompts), reference(tok_dir, prompts), names)


def test_pad_token_comes_from_the_config(tok_dir, tmp_path):
    """A CLIP tokenizer that pads with "!" (id 0, as SD 2.x does) pads with 0 in the page too."""
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(tok_dir / name, tmp_path / name)
    cfg_path = tmp_path / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["pad_token"] = "!"
    cfg_path.write_text(json.dumps(cfg))
    prompts = ["a photo of a cat", "", "word " * 80]
    ref = reference(tmp_path, prompts)
    assert ref[0][7:] == [0] * 70
    check_same(run_js("tokenize.mjs", tmp_path, prompts), ref, ["simple", "empty", "long"])


def test_bad_config_refused(tok_dir, tmp_path):
    shutil.copyfile(tok_dir / "tokenizer.json", tmp_path / "tokenizer.json")
    cfg = json.loads((tok_dir / "tokenizer_config.json").read_text())
    cfg["pad_token"] = "not one token"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    proc = subprocess.run([shutil.which("node"), str(WEB / "test" / "tokenize.mjs"),
                           str(tmp_path)], input="[]", capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert 'pad_token "not one token" is not a token of tokenizer.json' in proc.stderr


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium; fix: apt-get install "
                    "chromium (.ci/run does)")
@pytest.mark.long
def test_browser_bundle_ids_equal_transformers(tok_dir):
    names, prompts = list(PROMPTS), list(PROMPTS.values())
    check_same(run_js("tokenizer_in_chromium.mjs", tok_dir, prompts),
               reference(tok_dir, prompts), names)
