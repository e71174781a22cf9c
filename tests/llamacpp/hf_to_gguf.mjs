// Writes a Hugging Face checkpoint folder (config.json + model.safetensors, F32) as a GGUF file that llama.cpp
// loads, following llama.cpp's conversion conventions (convert_hf_to_gguf.py): its tensor names, its metadata
// keys, and for the Llama family its q/k row order (llama.cpp's "normal" rope rotates interleaved pairs, so the HF
// rows are permuted back; the families llama.cpp rotates "neox" style keep HF's order). Only what the on-demand
// llama.cpp comparison (run.sh) needs: float32 weights, a placeholder vocabulary of the same size whose first 256
// entries are byte tokens (as in mill's demo tokenizer). Written for mill; plain Node, no packages.
//
//   node hf_to_gguf.mjs HF_FOLDER OUT.gguf
import fs from "node:fs";
import path from "node:path";

const [folder, out] = process.argv.slice(2);
if (!folder || !out) {
  console.error("usage: node hf_to_gguf.mjs HF_FOLDER OUT.gguf");
  process.exit(2);
}
const config = JSON.parse(fs.readFileSync(path.join(folder, "config.json"), "utf8"));
const file = fs.readFileSync(path.join(folder, "model.safetensors"));
const headerLength = Number(file.readBigUInt64LE(0));
const header = JSON.parse(file.subarray(8, 8 + headerLength).toString("utf8"));
const dataStart = 8 + headerLength;

function tensor(name) {
  const info = header[name];
  if (!info) throw new Error(`${folder}: no tensor ${name}`);
  if (info.dtype !== "F32") throw new Error(`${name}: ${info.dtype}; write the demo model with --dtype float32`);
  const [begin, end] = info.data_offsets;
  const bytes = file.subarray(dataStart + begin, dataStart + end);
  return { shape: info.shape, data: new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length)) };
}
const has = (name) => name in header;

// HF rotate-half rows back to interleaved pairs, per head: HF row j*D/2 + i = original row 2i + j.
function unpermute(t, heads) {
  const [rows, cols] = t.shape;
  const D = rows / heads;
  const out = new Float32Array(t.data.length);
  for (let h = 0; h < heads; ++h) {
    for (let j = 0; j < 2; ++j) {
      for (let i = 0; i < D / 2; ++i) {
        const from = h * D + j * (D / 2) + i, to = h * D + 2 * i + j;
        out.set(t.data.subarray(from * cols, (from + 1) * cols), to * cols);
      }
    }
  }
  return { shape: t.shape, data: out };
}
function stack(list) {
  const out = new Float32Array(list.reduce((n, t) => n + t.data.length, 0));
  let at = 0;
  for (const t of list) {
    out.set(t.data, at);
    at += t.data.length;
  }
  return { shape: [list.length, ...list[0].shape], data: out };
}

const arch = config.architectures[0];
const H = config.hidden_size, Hq = config.num_attention_heads, Hkv = config.num_key_value_heads ?? Hq;
const D = config.head_dim ?? H / Hq, L = config.num_hidden_layers, V = config.vocab_size;
const kinds = {
  LlamaForCausalLM: { gguf: "llama", permute: true },
  MixtralForCausalLM: { gguf: "llama", permute: true },
  Qwen3ForCausalLM: { gguf: "qwen3", permute: false },
  Olmo2ForCausalLM: { gguf: "olmo2", permute: false },
};
const kind = kinds[arch];
if (!kind) throw new Error(`${arch}: this converter writes ${Object.keys(kinds).join(", ")}`);
const a = kind.gguf;

