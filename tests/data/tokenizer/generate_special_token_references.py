import json, os, shutil, transformers
from transformers import AutoTokenizer
base = json.load(open("gpt2.json")); base["truncation"] = None
v = json.load(open("variants.json"))["llama3-style"]
l3 = json.loads(json.dumps(base)); l3.update(v["set"]); l3["model"].update(v["model"]); l3["added_tokens"] += v["added_tokens"]
cases = [
  ("gpt2-json", base, {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}),
  ("gpt2-json add_bos", base, {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "add_bos_token": True}),
  ("gpt2-json add_bos add_eos", base, {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "add_bos_token": True, "add_eos_token": True}),
  ("gpt2-json GPT2TokenizerFast add_bos", base, {"tokenizer_class": "GPT2TokenizerFast", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "add_bos_token": True}),
  ("llama3 no flags", l3, {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}),
  ("llama3 add_bos false", l3, {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>", "add_bos_token": False}),
  ("llama3 add_eos true", l3, {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>", "add_eos_token": True}),
  ("llama2 LlamaTokenizerFast no flags", json.load(open("llama2-json-legacy.json")), {"tokenizer_class": "LlamaTokenizerFast", "bos_token": "<s>", "eos_token": "</s>"}),
  ("llama2 LlamaTokenizerFast add_bos false add_eos true", json.load(open("llama2-json-legacy.json")), {"tokenizer_class": "LlamaTokenizerFast", "bos_token": "<s>", "eos_token": "</s>", "add_bos_token": False, "add_eos_token": True}),
]
print("transformers", transformers.__version__)
for name, tj, cfg in cases:
    d = "/tmp/case"; shutil.rmtree(d, ignore_errors=True); os.makedirs(d)
    json.dump(tj, open(d + "/tokenizer.json", "w")); json.dump(cfg, open(d + "/tokenizer_config.json", "w"))
    try:
        t = AutoTokenizer.from_pretrained(d)
        print(name, "->", type(t).__name__, t("Hello world")["input_ids"], t.encode("Hello world", add_special_tokens=False))
    except Exception as e:
        print(name, "FAILED", repr(e)[:300])
