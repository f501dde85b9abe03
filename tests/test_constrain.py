"""Grammar-constrained decoding (models/constrain.py) on a tiny random model with the real tokenizer.

The weights are random, so whatever the answers get right is the grammar's doing.
"""

import json

import pytest

from tailorlm.models import constrain as C
from tailorlm.models.base import GenParams

LABELS = ["billing", "bill", "login_sso", 'say "hi"', "café au lait", "sync conflict"]
SCHEMA = {
    "type": "object",
    "properties": {
        "product": {"type": "string", "maxLength": 12},
        "severity": {"enum": ["low", "medium", "high"]},
        "users": {"type": "integer", "minimum": 0, "maximum": 999},
        "refund": {"type": "boolean"},
    },
    "required": ["product", "severity", "users", "refund"],
}
PROMPTS = [[{"role": "user", "content": text}] for text in (
    "I was charged twice", "cannot log in with SSO", "hello", "two devices disagree", "restore my files",
    "the API returns 500", "it is slow", "delete my account", "add dark mode", "?", "a b c d e f", "zzz")]


def texts(gen, specs, params, prompts=PROMPTS):
    """Each row's joined chunks from one batched decode with per-row constraints."""
    parts = {}
    for row, chunk in gen._decode([gen.encode(p) for p in prompts[: len(specs)]], params, specs):
        parts.setdefault(row, []).append(chunk.text)
    return ["".join(parts[r]) for r in range(len(specs))]


def test_json_schema_answers_validate_greedy_and_sampled(tiny_generator):
    from jsonschema import validate

    spec = C.json_schema(SCHEMA)
    for i, temperature in enumerate([0.0, 1.0, 1.0]):
        c = tiny_generator.generate(PROMPTS[i], GenParams(temperature=temperature, seed=i, max_tokens=80, constraint=spec))
        assert c.finish_reason == "stop", c  # the grammar closed the object; the budget did not cut it
        validate(json.loads(c.text), SCHEMA)
        assert list(json.loads(c.text)) == list(SCHEMA["properties"])  # no invented keys


def test_unconstrained_random_model_does_not_write_json(tiny_generator):
    # The control for the test above: without the grammar these weights produce no JSON at all.
    c = tiny_generator.generate(PROMPTS[0], GenParams(max_tokens=40))
    with pytest.raises(ValueError):
        json.loads(c.text)


def test_choice_answers_are_labels_single_and_batched(tiny_generator):
    spec = C.choice(LABELS)
    single = [tiny_generator.generate(p, GenParams(max_tokens=12, constraint=spec)).text for p in PROMPTS[:4]]
    batched = tiny_generator.generate_batch(PROMPTS, GenParams(max_tokens=12, constraint=spec), batch_size=6)
    sampled = tiny_generator.generate_batch(PROMPTS, GenParams(temperature=1.5, seed=3, max_tokens=12, constraint=spec))
    assert all(t in LABELS for t in single)
    assert all(c.text in LABELS and c.finish_reason == "stop" for c in batched + sampled), [c.text for c in batched + sampled]
    assert [c.text for c in batched[:4]] == single  # batching and padding change nothing
    assert len({c.text for c in sampled}) > 1  # the mask leaves the choice among labels to the model


def test_mixed_batch_keeps_free_rows_unchanged(tiny_generator):
    params = GenParams(max_tokens=60)
    free = texts(tiny_generator, [None] * 4, params)
    mixed = texts(tiny_generator, [C.choice(LABELS), None, C.json_schema(SCHEMA), None], params)
    assert mixed[0] in LABELS
    json.loads(mixed[2])
    assert mixed[1] == free[1] and mixed[3] == free[3]  # byte-identical free rows beside constrained ones
    assert mixed[0] != free[0] and mixed[2] != free[2]


def test_server_batcher_gives_each_row_its_own_constraint(tiny_generator):
    import asyncio

    from tailorlm.serve.batcher import Batcher, Job

    async def run():
        batcher, sizes = Batcher(max_batch=4, wait_ms=200), []
        batcher.on_batch = sizes.append
        batcher.start()
        jobs = [Job(), Job()]
        batcher.submit(jobs[0], tiny_generator, [tiny_generator.encode(PROMPTS[0])], GenParams(max_tokens=12, constraint=C.choice(LABELS)))
        batcher.submit(jobs[1], tiny_generator, [tiny_generator.encode(PROMPTS[1])], GenParams(max_tokens=12))
        out = []
        for job in jobs:
            out.append("".join([chunk.text async for _, chunk in job.results()]))
        batcher.stop()
        return out, sizes

    (held, free), sizes = asyncio.run(run())
    assert sizes == [2]  # one decode loop for both requests
    assert held in LABELS
    assert free == texts(tiny_generator, [None, None], GenParams(max_tokens=12))[1]  # as in a batch of free rows


def test_stream_concatenates_to_the_answer(tiny_generator):
    for spec, stop in [(C.json_schema(SCHEMA), []), (C.choice(LABELS), []), (C.json_schema(SCHEMA), ['"high"'])]:
        params = GenParams(max_tokens=80, constraint=spec, stop=stop)
        chunks = list(tiny_generator.stream(PROMPTS[1], params))
        whole = tiny_generator.generate(PROMPTS[1], params)
        assert "".join(c.text for c in chunks) == whole.text
        assert chunks[-1].finish_reason == whole.finish_reason == "stop"
        assert all(c.finish_reason is None for c in chunks[:-1])