const tensors = [];  // [name, {shape, data}]
const add = (name, t) => tensors.push([name, t]);
add("token_embd.weight", tensor("model.embed_tokens.weight"));
for (let l = 0; l < L; ++l) {
  const p = `model.layers.${l}.`, b = `blk.${l}.`;
  const q = tensor(p + "self_attn.q_proj.weight"), k = tensor(p + "self_attn.k_proj.weight");
  add(b + "attn_q.weight", kind.permute ? unpermute(q, Hq) : q);
  add(b + "attn_k.weight", kind.permute ? unpermute(k, Hkv) : k);
  add(b + "attn_v.weight", tensor(p + "self_attn.v_proj.weight"));
  add(b + "attn_output.weight", tensor(p + "self_attn.o_proj.weight"));
  if (has(p + "self_attn.q_norm.weight")) {
    add(b + "attn_q_norm.weight", tensor(p + "self_attn.q_norm.weight"));
    add(b + "attn_k_norm.weight", tensor(p + "self_attn.k_norm.weight"));
  }
  if (a === "olmo2") {
    add(b + "post_attention_norm.weight", tensor(p + "post_attention_layernorm.weight"));
    add(b + "post_ffw_norm.weight", tensor(p + "post_feedforward_layernorm.weight"));
  } else {
    add(b + "attn_norm.weight", tensor(p + "input_layernorm.weight"));
    add(b + "ffn_norm.weight", tensor(p + "post_attention_layernorm.weight"));
  }
  if (arch === "MixtralForCausalLM") {
    const m = p + "block_sparse_moe.";
    const E = config.num_local_experts;
    add(b + "ffn_gate_inp.weight", tensor(m + "gate.weight"));
    const experts = (w) => stack(Array.from({ length: E }, (_, e) => tensor(`${m}experts.${e}.${w}.weight`)));
    add(b + "ffn_gate_exps.weight", experts("w1"));
    add(b + "ffn_up_exps.weight", experts("w3"));
    add(b + "ffn_down_exps.weight", experts("w2"));
  } else {
    add(b + "ffn_gate.weight", tensor(p + "mlp.gate_proj.weight"));
    add(b + "ffn_up.weight", tensor(p + "mlp.up_proj.weight"));
    add(b + "ffn_down.weight", tensor(p + "mlp.down_proj.weight"));
  }
}
add("output_norm.weight", tensor("model.norm.weight"));
if (has("lm_head.weight")) add("output.weight", tensor("lm_head.weight"));

