#!/usr/bin/env python3
"""Writes goldens.json: the requests lm-evaluation-harness builds for the first documents of mill's built-in tasks.

An independent Python rendition of lm-eval's prompt assembly (lm_eval/api/task.py ConfigurableTask.fewshot_context,
build_qa_turn, construct_requests; lm_eval/api/samplers.py ContextSampler/FirstNSampler; the evaluator's
fewshot seed 1234), reading each task's doc_to_text / doc_to_target / doc_to_choice from the task YAML of an
lm-evaluation-harness checkout and rendering them with Jinja2 as lm-eval does (StrictUndefined,
keep_trailing_newline). The process_docs / utils functions (HellaSwag, Winogrande) are restated here from their
definitions. Data: ../shared/data (staged files) and fixtures/ (files written for these tests in the original
formats). Usage: make_goldens.py LM_EVAL_CHECKOUT SHARED_DATA_DIR > goldens.json
"""
import ast, json, random, re, subprocess, sys
import jinja2, yaml

LM_EVAL, SHARED = sys.argv[1], sys.argv[2]
FIXTURES = __file__.rsplit("/", 1)[0] + "/fixtures"
COMMIT = subprocess.run(["git", "-C", LM_EVAL, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def lm_eval_yaml(path):
    text = subprocess.run(["git", "-C", LM_EVAL, "show", "HEAD:lm_eval/tasks/" + path], capture_output=True, text=True).stdout
    text = re.sub(r"!function \S+", "null", text)
    return yaml.safe_load(text)


def jsonl(path):
    return [json.loads(line) for line in open(path) if line.strip()]


def resolve(spec, doc, has_choices):
    """doc_to_text / doc_to_target semantics for a string or int spec."""
    if isinstance(spec, int) or isinstance(spec, list):
        return spec
    if spec in doc:
        return doc[spec]
    text = env.from_string(spec).render(**doc)
    if text.isdigit() and has_choices:
        return ast.literal_eval(text)
    if len(text) >= 2 and text[0] == "[" and text[-1] == "]":
        try:
            return ast.literal_eval(text)
        except (SyntaxError, ValueError):
            return text
    return text


def choices_of(spec, doc):
    if isinstance(spec, list):
        return spec
    if spec in doc:
        return doc[spec]
    return ast.literal_eval(env.from_string(spec).render(**doc))


# --- data in lm-eval's (Hugging Face) form ---------------------------------------------------------------------
def hellaswag_docs(split):
    def clean(text):
        text = text.strip().replace(" [title]", ". ")
        text = re.sub("\\[.*?\\]", "", text)
        return text.replace("  ", " ")
    out = []
    for doc in jsonl(f"{FIXTURES}/hellaswag/hellaswag_{split}.jsonl"):
        doc = dict(doc, label=str(doc["label"]))  # the HF copy holds the label as a string
        ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
        out.append(dict(doc, query=clean(doc["activity_label"] + ": " + ctx), choices=[clean(e) for e in doc["endings"]], gold=int(doc["label"])))
    return out


def arc_docs(subset, split):
    return [{"id": d["id"], "question": d["question"]["stem"],
             "choices": {"text": [c["text"] for c in d["question"]["choices"]], "label": [c["label"] for c in d["question"]["choices"]]},
             "answerKey": d["answerKey"]} for d in jsonl(f"{FIXTURES}/arc/{subset}/{subset}-{split}.jsonl")]


def piqa_docs(root, split):
    labels = [int(x) for x in open(f"{root}/piqa/{split}-labels.lst").read().split()]
    return [dict(d, label=l) for d, l in zip(jsonl(f"{root}/piqa/{split}.jsonl"), labels)]


def boolq_docs(root, split):
    return [dict(d, label=1 if d["label"] in (True, "true") else 0) for d in jsonl(f"{root}/boolq/{split}.jsonl")]


def openbookqa_docs(split):
    lines = open(f"{SHARED}/openbookqa/{split}.tsv").read().split("\n")
    header = lines[0].split("\t")
    out = []
    for line in lines[1:]:
        if not line:
            continue
        row = dict(zip(header, line.split("\t")))
        cell, texts, labels = row["Choices"], [], []
        letter = "A"
        while cell.startswith(f"({letter}) "):
            cell = cell[4:]
            nxt = chr(ord(letter) + 1)
            cut = cell.find(f" ({nxt}) ")
            texts.append(cell if cut < 0 else cell[:cut])
            labels.append(letter)
            cell = "" if cut < 0 else cell[cut + 1:]
            letter = nxt
        out.append({"id": row["ID"], "question_stem": row["Question Stem"], "choices": {"text": texts, "label": labels}, "answerKey": row["Answer Key"]})
    return out


def truthfulqa_docs():
    return [{"question": d["question"],
             "mc1_targets": {"choices": list(d["mc1_targets"].keys()), "labels": list(d["mc1_targets"].values())},
             "mc2_targets": {"choices": list(d["mc2_targets"].keys()), "labels": list(d["mc2_targets"].values())}}
            for d in json.load(open(f"{SHARED}/truthfulqa/mc_task.json"))]


def winogrande_docs(split):
    return jsonl(f"{FIXTURES}/winogrande/{split}.jsonl")


def winogrande_text(doc):  # preprocess_winogrande.doc_to_text: the answer's index (multiple inputs)
    return {"1": 0, "2": 1}[doc["answer"]]


def winogrande_target(doc):
    i = doc["sentence"].index("_") + 1
    return doc["sentence"][i:].strip()


def winogrande_choice(doc):
    i = doc["sentence"].index("_")
    return [doc["sentence"][:i] + o for o in (doc["option1"], doc["option2"])]


# --- prompt assembly as lm-eval does it ---------------------------------------------------------------------------
class Task:
    def __init__(self, name, config, eval_docs, fewshot_docs, *, text=None, target=None, choice=None, sampler="default"):
        self.name, self.config = name, config
        self.eval_docs, self.fewshot_docs = eval_docs, fewshot_docs
        self.text = text or (lambda d: resolve(config["doc_to_text"], d, self.has_choices))
        self.choice = choice or ((lambda d: choices_of(config["doc_to_choice"], d)) if "doc_to_choice" in config else None)
        self.has_choices = "doc_to_choice" in config
        self.target = target or (lambda d: resolve(config["doc_to_target"], d, self.has_choices))
        self.sampler = sampler
        self.output_type = config["output_type"]
        self.tgt = config.get("target_delimiter", " ")
        self.few = config.get("fewshot_delimiter", "\n\n")
        # eval_doc is passed to the sampler when the few-shot split equals the test split (None == None included)
        self.pass_eval_doc = config.get("fewshot_split") == config.get("test_split")

    def requests(self, n_shot, count):
        rnd = random.Random(1234)
        out = []
        for doc_id, doc in enumerate(self.eval_docs[:count]):
            shots = []
            if n_shot > 0:
                if self.sampler == "first_n":
                    shots = self.fewshot_docs[:n_shot]
                elif self.pass_eval_doc:
                    shots = [x for x in rnd.sample(list(self.fewshot_docs), n_shot + 1) if x != doc][:n_shot]
                else:
                    shots = rnd.sample(list(self.fewshot_docs), n_shot)
            prefix = ""
            for shot in shots:
                q, a = self.text(shot), self.target(shot)
                c = self.choice(shot) if self.choice else None
                if isinstance(q, int):
                    q = c[q]
                answer = c[a] if (c and isinstance(a, int)) else a[0] if isinstance(a, list) else a
                prefix += q + self.tgt + answer + self.few
            q, a = self.text(doc), self.target(doc)
            entry = {"doc_id": doc_id}
            if self.output_type == "multiple_choice":
                c = self.choice(doc)
                if isinstance(q, int):  # multiple inputs: each choice is a context
                    entry["contexts"] = [prefix + ctx for ctx in c]
                    entry["continuations"] = [self.tgt + a for _ in c]
                    entry["gold"] = [q]
                else:
                    entry["contexts"] = [prefix + q for _ in c]
                    entry["continuations"] = [self.tgt + x for x in c]
                    entry["gold"] = [a] if isinstance(a, int) else a
            elif self.output_type == "loglikelihood":
                entry["contexts"] = [prefix + q]
                entry["continuations"] = [a]
                entry["gold"] = [0]
            else:
                entry["context"] = prefix + q
                entry["stop"] = self.config["generation_kwargs"]["until"]
                entry["target"] = a
            out.append(entry)
        return out


def main():
    cases = []

    def add(task, n_shot, count, data, note=""):
        cases.append({"task": task.name, "n_shot": n_shot, "data": data, "note": note, "requests": task.requests(n_shot, count)})

    hs = lm_eval_yaml("hellaswag/hellaswag.yaml")
    t = Task("hellaswag", hs, hellaswag_docs("val"), hellaswag_docs("train"))
    add(t, 0, 3, "fixture"); add(t, 2, 3, "fixture")
    for name, subset in [("arc_easy", "ARC-Easy"), ("arc_challenge", "ARC-Challenge")]:
        cfg = lm_eval_yaml("arc/arc_easy.yaml")
        t = Task(name, cfg, arc_docs(subset, "Test"), arc_docs(subset, "Train"))
        add(t, 0, 3, "fixture"); add(t, 2, 3, "fixture")
    wg = lm_eval_yaml("winogrande/default.yaml")
    t = Task("winogrande", wg, winogrande_docs("dev"), winogrande_docs("train_xl"), text=winogrande_text,
             target=winogrande_target, choice=winogrande_choice)
    t.has_choices = True
    add(t, 0, 3, "fixture"); add(t, 2, 3, "fixture")
    pq = lm_eval_yaml("piqa/piqa.yaml")
    add(Task("piqa", pq, piqa_docs(SHARED, "valid"), []), 0, 3, "shared")
    t = Task("piqa", pq, piqa_docs(FIXTURES, "valid"), piqa_docs(FIXTURES, "train"))
    add(t, 0, 2, "fixture"); add(t, 2, 2, "fixture")
    bq = lm_eval_yaml("super_glue/boolq/default.yaml")
    add(Task("boolq", bq, boolq_docs(SHARED, "val"), []), 0, 3, "shared")
    t = Task("boolq", bq, boolq_docs(FIXTURES, "val"), boolq_docs(FIXTURES, "train"))
    add(t, 2, 2, "fixture")
    ob = lm_eval_yaml("openbookqa/openbookqa.yaml")
    t = Task("openbookqa", ob, openbookqa_docs("test"), openbookqa_docs("train"))
    add(t, 0, 3, "shared", "TSV release form; text not compared with the JSONL lm-eval reads"); add(t, 3, 3, "shared")
    sq = lm_eval_yaml("sciq/sciq.yaml")
    t = Task("sciq", sq, json.load(open(f"{FIXTURES}/sciq/test.json")), json.load(open(f"{FIXTURES}/sciq/train.json")))
    add(t, 0, 3, "fixture"); add(t, 2, 3, "fixture")
    for v in ("mc1", "mc2"):
        cfg = lm_eval_yaml("truthfulqa/truthfulqa_mc1.yaml")
        cfg["doc_to_choice"] = "{{%s_targets.choices}}" % v
        t = Task("truthfulqa_" + v, cfg, truthfulqa_docs(), [],
                 target=(lambda d: 0) if v == "mc1" else (lambda d: d["mc2_targets"]["labels"]))
        add(t, 0, 3, "shared")
    lb = lm_eval_yaml("lambada/lambada_openai.yaml")
    lam = jsonl(f"{SHARED}/lambada_openai/lambada_test.jsonl")
    t = Task("lambada_openai", lb, lam, lam)
    add(t, 0, 3, "shared"); add(t, 2, 3, "shared")
    gs = lm_eval_yaml("gsm8k/gsm8k.yaml")
    t = Task("gsm8k", gs, jsonl(f"{SHARED}/gsm8k/test.jsonl"), jsonl(f"{SHARED}/gsm8k/train.jsonl"))
    add(t, 0, 3, "shared"); add(t, 5, 3, "shared")
    cot = lm_eval_yaml("gsm8k/gsm8k-cot.yaml")
    cot["doc_to_target"] = cot["doc_to_target"]  # samples have `target`, test docs `answer`
    t = Task("gsm8k_cot", cot, jsonl(f"{SHARED}/gsm8k/test.jsonl"), cot["fewshot_config"]["samples"], sampler="first_n")
    add(t, 0, 2, "shared"); add(t, 8, 2, "shared")
    json.dump({"lm_eval_commit": COMMIT, "generated_by": "tests/data/lm_eval/make_goldens.py", "cases": cases},
              sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


main()
