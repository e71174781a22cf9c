// Scores token ids with llama.cpp (the prebuilt CPU build inside the npm package node-llama-cpp): for each sequence,
// log P(ids[t+1] | ids[..t]) from llama.cpp's logits, log-softmax in float64 here. F32 KV cache (llama.cpp's default
// F16 cache alone moves log-probabilities by ~1e-2), flash attention off. Written for mill.
//
//   NODE_LLAMA_CPP=/path/to/node_modules/node-llama-cpp node score.mjs MODEL.gguf IDS.json OUT.json
// IDS.json: {"sequences": [[id, ...], ...]}; OUT.json: {"logprobs": [[...], ...]}
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [gguf, idsFile, out] = process.argv.slice(2);
const packageDir = process.env.NODE_LLAMA_CPP;
if (!gguf || !idsFile || !out || !packageDir) {
  console.error("usage: NODE_LLAMA_CPP=.../node_modules/node-llama-cpp node score.mjs MODEL.gguf IDS.json OUT.json");
  process.exit(2);
}
const { getLlama } = await import(pathToFileURL(path.join(packageDir, "dist", "index.js")).href);
const { sequences } = JSON.parse(fs.readFileSync(idsFile, "utf8"));
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath: gguf });
const results = [];
for (const ids of sequences) {
  const context = await model.createContext({
    contextSize: Math.max(64, ids.length + 8),
    batchSize: Math.max(64, ids.length + 8),
    sequences: 1,
    flashAttention: false,
    experimentalKvCacheKeyType: "F32",
    experimentalKvCacheValueType: "F32",
  });
  const sequence = context.getSequence();
  const input = ids.slice(0, -1).map((id) => [id, { generateNext: { logits: true } }]);
  const outputs = await sequence.controlledEvaluate(input);
  const logprobs = [];
  for (let t = 0; t + 1 < ids.length; ++t) {
    const logits = outputs[t]?.next?.logits;
    if (!logits) throw new Error(`no logits at position ${t}`);
    let top = -Infinity;
    for (const v of logits.values()) top = Math.max(top, v);
    let total = 0;
    for (const v of logits.values()) total += Math.exp(v - top);
    logprobs.push(logits.get(ids[t + 1]) - top - Math.log(total));
  }
  results.push(logprobs);
  await context.dispose();
}
fs.writeFileSync(out, JSON.stringify({ logprobs: results }));
await model.dispose();
await llama.dispose();
