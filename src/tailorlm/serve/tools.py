"""Structured outputs and tool calls on the wire, between a chat request and the generator.

- `constraint(req)`: what `response_format`, vLLM's `guided_*` fields, `tools` and `tool_choice` ask
  of the local backend, as one `models/constrain.py` spec (decoded under llguidance, like the ladder's
  constrained rungs). With tools (and `tool_choice` not `none`) the answer is a grammar: under `auto`
  either tool calls or an answer that does not start with `<`; under `required` calls only; under a
  named function exactly one call of it; each call's arguments valid for that function's schema.
- `upstream_fields(req)`: the same fields as the client sent them, for an OpenAI-compatible upstream
  (vLLM, OpenAI) to enforce itself.
- `render(messages, tools, tokenizer)`: the conversation for the chat template. A template that
  knows tools (it mentions `tools`) gets them natively; others (SmolLM2's) get the functions in the
  system message and earlier calls written in the format the grammar decodes (`<tool_call>` blocks).
- `CallParser`: decoded text to OpenAI's `tool_calls`, incrementally, so streams send the deltas
  OpenAI sends (the call's id and name first, then pieces of its arguments).
"""

import json
import re

from tailorlm.models.constrain import TOOL_CLOSE, TOOL_OPEN, choice, json_object, json_schema, tool_calls
from tailorlm.store import new_id

TOOLS_PROMPT = ("You can call these functions. To call one, answer with only\n" + TOOL_OPEN
                + '{"name": "<function name>", "arguments": <its arguments as a JSON object>}' + TOOL_CLOSE
                + "\nOne block per call; the function's result comes back in a `tool` message. The functions:\n")
_HEAD = re.compile(r'\{"name": ("(?:[^"\\]|\\.)*"), "arguments": ')


def answer_spec(req) -> dict | None:
    """The constraint on a plain answer: response_format, or one guided_* field (at most one of them)."""
    specs = []
    fmt = req.response_format
    if fmt is not None and fmt.type == "json_object":
        specs.append(json_object())
    elif fmt is not None and fmt.type == "json_schema":
        specs.append(json_schema(fmt.json_schema.schema_, fmt.json_schema.name))
    if req.guided_choice is not None:
        specs.append(choice(req.guided_choice))
    if req.guided_json is not None:
        specs.append(json_schema(req.guided_json))
    if req.guided_regex is not None:
        specs.append({"type": "regex", "pattern": req.guided_regex})
    if len(specs) > 1:
        raise ValueError("give at most one of response_format (json_object, json_schema), guided_choice, "
                         "guided_json and guided_regex")
    return specs[0] if specs else None


def tool_mode(req) -> str:
    """`none`, `auto`, `required` or the function's name; checks that tool_choice fits the tools."""
    tools = getattr(req, "tools", None) or []
    chosen = getattr(req, "tool_choice", None)
    mode = ("auto" if tools else "none") if chosen is None else chosen if isinstance(chosen, str) else chosen.function.name
    if mode != "none" and not tools:
        raise ValueError(f"tool_choice {mode!r} needs tools")
    names = [t.function.name for t in tools]
    if len(set(names)) < len(names):
        raise ValueError("tools: two functions have the same name")
    if mode not in ("none", "auto", "required") and mode not in names:
        raise ValueError(f"tool_choice names function {mode!r}, which is not among the tools ({', '.join(names)})")
    return mode


def constraint(req) -> dict | None:
    answer = answer_spec(req)
    mode = tool_mode(req)
    if mode == "none":
        return answer
    return tool_calls([t.model_dump() for t in req.tools], mode, answer, req.parallel_tool_calls)


def upstream_fields(req) -> dict:
    """Keyword arguments for the openai client's create(): typed fields top-level, vLLM's in extra_body."""
    out = req.model_dump(include={"response_format", "tools", "tool_choice"}, exclude_none=True, by_alias=True)
    if getattr(req, "tools", None) and not req.parallel_tool_calls:
        out["parallel_tool_calls"] = False
    extra = req.model_dump(include={"guided_choice", "guided_json", "guided_regex"}, exclude_none=True)
    if extra:
        out["extra_body"] = extra
    return out


