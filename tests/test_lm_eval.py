"""lm-evaluation-harness against an OpenAI-compatible server, as docs/lm-eval.md documents it.

lm-eval is an optional extra, so these tests skip (saying why) without it, and the Hub task skips
when its data is not cached. The server is the scripted `FakeUpstream`: what is under test is
that the documented command and model arguments drive a chat-completions server end to end.
"""

import glob
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tailorlm.config import ServeConfig

DOC = Path(__file__).resolve().parents[1] / "docs" / "lm-eval.md"
NEEDS_LM_EVAL = "lm-eval is an optional extra and is not installed: pip install 'tailorlm[lmeval]'"


def _lm_eval(tmp_path, base_url: str, *args: str) -> dict:
    """Run the documented `lm_eval` command against `base_url`; the results JSON it wrote."""
    pytest.importorskip("lm_eval", reason=NEEDS_LM_EVAL)
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "lm_eval", "--model", "local-chat-completions",
           "--model_args", f"model=p:production,base_url={base_url}/chat/completions,num_concurrent=1,max_retries=1",
           "--apply_chat_template", "--output_path", str(out), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    files = glob.glob(str(out / "**" / "results_*.json"), recursive=True)
    assert len(files) == 1, done.stderr[-3000:]
    return json.loads(Path(files[0]).read_text())


def test_the_documented_command_targets_tailor_serve_defaults():
    text = DOC.read_text()
    command = re.search(r"lm_eval --model (\S+) \\\n\s+--model_args (\S+)", text)
    assert command, "docs/lm-eval.md lost its lm_eval command"
    assert command.group(1) == "local-chat-completions" and "--apply_chat_template" in text
    args = dict(kv.split("=", 1) for kv in command.group(2).split(","))
    serve = ServeConfig()
    assert args["base_url"] == f"http://{serve.host}:{serve.port}/v1/chat/completions"
    assert args["model"] == "PROJECT:production"
    assert 'lmeval = ["lm-eval[api]>=0.4"]' in (DOC.parents[1] / "pyproject.toml").read_text()


def test_local_task_runs_against_a_chat_completions_server(tmp_path, upstream, monkeypatch):
    """A task from a local JSONL file needs no Hub: the harness asks the server and scores its answers."""
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    rows = [("Capital of France?", "Paris"), ("Capital of Germany?", "Berlin"), ("Capital of Spain?", "Madrid")]
    task = tmp_path / "tasks"
    task.mkdir()
    (task / "data.jsonl").write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in rows))
    (task / "capitals.yaml").write_text(
        "task: tailor_capitals\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {task / 'data.jsonl'}\n"
        "output_type: generate_until\ntest_split: test\n"
        'doc_to_text: "{{question}}"\ndoc_to_target: "{{answer}}"\n'
        "generation_kwargs:\n  until: []\n  max_gen_toks: 16\n"
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n")
    upstream.answers = ["Paris", "Munich", "Madrid"]  # two right, one wrong
    results = _lm_eval(tmp_path, upstream.base_url, "--tasks", "tailor_capitals", "--include_path", str(task))
    assert results["results"]["tailor_capitals"]["exact_match,none"] == pytest.approx(2 / 3)
    asked = [r["messages"][-1]["content"] for r in upstream.requests]
    assert sorted(asked) == sorted(q for q, _ in rows)
    assert {r["model"] for r in upstream.requests} == {"p:production"}


def test_hub_task_runs_when_its_data_is_cached(tmp_path, upstream, monkeypatch):
    pytest.importorskip("lm_eval", reason=NEEDS_LM_EVAL)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets

    try:
        datasets.load_dataset("openai/gsm8k", "main", split="test[:1]")
    except Exception as e:  # noqa: BLE001 - any failure here means "not cached", whatever datasets raises
        pytest.skip(f"gsm8k's data (openai/gsm8k) is not in the local Hugging Face cache, and the Hub is "
                    f"unreachable offline; cache it once on a connected machine ({type(e).__name__})")
    upstream.answers = ["The answer is 18.\n#### 18", "#### 3"]
    results = _lm_eval(tmp_path, upstream.base_url, "--tasks", "gsm8k", "--limit", "2", "--num_fewshot", "0")
    assert results["results"]["gsm8k"]["sample_len"] == 2 and len(upstream.requests) == 2
