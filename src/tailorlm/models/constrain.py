"""Grammar-constrained decoding: answers held to a label set, a JSON Schema or a grammar.

A constraint is a plain dict, so it travels in `GenParams.constraint`, through the server's wire
format and into tailor.yaml unchanged:

    {"type": "choice", "choices": ["billing", "login_sso"]}      exactly one of the strings
    {"type": "json_schema", "schema": {...}}                     a JSON value valid for the schema
    {"type": "json_object"}                                      any JSON object
    {"type": "regex", "pattern": "[0-9]{4}"}                     a full match of the regex
    {"type": "lark", "grammar": "start: ..."}                    a Lark grammar (llguidance's dialect)

The local backend compiles it once per tokenizer (`grammars_for`) and gives each row of a batch its
own matcher (`RowMasks`): before every sampling step the logits of tokens the grammar forbids are set
to -inf, the sampled token is fed back, and a row whose grammar is complete finishes as if it had
sampled EOS. The OpenAI backend sends the same spec as `response_format` or vLLM's `guided_*`
fields (`openai_args`), so an upstream that enforces them does.

The grammar engine is llguidance, chosen by measurement over xgrammar and outlines-core
(docs/architecture.md, "Decisions"; benchmarks/constrain.py).

>>> spec = choice(["billing", "login_sso"])
>>> gen.generate(messages, GenParams(constraint=spec)).text  # doctest: +SKIP
'billing'
"""

import json
import threading
import weakref
from collections import OrderedDict

from tailorlm.errors import TailorError

TYPES = ("choice", "json_schema", "json_object", "regex", "lark")
# Compact JSON with json.dumps' separators: no whitespace runs for the model to wander into, and
# the spacing a model has seen most.
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class ConstraintError(TailorError):
    """A constraint spec that cannot be compiled: an unknown type, no choices, an invalid schema."""


def choice(labels: list[str]) -> dict:
    """The answer is exactly one of `labels`. >>> choice(["a", "b"]) -> {"type": "choice", "choices": ["a", "b"]}"""
    return check({"type": "choice", "choices": list(labels)})


def json_schema(schema: dict, name: str | None = None) -> dict:
    """The answer is JSON valid for `schema` (objects take no properties beyond those listed)."""
    return check({"type": "json_schema", "schema": schema, **({"name": name} if name else {})})


def json_object() -> dict:
    """The answer is a JSON object, any keys."""
    return {"type": "json_object"}


def check(spec: dict) -> dict:
    """`spec`, if it is a well-formed constraint; else ConstraintError saying what is wrong."""
    if not isinstance(spec, dict) or spec.get("type") not in TYPES:
        got = spec.get("type") if isinstance(spec, dict) else type(spec).__name__
        raise ConstraintError(f"constraint type must be one of {', '.join(TYPES)}; got {got!r}")
    kind = spec["type"]
    if kind == "choice":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices or not all(isinstance(c, str) and c for c in choices):
            raise ConstraintError("a choice constraint needs `choices`: a non-empty list of non-empty strings")
    elif kind == "json_schema" and not isinstance(spec.get("schema"), dict):
        raise ConstraintError("a json_schema constraint needs `schema`: a JSON Schema object")
    elif kind in ("regex", "lark"):
        field = "pattern" if kind == "regex" else "grammar"
        if not isinstance(spec.get(field), str) or not spec[field]:
            raise ConstraintError(f"a {kind} constraint needs `{field}`: a non-empty string")
    return spec


def writable(spec: dict, tokenizer) -> None:
    """Raise ConstraintError when a choice holds text `tokenizer` cannot write (it drops some control
    characters): its grammar could never be completed, and decoding would go off it."""
    if spec.get("type") != "choice":
        return
    for c in spec["choices"]:
        if tokenizer.decode(tokenizer(c, add_special_tokens=False)["input_ids"]) != c:
            raise ConstraintError(f"choice {c!r} has characters this model's tokenizer cannot write")


