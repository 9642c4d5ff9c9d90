"""Few-step, guidance-free models (issue 15): configs/models/tiny-turbo.toml (SD-Turbo's
Euler ancestral with trailing timesteps, 1 step) and tiny-lcm.toml (LCMScheduler, 4 steps).

Both extend the tiny model (model.extends) and set guidance_batch = 1: their text encoder and
UNet are built at batch 1 (the prompt alone, half a guided step's UNet work), and their model
card's steps, guidance and sampler reach the page and `doit generate` through manifest.json's
contract. Each is compared with diffusers' pipeline at guidance 0 (which runs the prompt alone
too) on the same weights and noise.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from conftest import ROOT, doit, generate_report

MIN_PSNR_DB = 35.0


class FewStep:
    """A copy of the session's tiny build; each few-step model is built beside it when a test
    first asks (the VAE and the weights are the tiny model's: restored from its cache)."""

    def __init__(self, ws):
        self.ws, self.results = ws, {}

    def build(self, model: str):
        if model not in self.results:
            self.results[model] = doit(self.ws, "build", f"model={model}")
        return self.ws


@pytest.fixture(scope="module")
def few_step(built, tmp_path_factory):
    ws = tmp_path_factory.mktemp("few") / "ws"
    shutil.copytree(built[0], ws, symlinks=True)
    return FewStep(ws)


# tiny-lcm's build (its scheduler tables, 30 s) runs with the long tests (CI runs them)
@pytest.mark.parametrize("model, steps, sampler", [
    ("tiny-turbo", 1, "euler-a"), ("tiny-turbo", 4, "euler-a"),
    pytest.param("tiny-lcm", 4, "lcm", marks=pytest.mark.long),
    pytest.param("tiny-lcm", 2, "lcm", marks=pytest.mark.long)])
def test_few_step_models_match_diffusers(few_step, model, steps, sampler, tmp_path):
    ws = few_step.build(model)
    report = generate_report(ws, f"model={model}", "--prompt", "a photo of a cat", "--steps",
                             str(steps), "--seed", "5", "--compare",
                             "--output", str(tmp_path / "out.png"))
    assert report["scheduler"] == sampler and report["guidance"] == 0.0   # the model's own
    assert report["unet_batch"] == 1 and report["unet_calls"] == steps
    assert report["reference"] == "diffusers.StableDiffusionPipeline"
    print(f"\n{model} {steps} step(s): PSNR {report['psnr_db']:.1f} dB")
    assert report["psnr_db"] >= MIN_PSNR_DB


def test_the_cfg_free_unet_is_built_only_where_the_config_asks(few_step):
    ws, results = few_step.build("tiny-turbo"), few_step.results
    turbo = json.loads((ws / "dist/tiny-turbo/llvm/manifest.json").read_text())
    tiny = json.loads((ws / "dist/tiny/llvm/manifest.json").read_text())
    assert turbo["inputs"]["unet"]["sample"][0][0] == 1
    assert turbo["inputs"]["text_encoder"]["input_ids"][0][0] == 1
    assert tiny["inputs"]["unet"]["sample"][0][0] == 2
    # the same weights: the VAE's stages were restored, not built again
    built = results["tiny-turbo"].stdout
    assert "emit:vae_decoder" not in [line.strip(". ").strip() for line in built.splitlines()
                                      if line.startswith(".  ")] or "restored" in built
    assert turbo["variants"]["vae_decoder"]["verify"] == tiny["variants"]["vae_decoder"]["verify"]
    # the model card's settings are the contract's defaults; the plain model keeps the usual
    assert turbo["contract"]["guidance_free"] is True
    options = turbo["contract"]["options"]
    assert (options["steps"]["default"], options["guidance"]["default"],
            turbo["contract"]["default_sampler"]) == (1, 0.0, "euler-a")
    assert tiny["contract"]["guidance_free"] is False
    assert tiny["contract"]["options"]["steps"]["default"] == 20


def test_guidance_is_refused_for_a_guidance_free_model(few_step):
    ws = few_step.build("tiny-turbo")
    bad = doit(ws, "generate", "model=tiny-turbo", "--guidance", "7", check=False)
    said = bad.stdout + bad.stderr
    assert bad.returncode != 0 and "tiny-turbo runs without guidance" in said
    assert "fix: pass --guidance 0" in said and "Traceback" not in said


def test_the_page_takes_the_models_defaults(few_step):
    """The page's form (web/src/options.js) starts from the manifest's contract: a few-step
    model's steps, guidance and sampler, and it refuses guidance above 1 there."""
    ws = few_step.build("tiny-turbo")
    script = (
        "import fs from 'node:fs';\n"
        "import { checkOptions, defaults } from './src/options.js';\n"
        "const out = {};\n"
        "for (const m of ['tiny-turbo', 'tiny']) {\n"
        "  const { contract } = JSON.parse(fs.readFileSync(process.argv[1] + `/dist/${m}/llvm/"
        "manifest.json`));\n"
        "  const names = ['dpm++2m', 'euler-a', 'lcm'];\n"
        "  out[m] = { defaults: defaults(contract) };\n"
        "  try { checkOptions({ guidance: 7 }, contract, names); out[m].guided = 'ok'; }\n"
        "  catch (e) { out[m].guided = e.message; }\n"
        "}\n"
        "console.log(JSON.stringify(out));\n")
    proc = subprocess.run([shutil.which("node") or "node", "--input-type=module", "-e", script,
                           str(ws)], cwd=ROOT / "web", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    turbo = out["tiny-turbo"]["defaults"]
    assert (turbo["steps"], turbo["guidance"], turbo["scheduler"]) == (1, 0, "euler-a")
    assert out["tiny-turbo"]["guided"].startswith("This model runs without guidance")
    assert out["tiny"]["defaults"]["steps"] == 20 and out["tiny"]["guided"] == "ok"


@pytest.mark.parametrize("toml, message", [
    ("[model]\nextends = 'tiny'\nguidance_batch = 1\n[defaults]\nguidance = 7.5\n",
     "defaults.guidance = 7.5 but model.guidance_batch = 1"),
    ("[model]\nextends = 'tiny'\n[defaults]\nsampler = 'heun'\n",
     "defaults.sampler = 'heun' is not a sampler"),
    ("[model]\nextends = 'nope'\n", "model.extends = 'nope': no such config"),
    ("[model]\nextends = 'tiny'\nguidance_batch = 3\n", "model.guidance_batch = 3 is not one of 1, 2"),
])
def test_bad_few_step_configs_are_named(workspace, toml, message):
    (workspace / "configs/models/bad.toml").write_text(toml)
    proc = doit(workspace, "build", "model=bad", check=False)
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0 and message in said and "Traceback" not in said, said[-2000:]
