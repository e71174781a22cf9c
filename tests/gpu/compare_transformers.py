"""Recomputes reference_check's numbers with Hugging Face transformers on the same checkpoints and token ids.

Usage: python3 compare_transformers.py OUT_DIR   (reads OUT_DIR/runtime.json, writes OUT_DIR/comparison.json)
"""
import json
import math
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

out_dir = sys.argv[1]
records = json.load(open(f"{out_dir}/runtime.json"))
device = "cuda" if torch.cuda.is_available() else "cpu"
summary = {"transformers": transformers.__version__, "torch": torch.__version__, "device": device, "runs": []}
for record in records:
    if "throughput" in record:
        summary["throughput"] = record["throughput"]
        continue
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[record["dtype"]]
    try:
        model = AutoModelForCausalLM.from_pretrained(record["folder"], dtype=dtype)
    except TypeError:
        model = AutoModelForCausalLM.from_pretrained(record["folder"], torch_dtype=dtype)
    model = model.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(record["folder"])
    run = {"architecture": record["architecture"], "dtype": record["dtype"], "max_abs_logprob_diff": 0.0,
           "max_rel_logprob_diff": 0.0, "greedy_agree": 0, "scores": 0, "generation_agree": 0, "generations": 0,
           "tokenizer_agree": 0, "tokenizations": 0}
    with torch.no_grad():
        for score in record["scores"]:
            ids = score["context_ids"] + score["continuation_ids"]
            logits = model(torch.tensor([ids], device=device)).logits.float()
            log_probs = torch.log_softmax(logits[0], dim=-1)
            n = len(score["context_ids"])
            targets = score["continuation_ids"]
            total = sum(log_probs[n - 1 + i, t].item() for i, t in enumerate(targets))
            greedy = all(log_probs[n - 1 + i].argmax().item() == t for i, t in enumerate(targets))
            diff = abs(total - score["logprob"])
            run["max_abs_logprob_diff"] = max(run["max_abs_logprob_diff"], diff)
            run["max_rel_logprob_diff"] = max(run["max_rel_logprob_diff"], diff / max(1e-9, abs(total)))
            run["greedy_agree"] += int(greedy == score["greedy"])
            run["scores"] += 1
        for generation in record["generations"]:
            prompt = torch.tensor([generation["prompt_ids"]], device=device)
            eos = model.config.eos_token_id
            produced = model.generate(prompt, max_new_tokens=16, do_sample=False, eos_token_id=eos, pad_token_id=eos,
                                      attention_mask=torch.ones_like(prompt))
            new_ids = [t for t in produced[0, prompt.shape[1]:].tolist() if t != eos]
            text = tokenizer.decode(new_ids, skip_special_tokens=True)
            agree = text == generation["text"]
            run["generation_agree"] += int(agree)
            run["generations"] += 1
            if not agree:
                run.setdefault("generation_mismatches", []).append({"mill": generation["text"], "transformers": text})
        for item in record["tokenization"]:
            ids = tokenizer(item["text"], add_special_tokens=False)["input_ids"]
            run["tokenizer_agree"] += int(ids == item["ids"])
            run["tokenizations"] += 1
    summary["runs"].append(run)
    print(json.dumps(run))
json.dump(summary, open(f"{out_dir}/comparison.json", "w"), indent=1)
print(json.dumps(summary.get("throughput")))
