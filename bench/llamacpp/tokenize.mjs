// llama.cpp's tokenizer (node-llama-cpp 3.21.1, vocabulary-only load) as a reference for keel's:
//   node tokenize.mjs MODEL TEXTS_JSON
// TEXTS_JSON is a file holding a JSON array of strings; prints one JSON line, the array of
// their token ids (no BOS, special-token text not parsed). Used by
// python/tests/test_infer_tokenizer_gpt2.py.
import fs from "fs";
import {getLlama} from "node-llama-cpp";

const [model, textsPath] = process.argv.slice(2);
const texts = JSON.parse(fs.readFileSync(textsPath, "utf8"));
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const m = await llama.loadModel({modelPath: model, vocabOnly: true});
console.log(JSON.stringify(texts.map((t) => Array.from(m.tokenize(t, false)))));
await m.dispose();
