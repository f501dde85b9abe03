"""The malformed-input corpus: every bad line or file is named with file:line:field and a reason,
every valid record is kept, and the accounting holds."""

import json

import pytest

from tailorlm.data.pipeline import prepare
from tailorlm.project import Project

U = lambda text: {"role": "user", "content": text}  # noqa: E731
A = lambda text: {"role": "assistant", "content": text}  # noqa: E731


def chat(i, *messages):
    return json.dumps({"id": i, "messages": list(messages)})


# (file name, bytes, expected (line, field, reason fragment) rejections, ids that must survive)
CORPUS = [
    ("truncated.jsonl", (chat("t1", U("hello"), A("hi")) + "\n" + '{"id": "t2", "messages": [{"role": "us').encode(),
     [(2, "(line)", "invalid JSON")], ["t1"]),
    ("utf8.jsonl", chat("u1", U("fine"), A("ok")).encode() + b"\n" + b'{"id": "u2", "text": "caf\xe9"}\n',
     [(2, "(line)", "not valid UTF-8 (byte 0xe9")], ["u1"]),
    ("binary.jsonl", b"\x00\x01\x02PK\x03\x04" * 100, [(None, "(file)", "binary file")], []),
    ("empty.jsonl", b"", [(None, "(file)", "empty file")], []),
    ("huge.jsonl", (chat("h1", U("short"), A("ok")) + "\n").encode() + b'{"id": "h2", "text": "' + b"x" * (50 * 2**20) + b'"}\n',
     [(2, "(line)", "over the 10 MB limit")], ["h1"]),
    ("types.jsonl", (json.dumps({"id": "w1", "messages": [{"role": "user", "content": 5}]}) + "\n"
                     + json.dumps({"id": "w2", "messages": "not a list"}) + "\n").encode(),
     [(1, "messages[0].content", "must be a string, got int"), (2, "messages", "non-empty list")], []),
    ("missing.jsonl", (json.dumps({"id": "m1", "body": "no known field"}) + "\n"
                       + json.dumps({"id": "m2", "instruction": "do it"}) + "\n").encode(),
     [(1, "(line)", "no known fields"), (2, "output", "missing")], []),
    ("roles.jsonl", (json.dumps({"id": "r1", "messages": [{"role": "wizard", "content": "x"}]}) + "\n").encode(),
     [(1, "messages[0].role", "unknown role 'wizard'")], []),
    ("dupes.jsonl", (chat("d1", U("a b"), A("c")) + "\n" + chat("d1", U("other"), A("x")) + "\n").encode(),
     [(2, "id", "duplicate id 'd1'")], ["d1"]),
    ("bom.jsonl", "\ufeff".encode() + (chat("b1", U("with a bom"), A("ok")) + "\n").encode(), [], ["b1"]),
    ("crlf.jsonl", (chat("c1", U("windows"), A("ok")) + "\r\n" + chat("c2", U("lines"), A("ok")) + "\r\n").encode(), [],
     ["c1", "c2"]),
    ("mixed.jsonl", (chat("x1", U("chat"), A("ok")) + "\n" + json.dumps({"id": "x2", "text": "a document"}) + "\n").encode(),
     [(2, "(line)", "expected a chat record")], ["x1"]),
    ("nested.jsonl", ('{"id": "n1", "messages": ' + "[" * 100_000 + "]" * 100_000 + "}\n").encode(),
     [(1, "(line)", "nested too deeply")], []),
    ("array.jsonl", b'["an", "array"]\n', [(1, "(line)", "expected a JSON object, got list")], []),
    ("badid.jsonl", (json.dumps({"id": True, "messages": [U("a"), A("b")]}) + "\n").encode(),
     [(1, "id", "non-empty string or an integer")], []),
    ("garbage.jsonl", b"}{\n", [(1, "(line)", "invalid JSON")], []),
    ("blank-lines.jsonl", (chat("bl1", U("a"), A("b")) + "\n\n   \n").encode(), [], ["bl1"]),
    ("alpaca.jsonl", (json.dumps({"id": "al1", "instruction": "Say hi", "input": "", "output": "hi"}) + "\n").encode(), [], ["al1"]),
]

