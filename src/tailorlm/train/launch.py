"""The scale-out path for training: `tailor train ... --launcher accelerate --gpus N --nodes M`.

A training run on one machine runs in-process. To spread it over GPUs and nodes, Tailor writes an
accelerate config (FSDP, DeepSpeed ZeRO-3 or plain DDP) and starts the same training module under
`accelerate launch`, so nothing in the training code changes. The YAML uses exactly the field
names that `accelerate config` writes and `accelerate launch --config_file` reads. A dry run
returns the config and the command without running anything: it is how this path is tested on a
CPU machine, and how a user gets the command to run on every node.

>>> cfg = accelerate_config(gpus=8, nodes=1, strategy="fsdp")
>>> cfg["distributed_type"], cfg["num_processes"]
('FSDP', 8)
"""

import os
import subprocess
import sys
from collections import deque
from pathlib import Path

from tailorlm.errors import TailorError

STRATEGIES = ("fsdp", "deepspeed", "ddp")


def accelerate_config(gpus: int, nodes: int, strategy: str, mixed_precision: str = "bf16", machine_rank: int = 0,
                      main_process_ip: str | None = None, main_process_port: int = 29500,
                      gradient_checkpointing: bool = False, layer_cls: str = "LlamaDecoderLayer",
                      gradient_accumulation_steps: int = 1, gradient_clipping: float = 1.0,
                      cpu_processes: int = 1) -> dict:
    """The accelerate config dict for `gpus` GPUs on each of `nodes` nodes.

    `gpus=0` means CPU processes (fp32): one, or `cpu_processes` data-parallel ones (DDP over gloo).
    accelerate's launcher starts several processes only through torchrun, which it uses for a
    MULTI_GPU config and never for one that says use_cpu; so several CPU processes are written as
    MULTI_GPU and run with ACCELERATE_USE_CPU=true in their environment (`CPU_ENV`), which makes
    each of them a gloo rank on the CPU.
    Each node needs its own file (or `--machine_rank` on its command line): `machine_rank` is 0 on
    the node at `main_process_ip` and 1..nodes-1 on the others.

    >>> accelerate_config(gpus=8, nodes=2, strategy="deepspeed", main_process_ip="10.0.0.1")["num_processes"]
    16
    """
    _check_topology(gpus, nodes, strategy, machine_rank, main_process_ip, cpu_processes)
    world = (gpus or cpu_processes) * nodes
    cfg = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        "distributed_type": "NO",
        "machine_rank": machine_rank,
        "num_machines": nodes,
        "num_processes": world,
        # bf16/fp16 autocast on this kind of CPU is slower than fp32 and changes the numbers.
        "mixed_precision": "no" if gpus == 0 else mixed_precision,
        "use_cpu": gpus == 0 and world == 1,
        "gpu_ids": "all",
        "rdzv_backend": "static",
        "same_network": True,
        "main_training_function": "main",
    }
    if world == 1:
        # One process has nothing to shard or synchronise, whatever the strategy says.
        return cfg
    cfg["main_process_port"] = main_process_port
    if main_process_ip:
        cfg["main_process_ip"] = main_process_ip
    if strategy == "ddp" or gpus == 0:  # on the CPU, plain data parallelism: nothing to shard
        cfg["distributed_type"] = "MULTI_GPU"
    elif strategy == "fsdp":
        cfg["distributed_type"] = "FSDP"
        cfg["fsdp_config"] = _fsdp_config(layer_cls, gradient_checkpointing)
    else:
        cfg["distributed_type"] = "DEEPSPEED"
        cfg["deepspeed_config"] = _deepspeed_config(nodes, gradient_accumulation_steps, gradient_clipping)
    return cfg


def _check_topology(gpus: int, nodes: int, strategy: str, machine_rank: int, main_process_ip: str | None,
                    cpu_processes: int) -> None:
    """Refuse a combination accelerate would fail on later, or silently misread, naming the fix."""
    if strategy not in STRATEGIES:
        raise TailorError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if gpus < 0 or nodes < 1:
        raise TailorError(f"need gpus >= 0 and nodes >= 1, got gpus={gpus}, nodes={nodes}")
    if gpus == 0 and nodes > 1:
        raise TailorError("gpus=0 runs CPU processes on one machine; multi-node training needs GPUs")
    if cpu_processes < 1 or (cpu_processes > 1 and gpus):
        raise TailorError(f"cpu_processes={cpu_processes} is for gpus=0 (CPU training), and must be at least 1")
    if nodes > 1 and not main_process_ip:
        raise TailorError(f"training on {nodes} nodes needs main_process_ip: the address of the node with "
                          "machine_rank 0, reachable from every other node (e.g. --main-process-ip 10.0.0.1)")
    if not 0 <= machine_rank < nodes:
        raise TailorError(f"machine_rank must be between 0 and {nodes - 1} for {nodes} node(s), got {machine_rank}")


