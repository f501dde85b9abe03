"""The `tailor` command, driven through its runner: help, init, config, and clear errors."""

import json
import subprocess
import sys

import pytest

from tailorlm.cli import app


def test_help_lists_the_journey_and_every_command_has_an_example(cli):
    result = cli("--help")
    assert result.exit_code == 0
    for group in ("init", "config", "models", "chat", "generate", "quickstart"):
        assert group in result.output
    import typer.main

    root = typer.main.get_command(app)

    def leaves(cmd, path):
        subs = getattr(cmd, "commands", None)
        if not subs:
            yield path
            return
        for name, sub in subs.items():
            yield from leaves(sub, path + [name])

    commands = list(leaves(root, []))
    assert len(commands) >= 8
    for path in commands:
        out = cli(*path, "--help")
        assert out.exit_code == 0, path
        assert "Example:" in out.output, f"`tailor {' '.join(path)} --help` has no example"


def test_importing_the_cli_defers_heavy_libraries():
    code = "import sys, tailorlm.cli; print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers', 'sqlalchemy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_init_creates_config_state_and_database(cli, tmp_path):
    result = cli("init", "acme", "--description", "Answer questions about Acme.", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["name"] == "acme"
    assert (tmp_path / "acme" / "tailor.yaml").read_text().startswith("# tailor.yaml")
    for kind in ("datasets", "indexes", "runs", "models", "reports"):
        assert (tmp_path / "acme" / ".tailor" / kind).is_dir()
    assert (tmp_path / "acme" / ".tailor" / "tailor.db").exists()
    assert cli("init", "acme").exit_code == 2  # refuses to overwrite
    assert cli("init", "acme", "--force").exit_code == 0


def test_init_refuses_names_that_escape(cli):
    result = cli("init", "x", "--name", "../evil")
    assert result.exit_code == 2
    assert "invalid project name" in result.output


def test_config_show_resolves_defaults_and_schema_is_json_schema(cli):
    cli("init", "acme")
    shown = json.loads(cli("config", "show", "-p", "acme", "--json").output)
    assert shown["models"]["generator"]["model"] == "smollm2-135m-instruct"
    assert shown["serve"]["port"] == 8000
    text = cli("config", "show", "-p", "acme").output
    assert "smollm2-135m-instruct" in text and "redact_traces: true" in text
    schema = json.loads(cli("config", "schema").output)
    assert schema["title"] == "ProjectConfig"
    assert "rungs" in schema["properties"]


def _project(tmp_path, text):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "tailor.yaml").write_text(text)
    return tmp_path / "p"


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("name: p\ntask: {description: x\n", "tailor.yaml:2: invalid YAML: while parsing a flow mapping"),
        ("name: p\ntask: {description: x}\ncolour: blue\n", "tailor.yaml:3: colour: unknown key"),
        ("name: p\ntask: {description: x}\nrungs:\n  - kind: rag\n    k: 0\n", "tailor.yaml:5: rungs[0].k: must be >= 1"),
    ],
)
def test_bad_config_is_one_line_exit_2_no_traceback(cli, tmp_path, yaml_text, message):
    root = _project(tmp_path, yaml_text)
    result = cli("config", "show", "-p", root)
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {message}" or result.output.startswith(f"error: {message}")
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_debug_shows_the_traceback(tmp_path):
    root = _project(tmp_path, "name: p\ntask: {description: x\n")
    out = subprocess.run([sys.executable, "-m", "tailorlm.cli", "--debug", "config", "show", "-p", str(root)],
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert "Traceback" in out.stderr and "ConfigError" in out.stderr
    plain = subprocess.run([sys.executable, "-m", "tailorlm.cli", "config", "show", "-p", str(root)],
                           capture_output=True, text=True)
    assert plain.returncode == 2
    assert "Traceback" not in plain.stderr and plain.stderr.startswith("error: tailor.yaml:2")


def test_missing_model_folder_is_a_clear_error(cli, tmp_path):
    root = _project(tmp_path, "name: p\ntask: {description: x}\nmodels:\n  generator: {model: ./no-such-model}\n")
    result = cli("chat", "hello", "-p", root)
    assert result.exit_code == 2
    assert result.output.strip() == "error: model folder not found: ./no-such-model"


def test_unwritable_state_folder_is_a_clear_error(cli, tmp_path):
    root = _project(tmp_path, "name: p\ntask: {description: x}\n")
    (root / ".tailor").write_text("a file where the state folder should be")
    result = cli("init", root, "--force")
    assert result.exit_code == 2
    assert result.output.startswith(f"error: cannot write to the state folder {root / '.tailor'}")
    assert "Traceback" not in result.output


def test_no_project_means_a_hint_to_init(cli):
    result = cli("config", "show")
    assert result.exit_code == 2
    assert "tailor init" in result.output


def test_json_errors_are_one_object_on_stdout(cli):
    cli("init", "acme")
    result = cli("data", "show", "nosuch", "-p", "acme", "--json")
    assert result.exit_code == 2
    err = json.loads(result.stdout)["error"]
    assert err["message"].startswith("no dataset named 'nosuch'") and err["exit_code"] == 2
    assert result.stderr.startswith("error: no dataset named 'nosuch'")
    usage = cli("data", "show", "-p", "acme", "--json")  # the argument is missing
    assert usage.exit_code == 2
    assert json.loads(usage.stdout)["error"]["type"] == "usage_error"


def test_os_errors_and_bugs_are_one_line_and_debug_shows_them(cli):
    # A full disk: the user's to fix, so a message and exit 2, not a traceback.
    full = subprocess.run(f"{sys.executable} -m tailorlm.cli config schema > /dev/full", shell=True,
                          capture_output=True, text=True)
    assert full.returncode == 2
    assert full.stderr.strip() == "error: No space left on device"

    @app.command("boom", hidden=True)
    def boom() -> None:
        """Example: tailor boom"""
        raise KeyError("retrieved")

    try:
        result = cli("boom")
        assert result.exit_code == 1
        assert result.output.strip().startswith("error: internal error (KeyError: 'retrieved'); this is a bug")
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
        with pytest.raises(KeyError):
            cli("--debug", "boom")
    finally:
        app.registered_commands.pop()


def _options():
    """{command path: [its options' names]} for every `tailor` command."""
    import typer

    from tailorlm.cli import app

    out = {}

    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
        else:
            out[" ".join(path)] = [o for p in cmd.params if getattr(p, "param_type_name", "") == "option"
                                   for o in p.opts + p.secondary_opts]

    walk(typer.main.get_command(app), [])
    return out


def test_short_options_follow_the_usual_conventions():
    options = _options()
    for command, names in options.items():
        if "--k" in names:
            assert "-k" in names, command  # the top-k flag of retrieval tools
        if "--n" in names or "--limit" in names:
            assert "-n" in names, command  # like head -n
        assert len(names) == len(set(names)), command
    for command in ("eval", "ladder", "reports show", "quickstart"):
        assert "--short" in options[command], command
    assert "--power" in options["eval"] and "--delta" in options["eval"] and "--delta" in options["ladder"]


def test_serve_checks_its_key_variable_before_saying_it_serves(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("ACME_KEYS", raising=False)
    root = _project(tmp_path, "name: p\ntask: {description: x}\nserve: {api_keys_env: ACME_KEYS}\n")
    result = cli("serve", "-p", root)
    assert result.exit_code == 2
    assert "Serving" not in result.output
    assert result.output.strip() == ("error: serve.api_keys_env names ACME_KEYS, but that environment variable "
                                     "holds no keys")


def test_train_flags_come_from_train_config_with_its_descriptions(cli):
    import typer.main

    from tailorlm.train.config import TrainConfig

    sft = typer.main.get_command(app).commands["train"].commands["sft"]
    options = {o: p for p in sft.params for o in p.opts + p.secondary_opts}
    for name in ("learning_rate", "warmup_ratio", "lora_layers", "epochs", "dataset", "lora_r", "processes"):
        flag = "--" + name.replace("_", "-")
        # the help is the field's description (learning_rate had none when it was declared by hand)
        assert options[flag].help == TrainConfig.model_fields[name].description, flag
    assert "--no-gradient-checkpointing" in options and "--no-packing" in options
    assert "Peak learning rate" in " ".join(cli("train", "sft", "--help").output.replace("│", " ").split())


def test_a_bad_derived_flag_value_names_the_field(cli, tmp_path):
    cli("init", str(tmp_path / "p"))
    bad = cli("train", "sft", "--dataset", "x", "--strategy", "zero9", "-p", str(tmp_path / "p"), "--json")
    assert bad.exit_code == 2 and "strategy" in json.loads(bad.stdout)["error"]["message"]


def test_the_cli_modules_do_not_import_each_other_in_a_loop():
    import ast
    from pathlib import Path

    import tailorlm.cli

    folder = Path(tailorlm.cli.__file__).parent
    imports = {}
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text())
        imports[path.stem] = {n.module.rsplit(".", 1)[1] for n in ast.walk(tree)
                              if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("tailorlm.cli.")}
    for a, targets in imports.items():
        for b in targets:
            assert a not in imports.get(b, set()), f"cli/{a}.py and cli/{b}.py import each other"
