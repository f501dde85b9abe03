"""Each `tailor` command is one call into `tailorlm.api`: the CLI's --json and the library give the same
result on real projects. Flags derived from a config carry the field's description as help, and the
schema lists the registered rung kinds and backends (a plugin's too)."""

import json
import shutil
import subprocess
import sys

import pytest
import typer.main

from tailorlm import api
from tailorlm.cli import app

LABELS = ["billing", "login", "bug"]


def _options(*path) -> dict:
    """{flag: click option} of `tailor PATH...`, its flags built as `--help` builds them."""
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return {o: p for p in cmd.params for o in p.opts + p.secondary_opts}


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _same(data) -> dict:
    """What the CLI's --json prints for `data` (dates and paths as strings)."""
    return json.loads(json.dumps(data, ensure_ascii=False, default=str))


def _shop(root, generator=None):
    root.mkdir()
    rows = [{"id": f"t{i}", "messages": [{"role": "user", "content": f"ticket {i}: my {LABELS[i % 3]} problem"},
                                         {"role": "assistant", "content": LABELS[i % 3]}]} for i in range(20)]
    (root / "tickets.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n")
    model = f"models:\n  generator: {{model: '{generator}'}}\n" if generator else ""
    (root / "tailor.yaml").write_text(f"""name: shop
task: {{description: Route the ticket., type: classification, labels: [billing, login, bug]}}
{model}sources:
  - {{name: tickets, path: tickets.jsonl, kind: chat}}
data:
  steps:
    - validate: {{}}
    - split: {{train: 0.8, validation: 0.2, test: 0.0}}
""")
    return root


def test_derived_flags_carry_the_config_fields_descriptions(cli):
    from tailorlm.config import RagConfig, ServeConfig

    serve = _options("serve")
    assert serve["--host"].help == ServeConfig.model_fields["host"].description + " Default: serve.host."
    assert serve["--port"].help == ServeConfig.model_fields["port"].description + " Default: serve.port."
    query = _options("rag", "query")
    # the names users already type stay: --k/-k for rag.k, --mode for rag.search
    assert query["-k"] is query["--k"]
    assert query["--k"].help == RagConfig.model_fields["k"].description + " Default: rag.k."
    assert query["--mode"].help.startswith(RagConfig.model_fields["search"].description)
    assert "One of: hybrid | vector | fts." in query["--mode"].help  # a Literal's values, in the help
    page = " ".join(cli("rag", "query", "--help").output.replace("│", " ").split())
    assert "Chunks retrieved per question. Default: rag.k." in page and "Example:" in page
    assert "Address to listen on; loopback unless you mean to expose it." in " ".join(
        cli("serve", "--help").output.replace("│", " ").split())


def test_sampling_flags_are_documented_where_genparams_defines_them():
    import dataclasses

    from tailorlm.models.base import GenParams

    helps = {f.name: f.metadata["help"] for f in dataclasses.fields(GenParams) if "help" in f.metadata}
    assert {"temperature", "top_p", "max_tokens", "stop", "seed"} <= helps.keys()
    for command, names in [(("chat",), ["temperature", "top_p", "max_tokens", "seed"]),
                           (("generate",), ["temperature", "top_p", "max_tokens", "seed", "stop"]),
                           (("rag", "query"), ["max_tokens"])]:
        options = _options(*command)
        for name in names:
            flag = "--" + name.replace("_", "-")
            assert options[flag].help == helps[name], (command, flag)
    assert _options("chat")["--max-tokens"].default == GenParams().max_tokens


def test_a_seeded_sampled_chat_on_the_cli_is_the_apis_answer(cli, tmp_path, tiny_model_dir):
    root = _shop(tmp_path / "shop", generator=tiny_model_dir)
    flags = ("--temperature", "1.0", "--top-p", "0.9", "--max-tokens", "8", "-p", root, "--json")
    seeded = [_json(cli("chat", "my invoice is wrong", "--seed", str(seed), *flags))["text"] for seed in (1, 1, 2)]
    assert seeded[0] == seeded[1] == api.chat(root, "my invoice is wrong", max_tokens=8, temperature=1.0, top_p=0.9,
                                              seed=1)["text"]
    assert seeded[2] != seeded[0]  # the seed reaches the sampler: the tiny random model's answers differ


