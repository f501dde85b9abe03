"""`tailor data prepare --executor ray` on a real local Ray instance with 2 workers.

One Ray instance serves the whole module (starting one takes ~10 s on 2 cores): this process is its
head and first driver, and the CLI runs in a subprocess that joins it by `--address`, as a user's
command joins a cluster. Its killed run shows that a rerun redoes only the unfinished tasks.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tailorlm.data.executors import prepare_with_executor
from tailorlm.data.pipeline import prepare
from tailorlm.data.versions import load_records, resolve
from tailorlm.project import Project
from tailorlm.quickstart import example_dir

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")


@pytest.fixture(scope="module")
def ray_address():
    # Ray kills workers when the whole machine's memory passes 95%, whoever uses it; on a CI box shared
    # with other jobs that kills these small tasks for others' use, so the monitor is off for this instance.
    os.environ["RAY_memory_monitor_refresh_ms"] = "0"
    ray.init(num_cpus=2, object_store_memory=128 * 1024**2, include_dashboard=False, logging_level="WARNING")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture
def example(tmp_path, smol_dir):
    root = tmp_path / "keelbox"
    shutil.copytree(example_dir(), root)
    return Project.load(root)


def records_of(project, version_id: str) -> dict:
    return {r.id: r.content for r in load_records(project, resolve(project, version_id))}


def test_ray_gives_the_same_version_as_inprocess_and_local(example, ray_address):
    assert ray.cluster_resources()["CPU"] == 2  # the two workers
    [ray_run] = prepare_with_executor(example, ["tickets"], executor="ray", workers=2, tasks=2)["datasets"]
    assert ray_run["accounting"]["holds"]
    work = Path(ray_run["work_dir"])
    assert sorted(p.name for p in (work / "logs" / "completions").iterdir()) == ["00000", "00001"]
    [local_run] = prepare_with_executor(example, ["tickets"], executor="local", workers=2, tasks=2)["datasets"]
    [serial] = prepare(example, ["tickets"])
    assert ray_run["id"] == local_run["id"] == serial["id"]
    assert records_of(example, ray_run["id"]) == records_of(example, serial["id"])
    assert ray_run["splits"] == serial["splits"]


@pytest.mark.slow
def test_a_killed_ray_run_reruns_only_its_unfinished_tasks(example, ray_address, tmp_path):
    """The CLI joins the cluster by --address; it is killed after some of its tasks have finished, and a
    rerun (through RAY_ADDRESS this time) redoes only the others, then gives the uninterrupted version."""
    tasks = 4
    command = [sys.executable, "-m", "tailorlm.cli", "data", "prepare", "tickets", "--executor", "ray",
               "--workers", "2", "--tasks", str(tasks), "--address", ray_address, "-p", str(example.root), "--json"]
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    completions = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        found = list(example.artifacts("runs").glob("data-tickets-*/logs/completions/*"))
        if found:
            completions = found[0].parent
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert completions is not None, (tmp_path / "first.log").read_text()[-3000:]
    done = {p.name for p in completions.iterdir()}
    work = completions.parent.parent
    assert 0 < len(done) < tasks, f"the kill came too late to leave unfinished tasks: {done}"
    kept = {rank: (work / "out" / f"{rank}.json").stat().st_mtime_ns for rank in done}

    env = {**os.environ, "RAY_ADDRESS": ray_address}
    again = subprocess.run(command[:command.index("--address")] + command[command.index("--address") + 2:],
                           capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    [result] = json.loads(again.stdout)["datasets"]
    assert sorted(p.name for p in completions.iterdir()) == [f"{r:05d}" for r in range(tasks)]
    assert {rank: (work / "out" / f"{rank}.json").stat().st_mtime_ns for rank in done} == kept  # not rerun
    [serial] = prepare(example, ["tickets"])
    assert result["id"] == serial["id"]
