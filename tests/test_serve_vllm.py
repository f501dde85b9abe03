"""`--backend vllm`: the command line Tailor writes, and the gateway in front of an OpenAI-compatible
upstream (the scripted `FakeUpstream` standing in for vLLM)."""

import importlib.util
import json

import pytest

from tests.serve_fixtures import *  # noqa: F403
from tests.serve_fixtures import add_version, client_for, write_project


def test_the_vllm_command_serves_the_base_and_every_adapter_version(tmp_path, tiny_model, tiny_model_dir, cli):
    from tailorlm.serve.vllm import vllm_command
    from tailorlm.train import registry

    project = write_project(tmp_path / "acme", generator=tiny_model_dir)
    add_version(project, str(tiny_model_dir), tiny_model, r=8)
    add_version(project, str(tiny_model_dir), tiny_model, r=24)
    registry.register(project, "acme", "full", str(tiny_model_dir), None, None, weights_path="full/model")
    add_version(project, "some-other-base", tiny_model)  # another base: not a module of this vLLM

    cmd = vllm_command(project, "127.0.0.1", 8011)
    assert cmd[:3] == ["vllm", "serve", str(tiny_model_dir)]
    flags = {cmd[i]: cmd[i + 1] for i in range(3, len(cmd) - 1) if cmd[i].startswith("--")}
    assert flags["--served-model-name"] == str(tiny_model_dir) and flags["--port"] == "8011"
    assert "--enable-lora" in cmd and flags["--max-lora-rank"] == "32" and flags["--max-loras"] == "2"
    modules = cmd[cmd.index("--lora-modules") + 1: cmd.index("--max-lora-rank")]
    assert modules == [f"acme-sft-v1={project.root / 'adapters/v1'}", f"acme-sft-v2={project.root / 'adapters/v2'}"]

    out = cli("serve", "--backend", "vllm", "--dry-run", "--vllm-port", "8011", "-p", project.root, "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["command"] == cmd


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_launching_vllm_without_it_says_what_to_do(tmp_path, tiny_model_dir):
    from tailorlm.errors import TailorError
    from tailorlm.serve.vllm import launch, vllm_command

    project = write_project(tmp_path / "acme", generator=tiny_model_dir)
    with pytest.raises(TailorError, match="pip install vllm"):
        launch(vllm_command(project), "http://127.0.0.1:8011/v1")


def test_the_gateway_forwards_rungs_and_versions_to_the_upstream(start, project, upstream, tiny_model):
    version = add_version(project, "smollm2-135m-instruct", tiny_model)
    url, _ = start(upstream=upstream.base_url)
    client = client_for(url)
    upstream.answers += ["Team costs $12 a seat.", "The adapter speaks.", "Streamed from upstream."]

    r = client.chat.completions.create(model="acme:zero_shot", messages=[{"role": "user", "content": "Team price?"}])
    assert r.choices[0].message.content == "Team costs $12 a seat." and r.usage.prompt_tokens == 7
    sent = upstream.requests[-1]
    assert sent["model"] == "smollm2-135m-instruct"  # the base, under its served name
    assert sent["messages"][0]["role"] == "system" and "Acme" in sent["messages"][0]["content"]  # rung prompting stays here

    r2 = client.chat.completions.create(model=version["id"], messages=[{"role": "user", "content": "hi"}], temperature=0)
    assert upstream.requests[-1]["model"] == "acme-sft-v1" and r2.choices[0].message.content == "The adapter speaks."
    assert upstream.requests[-1]["messages"][0]["content"] == "You are Acme's assistant."  # as the version was trained

    events = list(client.chat.completions.create(model="acme:zero_shot", messages=[{"role": "user", "content": "x"}],
                                                 stream=True, stream_options={"include_usage": True}))
    assert "".join(e.choices[0].delta.content or "" for e in events if e.choices) == "Streamed from upstream."
    assert events[-1].usage.completion_tokens == 3

    rows = {t["id"]: t for t in project.store.select("traces")}
    assert rows[r2.id]["model_version"] == "acme:sft@v1" and rows[events[0].id]["status"] == 200
    assert client.models.list().data  # the gateway, not the upstream, answers for the served names


def test_an_upstream_that_fails_is_a_502_not_a_crash(start, project):
    from tests.conftest import free_port

    url, _ = start(upstream=f"http://127.0.0.1:{free_port()}/v1")  # nothing listens there
    import openai

    with pytest.raises(openai.APIStatusError) as e:
        client_for(url).chat.completions.create(model="acme:zero_shot", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 502 and e.value.body["code"] == "upstream_failed"


def test_the_upstream_key_comes_from_the_environment(start, project, upstream, monkeypatch):
    monkeypatch.setenv("VLLM_KEY", "upstream-secret-1")
    url, _ = start(upstream=upstream.base_url, upstream_key_env="VLLM_KEY")
    upstream.answers.append("ok")
    client_for(url).chat.completions.create(model="acme:zero_shot", messages=[{"role": "user", "content": "hi"}])
    assert upstream.headers[-1]["authorization"] == "Bearer upstream-secret-1"


def test_structured_output_and_tool_fields_pass_through_to_the_upstream(start, project, upstream):
    url, _ = start(upstream=upstream.base_url)
    client = client_for(url)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    fmt = {"type": "json_schema", "json_schema": {"name": "t", "schema": {"type": "object"}, "strict": True}}
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    upstream.answers += ['{"a": 1}', "lisbon", [{"name": "get_weather", "arguments": '{"city": "Paris"}'}],
                         [{"name": "get_weather", "arguments": '{"city": "Rome"}'}], "It is 21 degrees.", "123"]

    r = client.chat.completions.create(model="acme:zero_shot", messages=ask, response_format=fmt)
    assert r.choices[0].message.content == '{"a": 1}' and upstream.requests[-1]["response_format"] == fmt
    client.chat.completions.create(model="acme:zero_shot", messages=ask, extra_body={"guided_choice": ["lisbon", "rome"]})
    assert upstream.requests[-1]["guided_choice"] == ["lisbon", "rome"]

    r = client.chat.completions.create(model="acme:zero_shot", messages=ask, tools=tools, tool_choice="required",
                                       parallel_tool_calls=False)
    sent = upstream.requests[-1]
    assert sent["tools"] == tools and sent["tool_choice"] == "required" and sent["parallel_tool_calls"] is False
    call = r.choices[0].message.tool_calls[0]
    assert (call.id, call.function.name, call.function.arguments) == ("up_0", "get_weather", '{"city": "Paris"}')
    assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None

    events = list(client.chat.completions.create(model="acme:zero_shot", messages=ask, tools=tools, stream=True,
                                                 tool_choice={"type": "function", "function": {"name": "get_weather"}}))
    assert upstream.requests[-1]["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    deltas = [d for e in events if e.choices for d in (e.choices[0].delta.tool_calls or [])]
    assert deltas[0].id == "up_0" and "".join(d.function.arguments or "" for d in deltas) == '{"city": "Rome"}'

    # The conversation goes on with the call and its result, in OpenAI's shape, to the upstream.
    history = [*ask, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "up_0", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "up_0", "content": "21"}]
    r = client.chat.completions.create(model="acme:zero_shot", messages=history, tools=tools)
    assert r.choices[0].message.content == "It is 21 degrees."
    sent = upstream.requests[-1]["messages"]
    assert sent[-2]["tool_calls"][0]["function"]["arguments"] == '{"city": "Paris"}'
    assert sent[-1] == {"role": "tool", "content": "21", "tool_call_id": "up_0"}

    client.completions.create(model="acme:zero_shot", prompt="Code:", extra_body={"guided_regex": "[0-9]{3}"})
    assert upstream.requests[-1]["guided_regex"] == "[0-9]{3}"
