"""The page's denoising-loop scheduler (web/src/schedulers.js + schedules.json from
stages/runtime/samplers.py) against diffusers' own schedulers, step by step.

The reference is diffusers itself, run as a pipeline runs it (torch float32,
scale_model_input then step().prev_sample), on the scheduler_config.json the build writes
(stages/noise_scheduler.py). The JS loop is given diffusers' per-step model outputs through a file,
so both sides see the same inputs; every intermediate sample, every UNet input and the
timesteps are compared.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
LOOP = ROOT / "web/test/scheduler_loop.mjs"
SCHEDULERS_JS = ROOT / "web/src/schedulers.js"
SHAPE = (1, 4, 8, 8)
ATOL = 1e-5
# The free-running loop's float32 drift over 50 Karras steps (their sigmas crowd together at the
# end, so a step's coefficients are larger and cancel) reaches 1.0e-5; each step alone is held to
# 4 float32 spacings below, as every sampler's.
LOOP_ATOL = {"dpm++2m-karras": 2e-5}
STEP_COUNTS = (1, 2, 3, 4, 10, 20, 50)

# What the page's names mean, written out here independently of stages/runtime/samplers.py.
DIFFUSERS = {
    "dpm++2m": ("DPMSolverMultistepScheduler",
                {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    "euler": ("EulerDiscreteScheduler", {}),
    "ddim": ("DDIMScheduler", {"clip_sample": False}),
    "lms": ("LMSDiscreteScheduler", {}),
    "dpm++2m-karras": ("DPMSolverMultistepScheduler",
                       {"algorithm_type": "dpmsolver++", "solver_order": 2,
                        "use_karras_sigmas": True}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "lcm": ("LCMScheduler", {}),
}
NOISE_SEED = 0   # the step noise of a stochastic sampler: rng.step_noise(NOISE_SEED, i), as the page


def node() -> str:
    path = shutil.which("node")
    assert path, "node is not on PATH; the page's scheduler (web/src/schedulers.js) runs under Node"
    return path


@pytest.fixture(scope="module")
def scheduler_config(tmp_path_factory) -> dict:
    from stages.engine import config, dag
    from stages import noise_scheduler

    tmp = tmp_path_factory.mktemp("scheduler")
    cfg = config.load("tiny", "llvm", None)
    s = dag.spec(cfg, "noise_scheduler")
    outputs = {n: tmp / p.name for n, p in s.outputs.items()}
    noise_scheduler.run(s.inputs, outputs, s.config)
    return json.loads(outputs["scheduler_config.json"].read_text())


@pytest.fixture(scope="module")
def schedules_path(tmp_path_factory, scheduler_config) -> Path:
    from stages import sampler_tables

    tmp = tmp_path_factory.mktemp("schedules")
    (tmp / "scheduler_config.json").write_text(json.dumps(scheduler_config))
    out = tmp / "schedules.json"
    sampler_tables.run({"scheduler_config.json": tmp / "scheduler_config.json"},
                       {"schedules.json": out}, {"max_steps": 50})
    return out


def diffusers_scheduler(scheduler_config: dict, name: str, steps: int):
    import diffusers

    cls_name, options = DIFFUSERS[name]
    sched = getattr(diffusers, cls_name).from_config(scheduler_config, **options)
    sched.set_timesteps(steps)
    return sched


def fake_model(scaled, i: int):
    """A stand-in for the guided UNet: depends on its input and on the iteration.

    Mostly the (unit-variance) model input itself, as a noise predictor that is nearly right
    would give, so the latents keep the magnitude of real ones (|x| of a few) instead of
    growing: the 1e-5 bound is about real latents, and float32 rounding alone is several
    1e-6 per step at |x| ~ 30.
    """
    import torch

    idx = torch.arange(scaled.numel(), dtype=torch.float32).reshape(scaled.shape)
    return (0.9 * scaled + 0.2 * torch.sin(idx * 0.37 + 1.3 * i)).to(torch.float32)


def diffusers_loop(scheduler_config: dict, name: str, steps: int, noise: np.ndarray):
    import torch

    from stages.runtime import rng
    from stages.runtime.samplers import seeded_noise

    sched = diffusers_scheduler(scheduler_config, name, steps)
    x = torch.from_numpy(noise) * sched.init_noise_sigma
    xs, scaled_inputs, eps = [x.numpy().copy()], [], []
    step_noise = seeded_noise(sched, lambda k, shape: rng.step_noise(NOISE_SEED, k, shape))
    with torch.no_grad(), step_noise:
        for i, t in enumerate(sched.timesteps):
            scaled = sched.scale_model_input(x, t)
            e = fake_model(scaled, i)
            x = sched.step(e, t, x).prev_sample
            assert x.dtype == torch.float32
            scaled_inputs.append(scaled.numpy().copy())
            eps.append(e.numpy().copy())
            xs.append(x.numpy().copy())
    return sched, xs, scaled_inputs, eps


def run_loop(schedules: Path, name, steps, workdir: Path, noise=None, eps=None, forced=None):
    workdir.mkdir(parents=True, exist_ok=True)
    if noise is not None:
        noise.astype("<f4").tofile(workdir / "noise.f32")
        np.concatenate([e.reshape(-1) for e in eps]).astype("<f4").tofile(workdir / "eps.f32")
    if forced is not None:
        np.concatenate([x.reshape(-1) for x in forced]).astype("<f4").tofile(workdir / "forced.f32")
    return subprocess.run([node(), str(LOOP), str(schedules), str(name), json.dumps(steps),
                           str(workdir)], check=False, capture_output=True, text=True,
                          timeout=120)


def js_outputs(workdir: Path, n: int, size: int) -> tuple[np.ndarray, list, list]:
    js = np.fromfile(workdir / "js.f32", dtype="<f4").reshape(1 + 2 * n, size)
    return js[0], [js[1 + 2 * i] for i in range(n)], [js[2 + 2 * i] for i in range(n)]


def ulp(a: np.ndarray) -> float:
    """The float32 spacing at the largest magnitude in a."""
    return float(np.spacing(np.float32(np.abs(a).max())))


@pytest.mark.parametrize("steps", STEP_COUNTS)
@pytest.mark.parametrize("name", list(DIFFUSERS))
def test_js_matches_diffusers_every_step(schedules_path, scheduler_config, tmp_path, name, steps):
    noise = np.random.default_rng(1234 + steps).standard_normal(SHAPE).astype(np.float32)
    sched, xs, scaled_inputs, eps = diffusers_loop(scheduler_config, name, steps, noise)
    n, size = len(sched.timesteps), noise.size
    if name == "pndm":   # PLMS repeats a timestep at the start: one more UNet call
        assert n == (steps + 1 if steps > 1 else 1)
    else:
        assert n == steps
    assert float(np.abs(xs[-1] - xs[0]).max()) > 1e-3   # the loop moves the latents

    # 1. The page's loop, free-running: its own samples, diffusers' model outputs.
    proc = run_loop(schedules_path, name, steps, tmp_path / "free", noise, eps)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "free" / "js.json").read_text())
    assert meta["timesteps"] == [float(t) for t in sched.timesteps]
    assert meta["initNoiseSigma"] == float(sched.init_noise_sigma)
    x0, unet_in, out = js_outputs(tmp_path / "free", n, size)
    np.testing.assert_array_equal(x0, xs[0].reshape(-1))   # noise * init_noise_sigma
    worst_x = worst_in = 0.0
    for i in range(n):
        d_in = float(np.abs(unet_in[i] - scaled_inputs[i].reshape(-1)).max())
        d_x = float(np.abs(out[i] - xs[i + 1].reshape(-1)).max())
        atol = LOOP_ATOL.get(name, ATOL)
        assert d_in <= atol, f"{name}/{steps}: UNet input of iteration {i} differs by {d_in:.3g}"
        assert d_x <= atol, f"{name}/{steps}: sample after iteration {i} differs by {d_x:.3g}"
        worst_x, worst_in = max(worst_x, d_x), max(worst_in, d_in)

    # 2. Each step alone: given diffusers' own sample at every iteration, the page's step and
    # scale_model_input agree with diffusers' float32 arithmetic to a few float32 spacings of
    # the latents' magnitude (1e-5 above is mostly the drift of float32 rounding over a loop).
    proc = run_loop(schedules_path, name, steps, tmp_path / "forced", noise, eps, forced=xs[:n])
    assert proc.returncode == 0, proc.stderr
    _, unet_in, out = js_outputs(tmp_path / "forced", n, size)
    worst_step = 0.0
    for i in range(n):
        ref_in, ref_x = scaled_inputs[i].reshape(-1), xs[i + 1].reshape(-1)
        d_in = float(np.abs(unet_in[i] - ref_in).max())
        d_x = float(np.abs(out[i] - ref_x).max())
        assert d_in <= ulp(ref_in), f"{name}/{steps}: scale_model_input({i}) off by {d_in:.3g}"
        assert d_x <= 4 * ulp(np.concatenate([xs[i].reshape(-1), ref_x])), \
            f"{name}/{steps}: step {i} alone differs by {d_x:.3g}"
        worst_step = max(worst_step, d_x)
    print(f"{name} {steps} steps: loop max |x diff| {worst_x:.3g}, |unet input diff| "
          f"{worst_in:.3g}; single step max |x diff| {worst_step:.3g}")


@pytest.mark.parametrize("name", ["euler", "ddim", "lms", "euler-a"])
def test_the_preview_sees_the_clean_latents_diffusers_predicts(schedules_path, scheduler_config,
                                                               tmp_path, name):
    """schedulers.js denoised (the page's decoded preview) against diffusers' own
    pred_original_sample, for a sampler that scales its input (sigmas) and ones that do not."""
    import torch

    steps = 10
    noise = np.random.default_rng(7).standard_normal(SHAPE).astype(np.float32)
    sched, xs, _, eps = diffusers_loop(scheduler_config, name, steps, noise)
    again = diffusers_scheduler(scheduler_config, name, steps)
    predicted = []
    with torch.no_grad():
        for i, t in enumerate(again.timesteps):
            again.scale_model_input(torch.from_numpy(xs[i]), t)   # LMS and Euler expect it first
            out = again.step(torch.from_numpy(eps[i]), t, torch.from_numpy(xs[i]))
            predicted.append(out.pred_original_sample.numpy().reshape(-1))
    proc = run_loop(schedules_path, name, steps, tmp_path, noise, eps, forced=xs[:steps])
    assert proc.returncode == 0, proc.stderr
    mine = np.fromfile(tmp_path / "denoised.f32", dtype="<f4").reshape(steps, -1)
    for i in range(steps):
        scale = float(np.abs(predicted[i]).max())
        assert float(np.abs(mine[i] - predicted[i]).max()) <= 1e-5 * max(scale, 1.0), (name, i)


# Image-to-image restarts: (steps, the iteration it starts from); 0 is strength 1.
RESTARTS = ((4, 0), (10, 3), (10, 9), (20, 1), (50, 20))


@pytest.mark.parametrize("steps, start", RESTARTS)
@pytest.mark.parametrize("name", list(DIFFUSERS))
def test_js_image_to_image_matches_diffusers(schedules_path, scheduler_config, tmp_path, name,
                                             steps, start):
    """The page's schedule end from a start, as diffusers' StableDiffusionImg2ImgPipeline runs
    it: set_begin_index(start), add_noise(clean, noise, timesteps[start]), then the steps from
    there (a multistep sampler restarts at first order: schedules.json's restart entries)."""
    import torch

    from stages.runtime import rng
    from stages.runtime.samplers import first_iteration, seeded_noise

    gen = np.random.default_rng(steps * 100 + start)
    noise = gen.standard_normal(SHAPE).astype(np.float32)
    clean = (0.8 * gen.standard_normal(SHAPE)).astype(np.float32)
    sched = diffusers_scheduler(scheduler_config, name, steps)
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(start)
    timesteps = sched.timesteps[start:]
    x = sched.add_noise(torch.from_numpy(clean), torch.from_numpy(noise), timesteps[:1])
    xs, eps = [x.numpy().copy()], []
    with torch.no_grad(), seeded_noise(
            sched, lambda k, shape: rng.step_noise(NOISE_SEED, k, shape)):
        for i, t in enumerate(timesteps):
            e = fake_model(sched.scale_model_input(x, t), i)
            x = sched.step(e, t, x).prev_sample
            eps.append(e.numpy().copy())
            xs.append(x.numpy().copy())
    work = tmp_path / "i2i"
    work.mkdir()
    (work / "start.json").write_text(json.dumps(start))
    clean.astype("<f4").tofile(work / "clean.f32")
    proc = run_loop(schedules_path, name, steps, work, noise, eps)
    assert proc.returncode == 0, proc.stderr
    n = len(timesteps)
    x0, _, out = js_outputs(work, n, noise.size)
    assert json.loads((work / "js.json").read_text())["timesteps"] == [float(t) for t in timesteps]
    # torch rounds each product and the sum to float32; the page rounds once
    assert float(np.abs(x0 - xs[0].reshape(-1)).max()) <= 2 * ulp(xs[0])
    for i in range(n):
        d_x = float(np.abs(out[i] - xs[i + 1].reshape(-1)).max())
        assert d_x <= LOOP_ATOL.get(name, ATOL), f"{name}/{steps} from {start}: x[{i + 1}] {d_x:.3g}"
    # the strengths that start there, as diffusers' get_timesteps reckons them
    assert first_iteration(steps, (steps - start) / steps) == start


def test_restart_tables_settle_like_the_whole_runs(scheduler_config):
    """The tables stop probing a restart once its warm-up is over (samplers._SETTLE updates in a
    row equal the full run's); run to the end instead, every restart of every sampler gives the
    same entries."""
    from stages.runtime import samplers

    for name in DIFFUSERS:
        for steps in (2, 9, 16, 30):
            full = samplers._probe(scheduler_config, name, steps)
            assert samplers._restarts(scheduler_config, name, steps, full) == \
                samplers._restarts(scheduler_config, name, steps, full, settle=False), (name, steps)


@pytest.mark.parametrize("steps,message", [(0, "steps must be 1..50, got 0"),
                                           (51, "steps must be 1..50, got 51"),
                                           (2.5, "steps must be 1..50, got 2.5"),
                                           ("20", "steps must be 1..50, got 20")])
def test_js_refuses_step_counts(schedules_path, tmp_path, steps, message):
    proc = run_loop(schedules_path, "euler", steps, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "RangeError" in proc.stderr


def test_js_refuses_unknown_scheduler(schedules_path, tmp_path):
    proc = run_loop(schedules_path, "heun", 20, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert ('unknown scheduler "heun"; one of: dpm++2m, pndm, euler, ddim, lms, dpm++2m-karras, '
            'euler-a, lcm' in proc.stderr)


def test_js_steps_run_in_order(schedules_path):
    script = (f"import {{ createScheduler }} from {json.dumps(SCHEDULERS_JS.as_uri())};\n"
              "import { readFileSync } from 'node:fs';\n"
              f"const t = JSON.parse(readFileSync({json.dumps(str(schedules_path))}, 'utf8'));\n"
              "const s = createScheduler(t, 'pndm', 10);\n"
              "const x = new Float32Array(4);\n"
              "s.step(x, 0, x);\n"
              "for (const f of [() => s.step(x, 0, x), () => s.step(x, 2, x),\n"
              "                 () => s.step(new Float32Array(3), 1, x),\n"
              "                 () => s.scaleModelInput(x, 11)]) {\n"
              "  try { f(); console.log('no error'); } catch (e) { console.log(e.message); }\n"
              "}\n")
    proc = subprocess.run([node(), "--input-type=module", "-e", script],
                          check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "step: expected iteration 1, got 0 (steps run in order, once each)",
        "step: expected iteration 1, got 2 (steps run in order, once each)",
        "modelOutput has 3 elements, expected 4",
        "scaleModelInput: iteration must be an integer in 0..10, got 11",
    ]


def test_tables_compact_and_reproducible(schedules_path, scheduler_config, tmp_path):
    from stages import sampler_tables

    data = schedules_path.read_bytes()
    # 8 samplers x 50 step counts, and where image-to-image may start in each (its add_noise
    # factors and a multistep sampler's warm-up)
    assert len(data) < 3_000_000
    tables = json.loads(data)
    assert tables["max_steps"] == 50
    assert list(tables["schedulers"]) == list(DIFFUSERS)
    assert tables["model_scheduler"] == "pndm"   # the tiny model's own: PNDMScheduler
    for entry in tables["schedulers"].values():
        assert sorted(map(int, entry["steps"])) == list(range(1, 51))
    # the same config gives the same bytes (downstream stages are cut off on identical output)
    (tmp_path / "c.json").write_text(json.dumps(scheduler_config))
    for again in ("a.json", "b.json"):   # 12 steps: the whole table takes ~30 s
        sampler_tables.run({"scheduler_config.json": tmp_path / "c.json"},
                           {"schedules.json": tmp_path / again}, {"max_steps": 12})
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_dpm_first_and_last_steps_are_first_order(schedules_path):
    """What diffusers does, as the tables carry it: DPM-Solver++ 2M starts with a first-order
    step and (final sigma 0) ends with one at every step count; in between it uses the previous
    model output."""
    tables = json.loads(schedules_path.read_text())["schedulers"]["dpm++2m"]["steps"]
    for n in (2, 10, 20, 50):
        update = tables[str(n)]["update"]
        assert [b for b, _ in update[0]["e"]] == [0] and [b for b, _ in update[-1]["e"]] == [0]
        assert all([b for b, _ in u["e"]] == [0, 1] for u in update[1:-1])


def test_tables_refuse_a_nonlinear_scheduler(scheduler_config):
    """Thresholding clips the data prediction: step() is no longer a linear combination and the
    tables must refuse it rather than record wrong coefficients."""
    from stages.runtime import samplers

    with pytest.raises(samplers.ScheduleError, match="not a linear combination"):
        samplers.tables({**scheduler_config, "thresholding": True}, max_steps=3)
