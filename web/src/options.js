// options.js: the generation settings a user may give, checked before any GPU work starts.
//
// The ranges and defaults are the build's (manifest.json "contract", written from
// stages/runtime/contract.py, which the Python runner checks against too), so a setting that
// works in one works in the other. A refused setting is an OptionError naming the field, the
// value and the allowed range; the page shows it next to the form and generates nothing.

import { firstIteration } from "./schedulers.js";

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

/** The defaults of every option, from the manifest's contract. */
export function defaults(contract) {
  const o = contract.options;
  return { prompt: "", negativePrompt: "", guidance: o.guidance.default, steps: o.steps.default,
    seed: o.seed.default, scheduler: contract.default_sampler, strength: o.strength.default };
}

/** Normalized {prompt, negativePrompt, guidance, steps, seed, scheduler, strength, size} or an
 *  OptionError. contract: manifest.json's "contract"; schedulerNames: the samplers the build's
 *  tables have; withImage: image-to-image, where the strength must leave a step; sizes: the
 *  image sizes the build has, "WIDTHxHEIGHT" (the default first), which opts.size must name
 *  (absent: the first); size comes back as [width, height]. */
export function checkOptions(opts, contract, schedulerNames, withImage = false, sizes = null) {
  const o = { ...defaults(contract), ...opts };
  const { steps: STEPS, guidance: GUIDANCE, seed: SEED, strength: STRENGTH } = contract.options;
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
  if (!Number.isInteger(seed) || seed < SEED.min || seed > SEED.max) {
    throw new OptionError("seed", `Seed must be a whole number from ${SEED.min} to ${SEED.max}, got ` +
      `${JSON.stringify(o.seed)}.`);
  }
  if (!schedulerNames.includes(o.scheduler)) {
    throw new OptionError("scheduler", `Unknown scheduler ${JSON.stringify(o.scheduler)}; one of ` +
      `${schedulerNames.join(", ")}.`);
  }
  if (contract.guidance_free && (guidance > 1 || o.negativePrompt !== "")) {
    throw new OptionError("guidance", "This model runs without guidance: set the guidance " +
      "scale to 0 and leave the negative prompt empty.");
  }
  const strength = number(o.strength);
  if (!Number.isFinite(strength) || strength < STRENGTH.min || strength > STRENGTH.max) {
    throw new OptionError("strength", `Strength must be a number from ${STRENGTH.min} to ` +
      `${STRENGTH.max}, got ${JSON.stringify(o.strength)}.`);
  }
  if (withImage && firstIteration(steps, strength) >= steps) {
    throw new OptionError("strength", `Strength ${strength} at ${steps} steps runs no step ` +
      `(steps x strength < 1); raise the strength or the steps.`);
  }
  let size = null;
  if (sizes) {
    const named = o.size === undefined || o.size === "" ? sizes[0] : o.size;
    if (!sizes.includes(named)) {
      throw new OptionError("size", `This build has no ${JSON.stringify(named)} size; one of ` +
        `${sizes.join(", ")}.`);
    }
    size = named.split("x").map(Number);
  }
  return { prompt: o.prompt, negativePrompt: o.negativePrompt, guidance, steps, seed,
    scheduler: o.scheduler, strength, ...(size ? { size } : {}) };
}