# Lines that parse but fail the validate step: (id, reason).
INVALID = [
    ("v-empty", [U("   "), A("x")], "empty_content"),
    ("v-last", [U("a question"), A("an answer"), U("another question")], "assistant_not_last"),
    ("v-alt", [U("one"), U("two"), A("x")], "roles_not_alternating"),
    ("v-system", [U("q"), {"role": "system", "content": "late"}, A("x")], "system_not_first"),
    ("v-tool", [U("q"), {"role": "tool", "content": "result"}, A("x")], "tool_without_call"),
    ("v-long", [U("word " * 9000), A("x")], "too_many_tokens"),
]


@pytest.fixture
def bad_project(tmp_path, smol_dir):
    root = tmp_path / "p"
    (root / "bad").mkdir(parents=True)
    for name, data, _, _ in CORPUS:
        (root / "bad" / name).write_bytes(data)
    (root / "bad" / "validate.jsonl").write_text("".join(chat(i, *m) + "\n" for i, m, _ in INVALID))
    (root / "tailor.yaml").write_text(
        "name: p\ntask: {description: x}\nsources:\n  - {name: bad, path: 'bad/*.jsonl', kind: chat}\n"
        "data:\n  steps:\n    - validate: {}\n    - normalize: {}\n")
    return Project.load(root)


def test_every_malformed_input_is_named_and_nothing_is_lost(bad_project):
    [manifest] = prepare(bad_project)
    quarantine = [json.loads(line) for line in
                  (bad_project.root / manifest["path"] / "quarantine.jsonl").read_text().splitlines()]
    assert len(CORPUS) + len(INVALID) >= 20
    for name, _, expected, _ in CORPUS:
        got = [(q["line"], q["field"], q["reason"]) for q in quarantine if q["step"] == "read" and q["file"] == f"bad/{name}"]
        assert len(got) == len(expected), (name, got)
        for (line, field, fragment), (gline, gfield, reason) in zip(expected, got):
            assert (gline, gfield) == (line, field) and fragment in reason, (name, reason)
    by_id = {q["id"]: q["reason"] for q in quarantine if q["step"] == "validate"}
    assert by_id == {i: reason for i, _, reason in INVALID}
    kept = set()
    for split in manifest["splits"]:
        import pyarrow.parquet as pq

        kept |= set(pq.read_table(bad_project.root / manifest["path"] / f"{split}.parquet").column("id").to_pylist())
    assert kept == {i for *_, ids in CORPUS for i in ids}
    acc = manifest["accounting"]
    assert acc["holds"]
    assert acc["read"] == acc["kept"] + acc["rejected_by_readers"] + acc["dropped_by_steps"]
    assert acc["kept"] == len(kept)


def test_prepare_cli_exits_1_with_a_message_and_keeps_the_valid_records(bad_project, cli):
    result = cli("data", "prepare", "-p", bad_project.root)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "rejected" in result.output and "tailor data quarantine bad" in result.output
    shown = cli("data", "quarantine", "bad", "-p", bad_project.root)
    assert "bad/truncated.jsonl:2: (line): [read] invalid JSON" in shown.output
    assert "validate: too_many_tokens" in shown.output


# The defects a bad-input probe found (issue 15); each of these failed before its fix.

def _docs_project(tmp_path, steps="    - normalize: {}\n"):
    root = tmp_path / "q"
    root.mkdir()
    (root / "tailor.yaml").write_text("name: q\ntask: {description: x}\nsources:\n  - {name: notes, path: notes.jsonl}\n"
                                      f"data:\n  steps:\n{steps}")
    return root


