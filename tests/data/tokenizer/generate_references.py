import json, os, sys, traceback
out = os.environ.get("OUT", "/tmp/out")
here = os.path.dirname(os.path.abspath(__file__))
env = open(os.path.join(out, "env.txt"), "w")
def log(*a):
    print(*a); print(*a, file=env); env.flush()
for m in ["tokenizers", "transformers", "sentencepiece", "google.protobuf", "jinja2"]:
    try:
        mod = __import__(m, fromlist=["x"]); log(m, getattr(mod, "__version__", "?"))
    except Exception as e:
        log(m, "MISSING", e)
from tokenizers import Tokenizer
texts = json.load(open(os.path.join(here, "probe_texts.json")))
variants = json.load(open(os.path.join(here, "variants.json")))
base = json.load(open(os.path.join(here, "gpt2.json")))
refs = open(os.path.join(out, "refs.jsonl"), "w")
def emit(name, tk):
    for t in texts:
        e = tk.encode(t, add_special_tokens=False)
        es = tk.encode(t, add_special_tokens=True)
        refs.write(json.dumps({"variant": name, "text": t, "ids": e.ids, "ids_special": es.ids,
            "decoded": tk.decode(e.ids, skip_special_tokens=False),
            "decoded_skip": tk.decode(es.ids, skip_special_tokens=True)}, ensure_ascii=False) + "\n")
for name, v in variants.items():
    if name.startswith("_"): continue
    try:
        d = json.loads(json.dumps(base))
        d.update(v.get("set", {}))
        d["model"].update(v.get("model", {}))
        d["added_tokens"] = d["added_tokens"] + v.get("added_tokens", [])
        emit(name, Tokenizer.from_str(json.dumps(d)))
        log("variant ok", name)
    except Exception:
        log("variant failed", name, traceback.format_exc())
try:
    from transformers import LlamaTokenizerFast, LlamaTokenizer
    import shutil
    folder = "/tmp/llama2"; os.makedirs(folder, exist_ok=True)
    shutil.copy(os.path.join(here, "llama2.model"), os.path.join(folder, "tokenizer.model"))
    for legacy in [True, False]:
        try:
            fast = LlamaTokenizerFast(vocab_file=os.path.join(folder, "tokenizer.model"), legacy=legacy, from_slow=True)
            name = "llama2-" + ("legacy" if legacy else "metaspace")
            path = os.path.join(out, name + ".json")
            fast._tokenizer.save(path)
            emit(name, fast._tokenizer)
            log("variant ok", name)
        except Exception:
            log("llama conversion failed", legacy, traceback.format_exc())
    try:
        import sentencepiece as spm
        sp = spm.SentencePieceProcessor(model_file=os.path.join(folder, "tokenizer.model"))
        for t in texts:
            refs.write(json.dumps({"variant": "llama2-spm", "text": t, "ids": sp.encode(t), "decoded": sp.decode(sp.encode(t))}, ensure_ascii=False) + "\n")
        log("variant ok llama2-spm")
    except Exception:
        log("spm failed", traceback.format_exc())
except Exception:
    log("transformers failed", traceback.format_exc())
refs.close()
