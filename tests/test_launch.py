"""The accelerate launch path: configs that accelerate itself reads, and one real CPU launch."""

import json
import sys

import pytest
import yaml

from tailorlm.errors import TailorError
from tailorlm.train.launch import accelerate_config, launch, launch_command, write_accelerate_config


def accelerate_view(path):
    """What `accelerate launch --config_file path` makes of the file: its loaded config and the
    parsed launch arguments (the same steps as accelerate's own `launch_command`)."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    loaded = load_config_from_file(str(path))  # rejects unknown top-level keys
    args = launch_command_parser().parse_args(["--config_file", str(path), "-m", "some.module", "--x", "1"])
    args, _, _ = _validate_launch_command(args)
    return loaded, args


def test_one_gpu_one_node_is_not_distributed():
    cfg = accelerate_config(gpus=1, nodes=1, strategy="fsdp")
    assert cfg["distributed_type"] == "NO"
    assert cfg["num_processes"] == 1 and cfg["num_machines"] == 1
    assert cfg["mixed_precision"] == "bf16" and cfg["use_cpu"] is False
    assert "fsdp_config" not in cfg and "main_process_port" not in cfg


def test_fsdp_config_round_trips_through_accelerate(tmp_path):
    path = write_accelerate_config(tmp_path / "fsdp.yaml", gpus=8, nodes=1, strategy="fsdp",
                                   gradient_checkpointing=True)
    loaded, args = accelerate_view(path)
    assert loaded.distributed_type.value == "FSDP"
    assert loaded.num_processes == 8 and loaded.num_machines == 1 and loaded.main_process_port == 29500
    assert loaded.fsdp_config == yaml.safe_load(path.read_text())["fsdp_config"]
    # The launcher turned every fsdp_config key into its own argument.
    assert args.use_fsdp and args.num_processes == 8
    assert args.fsdp_reshard_after_forward == "FULL_SHARD"
    assert args.fsdp_auto_wrap_policy == "TRANSFORMER_BASED_WRAP"
    assert args.fsdp_transformer_layer_cls_to_wrap == "LlamaDecoderLayer"
    assert args.fsdp_state_dict_type == "SHARDED_STATE_DICT"
    assert args.fsdp_use_orig_params is True
    assert args.fsdp_cpu_ram_efficient_loading is True and args.fsdp_sync_module_states is True
    assert args.fsdp_activation_checkpointing is True


def test_fsdp_env_reaches_the_processes(tmp_path):
    from accelerate.utils.launch import prepare_multi_gpu_env

    _, args = accelerate_view(write_accelerate_config(tmp_path / "f.yaml", gpus=8, nodes=1, strategy="fsdp"))
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_USE_FSDP"] == "true"
    assert env["FSDP_TRANSFORMER_CLS_TO_WRAP"] == "LlamaDecoderLayer"
    assert env["FSDP_USE_ORIG_PARAMS"] == "true"
    assert env["FSDP_STATE_DICT_TYPE"] == "SHARDED_STATE_DICT"


def test_deepspeed_two_nodes_round_trips_through_accelerate(tmp_path):
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    path = write_accelerate_config(tmp_path / "ds.yaml", gpus=8, nodes=2, strategy="deepspeed", machine_rank=1,
                                   main_process_ip="10.0.0.1", main_process_port=29600,
                                   gradient_accumulation_steps=4)
    loaded, args = accelerate_view(path)
    assert loaded.distributed_type.value == "DEEPSPEED"
    assert (loaded.num_processes, loaded.num_machines, loaded.machine_rank) == (16, 2, 1)
    assert (loaded.main_process_ip, loaded.main_process_port) == ("10.0.0.1", 29600)
    ds = loaded.deepspeed_config
    assert ds["zero_stage"] == 3 and ds["zero3_init_flag"] is True and ds["zero3_save_16bit_model"] is True
    assert ds["offload_param_device"] == ds["offload_optimizer_device"] == "none"
    assert args.use_deepspeed and args.deepspeed_multinode_launcher == "standard"
    # accelerate's launch_command sets this before building the DeepSpeed environment.
    args.deepspeed_fields_from_accelerate_config = ",".join(ds)
    _, env = prepare_deepspeed_cmd_env(args)
    assert env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "3"
    assert env["ACCELERATE_GRADIENT_ACCUMULATION_STEPS"] == "4"
    assert env["ACCELERATE_DEEPSPEED_ZERO3_INIT"] == "true"


def test_cpu_processes_go_through_torchrun(tmp_path):
    """Several CPU processes: a config accelerate's launcher runs with torchrun (its multi-GPU path)."""
    path = write_accelerate_config(tmp_path / "cpu2.yaml", gpus=0, nodes=1, strategy="fsdp", cpu_processes=2)
    loaded, args = accelerate_view(path)
    assert loaded.distributed_type.value == "MULTI_GPU" and loaded.num_processes == 2 and loaded.mixed_precision == "no"
    assert args.multi_gpu and not args.cpu and not args.use_fsdp  # DDP on the CPU, whatever the strategy said
    with pytest.raises(TailorError, match="cpu_processes"):
        accelerate_config(gpus=2, nodes=1, strategy="ddp", cpu_processes=2)