def test_a_bad_derived_value_is_a_one_line_error_naming_the_field(cli, tmp_path):
    root = _shop(tmp_path / "shop")
    bad_k = cli("rag", "query", "hello", "--k", "0", "-p", root, "--json")
    assert bad_k.exit_code == 2 and json.loads(bad_k.stdout)["error"]["message"] == "k: must be >= 1 (got 0)"
    bad_mode = cli("rag", "query", "hello", "--mode", "grep", "-p", root)
    assert bad_mode.exit_code == 2
    assert bad_mode.output.strip() == "error: search: must be one of 'hybrid', 'vector' or 'fts' (got 'grep')"


def test_help_still_loads_no_config_and_no_model_library():
    code = ("import sys\nfrom tailorlm.cli import app\n"
            "app(['--help'], prog_name='tailor', standalone_mode=False)\n"
            "print(sorted(m for m in ('pydantic', 'tailorlm.config', 'torch', 'sqlalchemy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "serve" in out and "rag" in out
    assert out.strip().splitlines()[-1] == "[]"


def test_the_schema_lists_the_registered_rung_kinds_and_backends(cli):
    from tailorlm.plugins import registry

    schema = json.loads(cli("config", "schema").output)
    assert schema == _same(api.config_schema())
    kind = schema["$defs"]["RungConfig"]["properties"]["kind"]
    assert kind["enum"] == list(registry("tailorlm.rungs")) and {"zero_shot", "rag", "sft"} <= set(kind["enum"])
    assert kind["description"].startswith("Which way of answering")
    for section in ("GeneratorConfig", "EmbedderConfig"):
        assert schema["$defs"][section]["properties"]["backend"]["enum"] == ["local", "openai"]


def test_a_plugins_rung_kind_shows_in_the_schema(cli, tmp_path):
    from tailorlm.plugins import registry

    # A real installed distribution (a .dist-info on sys.path) declaring a rung kind, as a plugin would.
    dist = tmp_path / "site" / "tailor_echo_rung-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tailor-echo-rung\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[tailorlm.rungs]\necho = tailor_echo_rung:ECHO\n")
    rungs = registry("tailorlm.rungs")
    sys.path.insert(0, str(tmp_path / "site"))
    rungs.refresh()
    try:
        kinds = json.loads(cli("config", "schema").output)["$defs"]["RungConfig"]["properties"]["kind"]["enum"]
        assert "echo" in kinds and "zero_shot" in kinds
        from tailorlm.config import RungConfig

        assert RungConfig(kind="echo").kind == "echo"  # what the schema lists, tailor.yaml accepts
    finally:
        sys.path.remove(str(tmp_path / "site"))
        rungs.refresh()
    assert "echo" not in json.loads(cli("config", "schema").output)["$defs"]["RungConfig"]["properties"]["kind"]["enum"]


def test_project_and_data_commands_are_the_api_calls(cli, tmp_path):
    made = _json(cli("init", tmp_path / "fresh", "--description", "Route tickets.", "--json"))
    assert made == _same(api.init(tmp_path / "fresh", description="Route tickets.", force=True))
    root = _shop(tmp_path / "shop")
    manifests = api.prepare(root)
    assert api.prepare_summary(manifests)["invalid"] == {manifests[0]["id"]: 1}  # the malformed line
    version = manifests[0]["id"]
    pairs = [
        (("config", "show"), api.config(root)),
        (("data", "list"), {"versions": api.data_list(root)}),
        (("data", "show", "tickets"), api.data_show(root, "tickets")),
        (("data", "diff", version, "tickets@latest"), api.data_diff(root, version, "tickets@latest")),
        (("data", "quarantine", "tickets", "-n", "5"), api.data_quarantine(root, "tickets", 5)),
        (("models", "versions"), {"versions": api.model_versions(root)}),
        (("review", "report"), api.review_report(root)),
        (("runs", "list"), {"runs": api.runs(root)}),
    ]
    for args, expected in pairs:
        assert _json(cli(*args, "-p", root, "--json")) == _same(expected), args
    assert _json(cli("models", "list", "--json")) == _same(api.embedded_models())
    assert _json(cli("data", "quarantine", "tickets", "-p", root, "--json"))["total"] == 1

    added = _json(cli("data", "add", "more", "more.jsonl", "--kind", "chat", "-p", root, "--json"))
    assert added == _same(api.data_add(root, "again", "more.jsonl", kind="chat")) | {"name": "more"}
    assert [s.name for s in api.project(root).config.sources] == ["tickets", "more", "again"]


