"""lm-evaluation-harness against `tailor serve`, as docs/lm-eval.md documents it.

lm-eval is an optional extra (installed in CI), so these tests skip, saying why, without it; the Hub
task skips when its data is not cached. The local tasks (tests/fixtures/lm_eval) run against a real
`tailor serve` process over the tiny model through `local-completions`: the multiple-choice task is
scored from the server's echoed prompt log-probabilities and must give exactly the accuracy that a
plain in-process forward pass gives; the generative task's answers must be the in-process greedy
answers. The chat-completions command is checked against the scripted `FakeUpstream`.
"""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tailorlm.config import ServeConfig

DOC = Path(__file__).resolve().parents[1] / "docs" / "lm-eval.md"
TASKS = Path(__file__).resolve().parent / "fixtures" / "lm_eval"
NEEDS_LM_EVAL = "lm-eval is an optional extra and is not installed: pip install 'tailorlm[lmeval]'"


def _lm_eval(tmp_path, base_url: str, *args: str, model: str = "local-chat-completions",
             model_args: str | None = None, cwd: Path | None = None) -> dict:
    """Run the documented `lm_eval` command against `base_url`; the results JSON it wrote."""
    pytest.importorskip("lm_eval", reason=NEEDS_LM_EVAL)
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_DATASETS_CACHE": str(tmp_path / "hf-cache")}
    out = tmp_path / "results"
    model_args = model_args or f"model=p:production,base_url={base_url}/chat/completions,num_concurrent=1,max_retries=1"
    chat = ["--apply_chat_template"] if model == "local-chat-completions" else []
    cmd = [sys.executable, "-m", "lm_eval", "--model", model, "--model_args", model_args, *chat,
           "--output_path", str(out), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    files = glob.glob(str(out / "**" / "results_*.json"), recursive=True)
    assert len(files) == 1, done.stderr[-3000:]
    results = json.loads(Path(files[0]).read_text())
    results["samples"] = {}
    for f in glob.glob(str(out / "**" / "samples_*.jsonl"), recursive=True):
        task = Path(f).name.removeprefix("samples_").rsplit("_", 1)[0]
        results["samples"][task] = [json.loads(line) for line in Path(f).read_text().splitlines()]
    return results


@pytest.fixture
def tailor_serve(tmp_path, tiny_model_dir):
    """A real `tailor serve` process over the tiny model, on a free loopback port: its /v1 URL."""
    import httpx

    from tests.conftest import free_port
    from tests.serve_fixtures import write_project

    project = write_project(tmp_path / "acme", generator=tiny_model_dir)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tailorlm.cli", "serve", "-p", str(project.root), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "tailor serve did not come up"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _in_process_loglikelihood(model, tokenizer, context: str, continuation: str) -> float:
    """log p(continuation | context) from one forward pass, tokenised as lm-eval does (`_encode_pair`:
    the context's trailing spaces move to the continuation, and no special tokens are added)."""
    import torch

    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    n = len(tokenizer(context, add_special_tokens=False)["input_ids"])
    with torch.inference_mode():
        lp = torch.log_softmax(model(torch.tensor([whole])).logits[0].float(), -1)
    return sum(float(lp[t - 1, whole[t]]) for t in range(n, len(whole)))


def test_lm_eval_local_completions_against_tailor_serve(tmp_path, tailor_serve, tiny_model, tiny_model_dir, tokenizer):
    """A multiple-choice task (log-likelihoods from echo + logprobs) and a generative one, through the real server."""
    import shutil

    from tailorlm.models.base import GenParams
    from tailorlm.models.local import LocalGenerator

    tasks = tmp_path / "tasks"
    shutil.copytree(TASKS, tasks)  # the task YAMLs name their data files relative to the working directory
    args = (f"model=acme:zero_shot,base_url={tailor_serve}/completions,tokenizer_backend=huggingface,"
            f"tokenizer={tiny_model_dir},num_concurrent=4,max_retries=1")
    results = _lm_eval(tmp_path, tailor_serve, "--tasks", "tailor_mc,tailor_capitals", "--include_path", str(tasks),
                       "--log_samples", model="local-completions", model_args=args, cwd=tasks)

    docs = [json.loads(line) for line in (tasks / "mc.jsonl").read_text().splitlines()]
    samples = sorted(results["samples"]["tailor_mc"], key=lambda s: s["doc_id"])
    assert len(samples) == len(docs)
    right = 0
    for doc, sample in zip(docs, samples):
        context = f"Question: {doc['question']}\nAnswer: "  # doc_to_text + lm-eval's target delimiter
        ours = [_in_process_loglikelihood(tiny_model, tokenizer, context, c) for c in doc["choices"]]
        served = [float(resp[0][0]) for resp in sample["resps"]]  # the samples file keeps them as text
        assert served == pytest.approx(ours, abs=1e-3)
        right += max(range(len(ours)), key=ours.__getitem__) == doc["label"]
    assert len(set(round(x, 2) for x in served)) > 1  # the choices really differ: the test can fail
    assert results["results"]["tailor_mc"]["acc,none"] == right / len(docs)

    gen = LocalGenerator(tiny_model, tokenizer)
    capitals = [json.loads(line) for line in (tasks / "capitals.jsonl").read_text().splitlines()]
    answers = sorted(results["samples"]["tailor_capitals"], key=lambda s: s["doc_id"])
    for doc, sample in zip(capitals, answers):
        ids = tokenizer(doc["question"], add_special_tokens=False)["input_ids"]
        expected = "".join(c.text for _, c in gen._decode([ids], GenParams(max_tokens=8, stop=["\n", "."])))
        assert sample["resps"][0][0] == expected


def test_the_documented_command_targets_tailor_serve_defaults():
    text = DOC.read_text()
    command = re.search(r"lm_eval --model (\S+) \\\n\s+--model_args (\S+)", text)
    assert command, "docs/lm-eval.md lost its lm_eval command"
    assert command.group(1) == "local-chat-completions" and "--apply_chat_template" in text
    args = dict(kv.split("=", 1) for kv in command.group(2).split(","))
    serve = ServeConfig()
    assert args["base_url"] == f"http://{serve.host}:{serve.port}/v1/chat/completions"
    assert args["model"] == "PROJECT@production"
    assert 'lmeval = ["lm-eval[api]>=0.4"]' in (DOC.parents[1] / "pyproject.toml").read_text()
    scored = re.search(r"lm_eval --model local-completions \\\n\s+--model_args (\S+)", text)
    assert scored, "docs/lm-eval.md lost its local-completions command"
    args = dict(kv.split("=", 1) for kv in scored.group(1).split(","))
    assert args["base_url"] == f"http://{serve.host}:{serve.port}/v1/completions"
    assert args["tokenizer_backend"] == "huggingface" and args["model"] == "PROJECT@production"


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
