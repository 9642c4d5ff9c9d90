// Tokenize prompts with web/src/tokenizer.js in Node, for tests/test_web_tokenizer.py.
//
//   node web/test/tokenize.mjs TOKENIZER_DIR < prompts.json > ids.json
//
// TOKENIZER_DIR holds tokenizer.json and tokenizer_config.json (stages/tokenizer.py);
// stdin is a JSON list of prompts, stdout a JSON list of id lists (77 each for CLIP).
import fs from "node:fs";
import path from "node:path";
import { ClipTokenizer } from "../src/tokenizer.js";
import { loadWebTokenizers } from "./web_tokenizers_node.mjs";

const dir = process.argv[2];
const prompts = JSON.parse(fs.readFileSync(0, "utf8"));
const tok = await ClipTokenizer.load(
  loadWebTokenizers(),
  fs.readFileSync(path.join(dir, "tokenizer.json")),
  JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")),
);
const ids = prompts.map((p) => Array.from(tok.encode(p)));
tok.dispose();
process.stdout.write(JSON.stringify(ids));
