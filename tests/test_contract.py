"""The facts Python and the page share are written once (stages/runtime/contract.py) and reach
the page through manifest.json: no copy of them in the page's sources, the HTML or the Python
runner."""

import json
import re
from pathlib import Path

from stages.runtime import contract

ROOT = Path(__file__).resolve().parents[1]
PAGE = sorted((ROOT / "web" / "src").glob("*.js")) + [ROOT / "web" / "index.html"]
PYTHON = [ROOT / "dodo.py", *sorted((ROOT / "stages").rglob("*.py"))]


def _numbers(value: float) -> str:
    """A regex for a number as code writes it: 30, 30.0, 7.5."""
    text = f"{value:g}"
    return rf"{re.escape(text)}(\.0+)?" if "." not in text else re.escape(text)


def _copies(files, patterns) -> list[str]:
    found = []
    for path in files:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if any(re.search(p, line) for p in patterns):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    return found


def test_the_page_has_no_copy_of_the_option_ranges_or_defaults():
    patterns = [r'"dpm\+\+2m"\s*[,}]\s*$', rf'scheduler:\s*"{re.escape(contract.DEFAULT_SAMPLER)}"']
    for name, option in contract.manifest(77)["options"].items():
        for key in ("min", "max", "default"):
            number = _numbers(option[key])
            patterns += [rf'\b{key}:\s*{number}\b', rf'<input[^>]*\b{key}="{number}"']
        patterns += [rf'<input[^>]*\bvalue="{_numbers(option["default"])}"',
                     rf'\({_numbers(option["min"])}-{_numbers(option["max"])}\)']
    assert _copies(PAGE, patterns) == []


def test_python_reads_the_contract_and_the_tokenizer_not_literals():
    mine = ROOT / "stages" / "runtime" / "contract.py"
    tokenizer = ROOT / "stages" / "tokenizer.py"   # where the token ids come from
    patterns = [r"\b49407\b", r"\bMAX_TOKENS\s*=\s*\d", r"max_length=77\b",
                r"\bMIN_STEPS, MAX_STEPS = \d", r"\bMIN_GUIDANCE, MAX_GUIDANCE = \d",
                r'"max_steps":\s*\d', rf'default="{re.escape(contract.DEFAULT_SAMPLER)}"',
                r"steps: int = \d", r"guidance: float = \d"]
    assert _copies([p for p in PYTHON if p not in (mine, tokenizer)], patterns) == []


def test_the_manifest_carries_the_contract(built):
    ws, _ = built
    index = json.loads((ws / "dist" / "tiny" / "llvm" / "manifest.json").read_text())
    tokens = index["inputs"]["text_encoder"]["input_ids"][0][-1]
    assert index["contract"] == json.loads(json.dumps(contract.manifest(tokens)))
    assert index["contract"]["guidance_free"] is False
    tables = json.loads((ws / "dist" / "tiny" / "llvm" / "schedules.json").read_text())
    assert contract.DEFAULT_SAMPLER in tables["schedulers"]
    assert tables["max_steps"] == contract.STEPS["max"]
