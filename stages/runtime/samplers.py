"""The samplers: the denoising loop's scheduler coefficients, read from diffusers, for the page.

The page (web/src/schedulers.js) re-derives nothing: every number it multiplies by comes from
diffusers' own scheduler classes here, at build time. For each scheduler the page offers and
each step count n in 1..max_steps we record

- `timesteps`: what the UNet is given at each iteration, in order (as floats). PNDM (PLMS,
  skip_prk_steps) repeats its second timestep, so it has n + 1 of them for n >= 2 steps
  (one for n = 1).
- `init_noise_sigma`: the factor of the initial Gaussian latents.
- `input_scale`: scale_model_input as a factor per iteration (Euler: 1 / sqrt(sigma^2 + 1)).
- `update`: step() as a linear combination. With the options used here every diffusers step
  is linear in the samples it was given and the model outputs it was given (PNDM's ets and
  warm-up, DPM-Solver++'s previous data prediction and its first-order first and last steps,
  Euler's sigma differences), so iteration i is

      x[i+1] = sum over [b, c] in update[i].x of c * x[i-b]
             + sum over [b, c] in update[i].e of c * e[i-b]

  where x[j] is the sample passed to step j (x[0] the initial latents times init_noise_sigma)
  and e[j] the model output (guided noise prediction) passed to step j. A stochastic sampler
  (Euler ancestral) adds noise: update[i].z is its factor, and the noise is the seeded
  generator's step noise of iteration i (stages/runtime/rng.py step_noise, web/src/rng.js
  stepNoise), so Python and the page add the same; `seeded_noise` gives diffusers it too.

- `alphas_cumprod` and `prediction_type` (once, not per scheduler): what a preview needs to
  turn a model output into the clean latents it predicts (web/src/schedulers.js denoised).

- `restart`: image-to-image runs the end of the schedule, from iteration `start`
  (first_iteration(steps, strength), 0..n-1). restart[start] holds `noise`, add_noise at that
  iteration as [a, b] (x[start] = a * clean latents + b * noise), and `update`, by iteration,
  the updates that differ from the full run's there: a multistep sampler restarted without
  history steps at lower order first (DPM-Solver++ 2M: one update, LMS: three, PNDM: five).

The coefficients are measured, not re-derived: each scheduler is run once per n on a probe
tensor with one element per x[j], per e[j] and per z[j] (a one-hot sample, model output and
step noise at each step, in float64), so element x[j] of step i's output is the coefficient of
x[j]. Extra
random elements ride along in the same run and must be reproduced by the recorded
coefficients; a scheduler option that makes step() non-linear or random (thresholding, SDE
variants, churn) fails the build here instead of giving the page wrong coefficients; the noise
of an ancestral step is not such an option: it is an input, like the model output.
"""

from __future__ import annotations

import contextlib
import copy

MAX_STEPS = 50
FORMAT = "websd-schedules/1"

# Page name -> (diffusers class, options over the model's scheduler_config.json).
SCHEDULERS = {
    "dpm++2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++",
                                                "solver_order": 2}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    "euler": ("EulerDiscreteScheduler", {}),
    # NOTE: DDIM clips its x0 estimate unless told not to (not linear); SD's configs say false
    "ddim": ("DDIMScheduler", {"clip_sample": False}),
    "lms": ("LMSDiscreteScheduler", {}),
    "dpm++2m-karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++",
                                                       "solver_order": 2,
                                                       "use_karras_sigmas": True}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "lcm": ("LCMScheduler", {}),   # for latent-consistency (distilled) models: 2-8 steps
}

LAYOUT = (1, 1, 1, -1)  # the probe as a batch of one latent, as schedulers expect
_CHECK_COLUMNS = 8      # random elements run alongside the probe
_CHECK_RTOL = 1e-5      # of the largest magnitude involved; diffusers upcasts/downcasts float32
# An image-to-image restart's warm-up (the updates that differ from the full run's: a multistep
# sampler without history yet) is over at the first update equal to the full run's: the
# warm-ups are contiguous, the longest PNDM's 5 (tests/test_schedulers.py checks whole runs).
_SETTLE = 1


class ScheduleError(Exception):
    pass


def model_scheduler(scheduler_config: dict) -> str | None:
    """The sampler that runs the model's own scheduler class (a DDIM model: "ddim"), if any."""
    cls_name = scheduler_config.get("_class_name")
    return next((n for n, (c, _) in SCHEDULERS.items() if c == cls_name), None)


@contextlib.contextmanager
def seeded_noise(scheduler, draw):
    """While it lasts, the k-th noise `scheduler`'s step() draws is draw(k, shape) (a torch
    tensor or numpy array) instead of torch's generator: what the page adds, given to diffusers."""
    import itertools
    import sys

    import torch

    module = sys.modules[type(scheduler).__module__]
    if not hasattr(module, "randn_tensor"):
        yield
        return
    calls = itertools.count()

    def randn_tensor(shape, generator=None, device=None, dtype=None, layout=None):
        noise = torch.as_tensor(draw(next(calls), tuple(shape)))
        return noise.to(device=device, dtype=dtype or noise.dtype)

    original = module.randn_tensor
    module.randn_tensor = randn_tensor
    try:
        yield
    finally:
        module.randn_tensor = original


