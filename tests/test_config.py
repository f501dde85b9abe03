"""tailor.yaml: the schema, the shipped configs, and errors that name file, line and key."""

import textwrap
from importlib import resources
from pathlib import Path

import pytest
import yaml

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
        # Every value written in the file is the value the config holds: none dropped, renamed or coerced away.
        written = yaml.safe_load(path.read_text())
        held = load_config(path).model_dump(mode="json")
        assert not _differences(written, held), (path, _differences(written, held))
    example = load_config(root / "examples" / "support" / "tailor.yaml")
    assert len(example.task.labels) == 8 and example.task.type == "classification"
    assert [r.label for r in example.rungs][:2] == ["classic", "zero_shot"]


def _differences(written, held, where: str = "") -> list[str]:
    if isinstance(written, dict):
        if not isinstance(held, dict):
            return [f"{where}: a mapping became {held!r}"]
        return [d for k, v in written.items() for d in
                (_differences(v, held[k], f"{where}.{k}") if k in held else [f"{where}.{k}: dropped"])]
    if isinstance(written, list):
        if not isinstance(held, list) or len(held) != len(written):
            return [f"{where}: {written!r} became {held!r}"]
        return [d for i, (a, b) in enumerate(zip(written, held)) for d in _differences(a, b, f"{where}[{i}]")]
    if isinstance(held, float) and not isinstance(written, bool):
        return [] if float(written) == held else [f"{where}: {written!r} became {held!r}"]
    return [] if written == held else [f"{where}: {written!r} became {held!r}"]


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


# The defects a bad-input probe found (issue 15); each of these failed before its fix.

def test_duplicate_keys_are_an_error_naming_both_lines():
    text = GOOD + "serve:\n  port: 8001\n  host: 0.0.0.0\n  port: 8002\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    assert str(err.value) == "tailor.yaml:11: serve.port: duplicate key (first at line 9); the last one would win"
    top = GOOD.replace("name: acme\n", "name: acme\nname: other\n")
    with pytest.raises(ConfigError, match=r"^tailor.yaml:2: name: duplicate key \(first at line 1\)"):
        parse_config(top)
    in_list = GOOD.replace("    k: 8", "    k: 8\n    k: 2")
    with pytest.raises(ConfigError, match=r"^tailor.yaml:8: rungs\[1\].k: duplicate key \(first at line 7\)"):
        parse_config(in_list)


@pytest.mark.parametrize("text, line, fragment", [
    # a key indented less than its siblings, deep in the file: the bad line, not the enclosing mapping
    ("name: p\ntask:\n  description: x\nmodels:\n  generator:\n    model: x\n   backend: local\n", 7, "bad indentation"),
    ("name: p\ntask: {description: x}\nrungs:\n  - kind: zero_shot\n   - kind: rag\n", 5, "bad indentation"),
    ("name: p\ntask:\n\tdescription: x\n", 3, "tab"),
])
def test_bad_indentation_is_reported_at_the_bad_line(text, line, fragment):
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    assert str(err.value).startswith(f"tailor.yaml:{line}: invalid YAML: ")
    assert fragment in str(err.value)


def test_bad_indentation_far_into_a_long_file_names_that_line():
    body = "".join(f"    k{i}: {i}\n" for i in range(70))
    text = f"name: p\ntask: {{description: x}}\nrungs:\n  - kind: zero_shot\n    train:\n{body}   oops: 1\n"
    with pytest.raises(ConfigError, match=r"^tailor.yaml:76: invalid YAML: bad indentation"):
        parse_config(text)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_an_empty_config_says_what_it_needs(text):
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    assert "NoneType" not in str(err.value)
    assert str(err.value).startswith("tailor.yaml:1: the file is empty; it needs at least `name:` and `task:`")


def test_data_add_keeps_comments_with_their_sections(cli):
    from tailorlm.project import Project

    cli("init", "acme")
    for name in ("a", "b", "c"):
        assert cli("data", "add", name, f"{name}.jsonl", "-p", "acme").exit_code == 0
    lines = (Path("acme") / "tailor.yaml").read_text().splitlines()
    at = lines.index("sources:")
    assert lines[at + 1: at + 7] == ['  - name: "a"', '    path: "a.jsonl"', '  - name: "b"', '    path: "b.jsonl"',
                                     '  - name: "c"', '    path: "c.jsonl"']
    ladder = next(i for i, line in enumerate(lines) if line.startswith("# The ladder"))
    assert lines[ladder + 1] == "rungs:"
    assert [s.name for s in Project.load("acme").config.sources] == ["a", "b", "c"]
