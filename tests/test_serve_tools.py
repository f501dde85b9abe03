"""Structured outputs and tools on `tailor serve`'s wire: response_format, vLLM's guided_* fields,
tools and tool_choice with the official openai client over loopback, on the tiny random model (its
answers are noise, so every structure they have comes from constrained decoding)."""

import json
from typing import Literal

import httpx
import pytest
from jsonschema import validate
from pydantic import BaseModel, Field

from tests.serve_fixtures import *  # noqa: F403
from tests.serve_fixtures import client_for

MODEL = "acme:zero_shot"
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 8},
                                              "unit": {"enum": ["c", "f"]}}, "required": ["city", "unit"]}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather now", "parameters": WEATHER}},
         {"type": "function", "function": {"name": "get_time", "parameters": {
             "type": "object", "properties": {"zone": {"enum": ["utc", "cet"]}}, "required": ["zone"]}}}]


class Ticket(BaseModel):
    priority: Literal["low", "high"]
    urgent: bool
    team: str = Field(max_length=6)


@pytest.fixture
def client(start):
    url, _ = start()
    return client_for(url)


def test_parse_with_a_pydantic_model_returns_a_valid_instance(client):
    r = client.chat.completions.parse(model=MODEL, messages=ASK, response_format=Ticket, max_tokens=60)
    choice = r.choices[0]
    assert choice.finish_reason == "stop"
    assert isinstance(choice.message.parsed, Ticket)  # the client validated the content itself
    assert Ticket.model_validate_json(choice.message.content) == choice.message.parsed


def test_parse_with_a_pydantic_function_tool_returns_parsed_arguments(client):
    import openai

    class GetWeather(BaseModel):
        city: str = Field(max_length=8)
        unit: Literal["c", "f"]

    tool = openai.pydantic_function_tool(GetWeather)
    r = client.chat.completions.parse(model=MODEL, messages=ASK, tools=[tool], max_tokens=60,
                                      tool_choice={"type": "function", "function": {"name": "GetWeather"}})
    call = r.choices[0].message.tool_calls[0]
    assert isinstance(call.function.parsed_arguments, GetWeather)


def test_json_schema_answers_validate_streamed_sampled_and_n(client):
    schema = {"type": "object", "properties": {"label": {"enum": ["a", "b", "c"]}, "n": {"type": "integer", "maximum": 9,
                                                                                     "minimum": 0}},
              "required": ["label", "n"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "t", "schema": schema, "strict": True}}
    r = client.chat.completions.create(model=MODEL, messages=ASK, response_format=fmt, max_tokens=40, n=3,
                                       temperature=1.0, seed=3)
    for choice in r.choices:
        validate(json.loads(choice.message.content), schema)
    parts = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=MODEL, messages=ASK, response_format=fmt, max_tokens=40, stream=True) if c.choices]
    assert len([p for p in parts if p]) > 1  # streamed in pieces, not held back
    validate(json.loads("".join(parts)), schema)


def test_json_object_guided_choice_regex_and_guided_json(client):
    r = client.chat.completions.create(model=MODEL, messages=ASK, response_format={"type": "json_object"}, max_tokens=60)
    # A random model may run out of tokens inside the object; what it wrote is still a JSON object's prefix.
    text = r.choices[0].message.content
    assert text.startswith("{") and (r.choices[0].finish_reason == "length" or isinstance(json.loads(text), dict))
    labels = ["billing", "login_sso", "other"]
    r = client.chat.completions.create(model=MODEL, messages=ASK, extra_body={"guided_choice": labels}, n=2,
                                       temperature=1.0, seed=1)
    assert all(c.message.content in labels for c in r.choices)
    r = client.chat.completions.create(model=MODEL, messages=ASK, extra_body={"guided_regex": "[0-9]{3}-[a-z]{2}"})
    assert len(r.choices[0].message.content) == 6 and r.choices[0].message.content[3] == "-"
    r = client.completions.create(model=MODEL, prompt="Ticket:", extra_body={"guided_json": WEATHER}, max_tokens=40)
    validate(json.loads(r.choices[0].text), WEATHER)  # text completions take the same fields


def test_required_tool_choice_returns_tool_calls_with_valid_arguments(client):
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    one = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, tool_choice="required",
                                         parallel_tool_calls=False, max_tokens=80).choices[0]
    assert one.finish_reason == "tool_calls" and one.message.content is None and len(one.message.tool_calls) == 1
    # In parallel the random model keeps calling until max_tokens, which may cut the last call short.
    many = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, tool_choice="required",
                                          max_tokens=120).choices[0]
    whole = many.message.tool_calls[:-1] if many.finish_reason == "length" else many.message.tool_calls
    assert len(many.message.tool_calls) > 1 and many.message.content is None
    for call in [*one.message.tool_calls, *whole]:
        assert call.type == "function" and call.id.startswith("call_")
        validate(json.loads(call.function.arguments), schemas[call.function.name])
    ids = [c.id for c in many.message.tool_calls]
    assert len(set(ids)) == len(ids)