def make(scheduler_config: dict, name: str, steps: int):
    """A fresh diffusers scheduler `name` for the model's config, with set_timesteps(steps)."""
    import diffusers

    cls_name, options = SCHEDULERS[name]
    config = {k: v for k, v in scheduler_config.items() if k != "_class_name"}
    scheduler = getattr(diffusers, cls_name).from_config(config, **options)
    scheduler.set_timesteps(steps)
    return scheduler


def first_iteration(steps: int, strength: float) -> int:
    """Image-to-image: the iteration a run of `steps` steps at `strength` starts from (diffusers'
    StableDiffusionImg2ImgPipeline.get_timesteps; web/src/schedulers.js firstIteration). It runs
    from there to the end of the schedule; strength 1 starts at 0, and a strength that leaves
    no step (int(steps * strength) == 0) is refused by the caller."""
    return max(steps - min(int(steps * strength), steps), 0)


def _probe(scheduler_config: dict, name: str, steps: int, start: int = 0,
           full: dict | None = None, prototype=None) -> dict:
    """The table of one scheduler at `steps` steps (module doc); from iteration `start` on, as
    image-to-image runs it (set_begin_index(start), the initial latents from add_noise).

    Given the `full` run's table, it stops once _SETTLE updates in a row equal the full run's
    (the restart's warm-up is over): the updates it returns are those up to there."""
    import numpy as np
    import torch

    sched = copy.deepcopy(prototype) if prototype else make(scheduler_config, name, steps)
    if getattr(sched, "order", 1) != 1:
        raise ScheduleError(f"{name}: scheduler order {sched.order}; the tables index one "
                            "iteration per UNet call")
    timesteps = sched.timesteps
    n_iter = len(timesteps)
    rng = np.random.default_rng(steps)
    noise = rng.standard_normal((n_iter + 1, _CHECK_COLUMNS)).astype(np.float32)
    check_z = torch.from_numpy(rng.standard_normal((n_iter, _CHECK_COLUMNS)))
    table = {"timesteps": [float(t) for t in timesteps],
             "init_noise_sigma": float(sched.init_noise_sigma)}
    if hasattr(sched, "set_begin_index"):   # as image-to-image does (PNDM has none)
        sched.set_begin_index(start)
    # columns: x[0..n_iter] at 0.., e[0..n_iter-1] at e_at.., z[0..n_iter-1] (a stochastic
    # step's noise) at z_at.., then the random check columns
    e_at = n_iter + 1
    z_at = e_at + n_iter
    n_probe = 3 * n_iter + 1
    width = n_probe + _CHECK_COLUMNS
    check_x = {start: torch.from_numpy(noise[0].astype(np.float64))
               * float(sched.init_noise_sigma)}
    check_e = {}
    input_scale, update = [], []
    for i in range(start, n_iter):
        t = timesteps[i]
        sample = torch.zeros(width, dtype=torch.float64)
        sample[i] = 1.0
        sample[n_probe:] = check_x[i]
        model_output = torch.zeros(width, dtype=torch.float64)
        model_output[e_at + i] = 1.0
        # a model output that depends on the sample, like a UNet's
        check_e[i] = torch.from_numpy(noise[i + 1].astype(np.float64)) + 0.1 * check_x[i]
        model_output[n_probe:] = check_e[i]

        scaled = sched.scale_model_input(sample.clone().reshape(LAYOUT), t)
        scaled = scaled.reshape(-1).to(torch.float64)
        k = float(scaled[i])
        others = scaled[:n_probe].clone()
        others[i] = 0.0
        if bool(others.any()) or not torch.allclose(
                scaled[n_probe:], k * check_x[i], rtol=_CHECK_RTOL, atol=0):
            raise ScheduleError(f"{name}, {steps} steps: scale_model_input at iteration {i} is "
                                "not a per-step factor; the page cannot reproduce it")
        input_scale.append(k)

        z = torch.zeros(width, dtype=torch.float64)
        z[z_at + i] = 1.0
        z[n_probe:] = check_z[i]
        with seeded_noise(sched, lambda k, shape: z.reshape(shape)):
            out = sched.step(model_output.reshape(LAYOUT), t, sample.reshape(LAYOUT)).prev_sample
        out = out.reshape(-1).to(torch.float64)
        x_terms = [[i - j, float(out[j])] for j in range(i, start - 1, -1)
                   if out[j] != 0]
        e_terms = [[i - j, float(out[e_at + j])] for j in range(i, start - 1, -1)
                   if out[e_at + j] != 0]
        if bool(out[i + 1:e_at].any()) or bool(out[e_at + i + 1:z_at].any()) \
                or bool(out[z_at:z_at + i].any()) or bool(out[z_at + i + 1:n_probe].any()) \
                or bool(out[:start].any()) or bool(out[e_at:e_at + start].any()):
            raise ScheduleError(f"{name}, {steps} steps: step {i} depends on the future")
        z_factor = float(out[z_at + i])
        # the recorded coefficients must reproduce the random elements of the same run
        got = out[n_probe:]
        expect = z_factor * check_z[i]
        for terms, history in ((x_terms, check_x), (e_terms, check_e)):
            for back, c in terms:
                expect += c * history[i - back]
        deviation = float((got - expect).abs().max())
        scale = max(1.0, float(got.abs().max()), float(expect.abs().max()))
        if not bool(torch.isfinite(out).all()) or not deviation <= _CHECK_RTOL * scale:
            raise ScheduleError(
                f"{name}, {steps} steps: step {i} is not a linear combination of the samples and "
                f"model outputs it was given (max deviation {deviation:.3g}); a scheduler option "
                "makes it non-linear or random, which the page cannot reproduce")
        check_x[i + 1] = got.clone()
        update.append({"x": x_terms, "e": e_terms, **({"z": z_factor} if z_factor else {})})
        if full and len(update) >= _SETTLE and all(
                u == full["update"][i - k] for k, u in enumerate(reversed(update[-_SETTLE:]))):
            break
    return {**table, "input_scale": input_scale, "update": update}