def render(messages: list[dict], tools: list[dict] | None, tokenizer) -> tuple[list[dict], dict]:
    """(messages, extra keyword arguments for apply_chat_template)."""
    if not tools and not any(m.get("tool_calls") or m["role"] == "tool" for m in messages):
        return messages, {}
    if "tools" in (getattr(tokenizer, "chat_template", None) or ""):
        # Templates loop over arguments as a mapping (`| tojson`, `.items()`), not as the wire's JSON text.
        native = [{**m, "tool_calls": [{**c, "function": {**c["function"], "arguments": _loads(c["function"]["arguments"])}}
                                       for c in m["tool_calls"]]} if m.get("tool_calls") else m for m in messages]
        return native, ({"tools": tools} if tools else {})
    out = []
    for m in messages:
        if m.get("tool_calls"):
            calls = [TOOL_OPEN + json.dumps({"name": c["function"]["name"], "arguments": _loads(c["function"]["arguments"])},
                                            ensure_ascii=False) + TOOL_CLOSE for c in m["tool_calls"]]
            m = {"role": m["role"], "content": "\n".join(filter(None, [m["content"], *calls]))}
        out.append({"role": m["role"], "content": m["content"]})
    if tools:
        listing = TOOLS_PROMPT + "\n".join(json.dumps(t["function"], ensure_ascii=False) for t in tools)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + listing}
        else:
            out.insert(0, {"role": "system", "content": listing})
    return out, {}


def _loads(arguments: str):
    try:
        return json.loads(arguments)
    except ValueError:  # a client's own malformed call is shown to the model as it was sent
        return arguments


class CallParser:
    """One answer's text, split as it streams into content and OpenAI tool-call deltas.

    Under a tools grammar an answer is either text or calls, and the first characters say which:
    until they do (a prefix of `<tool_call>`), nothing is sent.
    """

    def __init__(self):
        self.raw, self.mode = "", None  # mode: None (undecided), "text" or "calls"
        self.sent: list[tuple[str, int]] = []  # per call: its id, how many argument characters went out

    def feed(self, text: str) -> tuple[str, list[dict]]:
        """(content, tool-call deltas) that `text` adds."""
        self.raw += text
        if self.mode is None:
            if TOOL_OPEN.startswith(self.raw) and len(self.raw) < len(TOOL_OPEN):
                return "", []
            self.mode = "calls" if self.raw.startswith(TOOL_OPEN) else "text"
            if self.mode == "text":
                return self.raw, []
        if self.mode == "text":
            return text, []
        return "", self._deltas()

    def finish(self) -> str:
        """Content still held back when the answer ends (a text that began like a call)."""
        if self.mode is None:
            self.mode = "text"
            return self.raw
        return ""

    @property
    def called(self) -> bool:
        return self.mode == "calls"

    def _deltas(self) -> list[dict]:
        out = []
        for index, (name, args) in enumerate(_calls(self.raw)):
            if index == len(self.sent):
                self.sent.append((new_id("call_"), 0))
                out.append({"index": index, "id": self.sent[index][0], "type": "function",
                            "function": {"name": name, "arguments": ""}})
            call_id, done = self.sent[index]
            if len(args) > done:
                out.append({"index": index, "function": {"arguments": args[done:]}})
                self.sent[index] = (call_id, len(args))
        return out


def _calls(raw: str) -> list[tuple[str, str]]:
    """(name, the arguments' text so far) of each call in `raw`, the grammar's compact format."""
    out, at = [], 0
    while raw.startswith(TOOL_OPEN, at):
        head = _HEAD.match(raw, at + len(TOOL_OPEN))
        if head is None:  # the name is still arriving
            break
        start = head.end()
        end = _value_end(raw, start)
        out.append((json.loads(head.group(1)), raw[start:end]))
        if end == len(raw):
            break
        at = end + len("}" + TOOL_CLOSE + "\n")
    return out


def _value_end(text: str, start: int) -> int:
    """Where the JSON value starting at `start` ends (len(text) if it has not ended yet)."""
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(text)):
        c = text[i]
        if in_string:
            escaped, in_string = (not escaped and c == "\\"), escaped or c != '"'
            if not in_string and depth == 0:
                return i + 1
        elif c == '"':
            in_string = True
        elif c in "{[":
            depth += 1
        elif c in "}]" or (c == "," and depth == 0):
            if depth == 0:  # a number or literal ends where its container goes on
                return i
            depth -= 1
            if depth == 0:
                return i + 1
    return len(text)


def merge(calls: list[dict], deltas: list[dict]) -> None:
    """Apply OpenAI tool-call deltas to the whole calls they build (what a non-streamed answer returns)."""
    for d in deltas:
        while len(calls) <= d["index"]:
            calls.append({"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
        call, fn = calls[d["index"]], d.get("function") or {}
        call["id"] = d.get("id") or call["id"]
        call["function"]["name"] += fn.get("name") or ""
        call["function"]["arguments"] += fn.get("arguments") or ""