def test_ddp_is_multi_gpu():
    cfg = accelerate_config(gpus=4, nodes=1, strategy="ddp", mixed_precision="fp16")
    assert cfg["distributed_type"] == "MULTI_GPU" and cfg["num_processes"] == 4 and cfg["mixed_precision"] == "fp16"


@pytest.mark.parametrize("kwargs, words", [
    (dict(gpus=8, nodes=2, strategy="fsdp"), "main_process_ip"),
    (dict(gpus=8, nodes=1, strategy="megatron"), "unknown strategy"),
    (dict(gpus=8, nodes=2, strategy="ddp", main_process_ip="h", machine_rank=2), "machine_rank"),
    (dict(gpus=0, nodes=2, strategy="ddp", main_process_ip="h"), "needs GPUs"),
])
def test_bad_configs_say_what_is_wrong(kwargs, words):
    with pytest.raises(TailorError, match=words):
        accelerate_config(**kwargs)


def test_dry_run_returns_the_command_and_config(tmp_path):
    path = write_accelerate_config(tmp_path / "acc.yaml", gpus=8, nodes=1, strategy="fsdp")
    out = launch(path, "tailorlm.train.worker", ["--run", "r1"], dry_run=True)
    assert out["command"] == [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(path),
                              "-m", "tailorlm.train.worker", "--run", "r1"]
    assert out["command"] == launch_command(path, "tailorlm.train.worker", ["--run", "r1"])
    assert out["config"]["distributed_type"] == "FSDP" and "returncode" not in out
    with pytest.raises(TailorError, match="not found"):
        launch(tmp_path / "missing.yaml", "m", [], dry_run=True)


# Records what a training module launched by accelerate sees: its arguments, the launcher's
# environment, and the process layout as accelerate reports it to training code.
WORKER = '''
import json, os, sys
from accelerate import PartialState
state = PartialState()
keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "ACCELERATE_USE_CPU", "ACCELERATE_MIXED_PRECISION")
json.dump({"argv": sys.argv[1:], "env": {k: os.environ.get(k) for k in keys}, "process_index": state.process_index,
           "num_processes": state.num_processes, "device": str(state.device)}, open(sys.argv[1], "w"))
'''


def test_real_cpu_launch_runs_the_module(tmp_path):
    (tmp_path / "tiny_worker.py").write_text(WORKER)
    path = write_accelerate_config(tmp_path / "cpu.yaml", gpus=0, nodes=1, strategy="ddp")
    cfg = yaml.safe_load(path.read_text())
    assert cfg["distributed_type"] == "NO" and cfg["use_cpu"] is True and cfg["num_processes"] == 1
    seen = tmp_path / "seen.json"
    out = launch(path, "tiny_worker", [str(seen), "--lr", "1e-4"], env={"PYTHONPATH": str(tmp_path)})
    assert out["returncode"] == 0
    got = json.loads(seen.read_text())
    assert got["argv"] == [str(seen), "--lr", "1e-4"]
    assert (got["process_index"], got["num_processes"], got["device"]) == (0, 1, "cpu")
    assert got["env"]["ACCELERATE_USE_CPU"] == "True" and got["env"]["ACCELERATE_MIXED_PRECISION"] == "no"
    # One process runs without torchrun, so no rendezvous variables are set; accelerate reads
    # their absence as rank 0 of 1.
    assert got["env"]["RANK"] is None and got["env"]["WORLD_SIZE"] is None


def test_failed_launch_raises_with_stderr_tail(tmp_path):
    (tmp_path / "bad_worker.py").write_text("import sys\nsys.exit('worker exploded: out of bananas')\n")
    path = write_accelerate_config(tmp_path / "cpu.yaml", gpus=0, nodes=1, strategy="ddp")
    with pytest.raises(TailorError, match="out of bananas"):
        launch(path, "bad_worker", [], env={"PYTHONPATH": str(tmp_path)})


# --- Real data-parallel runs: `tailor train sft --launcher accelerate --processes 2` on the CPU (gloo) ---