def _add_noise(prototype, name: str, steps: int, start: int) -> list[float]:
    """Image-to-image's initial latents, add_noise(init, noise, timesteps[start]) as image-to-
    image calls it, as [a, b]: a * init + b * noise (checked on random elements)."""
    import numpy as np
    import torch

    sched = prototype   # add_noise reads the schedule, it does not step it
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(start)
    rng = np.random.default_rng(start)
    init = torch.from_numpy(np.concatenate([[1.0, 0.0], rng.standard_normal(_CHECK_COLUMNS)]))
    noise = torch.from_numpy(np.concatenate([[0.0, 1.0], rng.standard_normal(_CHECK_COLUMNS)]))
    out = sched.add_noise(init.reshape(LAYOUT), noise.reshape(LAYOUT),
                          sched.timesteps[start:start + 1]).reshape(-1).to(torch.float64)
    a, b = float(out[0]), float(out[1])
    expect = a * init[2:] + b * noise[2:]
    if not torch.allclose(out[2:], expect, rtol=_CHECK_RTOL, atol=_CHECK_RTOL):
        raise ScheduleError(f"{name}, {steps} steps: add_noise at iteration {start} is not "
                            "a * image + b * noise; the page cannot reproduce it")
    return [a, b]


def _restarts(scheduler_config: dict, name: str, steps: int, full: dict,
              settle: bool = True) -> list[dict]:
    """For each iteration image-to-image may start from (0..steps-1), add_noise's [a, b] and
    the updates that differ from the full run's (a multistep sampler's first steps from there
    are lower order: it has no history yet), by iteration."""
    out = []
    prototype = make(scheduler_config, name, steps)   # copied: from_config is the slow part
    for start in range(steps):
        table = _probe(scheduler_config, name, steps, start, full if settle else None, prototype)
        if table["input_scale"] != full["input_scale"][start:start + len(table["input_scale"])]:
            raise ScheduleError(f"{name}, {steps} steps: scale_model_input from iteration "
                                f"{start} differs from the full run's")
        differ = {str(start + k): u for k, u in enumerate(table["update"])
                  if u != full["update"][start + k]}
        out.append({"noise": _add_noise(prototype, name, steps, start),
                    **({"update": differ} if differ else {})})
    return out


def _with_restarts(scheduler_config: dict, name: str, steps: int) -> dict:
    full = _probe(scheduler_config, name, steps)
    return {**full, "restart": _restarts(scheduler_config, name, steps, full)}


def tables(scheduler_config: dict, max_steps: int = MAX_STEPS) -> dict:
    """Every scheduler's coefficients for every step count 1..max_steps (see the module doc)."""
    import diffusers
    import torch

    # NOTE: a config written for one class carries keys others ignore, each with a warning
    diffusers.utils.logging.set_verbosity_error()

    if not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
    with torch.no_grad():
        schedulers = {}
        for name, (cls_name, options) in SCHEDULERS.items():
            schedulers[name] = {
                "class": cls_name, "options": options,
                "steps": {str(n): _with_restarts(scheduler_config, name, n)
                          for n in range(1, max_steps + 1)}}
    # what a preview needs to see the clean latents a model output points at
    # (web/src/schedulers.js denoised): the noise schedule and what the model predicts
    alphas = diffusers.DDPMScheduler.from_config(scheduler_config).alphas_cumprod
    return {"format": FORMAT, "max_steps": max_steps,
            "model_scheduler": model_scheduler(scheduler_config), "schedulers": schedulers,
            "alphas_cumprod": [float(a) for a in alphas.double()],
            "prediction_type": scheduler_config.get("prediction_type", "epsilon")}
