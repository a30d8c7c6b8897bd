// Times llama.cpp (node-llama-cpp 3.21.1's prebuilt CPU backend) on a GGUF model with given
// token ids: prefill of the prompt, then greedy decode of N tokens, one sequence.
//   node time_llamacpp.mjs MODEL THREADS PROMPT_IDS_JSON N_DECODE
// Prints one JSON line: {"prefill_s", "prompt_tokens", "decode_s", "decode_tokens"}.
import {getLlama} from "node-llama-cpp";

const [model, threads, idsJson, nDecode] = process.argv.slice(2);
const ids = JSON.parse(idsJson);
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const m = await llama.loadModel({modelPath: model});
const ctx = await m.createContext({contextSize: ids.length + Number(nDecode) + 8,
                                   threads: Number(threads), batchSize: 512, sequences: 1});
const seq = ctx.getSequence();
let t = performance.now();
await seq.evaluateWithoutGeneratingNewTokens(ids.slice(0, -1));
const prefill = (performance.now() - t) / 1000;
// Decode: feed the last prompt token, then each greedy token; stop after nDecode tokens
// (EOS is not special here: random weights may emit it, and we count what was generated).
let generated = 0;
t = performance.now();
for await (const token of seq.evaluate([ids[ids.length - 1]], {temperature: 0})) {
  generated += 1;
  if (generated >= Number(nDecode)) break;
}
const decode = (performance.now() - t) / 1000;
console.log(JSON.stringify({prefill_s: prefill, prompt_tokens: ids.length - 1, decode_s: decode,
                            decode_tokens: generated}));
await ctx.dispose();
await m.dispose();
