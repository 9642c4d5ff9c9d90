// options.js: the generation settings a user may give, checked before any GPU work starts.
//
// The same ranges as the Python runner (stages/generate.py check_args), so a setting that works
// in one works in the other. A refused setting is an OptionError naming the field, the value
// and the allowed range; the page shows it next to the form and generates nothing.

import { SEED_MAX } from "./rng.js";

export const STEPS = { min: 1, max: 50 };
export const GUIDANCE = { min: 0, max: 30 };
export const DEFAULTS = { prompt: "", negativePrompt: "", guidance: 7.5, steps: 20, seed: 0,
  scheduler: "dpm++2m" };

export class OptionError extends Error {
  constructor(field, message) {
    super(message);
    this.name = "OptionError";
    this.field = field;
  }
}

// Form fields arrive as strings; the test hook passes numbers. "" and "abc" are refused, not 0.
function number(value) {
  if (typeof value === "number") return value;
  if (typeof value === "string" && value.trim() !== "") return Number(value);
  return NaN;
}

/** Normalized {prompt, negativePrompt, guidance, steps, seed, scheduler} or an OptionError. */
export function checkOptions(opts, schedulerNames) {
  const o = { ...DEFAULTS, ...opts };
  for (const field of ["prompt", "negativePrompt"]) {
    if (typeof o[field] !== "string") throw new OptionError(field, `${field} must be text`);
  }
  const steps = number(o.steps);
  if (!Number.isInteger(steps) || steps < STEPS.min || steps > STEPS.max) {
    throw new OptionError("steps", `Steps must be a whole number from ${STEPS.min} to ` +
      `${STEPS.max}, got ${JSON.stringify(o.steps)}.`);
  }
  const guidance = number(o.guidance);
  if (!Number.isFinite(guidance) || guidance < GUIDANCE.min || guidance > GUIDANCE.max) {
    throw new OptionError("guidance", `Guidance scale must be a number from ${GUIDANCE.min} to ` +
      `${GUIDANCE.max}, got ${JSON.stringify(o.guidance)}.`);
  }
  const seed = number(o.seed);
  if (!Number.isInteger(seed) || seed < 0 || seed > SEED_MAX) {
    throw new OptionError("seed", `Seed must be a whole number from 0 to ${SEED_MAX}, got ` +
      `${JSON.stringify(o.seed)}.`);
  }
  if (!schedulerNames.includes(o.scheduler)) {
    throw new OptionError("scheduler", `Unknown scheduler ${JSON.stringify(o.scheduler)}; one of ` +
      `${schedulerNames.join(", ")}.`);
  }
  return { prompt: o.prompt, negativePrompt: o.negativePrompt, guidance, steps, seed,
    scheduler: o.scheduler };
}