def test_streamed_tool_call_deltas_concatenate_to_valid_json_arguments(client):
    events = list(client.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=80, stream=True))
    deltas = [d for e in events if e.choices for d in (e.choices[0].delta.tool_calls or [])]
    assert deltas[0].id.startswith("call_") and deltas[0].function.name == "get_weather"
    assert {d.index for d in deltas} == {0} and all(d.id is None for d in deltas[1:])
    pieces = [d.function.arguments for d in deltas[1:]]
    assert len(pieces) > 1  # the arguments arrive as they are decoded
    validate(json.loads("".join(pieces)), WEATHER)
    assert [e.choices[0].finish_reason for e in events if e.choices and e.choices[0].finish_reason] == ["tool_calls"]
    assert not any(e.choices[0].delta.content for e in events if e.choices)


def test_a_tool_call_round_trip_with_the_official_client(client):
    first = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, tool_choice="required",
                                           parallel_tool_calls=False, max_tokens=80)
    calls = first.choices[0].message.tool_calls
    assert len(calls) == 1  # parallel_tool_calls=False: one call
    conversation = [*ASK, first.choices[0].message.model_dump(exclude_none=True),
                    {"role": "tool", "tool_call_id": calls[0].id, "content": '{"temp": 21}'}]
    second = client.chat.completions.create(model=MODEL, messages=conversation, tools=TOOLS, max_tokens=12)
    answer = second.choices[0]
    # Under auto the answer is either calls or text that does not begin like one.
    if answer.message.tool_calls:
        assert answer.finish_reason == "tool_calls"
        for call in answer.message.tool_calls:
            json.loads(call.function.arguments)
    else:
        assert not answer.message.content.startswith("<")
    none = client.chat.completions.create(model=MODEL, messages=conversation, tools=TOOLS, tool_choice="none", max_tokens=8)
    assert none.choices[0].message.tool_calls is None and none.choices[0].finish_reason in ("stop", "length")


def test_the_fallback_template_shows_functions_calls_and_results(tokenizer):
    from tailorlm.serve.tools import render

    messages = [{"role": "system", "content": "You are Acme's assistant."}, *ASK,
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
                {"role": "tool", "content": '{"temp": 21}', "tool_call_id": "call_1"}]
    rendered, extra = render(messages, TOOLS, tokenizer)
    assert extra == {}  # SmolLM2's template knows no tools
    text = tokenizer.apply_chat_template(rendered, tokenize=False, add_generation_prompt=True)
    assert "You are Acme's assistant.\n\nYou can call these functions" in text  # joins the rung's system prompt
    assert json.dumps(TOOLS[0]["function"]) in text
    assert '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in text
    assert '<|im_start|>tool\n{"temp": 21}<|im_end|>' in text
    assert render(ASK, None, tokenizer) == (ASK, {})


def test_a_template_that_knows_tools_gets_them_natively(tokenizer):
    import copy

    from tailorlm.serve.tools import render

    native = copy.deepcopy(tokenizer)
    native.chat_template = ("{% for t in tools %}TOOL {{ t.function.name }}\n{% endfor %}{% for m in messages %}"
                            "{{ m.role }}: {{ m.content }}{% for c in m.tool_calls or [] %} CALL {{ c.function.name }} "
                            "{{ c.function.arguments.city }}{% endfor %}\n{% endfor %}")
    messages = [*ASK, {"role": "assistant", "content": "", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]}]
    rendered, extra = render(messages, TOOLS, native)
    text = native.apply_chat_template(rendered, tokenize=False, **extra)
    assert text.startswith("TOOL get_weather\nTOOL get_time\n") and "CALL get_weather Rome" in text


@pytest.mark.parametrize("body, message, code", [
    ({"tool_choice": "required"}, "tool_choice 'required' needs tools", "invalid_constraint"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "not among the tools",
     "invalid_constraint"),
    ({"response_format": {"type": "json_object"}, "guided_choice": ["a"]}, "at most one of", "invalid_constraint"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "frob"}}}}, "frob",
     "invalid_constraint"),
    ({"tools": [TOOLS[0], TOOLS[0]]}, "same name", "invalid_constraint"),
    ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools[0].function.name", "invalid_value"),
])
def test_bad_structured_requests_are_400s_that_say_why(start, body, message, code):
    url, _ = start()
    r = httpx.post(url + "/chat/completions", json={"model": MODEL, "messages": ASK, **body}, timeout=60)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]["message"] and r.json()["error"]["code"] == code


def test_metrics_fold_unknown_model_names_into_one_series(start):
    import random

    url, _ = start()
    root = url.removesuffix("/v1")

    def series() -> list[str]:
        return [ln for ln in httpx.get(root + "/metrics", timeout=60).text.splitlines() if ln.startswith("tailor_requests_total{")]

    httpx.post(url + "/chat/completions", json={"model": MODEL, "messages": ASK, "max_tokens": 2}, timeout=60).raise_for_status()
    series()  # /metrics counts its own requests: its series exists from here on
    before = len(series())
    rng = random.Random(0)
    with httpx.Client(timeout=60) as http:
        for _ in range(1000):
            name = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz:@-", k=12))
            assert http.post(url + "/chat/completions", json={"model": name, "messages": ASK}).status_code == 404
    after = series()
    assert len(after) == before + 1  # one more series for all 1,000 names: model="other", status 404
    assert 'tailor_requests_total{endpoint="/v1/chat/completions",model="other",status="404"} 1000' in after
    assert any(f'model="{MODEL}",status="200"' in ln for ln in after)  # a served name keeps its own
