"""datatrove executors: the local multiprocess executor for real, Slurm and Ray as dry runs (Ray for real:
tests/test_ray_executor.py)."""

import json
import shutil
from pathlib import Path

import pytest

from tailorlm.data.executors import prepare_with_executor
from tailorlm.data.pipeline import prepare
from tailorlm.data.versions import load_records
from tailorlm.project import Project
from tailorlm.quickstart import example_dir


@pytest.fixture
def example(tmp_path, smol_dir):
    root = tmp_path / "keelbox"
    shutil.copytree(example_dir(), root)
    return Project.load(root)


def test_local_executor_matches_in_process_and_resumes(example):
    out = prepare_with_executor(example, ["tickets"], executor="local", workers=2, tasks=3)
    [result] = out["datasets"]
    assert result["accounting"]["holds"]
    from tailorlm.data.versions import resolve

    parallel = {r.id: r.content for r in load_records(example, resolve(example, result["id"]))}
    [serial_manifest] = prepare(example, ["tickets"])
    serial = {r.id: r.content for r in load_records(example, serial_manifest)}
    # Same survivors with the same content, and so the same version: only the order the steps ran in
    # is recorded differently (in the manifest's steps, not in the recipe its id hashes).
    assert parallel == serial
    assert result["id"] == serial_manifest["id"]
    work = Path(result["work_dir"])
    assert sorted(p.name for p in (work / "logs" / "completions").iterdir()) == ["00000", "00001", "00002"]

    # A crash after task 0 finished: remove its successors' marks and outputs, and rerun.
    for rank in ("00001", "00002"):
        (work / "logs" / "completions" / rank).unlink()
        (work / "out" / f"{rank}.json").unlink()
    first_out = (work / "out" / "00000.json").stat().st_mtime_ns
    again = prepare_with_executor(example, ["tickets"], executor="local", workers=2, tasks=3)["datasets"][0]
    assert again["id"] == result["id"]
    assert (work / "out" / "00000.json").stat().st_mtime_ns == first_out  # task 0 was not rerun
    assert (work / "out" / "00001.json").exists()


def test_slurm_dry_run_writes_an_sbatch_script(example):
    out = prepare_with_executor(example, ["tickets"], executor="slurm", workers=4, tasks=8, dry_run=True,
                                slurm={"partition": "cpu-long", "time": "01:30:00", "job_name": "tailor-tickets"})
    [result] = out["datasets"]
    script = open(result["launch_script"]).read()
    assert "#SBATCH --partition=cpu-long" in script
    assert "#SBATCH --time=01:30:00" in script
    assert "#SBATCH --array=0-7%4" in script
    assert "#SBATCH --job-name=tailor-tickets" in script
    assert "launch_pickled_pipeline" in script and result["executor_pickle"] in script
    config = json.load(open(result["executor_json"]))
    assert (config["tasks"], config["workers"], config["partition"]) == (8, 4, "cpu-long")
    import dill

    executor = dill.load(open(result["executor_pickle"], "rb"))
    assert executor.pipeline[0].dataset == "tickets"  # the pickled pipeline is what a node would run


def test_ray_dry_run_writes_a_launch_script(example):
    out = prepare_with_executor(example, ["tickets"], executor="ray", workers=2, tasks=4, dry_run=True)
    [result] = out["datasets"]
    assert "executor.run()" in open(result["launch_script"]).read()
    assert json.load(open(result["executor_json"]))["tasks"] == 4


def test_cli_prepare_with_local_executor(example, cli):
    r = cli("data", "prepare", "tickets", "--executor", "local", "--workers", "2", "-p", example.root, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["datasets"][0]["accounting"]["holds"]
