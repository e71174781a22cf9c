// The llama.cpp side of bench/llamacpp_side_by_side.sh: loads a GGUF with the prebuilt CPU llama.cpp of the npm
// package node-llama-cpp and runs the workload that llamacpp_mill_side wrote (token ids), timing each part after a
// warm-up, and reports the log-probabilities of every window position and this process's peak resident set.
//   NODE_LLAMA_CPP=.../node_modules/node-llama-cpp node llamacpp_side.mjs MODEL.gguf WORKLOAD.json THREADS KV OUT.json
// KV: f32 (the agreement run: F32 KV cache, as tests/llamacpp/score.mjs) or f16 (llama.cpp's default, the timed runs).
// Log-probabilities come from llama.cpp itself: the scored token's logit, the largest logit and
// sum(exp(logit - max)) over the vocabulary, computed in its C++ addon (only these cross into JavaScript); flash
// attention off.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [gguf, workloadFile, threadsArg, kv, out] = process.argv.slice(2);
const packageDir = process.env.NODE_LLAMA_CPP;
if (!gguf || !workloadFile || !threadsArg || !["f32", "f16"].includes(kv) || !out || !packageDir) {
  console.error("usage: NODE_LLAMA_CPP=... node llamacpp_side.mjs MODEL.gguf WORKLOAD.json THREADS f32|f16 OUT.json");
  process.exit(2);
}
const threads = Number(threadsArg);
const { getLlama } = await import(pathToFileURL(path.join(packageDir, "dist", "index.js")).href);
const workload = JSON.parse(fs.readFileSync(workloadFile, "utf8"));
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error", maxThreads: threads });
const model = await llama.loadModel({ modelPath: gguf });
const longest = Math.max(...workload.windows.map((w) => w.length), ...workload.documents.map((d) => d.length),
                         workload.mmlu.prefix.length + Math.max(...workload.mmlu.questions.map((q) => q.context.length)) + 8);
const context = await model.createContext({
  contextSize: longest + 16, batchSize: 512, sequences: 1, threads, flashAttention: false,
  ...(kv === "f32" ? { experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32" } : {}),
});
const sequence = context.getSequence();

// log P(ids[t+1] | ids[..t]) for every t, the whole sequence in one evaluation.
async function scoreAll(ids) {
  await sequence.clearHistory();
  const input = ids.slice(0, -1).map((id, t) => [id, { generateNext: {
    logits: { filter: { tokens: [ids[t + 1]], includeTop: 1 } }, totalLogitWeight: true } }]);
  const outputs = await sequence.controlledEvaluate(input);
  return outputs.map((o, t) => {
    const logits = o.next.logits;
    const max = Math.max(...logits.values());
    return logits.get(ids[t + 1]) - max - Math.log(o.next.totalLogitWeight);
  });
}
const seconds = (start) => Number(process.hrtime.bigint() - start) / 1e9;

await scoreAll(workload.windows[0].slice(0, 32));  // warm-up
let start = process.hrtime.bigint();
const windowLogprobs = [];
for (const w of workload.windows) windowLogprobs.push(await scoreAll(w));
const windowsSeconds = seconds(start);

start = process.hrtime.bigint();
for (const d of workload.documents) await scoreAll(d);
const documentsSeconds = seconds(start);

// The same tokens evaluated without asking for any position's log-probabilities: llama.cpp's forward alone, a
// floor for its time. Most of the scored runs' time is node-llama-cpp handing each position's distribution over.
async function forwardOnly(ids) {
  await sequence.clearHistory();
  await sequence.controlledEvaluate(ids);
}
start = process.hrtime.bigint();
for (const w of workload.windows) await forwardOnly(w);
const windowsForwardSeconds = seconds(start);
start = process.hrtime.bigint();
for (const d of workload.documents) await forwardOnly(d);
const documentsForwardSeconds = seconds(start);

// MMLU: the shared few-shot prefix is evaluated once and kept in the KV cache; each question's own tokens go on
// top of it, each option's tokens on top of those (removed again after), and everything past the prefix is
// removed before the next question.
start = process.hrtime.bigint();
const { prefix, questions } = workload.mmlu;
await sequence.clearHistory();
await sequence.controlledEvaluate(prefix);
const answers = [];
for (const q of questions) {
  const lastIndex = q.context.length - 1;
  const firsts = q.options.map((o) => o[0]);
  const outputs = await sequence.controlledEvaluate(q.context.map((id, i) => i === lastIndex
    ? [id, { generateNext: { logits: { filter: { tokens: firsts, includeTop: 1 } }, totalLogitWeight: true } }] : id));
  const next = outputs[lastIndex].next;
  const base = Math.max(...next.logits.values()) + Math.log(next.totalLogitWeight);
  const scores = [];
  for (const option of q.options) {
    let total = next.logits.get(option[0]) - base;
    if (option.length > 1) {
      const begin = sequence.nextTokenIndex;
      const rest = await sequence.controlledEvaluate(option.slice(0, -1).map((id, i) => [id, { generateNext: {
        logits: { filter: { tokens: [option[i + 1]], includeTop: 1 } }, totalLogitWeight: true } }]));
      rest.forEach((o, i) => { total += o.next.logits.get(option[i + 1]) - Math.max(...o.next.logits.values()) - Math.log(o.next.totalLogitWeight); });
      await sequence.eraseContextTokenRanges([{ start: begin, end: sequence.nextTokenIndex }]);
    }
    scores.push(total);
  }
  answers.push(scores);
  await sequence.eraseContextTokenRanges([{ start: prefix.length, end: sequence.nextTokenIndex }]);
}
const mmluSeconds = seconds(start);

fs.writeFileSync(out, JSON.stringify({
  windows_seconds: windowsSeconds, documents_seconds: documentsSeconds, mmlu_seconds: mmluSeconds,
  windows_forward_seconds: windowsForwardSeconds, documents_forward_seconds: documentsForwardSeconds,
  peak_rss_mb: process.resourceUsage().maxRSS / 1024, window_logprobs: windowLogprobs, mmlu_scores: answers,
}));
await context.dispose();
await model.dispose();
await llama.dispose();
