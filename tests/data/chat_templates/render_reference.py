# Renders chat templates with Python's Jinja2 set up as transformers sets it up (trim_blocks, lstrip_blocks,
# loop controls, raise_exception, tojson without ASCII escaping): the reference for tests/tokenizer_test.cpp.
# Input on argv[1]: JSON list of {"template": path, "context": {...}}; output: JSON list of {"text"} or {"error"}.
import json, sys
import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


class TemplateError(Exception):
    pass


def raise_exception(message):
    raise TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
results = []
for case in json.load(open(sys.argv[1], encoding="utf-8")):
    try:
        template = env.from_string(open(case["template"], encoding="utf-8").read())
        results.append({"text": template.render(**case["context"])})
    except TemplateError as e:
        results.append({"error": str(e)})
json.dump(results, sys.stdout, ensure_ascii=False)
