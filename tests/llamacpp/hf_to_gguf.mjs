// Writes a Hugging Face checkpoint folder (config.json + model.safetensors, F32) as a GGUF file that llama.cpp
// loads, following llama.cpp's conversion conventions (convert_hf_to_gguf.py): its tensor names, its metadata
// keys, and for the Llama family its q/k row order (llama.cpp's "normal" rope rotates interleaved pairs, so the HF
// rows are permuted back; the families llama.cpp rotates "neox" style keep HF's order). Only what the on-demand
// llama.cpp comparison (run.sh) needs: float32 weights, a placeholder vocabulary of the same size whose first 256
// entries are byte tokens (as in mill's demo tokenizer). Families: Llama, Mixtral, Qwen3, Qwen3-MoE, OLMo 2, Gemma 2,
// Gemma 3, Phi-3; a checkpoint whose settings llama.cpp cannot represent is refused (see `refuse` below). Written for
// mill; plain Node, no packages.
//
//   node hf_to_gguf.mjs HF_FOLDER OUT.gguf [f32|bf16]
// bf16 (for bench/llamacpp_side_by_side.sh) stores the matrices as BF16, rounded to nearest even as llama.cpp's
// converter does, and keeps 1-D tensors (norms, rope factors) in F32 as it does.
import fs from "node:fs";
import path from "node:path";

const [folder, out, outType = "f32"] = process.argv.slice(2);
if (!folder || !out || !["f32", "bf16"].includes(outType)) {
  console.error("usage: node hf_to_gguf.mjs HF_FOLDER OUT.gguf [f32|bf16]");
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
  Qwen3MoeForCausalLM: { gguf: "qwen3moe", permute: false },
  Olmo2ForCausalLM: { gguf: "olmo2", permute: false },
  Gemma2ForCausalLM: { gguf: "gemma2", permute: false },
  Gemma3ForCausalLM: { gguf: "gemma3", permute: false },
  Phi3ForCausalLM: { gguf: "phi3", permute: false },
};
const kind = kinds[arch];
if (!kind) throw new Error(`${arch}: this converter writes ${Object.keys(kinds).join(", ")}`);
const a = kind.gguf;
const gemma = a === "gemma2" || a === "gemma3";

// What llama.cpp cannot represent is refused here rather than converted into a different model (the facts are from
// llama.cpp's src/models/*.cpp): its qwen3moe always renormalises the top-k weights and has no dense layers; its
// gemma2/gemma3 scale scores by 1/sqrt(head_dim) whatever query_pre_attn_scalar says; its phi3 switches the sliding
// window off. `mill demo-model --llamacpp_compatible` writes the variants that pass.
const refuse = (what) => {
  console.error(`hf_to_gguf: ${folder}: ${arch} with ${what} is not something llama.cpp can run; write the demo with --llamacpp_compatible`);
  process.exit(1);
};
if (a === "qwen3moe" && (config.norm_topk_prob !== true || (config.mlp_only_layers ?? []).length > 0 || (config.decoder_sparse_step ?? 1) !== 1)) {
  refuse("norm_topk_prob=false or dense (mlp_only_layers / decoder_sparse_step) layers");
}
if (gemma && (config.query_pre_attn_scalar ?? D) !== D) refuse(`query_pre_attn_scalar ${config.query_pre_attn_scalar} != head_dim ${D}`);
if (a === "gemma3" && config.attn_logit_softcapping != null) refuse("Gemma 3 attention soft-capping");
if (a === "phi3" && typeof config.sliding_window === "number" && config.sliding_window < config.max_position_embeddings) {
  refuse(`a sliding window (${config.sliding_window}) narrower than the positions (${config.max_position_embeddings})`);
}

// Gemma's RMSNorm scales by (1 + w); llama.cpp's by w, so its converter stores 1 + w (in float32, as HF adds it).
const plusOne = (t) => ({ shape: t.shape, data: t.data.map((v) => Math.fround(1 + v)) });
const norm = (name) => (gemma ? plusOne(tensor(name)) : tensor(name));