def test_regex_and_json_object(tiny_generator):
    c = tiny_generator.generate(PROMPTS[0], GenParams(max_tokens=8, constraint={"type": "regex", "pattern": "[0-9]{3}-[a-z]{2}"}))
    assert len(c.text) == 6 and c.text[:3].isdigit() and c.text[3] == "-" and c.text[4:].isalpha() and c.text[4:].islower()
    obj = tiny_generator.generate(PROMPTS[0], GenParams(max_tokens=6, constraint=C.json_object()))
    assert obj.text.startswith("{")


def test_bad_constraints_fail_before_decoding(tiny_generator):
    for spec, message in [({"type": "grammar"}, "constraint type must be one of"),
                          ({"type": "choice", "choices": []}, "non-empty list"),
                          ({"type": "json_schema", "schema": {"type": "frob"}}, "frob"),
                          ({"type": "json_schema", "schema": {"enum": {1, 2}}}, "must be plain JSON")]:
        with pytest.raises(C.ConstraintError, match=message):
            tiny_generator.generate(PROMPTS[0], GenParams(max_tokens=4, constraint=spec))


def test_grammars_are_compiled_once_per_tokenizer(tiny_generator):
    g = C.grammars_for(tiny_generator.tokenizer, 49152, tiny_generator.eos_ids)
    assert C.grammars_for(tiny_generator.tokenizer, 49152, tiny_generator.eos_ids) is g
    assert g.compile(C.choice(["a", "b"])) is g.compile({"choices": ["a", "b"], "type": "choice"})


def test_closed_schema_forbids_extra_keys_only_where_unsaid():
    schema = {"type": "object", "properties": {"a": {"type": "object", "properties": {}}, "b": {}},
              "additionalProperties": True}
    out = C.closed(schema)
    assert out["additionalProperties"] is True and out["properties"]["a"]["additionalProperties"] is False
    assert "additionalProperties" not in out["properties"]["b"]


def test_openai_backend_passes_the_constraint_upstream(upstream):
    from tailorlm.models.openai_compat import OpenAIGenerator

    gen = OpenAIGenerator(upstream.base_url, "m")
    upstream.answers.extend(["billing", '{"users": 3}'])
    gen.generate(PROMPTS[0], GenParams(constraint=C.choice(["billing", "login_sso"])))
    gen.generate(PROMPTS[0], GenParams(constraint=C.json_schema({"type": "object", "properties": {"users": {"type": "integer"}}})))
    first, second = upstream.requests
    assert first["guided_choice"] == ["billing", "login_sso"] and "response_format" not in first
    assert second["response_format"] == {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": {
        "type": "object", "properties": {"users": {"type": "integer"}}, "additionalProperties": False}}}


def test_task_constraint_and_schema_valid_from_a_schema_file(tmp_path):
    from tailorlm.config import load_config
    from tailorlm.eval.metrics import METRICS

    (tmp_path / "ticket.json").write_text(json.dumps(SCHEMA))
    (tmp_path / "tailor.yaml").write_text("name: x\ntask:\n  description: d\n  type: extraction\n  schema: ticket.json\n")
    cfg = load_config(tmp_path / "tailor.yaml")
    assert C.task_constraint(cfg.task) == {"type": "json_schema", "schema": SCHEMA}
    assert "schema_valid" in cfg.eval.metrics
    good = json.dumps({"product": "Sync", "severity": "low", "users": 3, "refund": False})
    result = METRICS["schema_valid"]([good, good.replace("3", '"3"'), "not json", None], None, schema=cfg.task.json_schema)
    assert result["per_example"] == [1.0, 0.0, 0.0, 0.0] and result["score"] == 0.25


def test_task_constraint_for_labels_and_free_tasks():
    from tailorlm.config import TaskConfig

    assert C.task_constraint(TaskConfig(description="d", type="classification", labels=["a", "b"], label_mode="constrain")) == \
        {"type": "choice", "choices": ["a", "b"]}
    assert C.task_constraint(TaskConfig(description="d", type="classification", labels=["a", "b"])) is None  # scored
    assert C.task_constraint(TaskConfig(description="d", type="qa")) is None


@pytest.mark.parametrize("yaml_tail, message", [
    ("  type: extraction\n  schema: {type: objekt}\n", "task.schema: not a valid JSON Schema"),
    ("  type: qa\n  schema: {type: object}\n", "task.schema: schema is for extraction tasks"),
    ("  type: extraction\n  schema: missing.json\n", "task.schema: cannot read missing.json"),
])
def test_bad_task_schema_is_a_located_config_error(tmp_path, yaml_tail, message):
    from tailorlm.config import load_config
    from tailorlm.errors import ConfigError

    (tmp_path / "tailor.yaml").write_text("name: x\ntask:\n  description: d\n" + yaml_tail)
    with pytest.raises(ConfigError, match=r"tailor.yaml:\d+: " + message):
        load_config(tmp_path / "tailor.yaml")
