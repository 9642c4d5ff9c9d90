// Write gaussian(seed, n[, stream]) from web/src/rng.js to stdout as raw float32 little-endian bytes,
// so that tests/test_rng.py can compare the JS draw with stages/runtime/rng.py bit for bit.
//
//   node web/test/rng_dump.mjs SEED N [STREAM] > values.f32
//
// A refused seed or n exits 2 with rng.js's own message on stderr (the test checks it).
import { gaussian } from "../src/rng.js";

const [seedArg, nArg, streamArg] = process.argv.slice(2);
// JSON.parse keeps what the caller wrote: 1.5 stays a float, "7" a string, -1 negative.
const parse = (s) => (s === undefined ? undefined : JSON.parse(s));
let values;
try {
  values = gaussian(parse(seedArg), parse(nArg), parse(streamArg) ?? 0);
} catch (e) {
  console.error(`rng_dump: ${e.name}: ${e.message}`);
  process.exit(2);
}
const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
process.stdout.write(bytes);