// Llama 3.1 rope scaling travels as per-dimension divisors (rope_freqs), as llama.cpp's converter writes them.
const scaling = config.rope_scaling ?? null;
const metadata = [
  ["general.architecture", "string", a],
  ["general.name", "string", `mill demo ${arch}`],
  ["general.file_type", "u32", 0],
  [`${a}.context_length`, "u32", config.max_position_embeddings],
  [`${a}.embedding_length`, "u32", H],
  [`${a}.block_count`, "u32", L],
  [`${a}.feed_forward_length`, "u32", config.intermediate_size],
  [`${a}.rope.dimension_count`, "u32", D],
  [`${a}.attention.head_count`, "u32", Hq],
  [`${a}.attention.head_count_kv`, "u32", Hkv],
  [`${a}.attention.key_length`, "u32", D],
  [`${a}.attention.value_length`, "u32", D],
  [`${a}.attention.layer_norm_rms_epsilon`, "f32", config.rms_norm_eps],
  [`${a}.rope.freq_base`, "f32", config.rope_theta ?? 10000],
  [`${a}.vocab_size`, "u32", V],
];
if (arch === "MixtralForCausalLM") {
  metadata.push([`${a}.expert_count`, "u32", config.num_local_experts], [`${a}.expert_used_count`, "u32", config.num_experts_per_tok]);
}
if (scaling && (scaling.rope_type ?? scaling.type) === "llama3") {
  const base = config.rope_theta, factor = scaling.factor, low = scaling.low_freq_factor, high = scaling.high_freq_factor;
  const old = scaling.original_max_position_embeddings;
  const divisors = [];
  for (let i = 0; i < D; i += 2) {
    const freq = 1 / Math.pow(base, i / D), wavelength = (2 * Math.PI) / freq;
    if (wavelength < old / high) divisors.push(1);
    else if (wavelength > old / low) divisors.push(factor);
    else {
      const smooth = (old / wavelength - low) / (high - low);
      divisors.push(1 / ((1 - smooth) / factor + smooth));
    }
  }
  add("rope_freqs.weight", { shape: [divisors.length], data: Float32Array.from(divisors) });
} else if (scaling && (scaling.rope_type ?? scaling.type) === "yarn") {
  metadata.push([`${a}.rope.scaling.type`, "string", "yarn"], [`${a}.rope.scaling.factor`, "f32", scaling.factor],
                [`${a}.rope.scaling.original_context_length`, "u32", scaling.original_max_position_embeddings]);
} else if (scaling && (scaling.rope_type ?? scaling.type) !== "default") {
  throw new Error(`rope scaling ${JSON.stringify(scaling)} is not written by this converter`);
}
// A placeholder SentencePiece-style vocabulary: byte tokens first (ids 0..255, as in mill's demo tokenizer), then
// one piece per remaining id, the last one the end-of-text control token.
const tokens = [], types = [];
for (let i = 0; i < V; ++i) {
  if (i < 256) { tokens.push(`<0x${i.toString(16).toUpperCase().padStart(2, "0")}>`); types.push(6); }
  else if (i === V - 1) { tokens.push("<|endoftext|>"); types.push(3); }
  else { tokens.push(`\u2581piece${i}`); types.push(1); }
}
metadata.push(["tokenizer.ggml.model", "string", "llama"], ["tokenizer.ggml.tokens", "string[]", tokens],
              ["tokenizer.ggml.scores", "f32[]", tokens.map((_, i) => -i)], ["tokenizer.ggml.token_type", "i32[]", types],
              ["tokenizer.ggml.bos_token_id", "u32", V - 1], ["tokenizer.ggml.eos_token_id", "u32", V - 1],
              ["tokenizer.ggml.add_bos_token", "bool", false]);

// GGUF v3: header, key/values, tensor infos (ggml dimension order: innermost first), data aligned to 32 bytes.
const chunks = [];
const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); chunks.push(b); };
const i32 = (v) => { const b = Buffer.alloc(4); b.writeInt32LE(v); chunks.push(b); };
const u64 = (v) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); chunks.push(b); };
const f32 = (v) => { const b = Buffer.alloc(4); b.writeFloatLE(v); chunks.push(b); };
const str = (s) => { const b = Buffer.from(s, "utf8"); u64(b.length); chunks.push(b); };
const TYPE = { u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9 };
chunks.push(Buffer.from("GGUF", "ascii"));
u32(3);
u64(tensors.length);
u64(metadata.length);
for (const [key, type, value] of metadata) {
  str(key);
  if (type.endsWith("[]")) {
    const element = type.slice(0, -2);
    u32(TYPE.array);
    u32(TYPE[element]);
    u64(value.length);
    for (const v of value) ({ string: str, f32, i32 })[element](v);
  } else {
    u32(TYPE[type]);
    if (type === "bool") chunks.push(Buffer.from([value ? 1 : 0]));
    else ({ string: str, u32, f32 })[type](value);
  }
}
const alignment = 32;
let offset = 0;
for (const [name, t] of tensors) {
  str(name);
  u32(t.shape.length);
  for (const d of [...t.shape].reverse()) u64(d);
  u32(0);  // GGML_TYPE_F32
  u64(offset);
  offset += Math.ceil((t.data.length * 4) / alignment) * alignment;
}
let size = chunks.reduce((n, c) => n + c.length, 0);
chunks.push(Buffer.alloc((alignment - (size % alignment)) % alignment));
for (const [, t] of tensors) {
  const bytes = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.length * 4);
  chunks.push(bytes, Buffer.alloc((alignment - (bytes.length % alignment)) % alignment));
}
fs.writeFileSync(out, Buffer.concat(chunks));