def test_a_source_with_no_valid_records_fails_and_keeps_the_previous_latest(tmp_path, cli):
    root = _docs_project(tmp_path)
    (root / "notes.jsonl").write_text(json.dumps({"id": "n1", "text": "a first note"}) + "\n")
    first = json.loads(cli("data", "prepare", "-p", root, "--json").stdout)["datasets"][0]["id"]
    project = Project.load(root)
    for data, reason in [(b"\x00\x01\x02PK\x03\x04" * 50, "binary file (NUL bytes), not text"), (b"", "empty file")]:
        (root / "notes.jsonl").write_bytes(data)
        result = cli("data", "prepare", "-p", root, "--json")
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        error = json.loads(result.stdout)["error"]["message"]
        assert error.startswith("notes: no records left to write a version from")
        assert f"notes.jsonl: (file): {reason}" in error and f"{first} stays latest" in error
        assert project.store.get_alias("dataset", "notes", "latest") == first
        assert [r["id"] for r in project.store.select("dataset_versions", name="notes")] == [first]


def test_a_rerun_cleans_the_temporary_folder_a_killed_write_left(tmp_path):
    import subprocess
    import sys

    root = _docs_project(tmp_path)
    (root / "notes.jsonl").write_text(json.dumps({"id": "n1", "text": "a first note"}) + "\n")
    # kill -9 at the worst moment: every file of the version written, the rename into place not done
    code = ("import os, signal, sys; from tailorlm.data import versions; from tailorlm.project import Project\n"
            "from tailorlm.data.pipeline import prepare\n"
            "versions.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
            "prepare(Project.load(sys.argv[1]))\n")
    killed = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    folder = root / ".tailor" / "datasets" / "notes"
    assert len(list(folder.glob(".tmp-*"))) == 1
    [manifest] = prepare(Project.load(root))
    assert list(folder.glob(".tmp-*")) == []
    assert (root / manifest["path"] / "manifest.json").exists()


def test_a_live_writers_temporary_folder_is_left_alone(tmp_path):
    import os
    import socket

    root = _docs_project(tmp_path)
    (root / "notes.jsonl").write_text(json.dumps({"id": "n1", "text": "a first note"}) + "\n")
    folder = root / ".tailor" / "datasets" / "notes"
    folder.mkdir(parents=True)
    live = folder / f".tmp-{os.getppid()}@{socket.gethostname()}@abc"  # our parent: a process that is alive
    live.mkdir()
    prepare(Project.load(root))
    assert live.exists()


def test_invalid_json_says_where_once(tmp_path):
    from tailorlm.data.readers.records import read_file

    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "c1", "text": "a tab\there"}\n{"id": "c2" "text": "x"}\n')
    reasons = [r.reason for r in read_file(path, "c.jsonl", "c")]
    assert reasons == ["invalid JSON at column 28: invalid control character",
                       "invalid JSON at column 13: expecting ',' delimiter"]


def test_a_csv_row_names_the_missing_column(tmp_path):
    from tailorlm.data.readers.records import read_file

    path = tmp_path / "faq.csv"
    path.write_text("question,answer\nHow?,Like this.\n")
    [rejected] = read_file(path, "faq.csv", "faq")
    assert (rejected.line, rejected.field) == (2, "(header)")
    assert rejected.reason.startswith("no known column among question, answer; expected a text, messages, "
                                      "instruction + output, prompt + completion, prompt + chosen + rejected or input column")
    assert "`fields`" in rejected.reason
    path.write_text("instruction,output\nSay hi,\n")
    [rejected] = read_file(path, "faq.csv", "faq")
    assert (rejected.line, rejected.field, rejected.reason) == (2, "output", "missing: the column is empty on this row")
    path.write_text("text,tags\n,a\n")
    [rejected] = read_file(path, "faq.csv", "faq")
    assert (rejected.line, rejected.field, rejected.reason) == (2, "text", "missing: the column is empty on this row")
