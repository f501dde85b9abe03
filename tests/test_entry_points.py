"""Extension points: a third-party package's step, metric, rung and backend, installed by pip, run from tailor.yaml.

The fixture package (tests/fixtures/tailor_plugin_demo) declares `drop_marked` (a data step),
`vowel_share` (a metric), `shout` (a rung kind) and `echo` (a model backend) under the entry points
Tailor's own use. pip installs it
into a temporary folder (`--target`, so the shared venv is never changed), and `tailor` runs as a
real process with that folder on PYTHONPATH: importlib.metadata finds the package's .dist-info there
exactly as it would in site-packages. Without the folder the same tailor.yaml is refused with the
usual one-line errors, so the names really come from the plugin.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tailorlm.plugins import GROUPS, registry

FIXTURE = Path(__file__).parent / "fixtures" / "tailor_plugin_demo"
TAILOR = Path(sys.executable).with_name("tailor")


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory) -> Path:
    """The fixture package pip-installed into its own folder; removed with the test's temporary files."""
    work = tmp_path_factory.mktemp("plugin")
    source = shutil.copytree(FIXTURE, work / "src")  # pip builds in the source tree: keep the repository clean
    target = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True)
    assert list(target.glob("tailor_plugin_demo-0.1.0.dist-info/entry_points.txt"))
    yield target
    shutil.rmtree(work)


@pytest.fixture
def in_process(plugin_dir, monkeypatch):
    """The plugin importable in this process too (to read what the runs wrote), and gone again after."""
    monkeypatch.syspath_prepend(str(plugin_dir))
    for group in GROUPS:
        registry(group).refresh()
    yield
    monkeypatch.undo()
    sys.modules.pop("tailor_plugin_demo", None)
    for group in GROUPS:
        registry(group).refresh()
    assert "drop_marked" not in registry("tailorlm.steps")


def tailor(*args, cwd: Path, plugins: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if plugins is not None:
        env["PYTHONPATH"] = str(plugins)
    return subprocess.run([str(TAILOR), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def make_project(root: Path) -> Path:
    root.mkdir()
    tickets = [{"id": f"t{i}", "messages": [{"role": "user", "content": f"question {i}" + (" DROPME" if i % 3 == 0 else "")},
                                           {"role": "assistant", "content": f"answer {i}"}]} for i in range(12)]
    golden = [{"id": f"g{i}", "input": [{"role": "user", "content": f"what is {w}?"}], "reference": w}
              for i, w in enumerate(["tea", "rust", "oak", "moss"])]
    (root / "tickets.jsonl").write_text("".join(json.dumps(r) + "\n" for r in tickets))
    (root / "golden.jsonl").write_text("".join(json.dumps(r) + "\n" for r in golden))
    (root / "tailor.yaml").write_text(f"""name: demo
task: {{description: Answer briefly., type: qa}}
models:
  generator: {{backend: echo, model: echo-1}}
sources:
  - {{name: tickets, path: tickets.jsonl, kind: chat}}
data:
  steps:
    - validate: {{}}
    - drop_marked: {{marker: DROPME}}
    - split: {{train: 1.0, validation: 0.0, test: 0.0}}
eval: {{path: golden.jsonl, metrics: [vowel_share]}}
rungs:
  - {{kind: zero_shot}}
  - {{kind: shout}}
""")
    return root


def test_builtins_register_through_the_same_entry_points():
    # Tailor's own names come from its pyproject.toml's entry points, not from a list in the code.
    steps, metrics = registry("tailorlm.steps"), registry("tailorlm.metrics")
    assert {"validate", "near_dedup", "pii", "split"} <= set(steps) and steps.provider("pii") == "tailorlm"
    assert {"exact_match", "accuracy", "macro_f1", "schema_valid"} <= set(metrics)
    assert {"zero_shot", "few_shot", "rag", "classic", "ensemble", "sft"} <= set(registry("tailorlm.rungs"))
    assert "shout" not in registry("tailorlm.rungs")  # the plugin is never installed into the venv itself
    assert set(registry("tailorlm.backends")) == {"local", "openai"}
    from tailorlm.data.steps.dedup import NearDedup
    from tailorlm.rungs.registry import rung_type

    assert steps["near_dedup"] is NearDedup
    assert rung_type("hybrid").trains and not rung_type("rag").trains
    assert len(GROUPS) == 4


def test_a_plugin_step_metric_rung_and_backend_run_from_tailor_yaml(tmp_path, plugin_dir, in_process):
    root = make_project(tmp_path / "p")

    # Without the plugin on the path its names are unknown, with the same one-line errors as any typo.
    refused = tailor("data", "prepare", cwd=root)
    assert refused.returncode == 2
    said = (refused.stderr + refused.stdout).strip()
    assert "tailor.yaml:4: models.generator.backend: must be one of 'local' or 'openai'" in said, said
    assert len(said.splitlines()) == 1

    prepared = tailor("data", "prepare", "--json", cwd=root, plugins=plugin_dir)
    assert prepared.returncode == 0, prepared.stderr
    from tailorlm.data.versions import load_records, resolve
    from tailorlm.project import Project

    project = Project.load(root)
    manifest = resolve(project, "tickets")
    step = next(s for s in manifest["steps"] if s["step"] == "drop_marked")
    assert step["params"] == {"marker": "DROPME"} and step["dropped"] == {"marked:DROPME": 4} and step["kept"] == 8
    kept = {r.id for r in load_records(project, manifest, "train")}
    assert kept == {f"t{i}" for i in range(12) if i % 3}  # exactly the unmarked records survive

    # The shout rung answers through the echo backend: the question's words reversed, in capitals.
    evaluated = tailor("eval", "shout", "--json", cwd=root, plugins=plugin_dir)
    assert evaluated.returncode == 0, evaluated.stderr
    summary = json.loads(evaluated.stdout.strip().splitlines()[-1])
    rows = [json.loads(line) for line in (root / summary["path"]).with_name("examples.jsonl").read_text().splitlines()]
    questions = {f"g{i}": f"what is {w}?" for i, w in enumerate(["tea", "rust", "oak", "moss"])}
    assert {r["id"]: r["prediction"] for r in rows} == {k: " ".join(reversed(q.split())).upper() for k, q in questions.items()}

    def share(text):
        letters = [c for c in text.lower() if c.isalpha()]
        return sum(c in "aeiou" for c in letters) / len(letters)

    expected = sum(share(q) for q in questions.values()) / 4  # reversing and capitals keep the letters
    assert summary["metrics"]["vowel_share"]["score"] == pytest.approx(expected)
    assert summary["subject"] == "demo:shout"

    typo = tailor("eval", "zero_shot", "--metrics", "vowel_shares", "--json", cwd=root, plugins=plugin_dir)
    error = json.loads(typo.stdout)["error"]["message"]
    assert typo.returncode == 2 and error.startswith("unknown metric(s) vowel_shares; known: ") and "vowel_share," in error
