"""`tailor generate`: batch generation that keeps valid lines, quarantines bad ones, and resumes."""

import json

from tailorlm.generate import generate_file
from tailorlm.models.base import GenParams

GOOD = [
    {"id": "a", "messages": [{"role": "user", "content": "hello"}]},
    {"id": "b", "prompt": "what is 2+2?"},
    {"id": "c", "input": [{"role": "user", "content": "hi"}], "reference": "hey"},
    {"id": "d", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "old answer"}]},
    {"messages": [{"role": "user", "content": "no id"}]},
]
BAD = [
    ('{"id": "e", "messages": [', "(line)", "invalid JSON"),
    ('{"id": "f", "messages": [{"role": "wizard", "content": "x"}]}', "messages[0].role", "must be one of"),
    ('{"id": "a", "prompt": "duplicate"}', "id", "duplicate id 'a'"),
    ('{"id": "g"}', "(line)", "needs `messages`, `input` or `prompt`"),
    ('["not", "an", "object"]', "(line)", "expected a JSON object"),
    ('{"id": "h", "messages": [{"role": "user", "content": 5}]}', "messages[0].content", "must be a string"),
]


def _write_input(path):
    lines = ["\ufeff" + json.dumps(GOOD[0])] + [json.dumps(g) for g in GOOD[1:]] + [b[0] for b in BAD]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode() + b'{"id": "bin", "prompt": "\xff\xfe"}\n')


def test_valid_lines_are_generated_and_bad_ones_quarantined(tiny_generator, tmp_path):
    src, dest = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(src)
    result = generate_file(src, dest, tiny_generator, GenParams(max_tokens=4), batch_size=2)
    rows = [json.loads(line) for line in dest.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", "c", "d", "line-5"]
    assert rows[3]["reference"] == "old answer" and rows[3]["messages"] == [{"role": "user", "content": "q"}]
    assert rows[2]["reference"] == "hey"
    assert all(r["usage"]["completion_tokens"] >= 1 for r in rows)
    rejected = [json.loads(line) for line in (tmp_path / "out.jsonl.rejected.jsonl").read_text().splitlines()]
    assert [(r["line"], r["field"]) for r in rejected] == [(6 + i, b[1]) for i, b in enumerate(BAD)] + [(12, "(line)")]
    for r, b in zip(rejected, BAD):
        assert b[2] in r["reason"]
    assert "not UTF-8" in rejected[-1]["reason"]
    # Nothing lost: every input line is either an output row or a quarantined line.
    assert result["total"] + result["rejected"] == 12
    assert result["problems"][0].startswith(f"{src}:6: (line): invalid JSON")


def test_rerun_after_a_crash_skips_done_ids_and_drops_a_torn_line(tiny_generator, tmp_path):
    src, dest = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps({"id": str(i), "prompt": f"question {i}"}) + "\n" for i in range(7)))
    first = generate_file(src, dest, tiny_generator, GenParams(max_tokens=3), batch_size=3)
    complete = dest.read_text().splitlines(keepends=True)
    # Simulate a crash: keep two finished rows and half of the third.
    dest.write_text("".join(complete[:2]) + complete[2][:20])
    second = generate_file(src, dest, tiny_generator, GenParams(max_tokens=3), batch_size=3)
    assert (second["skipped"], second["generated"]) == (2, 5)
    assert dest.read_text().splitlines(keepends=True) == complete[:2] + complete[2:]
    assert first["generated"] == 7


def test_cli_generate_with_a_local_model_folder(cli, tiny_model_dir, tmp_path):
    (tmp_path / "tailor.yaml").write_text(f"name: p\ntask: {{description: x}}\nmodels:\n  generator: {{model: '{tiny_model_dir}'}}\n")
    (tmp_path / "in.jsonl").write_text('{"id": 1, "prompt": "hi"}\n{"id": 2, "prompt": "yo"}\nnot json\n')
    result = cli("generate", "in.jsonl", "out.jsonl", "--max-tokens", "3", "--json")
    assert result.exit_code == 1  # finished the valid lines, but says some were rejected
    summary = json.loads(result.output)
    assert (summary["generated"], summary["rejected"]) == (2, 1)
    again = json.loads(cli("generate", "in.jsonl", "out.jsonl", "--max-tokens", "3", "--json").output)
    assert (again["generated"], again["skipped"]) == (0, 2)