def test_the_improve_commands_fail_as_the_api_does(cli, tmp_path):
    """promote, rollback, feedback and ab report are the api's calls: the same refusal, word for word."""
    from tailorlm.errors import TailorError

    root = _shop(tmp_path / "shop")
    cases = [
        (("promote", "shop:sft@v9"), lambda: api.promote(root, "shop:sft@v9")),
        (("rollback",), lambda: api.rollback(root)),
        (("feedback", "chatcmpl-nosuch", "--thumbs", "up"), lambda: api.feedback(root, "chatcmpl-nosuch", "up")),
        (("ab", "report"), lambda: api.ab_report(root)),
    ]
    for args, call in cases:
        with pytest.raises(TailorError) as raised:
            call()
        out = cli(*args, "-p", root, "--json")
        assert out.exit_code == 2, args
        assert json.loads(out.stdout)["error"]["message"] == str(raised.value), args


def test_chat_and_generate_answer_as_the_api_does(cli, tmp_path, tiny_model_dir):
    root = _shop(tmp_path / "shop", generator=tiny_model_dir)
    via_cli = _json(cli("chat", "my invoice is wrong", "--max-tokens", "6", "-p", root, "--json"))
    via_api = api.chat(root, "my invoice is wrong", max_tokens=6)
    assert via_cli["text"] == via_api["text"] and via_cli["usage"] == via_api["usage"]
    session = api.Chat(root, max_tokens=6)
    streamed = "".join(session.ask("my invoice is wrong", stream=True))
    assert streamed == via_api["text"]
    assert session.history[0]["role"] == "system" and session.history[-1] == {"role": "assistant", "content": streamed}
    session.reset()
    assert [m["role"] for m in session.history] == ["system"]

    (root / "q.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"ticket {i}"}) + "\n" for i in range(3)))
    ran = _json(cli("generate", root / "q.jsonl", root / "a.jsonl", "--max-tokens", "5", "-p", root, "--json"))
    seen = []
    called = api.generate(root, root / "q.jsonl", root / "b.jsonl", max_tokens=5,
                          on_progress=lambda task, done, total, **info: seen.append((task, done, total)))
    assert ran["generated"] == called["generated"] == 3 and seen[-1] == ("generating", 3, 3)

    def answers(name):
        return {r["id"]: r["completion"] for r in map(json.loads, (root / name).read_text().splitlines())}

    assert answers("a.jsonl") == answers("b.jsonl")


def test_rag_query_and_eval_are_the_api_calls(cli, tmp_path):
    from tailorlm.quickstart import example_dir

    root = tmp_path / "p"
    (root / "docs").mkdir(parents=True)
    for name in ("plans-and-pricing.md", "sso-setup.rst"):
        shutil.copy(example_dir() / "docs" / name, root / "docs" / name)
    (root / "tailor.yaml").write_text("name: p\ntask: {description: Answer questions about Keelbox.}\n"
                                      "sources:\n  - {name: docs, path: docs/, kind: text}\n")
    assert api.index(root)["documents"] == 2
    for flags, kw in [((), {}), (("--mode", "vector", "-k", "2"), {"search": "vector", "k": 2})]:
        hits = _json(cli("rag", "query", "SAML setup", "--retrieve-only", *flags, "-p", root, "--json"))
        assert hits == _same(api.query(root, "SAML setup", retrieve_only=True, **kw)), flags
    assert hits["mode"] == "vector" and len(hits["hits"]) == 2
    assert "docs/sso-setup.rst" in {h["path"] for h in hits["hits"]}

    (root / "q.jsonl").write_text(json.dumps({"id": "1", "question": "How do I configure SAML single sign-on?",
                                              "sources": ["docs/sso-setup.rst"]}) + "\n")
    report = _json(cli("rag", "eval", root / "q.jsonl", "--modes", "hybrid,fts", "-p", root, "--json"))
    called = api.rag_eval(root, str(root / "q.jsonl"), modes=["hybrid", "fts"])
    assert [r["setting"] for r in report["results"]] == [r["setting"] for r in called["results"]]
    assert [r["mrr"]["mean"] for r in report["results"]] == [r["mrr"]["mean"] for r in called["results"]]