def _fsdp_config(layer_cls: str, gradient_checkpointing: bool) -> dict:
    """FSDP1 full sharding of each `layer_cls` block, with the settings a LoRA run needs."""
    return {
        "fsdp_version": 1,
        # FSDP1 spells full sharding as reshard-after-forward FULL_SHARD (the old
        # fsdp_sharding_strategy key is deprecated in accelerate 1.x).
        "fsdp_reshard_after_forward": "FULL_SHARD",
        "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "fsdp_transformer_layer_cls_to_wrap": layer_cls,
        "fsdp_backward_prefetch": "BACKWARD_PRE",
        "fsdp_forward_prefetch": False,
        "fsdp_offload_params": False,
        # Sharded checkpoints let every rank save its own shard; a full state dict would
        # gather the whole model on rank 0.
        "fsdp_state_dict_type": "SHARDED_STATE_DICT",
        # PEFT mixes frozen and trainable parameters inside one wrapped unit, which FSDP1
        # only allows with the original parameters kept.
        "fsdp_use_orig_params": True,
        # Rank 0 loads the weights and broadcasts them, so N ranks do not hold N copies in RAM.
        "fsdp_cpu_ram_efficient_loading": True,
        "fsdp_sync_module_states": True,
        # Under FSDP, checkpointing belongs to the wrapper; the trainer's own flag must stay off.
        "fsdp_activation_checkpointing": gradient_checkpointing,
    }


def _deepspeed_config(nodes: int, gradient_accumulation_steps: int, gradient_clipping: float) -> dict:
    """DeepSpeed ZeRO-3 without offload, saving a plain 16-bit model."""
    cfg = {
        "zero_stage": 3,
        "offload_optimizer_device": "none",
        "offload_param_device": "none",
        # Build the model already partitioned, so no rank materialises all the weights.
        "zero3_init_flag": True,
        # Gather a plain 16-bit copy at save time, so the output loads without DeepSpeed.
        "zero3_save_16bit_model": True,
        # DeepSpeed owns these two; they must match the run's training config.
        "gradient_accumulation_steps": gradient_accumulation_steps,
        "gradient_clipping": gradient_clipping,
    }
    if nodes > 1:
        # One torchrun per node, started by the user or a scheduler: no pdsh or hostfile needed.
        cfg["deepspeed_multinode_launcher"] = "standard"
    return cfg


# The environment of a launch with several CPU processes (see accelerate_config).
CPU_ENV = {"ACCELERATE_USE_CPU": "true"}


def write_accelerate_config(path: Path, **kwargs) -> Path:
    """Write `accelerate_config(**kwargs)` as YAML to `path` and return the path.

    >>> write_accelerate_config(Path("acc.yaml"), gpus=8, nodes=1, strategy="fsdp")  # doctest: +SKIP
    """
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(accelerate_config(**kwargs), sort_keys=True))
    return path


def launch_command(config_path: Path, module: str, args: list[str]) -> list[str]:
    """The `accelerate launch` command line that runs `python -m module *args` under the config.

    It calls accelerate's launcher through this interpreter rather than the `accelerate` script:
    the script on PATH may belong to another Python (a pyenv shim, a system install), and the
    training module must run in the environment where Tailor is installed.

    >>> launch_command(Path("acc.yaml"), "tailorlm.train.worker", ["--run", "r1"])[-4:]
    ['-m', 'tailorlm.train.worker', '--run', 'r1']
    """
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_path),
            "-m", module, *args]


def launch(config_path: Path, module: str, args: list[str], dry_run: bool = False, env: dict | None = None,
           cwd: Path | None = None) -> dict:
    """Run `module` under `accelerate launch` with the config at `config_path`.

    A dry run returns {"command", "config"} and runs nothing. Otherwise the command runs to the
    end (its output shown live) and the result adds "returncode"; a non-zero exit raises TailorError with the tail of
    stderr. `env` adds variables to this process's environment for the launched processes.

    >>> launch(Path("acc.yaml"), "tailorlm.train.worker", [], dry_run=True)["command"][1:3]  # doctest: +SKIP
    ['-m', 'accelerate.commands.launch']
    """
    import yaml

    config_path = Path(config_path)
    if not config_path.is_file():
        raise TailorError(f"accelerate config not found: {config_path} (write one with write_accelerate_config)")
    command = launch_command(config_path, module, args)
    result = {"command": command, "config": yaml.safe_load(config_path.read_text())}
    if dry_run:
        return result
    # stdout passes straight through and stderr is echoed line by line, so a long run shows its
    # progress live; only the last lines are kept, for the error message.
    # accelerate 1.16 ends a failed launch with its own ~12-line traceback, after the worker's error.
    tail: deque[str] = deque(maxlen=40)
    with subprocess.Popen(command, env={**os.environ, **(env or {})}, cwd=cwd, stderr=subprocess.PIPE,
                          text=True, bufsize=1) as proc:
        for line in proc.stderr:
            sys.stderr.write(line)
            tail.append(line.rstrip("\n"))
    result["returncode"] = proc.returncode
    if proc.returncode != 0:
        lines = "\n".join(tail)
        raise TailorError(f"accelerate launch of {module} exited with code {proc.returncode}:\n{lines}")
    return result
