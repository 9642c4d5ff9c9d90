"""tokenizer: the CLIP tokenizer as tokenizer.json + tokenizer_config.json.

For the embedded model it is made offline from the real CLIP BPE merges that ship inside the
open-clip-torch wheel: the byte-level alphabet, its end-of-word forms and the merges, in the
order CLIP assigns ids, then <|startoftext|> = 49406 and <|endoftext|> = 49407. For a local
model it is that model's tokenizer. Both are saved by transformers, so Python (CLIPTokenizer)
and the page (tokenizer.json) read one vocabulary; tokenizer.json also carries CLIP's
truncation and padding to the text encoder's length, so it alone gives the ids.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
from pathlib import Path

from stages.engine.rule import Rule, Spec, model_files

# CLIP's vocabulary: 256 byte symbols, their 256 end-of-word forms, 48,894 merges, 2 specials.
NUM_MERGES = 49152 - 256 - 2
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def byte_alphabet() -> list[str]:
    """The 256 printable stand-ins for bytes used by byte-level BPE, in byte order of CLIP ids.

    Printable Latin-1 bytes stand for themselves; the others are mapped, in order, to code
    points from 256 upwards, so that no byte becomes whitespace or a control character.
    """
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    codes, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def vocab_and_merges(bpe_gz: Path) -> tuple[dict[str, int], list[str]]:
    lines = gzip.decompress(bpe_gz.read_bytes()).decode("utf-8").split("\n")
    merges = lines[1:NUM_MERGES + 1]   # line 0 is a version header
    symbols = byte_alphabet()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    tokens += [BOS, EOS]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def clip_vocab() -> Path:
    """The CLIP BPE vocabulary shipped inside the open-clip-torch wheel (read, never imported)."""
    import importlib.metadata

    try:
        dist = importlib.metadata.distribution("open-clip-torch")
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError("open-clip-torch is not installed; fix: pip install --no-deps "
                                "open-clip-torch (it carries the CLIP BPE vocabulary)") from None
    return Path(dist.locate_file("open_clip/bpe_simple_vocab_16e6.txt.gz"))


def spec(r: Rule) -> Spec:
    """The local model's tokenizer files, or the CLIP vocabulary, in; tokenizer.json out."""
    model_dir = r.cfg.pretrained_path
    inputs = (model_files(model_dir / "tokenizer", (".json", ".txt"))
              if model_dir else {"vocab": clip_vocab()})
    names = ("tokenizer.json", "tokenizer_config.json")
    return r.spec(inputs, {n: r.common / n for n in names},
                  {"max_length": r.cfg.model["text_encoder"]["max_position_embeddings"],
                   "pretrained": bool(model_dir)})


def run(inputs: dict[str, Path], outputs: dict[str, Path], cfg: dict) -> None:
    from transformers import CLIPTokenizer

    if cfg["pretrained"]:
        source = next(iter(inputs.values())).parent
        tokenizer = CLIPTokenizer.from_pretrained(str(source), local_files_only=True)
    else:
        vocab, merges = vocab_and_merges(inputs["vocab"])
        tokenizer = CLIPTokenizer(vocab=vocab, merges=[tuple(m.split()) for m in merges],
                                  bos_token=BOS, eos_token=EOS, unk_token=EOS, pad_token=EOS)
    tokenizer.model_max_length = cfg["max_length"]
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        _pad_and_truncate(Path(tmp) / "tokenizer.json", tokenizer, cfg["max_length"])
        for name, dst in outputs.items():
            shutil.copyfile(Path(tmp) / name, dst)


def _pad_and_truncate(path: Path, tokenizer, length: int) -> None:
    """tokenizer.json encodes as CLIPTokenizer(padding="max_length", truncation=True) does:
    any `tokenizers`-based reader gets the text encoder's `length` ids from the file alone."""
    from tokenizers import Tokenizer

    fast = Tokenizer.from_file(str(path))
    fast.enable_truncation(length)
    fast.enable_padding(length=length, pad_id=tokenizer.pad_token_id,
                        pad_token=tokenizer.pad_token)
    fast.save(str(path))
