// tokenizer.js: CLIP tokenization for the page, the ids the text encoder takes.
//
// It must give exactly what transformers' CLIPTokenizer gives for the same tokenizer
// directory with padding="max_length", max_length=77, truncation=True (what the Python
// runner and diffusers use): [BOS, content ids (at most 75), EOS, PAD...], 77 ids in all.
// The BPE itself is HF tokenizers compiled to wasm (npm @mlc-ai/web-tokenizers), run on the
// tokenizer.json that stages/tokenizer.py writes; its encode() adds no special tokens, so
// BOS/EOS, truncation and padding are done here. Which strings are BOS, EOS and PAD and
// the length come from tokenizer_config.json (written by the same stage), not from
// constants: SD v1.5 pads with <|endoftext|> (49407), other CLIP checkpoints may not.
// tests/test_web_tokenizer.py checks the ids against transformers, in Node and Chromium.
//
// The Tokenizer class is passed in rather than imported, since it loads differently in
// the page (web/src/web_tokenizers.js, bundled by esbuild) and in Node
// (web/test/web_tokenizers_node.mjs).

function tokenString(value, name) {
  // transformers writes special tokens as "..." or, in older files, {"content": "...", ...}
  const s = typeof value === "string" ? value : value?.content;
  if (typeof s !== "string" || s === "") {
    throw new Error(`tokenizer_config.json has no usable ${name} (got ${JSON.stringify(value)})`);
  }
  return s;
}

// The id of a token string, as transformers' convert_tokens_to_ids: an added (special) token
// or a vocabulary entry. NOT encode(token): "!" as a pad token is vocabulary entry "!" (0), but
// the text "!" encodes to "!</w>" (256).
function tokenId(spec, token, name) {
  const added = (spec.added_tokens || []).find((t) => t.content === token);
  const id = added ? added.id : spec.model?.vocab?.[token];
  if (!Number.isInteger(id)) {
    throw new Error(`${name} ${JSON.stringify(token)} is not a token of tokenizer.json`);
  }
  return id;
}

/**
 * [bos, ...content, eos, pad, ...] of exactly maxLength ids; content is cut to maxLength - 2
 * (transformers truncates the text's ids, then adds BOS and EOS).
 */
export function clipInputIds(contentIds, { bos, eos, pad, maxLength }) {
  const out = new Int32Array(maxLength).fill(pad);
  const n = Math.min(contentIds.length, maxLength - 2);
  out[0] = bos;
  for (let i = 0; i < n; i++) out[i + 1] = contentIds[i];
  out[n + 1] = eos;
  return out;
}

export class ClipTokenizer {
  /**
   * @param Tokenizer  the @mlc-ai/web-tokenizers Tokenizer class
   * @param tokenizerJson  bytes of tokenizer.json (ArrayBuffer or a typed array)
   * @param config  tokenizer_config.json, parsed
   */
  static async load(Tokenizer, tokenizerJson, config) {
    const bytes = ArrayBuffer.isView(tokenizerJson)
      ? tokenizerJson.buffer.slice(tokenizerJson.byteOffset,
        tokenizerJson.byteOffset + tokenizerJson.byteLength)
      : tokenizerJson;
    const spec = JSON.parse(new TextDecoder().decode(bytes));
    // NOTE: tokenizer.json pads and truncates to 77 with BOS/EOS (for any `tokenizers` reader),
    // but this encode() adds no special tokens: it takes the bare BPE, and clipInputIds() adds
    // them, cuts and pads, as transformers does.
    const bare = new TextEncoder().encode(JSON.stringify({ ...spec, truncation: null,
      padding: null }));
    const maxLength = config.model_max_length;
    if (!Number.isInteger(maxLength) || maxLength < 2 || maxLength > 4096) {
      throw new Error(`tokenizer_config.json model_max_length must be the text encoder's ` +
        `length (77 for CLIP), got ${JSON.stringify(maxLength)}`);
    }
    const id = (name) => tokenId(spec, tokenString(config[name], name), name);
    const special = { bos: id("bos_token"), eos: id("eos_token"), pad: id("pad_token"), maxLength };
    return new ClipTokenizer(await Tokenizer.fromJSON(bare.buffer), special);
  }

  constructor(tokenizer, special) {
    this.tokenizer = tokenizer;
    this.special = special;   // { bos, eos, pad, maxLength }
  }

  /** The prompt's own tokens (no BOS/EOS): what the text encoder sees of it is the first
   *  maxLength - 2 (75 for CLIP). */
  count(text) {
    return this.tokenizer.encode(text).length;
  }

  /** The text encoder's input ids for a prompt: Int32Array(maxLength), 77 for CLIP. */
  encode(text) {
    if (typeof text !== "string") throw new TypeError(`prompt must be a string, not ${typeof text}`);
    return clipInputIds(this.tokenizer.encode(text), this.special);
  }

  dispose() {
    this.tokenizer.dispose();
  }
}
