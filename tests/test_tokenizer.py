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
