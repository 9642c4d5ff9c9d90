"""The tokenizer made from the open-clip-torch BPE file is CLIP's: same ids, same specials."""

import json

from transformers import CLIPTokenizer


def test_real_clip_ids(built):
    ws, _ = built
    tok = CLIPTokenizer.from_pretrained(str(ws / "build/tiny/model/tokenizer"))
    assert len(tok) == 49408
    # ids published with CLIP for this prompt
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    ids = tok(" ".join(["word"] * 500), padding="max_length", max_length=77,
              truncation=True).input_ids
    assert len(ids) == 77 and ids[0] == 49406 and ids[-1] == 49407
    data = json.loads((ws / "build/tiny/model/tokenizer/tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    assert len(vocab) == 49408 and len(data["model"]["merges"]) == 48894
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    assert vocab["a</w>"] == 320 and vocab["!"] == 0


def test_tokenizer_json_alone_gives_the_77_ids(built):
    """Any `tokenizers` reader of dist's tokenizer.json pads and truncates as CLIPTokenizer
    with padding="max_length", truncation=True does (the ids the page and the runner feed)."""
    from tokenizers import Tokenizer

    ws, _ = built
    fast = Tokenizer.from_file(str(ws / "dist/tiny/llvm/tokenizer.json"))
    tok = CLIPTokenizer.from_pretrained(str(ws / "build/tiny/model/tokenizer"))
    for prompt in ("", "a photo of a cat", " ".join(["word"] * 500)):
        ids = fast.encode(prompt).ids
        assert len(ids) == 77
        assert ids == tok(prompt, padding="max_length", max_length=77,
                          truncation=True).input_ids