from tests.test_train import FAST, train_project  # noqa: E402,F401  (the tiny model and its facts dataset)

# Random order, not length-grouped: the sampler's permutation then does not depend on the batch size, so two
# processes of 3 see, step for step, the same 6 sequences as one process of 6 (accelerate deals batch k to rank k % 2).
SAME_ORDER = {**{k: v for k, v in FAST.items() if k not in ("dataset", "batch_size")}, "group_by_length": False}


def launched(project, *flags: str, timeout: int = 300, wait: bool = True):
    import subprocess

    config = project.root / "ddp.yaml"
    config.write_text(yaml.safe_dump(SAME_ORDER))
    args = [sys.executable, "-m", "tailorlm.cli", "train", "sft", "-p", str(project.root), "--config", str(config),
            "--json", *flags]
    if not wait:
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def losses_of(project, run_id: str) -> dict[int, float]:
    return {r["step"]: r["value"] for r in project.store.select("run_metrics", run_id=run_id, name="loss")}


def test_two_cpu_processes_match_one_process_with_the_same_global_batch(train_project):
    from tailorlm.train.config import TrainConfig
    from tailorlm.train.runs import train

    steps = 6
    out = launched(train_project, "--dataset", "facts", "--launcher", "accelerate", "--processes", "2",
                   "--batch-size", "3", "--max-steps", str(steps))
    cfg = yaml.safe_load(open(out["config_path"]))
    assert (cfg["num_processes"], cfg["distributed_type"], cfg["use_cpu"]) == (2, "MULTI_GPU", False)
    run_id = out["run_id"]
    [run] = train_project.store.select("runs", id=run_id)
    assert run["status"] == "finished"
    [version] = train_project.store.select("model_versions")  # one version, from the main process only
    lineage = json.loads(version["lineage"])
    assert version["run_id"] == run_id and lineage["config"]["processes"] == 2
    assert lineage["dataset"] == version["dataset_version"] and lineage["base"] == version["base_model"]
    assert (train_project.root / version["adapter_path"] / "adapter_model.safetensors").exists()
    ddp = losses_of(train_project, run_id)

    single = train(train_project, TrainConfig(dataset="facts", batch_size=6, max_steps=steps, **SAME_ORDER))
    one = losses_of(train_project, single["run_id"])
    assert sorted(ddp) == sorted(one) == list(range(1, steps + 1))
    # Step 1 is the same forward pass split in two: only the summation order differs (fp32, ~1e-7 relative).
    # Later steps add the two halves' gradients by all-reduce instead of in one backward, and Adam's
    # 1/sqrt(v) amplifies those last-bit differences a little each step; 1e-3 relative after 6 steps is
    # ~1000x that noise and ~50x below what one wrong sequence in a 6-sequence batch moves the loss.
    print("largest relative loss difference, 2 processes vs 1:", max(abs(ddp[s] - one[s]) / one[s] for s in one))
    assert abs(ddp[1] - one[1]) <= 1e-5 * one[1], (ddp[1], one[1])
    for step in range(1, steps + 1):
        assert abs(ddp[step] - one[step]) <= 1e-3 * one[step], (step, ddp[step], one[step])
    assert ddp[steps] < ddp[1]  # and it learns


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_from_its_checkpoint(train_project):
    import os
    import signal
    import time

    proc = launched(train_project, "--dataset", "facts", "--launcher", "accelerate", "--processes", "2",
                    "--batch-size", "3", "--max-steps", "12", wait=False)
    deadline = time.time() + 300
    done = []
    while time.time() < deadline and not done and proc.poll() is None:
        done = list((train_project.root / ".tailor" / "runs").glob("*/checkpoints/checkpoint-4/trainer_state.json"))
        time.sleep(0.1)
    assert done, proc.communicate(timeout=5)
    # The machine going down mid-run: the CLI, accelerate's launcher, torchrun and both ranks, all at once
    # (torchrun starts its ranks in sessions of their own, so killing the CLI's process group would miss them).
    import psutil

    tree = [proc.pid] + [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    assert len(tree) >= 4, tree  # tailor, torchrun (accelerate runs it in-process or as a child), 2 ranks
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    [run] = train_project.store.select("runs")
    assert run["status"] == "running" and not train_project.store.select("model_versions")
    out = launched(train_project, "--resume")
    assert out["run_id"] == run["id"]
    [version] = train_project.store.select("model_versions")
    assert version["run_id"] == run["id"] and json.loads(version["metrics"])["steps"] == 12
    assert sorted(losses_of(train_project, run["id"])) == list(range(1, 13))  # no gap, no step twice