def closed(schema):
    """The schema with `additionalProperties: false` on every object that lists properties and
    says nothing about others, as OpenAI's strict mode requires: a model is not invited to invent
    keys, and every answer it can give still validates against the original schema."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out and "patternProperties" not in out:
        out["additionalProperties"] = False
    return out


def grammar_text(spec: dict) -> str:
    """The llguidance grammar for a spec."""
    from llguidance import LLMatcher

    kind = check(spec)["type"]
    if kind == "choice":
        # Lark string literals take JSON's escapes, so any label is written safely.
        return LLMatcher.grammar_from_lark("start: " + " | ".join(json.dumps(c, ensure_ascii=False) for c in spec["choices"]))
    if kind == "json_schema":
        return LLMatcher.grammar_from_json_schema(closed(spec["schema"]), defaults=JSON_OPTIONS)
    if kind == "json_object":
        return LLMatcher.grammar_from_json_schema({"type": "object"}, defaults=JSON_OPTIONS)
    if kind == "regex":
        return LLMatcher.grammar_from_regex(spec["pattern"])
    return LLMatcher.grammar_from_lark(spec["grammar"])


class Grammars:
    """One tokenizer's compiled constraints: llguidance's view of the vocabulary (0.2-0.8 s to build
    here) and the last `KEEP` grammars, validated, keyed by their spec."""

    KEEP = 64

    def __init__(self, tokenizer, vocab_size: int, eos_ids: set[int]):
        import llguidance.hf

        self.vocab_size = vocab_size
        self.tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size, eos_token=sorted(eos_ids))
        self._compiled: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def compile(self, spec: dict) -> str:
        from llguidance import LLMatcher

        try:
            key = json.dumps(check(spec), sort_keys=True, ensure_ascii=False)
        except (TypeError, ValueError) as e:  # a value JSON cannot hold (a set, NaN in a schema ...)
            raise ConstraintError(f"a constraint must be plain JSON: {e}") from e
        with self._lock:
            if key in self._compiled:
                self._compiled.move_to_end(key)
                return self._compiled[key]
        text = grammar_text(spec)
        problem = LLMatcher.validate_grammar(text, self.tokenizer)
        if problem:
            raise ConstraintError(f"cannot compile {spec['type']} constraint: {problem}")
        with self._lock:
            self._compiled[key] = text
            while len(self._compiled) > self.KEEP:
                self._compiled.popitem(last=False)
        return text

    def matcher(self, spec: dict):
        from llguidance import LLMatcher

        return LLMatcher(self.tokenizer, self.compile(spec))


_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def grammars_for(tokenizer, vocab_size: int, eos_ids: set[int]) -> Grammars:
    """The `Grammars` of a tokenizer (built on first use, kept while the tokenizer lives)."""
    key = (vocab_size, tuple(sorted(eos_ids)))
    with _CACHE_LOCK:
        per = _CACHE.setdefault(tokenizer, {})
        if key not in per:
            per[key] = Grammars(tokenizer, vocab_size, eos_ids)
        return per[key]


class RowMasks:
    """The constrained rows of one decode batch: a matcher per row, one bitmask for all.

    Rows whose spec is None are left alone, so constrained and free rows share a batch.
    """

    def __init__(self, grammars: Grammars, specs: list[dict | None]):
        import torch

        self.matchers = {row: grammars.matcher(spec) for row, spec in enumerate(specs) if spec is not None}
        self.vocab_size = grammars.vocab_size
        # llguidance's layout: bit i of word j allows token 32 j + i. All ones: every token allowed.
        self.bitmask = torch.full((len(specs), (self.vocab_size + 31) // 32), -1, dtype=torch.int32)
        self._torch = torch

    def apply(self, logits, finished: list[bool]) -> None:
        """Set, in place, the logits of the tokens each live constrained row may not take to -inf.

        `logits` is (rows, vocab_size); free rows keep an all-ones mask, finished rows a stale one
        (their token is discarded).
        """
        import numpy as np

        live = [r for r in self.matchers if not finished[r]]
        if not live:
            return
        for r in live:
            v = self.bitmask[r]
            self.matchers[r].unsafe_compute_mask_ptr(v.data_ptr(), v.numel() * 4)
        # numpy unpacks the bits in about a tenth of the time of torch's shift-and-mask (little-endian
        # words: byte k, bit i is token 8 k + i).
        bits = self._torch.from_numpy(np.unpackbits(self.bitmask.numpy().view(np.uint8), axis=-1, bitorder="little"))
        logits.masked_fill_(bits[:, : logits.shape[-1]].to(logits.device) == 0, float("-inf"))

    def accept(self, row: int, token: int) -> bool:
        """Feed a sampled (non-EOS) token to its row's matcher; True when the row's grammar is complete."""
        m = self.matchers.get(row)
        if m is None:
            return False
        if not m.consume_token(token):
            # The grammar asked for text the tokenizer cannot write (every token masked), so any pick is off it.
            raise ConstraintError(f"constrained decoding went off its grammar: {m.get_error()}")
        return m.is_stopped()


TOOL_OPEN, TOOL_CLOSE = "<tool_call>\n", "\n</tool_call>"


def tool_calls(tools: list[dict], mode: str = "auto", answer: dict | None = None, parallel: bool = True) -> dict:
    """A lark constraint for answers that may call `tools` (OpenAI's function definitions).

    A call is written `<tool_call>\\n{"name": NAME, "arguments": ARGS}\\n</tool_call>` (Hermes' format,
    which Qwen's and other templates also use), with ARGS valid for the function's `parameters`;
    several calls are separated by a newline unless `parallel` is False. `mode`:
    - "auto": either calls, or an answer that starts with anything but `<` (free text, or held to
      `answer`, a choice, regex or JSON constraint), so the first token decides which;
    - "required": one call or more, of any of the tools;
    - a function's name: exactly one call of that function.
    """
    by_name = {t["function"]["name"]: t["function"] for t in tools}
    names = list(by_name) if mode in ("auto", "required") else [mode]
    if any(n not in by_name for n in names):
        raise ConstraintError(f"tool_choice names {mode!r}, which is not among the tools")
    rules = [f"call_{i}: {json.dumps(TOOL_OPEN)} %json {json.dumps(_call_schema(n, by_name[n].get('parameters')))} "
             f"{json.dumps(TOOL_CLOSE)}" for i, n in enumerate(names)]
    calls = "call" if not parallel or mode not in ("auto", "required") else 'call ("\\n" call)*'
    lines = [f"calls: {calls}", "call: " + " | ".join(f"call_{i}" for i in range(len(names))), *rules]
    if mode == "auto":
        lines = ["start: calls | answer", f"answer: {_lark_answer(answer)}", *lines, "TEXT: /[^<](.|\\n)*/"]
    else:
        lines = ["start: calls", *lines]
    return check({"type": "lark", "grammar": "\n".join(lines) + "\n"})


def _call_schema(name: str, parameters: dict | None) -> dict:
    params = dict(parameters or {"type": "object"})
    # A pydantic schema refers to "#/$defs/X" from its root; inside the call object its root moves, so
    # the definitions move up with it.
    defs = {k: params.pop(k) for k in ("$defs", "definitions") if k in params}
    return {"type": "object", "properties": {"name": {"const": name}, "arguments": closed(params)},
            "required": ["name", "arguments"], "additionalProperties": False, **closed(defs),
            "x-guidance": JSON_OPTIONS}


def _lark_answer(spec: dict | None) -> str:
    """The lark expression for an answer held to `spec` (TEXT, any text, when None)."""
    if spec is None:
        return "TEXT"
    kind = check(spec)["type"]
    if kind == "choice":
        return " | ".join(json.dumps(c, ensure_ascii=False) for c in spec["choices"])
    if kind == "regex":
        return "/" + spec["pattern"].replace("/", "\\/") + "/"
    if kind in ("json_schema", "json_object"):
        schema = closed(spec["schema"]) if kind == "json_schema" else {"type": "object"}
        return "%json " + json.dumps({**schema, "x-guidance": JSON_OPTIONS}, ensure_ascii=False)
    raise ConstraintError("a lark grammar cannot be combined with tools; give the grammar alone")


def openai_args(spec: dict) -> dict:
    """The request fields that ask an OpenAI-compatible upstream to enforce `spec` itself.

    JSON goes as `response_format` (the OpenAI API); choice, regex and grammar go as vLLM's
    `guided_choice`, `guided_regex` and `guided_grammar`, in the request body's extra fields.
    """
    kind = check(spec)["type"]
    if kind == "json_schema":
        return {"response_format": {"type": "json_schema", "json_schema": {
            "name": spec.get("name", "answer"), "schema": closed(spec["schema"]), "strict": True}}}
    if kind == "json_object":
        return {"response_format": {"type": "json_object"}}
    field, value = {"choice": ("guided_choice", spec.get("choices")), "regex": ("guided_regex", spec.get("pattern")),
                    "lark": ("guided_grammar", spec.get("grammar"))}[kind]
    return {"extra_body": {field: value}}


def task_constraint(task) -> dict | None:
    """The constraint a task's prompting rungs answer under, if any.

    An extraction task with `task.schema` answers in JSON valid for it; a classification task whose
    `label_mode` is `constrain` answers with one of its labels. Anything else answers freely.
    """
    schema = getattr(task, "json_schema", None)
    if task.type == "extraction" and schema is not None:
        if not isinstance(schema, dict):
            raise ConstraintError(f"task.schema {schema!r} was not loaded; load the project with Project.load")
        return json_schema(schema)
    if task.type == "classification" and task.labels and getattr(task, "label_mode", None) == "constrain":
        return choice(list(task.labels))
    return None
