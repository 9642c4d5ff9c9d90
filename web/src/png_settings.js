// png_settings.js: the settings of an image, kept in its PNG file.
//
// A saved image carries what made it in two tEXt chunks, as popular SD front ends do:
//   "parameters": the text those front ends write and read ("PROMPT\nNegative prompt: ...\n
//       Steps: 20, Sampler: dpm++2m, CFG scale: 7.5, Seed: 42, Size: 512x512, Model: tiny"),
//   "websd": the same settings as JSON, exactly as the form takes them back
//       ({prompt, negativePrompt, steps, guidance, seed, scheduler, model, size, strength?}).
// stages/runtime/generate.py writes the same two chunks (settings_text), so a PNG from
// `doit generate` restores the page's form too. Dropping such a PNG on the page reads "websd".
// No dependencies; the CRC is PNG's own (ISO 3309, the table built here).

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

let crcTable = null;
function crc32(bytes) {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xFFFFFFFF;
  for (const b of bytes) c = crcTable[(c ^ b) & 0xFF] ^ (c >>> 8);
  return (c ^ 0xFFFFFFFF) >>> 0;
}

/** The "parameters" text of some settings (the form's names; see the module comment). */
export function parametersText(s) {
  const lines = [s.prompt];
  if (s.negativePrompt) lines.push(`Negative prompt: ${s.negativePrompt}`);
  const fields = [["Steps", s.steps], ["Sampler", s.scheduler], ["CFG scale", s.guidance],
    ["Seed", s.seed], ["Size", s.size], ["Model", s.model]];
  if (s.strength !== undefined) fields.push(["Denoising strength", s.strength]);
  lines.push(fields.map(([k, v]) => `${k}: ${v}`).join(", "));
  return lines.join("\n");
}

// tEXt holds Latin-1; a prompt may hold any character, so non-Latin-1 ones are written as
// JSON's \uXXXX escapes in "websd" (JSON.stringify then escaping) and replaced by "?" in
// "parameters", which other tools only show.
function latin1(text) {
  return Uint8Array.from(text, (ch) => (ch.charCodeAt(0) < 256 ? ch.charCodeAt(0) : 63));
}

function asciiJson(value) {
  return JSON.stringify(value).replace(/[\u0080-\uffff]/g,
    (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

function chunk(type, data) {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(latin1(type), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

function textChunk(keyword, text) {
  const k = latin1(keyword), t = latin1(text);
  const data = new Uint8Array(k.length + 1 + t.length);
  data.set(k, 0);
  data.set(t, k.length + 1);
  return chunk("tEXt", data);
}

function checkSignature(png) {
  if (png.length < 8 || SIGNATURE.some((b, i) => png[i] !== b)) throw new TypeError("not a PNG file");
}

/** PNG bytes with the settings' two tEXt chunks inserted before IEND. */
export function withSettings(png, settings) {
  checkSignature(png);
  const end = png.length - 12;   // IEND is the last chunk, 12 bytes
  const extra = [textChunk("parameters", parametersText(settings)),
    textChunk("websd", asciiJson(settings))];
  const out = new Uint8Array(png.length + extra.reduce((a, c) => a + c.length, 0));
  out.set(png.subarray(0, end), 0);
  let at = end;
  for (const c of extra) { out.set(c, at); at += c.length; }
  out.set(png.subarray(end), at);
  return out;
}

/** The tEXt chunks of PNG bytes: {keyword: text}. Throws a TypeError on a file that is not a PNG. */
export function textChunks(png) {
  checkSignature(png);
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const out = {};
  for (let at = 8; at + 12 <= png.length;) {
    const length = view.getUint32(at);
    const type = String.fromCharCode(...png.subarray(at + 4, at + 8));
    if (type === "tEXt") {
      const data = png.subarray(at + 8, at + 8 + length);
      const zero = data.indexOf(0);
      if (zero > 0) {
        out[String.fromCharCode(...data.subarray(0, zero))] =
          Array.from(data.subarray(zero + 1), (b) => String.fromCharCode(b)).join("");
      }
    }
    if (type === "IEND") break;
    at += 12 + length;
  }
  return out;
}

/** The websd settings a PNG carries, or null when it has none. */
export function readSettings(png) {
  const text = textChunks(png).websd;
  if (text === undefined) return null;
  try {
    const settings = JSON.parse(text);
    return settings && typeof settings === "object" ? settings : null;
  } catch {
    return null;
  }
}
