// Writes one random Llama for bench/llamacpp_side_by_side.sh as a Hugging Face folder with float32 weights
// (DIR/f32) and the same weights rounded to bfloat16 (DIR/bf16, round to nearest even, as the GGUF BF16 file),
// config.json and the tokenizer files of a `mill demo-model` folder (TOKENIZER_DIR; mill needs a tokenizer to load,
// the benchmark itself scores token ids). Pseudo-random normal weights from a fixed seed, scaled like a trained
// model's (unit-variance embeddings, 1/sqrt(fan-in) projections, LM head 2/sqrt(hidden)) so distributions are peaked.
//
//   node llamacpp_write_model.mjs DIR TOKENIZER_DIR [hidden layers heads kv_heads intermediate vocab]
import fs from "node:fs";
import path from "node:path";

const [dir, tokenizerDir, ...sizes] = process.argv.slice(2);
if (!dir || !tokenizerDir) {
  console.error("usage: node llamacpp_write_model.mjs DIR TOKENIZER_DIR [hidden layers heads kv_heads intermediate vocab]");
  process.exit(2);
}
const [H, L, Hq, Hkv, I, V] = sizes.length ? sizes.map(Number) : [768, 6, 12, 4, 2048, 32000];
const D = H / Hq;

let state = 0x2545f4914f6cdd1dn;
function uniform() {  // xorshift64*, 53 bits
  state ^= state >> 12n;
  state ^= (state << 25n) & 0xffffffffffffffffn;
  state ^= state >> 27n;
  return Number(((state * 0x2545f4914f6cdd1dn) & 0xffffffffffffffffn) >> 11n) / 2 ** 53;
}
function normal(n, std) {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - uniform())), a = 2 * Math.PI * uniform();
    out[i] = r * Math.cos(a) * std;
    if (i + 1 < n) out[i + 1] = r * Math.sin(a) * std;
  }
  return out;
}
const tensors = [];
const add = (name, shape, data) => tensors.push({ name, shape, data });
add("model.embed_tokens.weight", [V, H], normal(V * H, 1));
for (let l = 0; l < L; ++l) {
  const p = `model.layers.${l}.`;
  add(p + "input_layernorm.weight", [H], new Float32Array(H).fill(1));
  add(p + "self_attn.q_proj.weight", [Hq * D, H], normal(Hq * D * H, 1 / Math.sqrt(H)));
  add(p + "self_attn.k_proj.weight", [Hkv * D, H], normal(Hkv * D * H, 1 / Math.sqrt(H)));
  add(p + "self_attn.v_proj.weight", [Hkv * D, H], normal(Hkv * D * H, 1 / Math.sqrt(H)));
  add(p + "self_attn.o_proj.weight", [H, Hq * D], normal(H * Hq * D, 1 / Math.sqrt(Hq * D)));
  add(p + "post_attention_layernorm.weight", [H], new Float32Array(H).fill(1));
  add(p + "mlp.gate_proj.weight", [I, H], normal(I * H, 1 / Math.sqrt(H)));
  add(p + "mlp.up_proj.weight", [I, H], normal(I * H, 1 / Math.sqrt(H)));
  add(p + "mlp.down_proj.weight", [H, I], normal(H * I, 1 / Math.sqrt(I)));
}
add("model.norm.weight", [H], new Float32Array(H).fill(1));
add("lm_head.weight", [V, H], normal(V * H, 2 / Math.sqrt(H)));

function toBf16(data) {
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length), out = new Uint16Array(data.length);
  for (let i = 0; i < bits.length; ++i) out[i] = (bits[i] + 0x7fff + ((bits[i] >>> 16) & 1)) >>> 16;
  return out;
}
function writeSafetensors(file, bf16) {
  const header = {};
  let offset = 0;
  const blobs = [];
  for (const t of tensors) {
    const bytes = bf16 ? Buffer.from(toBf16(t.data).buffer) : Buffer.from(t.data.buffer, t.data.byteOffset, t.data.length * 4);
    header[t.name] = { dtype: bf16 ? "BF16" : "F32", shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    offset += bytes.length;
    blobs.push(bytes);
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);  // tensor data stays 8-byte aligned
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  const fd = fs.openSync(file, "w");
  fs.writeSync(fd, length);
  fs.writeSync(fd, Buffer.from(json, "utf8"));
  for (const b of blobs) fs.writeSync(fd, b);
  fs.closeSync(fd);
}
const config = {
  architectures: ["LlamaForCausalLM"], model_type: "llama", hidden_size: H, intermediate_size: I,
  num_hidden_layers: L, num_attention_heads: Hq, num_key_value_heads: Hkv, head_dim: D, vocab_size: V,
  max_position_embeddings: 4096, rms_norm_eps: 1e-5, rope_theta: 10000, hidden_act: "silu",
  tie_word_embeddings: false, bos_token_id: V - 1, eos_token_id: V - 1,
};
for (const [name, bf16] of [["f32", false], ["bf16", true]]) {
  const out = path.join(dir, name);
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, "config.json"), JSON.stringify({ ...config, torch_dtype: bf16 ? "bfloat16" : "float32" }, null, 2));
  for (const file of ["tokenizer.json", "tokenizer_config.json"]) fs.copyFileSync(path.join(tokenizerDir, file), path.join(out, file));
  writeSafetensors(path.join(out, "model.safetensors"), bf16);
}
const parameters = tensors.reduce((n, t) => n + t.data.length, 0);
console.log(JSON.stringify({ hidden: H, layers: L, heads: Hq, kv_heads: Hkv, intermediate: I, vocab: V, parameters }));