const tensors = [];  // [name, {shape, data}]
const add = (name, t) => tensors.push([name, t]);
add("token_embd.weight", tensor("model.embed_tokens.weight"));
for (let l = 0; l < L; ++l) {
  const p = `model.layers.${l}.`, b = `blk.${l}.`;
  if (a === "phi3") {
    add(b + "attn_qkv.weight", tensor(p + "self_attn.qkv_proj.weight"));  // q, k, v rows, split the same way
  } else {
    const q = tensor(p + "self_attn.q_proj.weight"), k = tensor(p + "self_attn.k_proj.weight");
    add(b + "attn_q.weight", kind.permute ? unpermute(q, Hq) : q);
    add(b + "attn_k.weight", kind.permute ? unpermute(k, Hkv) : k);
    add(b + "attn_v.weight", tensor(p + "self_attn.v_proj.weight"));
  }
  add(b + "attn_output.weight", tensor(p + "self_attn.o_proj.weight"));
  if (has(p + "self_attn.q_norm.weight")) {
    add(b + "attn_q_norm.weight", norm(p + "self_attn.q_norm.weight"));
    add(b + "attn_k_norm.weight", norm(p + "self_attn.k_norm.weight"));
  }
  if (a === "olmo2") {
    add(b + "post_attention_norm.weight", tensor(p + "post_attention_layernorm.weight"));
    add(b + "post_ffw_norm.weight", tensor(p + "post_feedforward_layernorm.weight"));
  } else if (gemma) {  // sandwich: before and after attention and MLP
    add(b + "attn_norm.weight", norm(p + "input_layernorm.weight"));
    add(b + "post_attention_norm.weight", norm(p + "post_attention_layernorm.weight"));
    add(b + "ffn_norm.weight", norm(p + "pre_feedforward_layernorm.weight"));
    add(b + "post_ffw_norm.weight", norm(p + "post_feedforward_layernorm.weight"));
  } else {
    add(b + "attn_norm.weight", tensor(p + "input_layernorm.weight"));
    add(b + "ffn_norm.weight", tensor(p + "post_attention_layernorm.weight"));
  }
  if (arch === "MixtralForCausalLM" || a === "qwen3moe") {
    const mixtral = arch === "MixtralForCausalLM";
    const m = p + (mixtral ? "block_sparse_moe." : "mlp.");
    const E = mixtral ? config.num_local_experts : config.num_experts;
    add(b + "ffn_gate_inp.weight", tensor(m + "gate.weight"));
    const experts = (w) => stack(Array.from({ length: E }, (_, e) => tensor(`${m}experts.${e}.${w}.weight`)));
    add(b + "ffn_gate_exps.weight", experts(mixtral ? "w1" : "gate_proj"));
    add(b + "ffn_up_exps.weight", experts(mixtral ? "w3" : "up_proj"));
    add(b + "ffn_down_exps.weight", experts(mixtral ? "w2" : "down_proj"));
  } else if (a === "phi3") {
    add(b + "ffn_up.weight", tensor(p + "mlp.gate_up_proj.weight"));  // gate rows first: llama.cpp's swiglu halves
    add(b + "ffn_down.weight", tensor(p + "mlp.down_proj.weight"));
  } else {
    add(b + "ffn_gate.weight", tensor(p + "mlp.gate_proj.weight"));
    add(b + "ffn_up.weight", tensor(p + "mlp.up_proj.weight"));
    add(b + "ffn_down.weight", tensor(p + "mlp.down_proj.weight"));
  }
}
add("output_norm.weight", norm("model.norm.weight"));
if (has("lm_head.weight")) add("output.weight", tensor("lm_head.weight"));

