"""tailor.yaml: the schema, the shipped configs, and errors that name file, line and key."""

import textwrap
from importlib import resources
from pathlib import Path

import pytest

from tailorlm.config import ProjectConfig, load_config, parse_config
from tailorlm.errors import ConfigError
from tailorlm.project import template

GOOD = """\
name: acme
task:
  description: Answer questions about Acme.
rungs:
  - kind: zero_shot
  - kind: few_shot
    k: 8
"""


def test_the_init_template_is_valid_and_uses_the_embedded_defaults():
    cfg = parse_config(template("acme", "Answer questions about Acme."))
    assert cfg.name == "acme"
    assert cfg.models.generator.model == "smollm2-135m-instruct"
    assert cfg.models.embedder.model == "all-minilm-l6-v2"
    assert cfg.models.generator.trust_remote_code is False


def test_every_shipped_config_parses():
    root = Path(str(resources.files("tailorlm")))
    configs = list(root.rglob("*.yaml"))
    assert configs, "no shipped configs found"
    for path in configs:
        if path.parent.name == "templates":
            continue
        load_config(path)


def test_every_field_has_a_description():
    schema = ProjectConfig.model_json_schema()
    missing = []
    for model_name, model in [("ProjectConfig", schema), *schema["$defs"].items()]:
        for field, spec in model.get("properties", {}).items():
            if not spec.get("description"):
                missing.append(f"{model_name}.{field}")
    assert not missing


@pytest.mark.parametrize(
    "patch, message",
    [
        (GOOD.replace("k: 8", "k: 0"), "tailor.yaml:7: rungs[1].k: must be >= 1"),
        (GOOD.replace("    k: 8", "    kk: 8"), "tailor.yaml:7: rungs[1].kk: unknown key"),
        (GOOD.replace("kind: zero_shot", "kind: zeroshot"), "tailor.yaml:5: rungs[0].kind: must be one of"),
        (GOOD.replace("task:\n  description: Answer questions about Acme.\n", ""), "tailor.yaml:1: task: required key is missing"),
        (GOOD + "serve:\n  port: 99999\n", "tailor.yaml:9: serve.port: must be <= 65535"),
        (GOOD.replace("name: acme", "name: [acme"), "tailor.yaml:1: invalid YAML: while parsing a flow sequence"),
        ("- just\n- a list\n", "tailor.yaml:1: expected a mapping"),
        (GOOD + "sources:\n  - {name: a, path: x}\n  - {name: a, path: y}\n", "sources: source names must be unique"),
    ],
)
def test_errors_name_file_line_and_key(patch, message):
    with pytest.raises(ConfigError) as err:
        parse_config(patch)
    assert message in str(err.value)


def test_load_config_reports_unreadable_and_non_utf8_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "tailor.yaml"
    bad.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad)


def test_good_config_round_trips_through_its_resolved_form():
    cfg = parse_config(textwrap.dedent(GOOD))
    again = ProjectConfig.model_validate(cfg.model_dump(mode="json"))
    assert again == cfg
    assert [r.label for r in cfg.rungs] == ["zero_shot", "few_shot"]