const scaling = config.rope_scaling ?? null;
const scalingType = scaling ? (scaling.rope_type ?? scaling.type) : "default";
const rotary = Math.round(D * (config.partial_rotary_factor ?? 1));
const metadata = [
  ["general.architecture", "string", a],
  // Not the model's name: llama.cpp changes token attributes for names containing "phi3" or "phi-3" (and looks up
  // tokens this placeholder vocabulary does not have).
  ["general.name", "string", "mill demo model"],
  ["general.file_type", "u32", outType === "bf16" ? 32 : 0],
  [`${a}.context_length`, "u32", config.max_position_embeddings],
  [`${a}.embedding_length`, "u32", H],
  [`${a}.block_count`, "u32", L],
  [`${a}.feed_forward_length`, "u32", config.intermediate_size],
  [`${a}.rope.dimension_count`, "u32", rotary],
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
if (a === "qwen3moe") {
  metadata.push([`${a}.expert_count`, "u32", config.num_experts], [`${a}.expert_used_count`, "u32", config.num_experts_per_tok],
                [`${a}.expert_feed_forward_length`, "u32", config.moe_intermediate_size]);
}
if (gemma) {
  // Which layers slide, from layer_types, as a per-layer bool array (llama.cpp's default pattern would be 2 for
  // Gemma 2 and 6 for Gemma 3).
  const types = config.layer_types ?? Array.from({ length: L }, (_, l) => (l % (config.sliding_window_pattern ?? 2) < (config.sliding_window_pattern ?? 2) - 1 ? "sliding_attention" : "full_attention"));
  metadata.push([`${a}.attention.sliding_window`, "u32", config.sliding_window],
                [`${a}.attention.sliding_window_pattern`, "bool[]", types.map((t) => t === "sliding_attention")]);
  if (config.attn_logit_softcapping != null) metadata.push([`${a}.attn_logit_softcapping`, "f32", config.attn_logit_softcapping]);
  if (config.final_logit_softcapping != null) metadata.push([`${a}.final_logit_softcapping`, "f32", config.final_logit_softcapping]);
  // Gemma 3's local layers: their own base, unscaled (llama.cpp applies rope.scaling only to the global layers).
  if (a === "gemma3") metadata.push([`${a}.rope.freq_base_swa`, "f32", config.rope_local_base_freq ?? 10000]);
}
if (a === "phi3" && typeof config.sliding_window === "number") {
  metadata.push([`${a}.attention.sliding_window`, "u32", config.sliding_window]);
}

if (scalingType === "llama3") {
  // Llama 3.1 rope scaling travels as per-dimension divisors (rope_freqs), as llama.cpp's converter writes them.
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
} else if (scalingType === "yarn") {
  metadata.push([`${a}.rope.scaling.type`, "string", "yarn"], [`${a}.rope.scaling.factor`, "f32", scaling.factor],
                [`${a}.rope.scaling.original_context_length`, "u32", scaling.original_max_position_embeddings]);
} else if (scalingType === "linear") {
  metadata.push([`${a}.rope.scaling.type`, "string", "linear"], [`${a}.rope.scaling.factor`, "f32", scaling.factor]);
} else if (scalingType === "longrope" && a === "phi3") {
  // Phi-3's divisors as two tensors; llama.cpp uses the long ones when the context size (not the sequence) exceeds
  // original_context_length. The cos/sin factor as transformers computes it from the two lengths.
  const original = config.original_max_position_embeddings ?? scaling.original_max_position_embeddings;
  const scale = config.max_position_embeddings / original;
  metadata.push([`${a}.rope.scaling.original_context_length`, "u32", original],
                [`${a}.rope.scaling.attn_factor`, "f32", scale > 1 ? Math.sqrt(1 + Math.log(scale) / Math.log(original)) : 1]);
  add("rope_factors_long.weight", { shape: [rotary / 2], data: Float32Array.from(scaling.long_factor) });
  add("rope_factors_short.weight", { shape: [rotary / 2], data: Float32Array.from(scaling.short_factor) });
} else if (scalingType !== "default") {
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
const boolean = (v) => chunks.push(Buffer.from([v ? 1 : 0]));
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
    for (const v of value) ({ string: str, f32, i32, bool: boolean })[element](v);
  } else {
    u32(TYPE[type]);
    ({ string: str, u32, f32, bool: boolean })[type](value);
  }
}
// F32 bytes, or for matrices of a bf16 file BF16 bytes (the upper half of the float32, rounded to nearest even).
const asBf16 = (t) => outType === "bf16" && t.shape.length >= 2;
function tensorBytes(t) {
  const f32 = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.length * 4);
  if (!asBf16(t)) return f32;
  const bits = new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length), half = new Uint16Array(t.data.length);
  for (let i = 0; i < bits.length; ++i) half[i] = (bits[i] + 0x7fff + ((bits[i] >>> 16) & 1)) >>> 16;
  return Buffer.from(half.buffer);
}
const alignment = 32;
let offset = 0;
for (const [name, t] of tensors) {
  str(name);
  u32(t.shape.length);
  for (const d of [...t.shape].reverse()) u64(d);
  u32(asBf16(t) ? 30 : 0);  // GGML_TYPE_BF16 or GGML_TYPE_F32
  u64(offset);
  offset += Math.ceil((t.data.length * (asBf16(t) ? 2 : 4)) / alignment) * alignment;
}
let size = chunks.reduce((n, c) => n + c.length, 0);
chunks.push(Buffer.alloc((alignment - (size % alignment)) % alignment));
for (const [, t] of tensors) {
  const bytes = tensorBytes(t);
  chunks.push(bytes, Buffer.alloc((alignment - (bytes.length % alignment)) % alignment));
}
fs.writeFileSync(out, Buffer.concat(chunks));
