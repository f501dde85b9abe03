"""`tailor train ... --launcher accelerate`: the same run on N GPUs across M nodes.

The run is created here (its resolved config saved as usual), an accelerate config for the
chosen strategy (FSDP or DeepSpeed ZeRO-3, or DDP) is written beside it, and `accelerate launch`
starts `python -m tailorlm.train.worker` on every process; the worker resumes the run by id, so
a relaunch after a crash (`tailor train sft --resume`) continues from the last checkpoint.
Without GPUs, `--processes N` runs N data-parallel CPU processes (DDP over gloo): the same code
path on a laptop, in CI, or on a CPU cluster.
"""

import sys

from tailorlm.train.config import TrainConfig


def launch_run(project, cfg: TrainConfig | None, dry_run: bool = False, resume: str | bool | None = None) -> dict:
    """Start (or with `resume`, relaunch) a run under `accelerate launch`; every process resumes from the
    run's last checkpoint, and the main one registers its model version.

    >>> launch_run(project, TrainConfig(dataset="tickets", launcher="accelerate", processes=2))  # doctest: +SKIP
    """
    from tailorlm.train.launch import CPU_ENV, launch, write_accelerate_config
    from tailorlm.train.runs import start_or_resume

    run_id, cfg, _ = start_or_resume(project, cfg, resume)
    out = project.artifacts("runs") / run_id
    precision = "bf16" if cfg.precision in ("auto", "bf16") else ("fp16" if cfg.precision == "fp16" else "no")
    cpu = cfg.processes is not None
    config_path = write_accelerate_config(
        out / "accelerate.yaml", gpus=0 if cpu else cfg.gpus, nodes=cfg.nodes, strategy="ddp" if cpu else cfg.strategy,
        cpu_processes=cfg.processes or 1, mixed_precision=precision, gradient_checkpointing=cfg.gradient_checkpointing,
        # A port of its own per launch: two runs on one machine (or a killed one's lingering socket) never meet.
        **({"main_process_port": free_port()} if cpu else {}))
    env = CPU_ENV if cpu else {}
    result = launch(config_path, "tailorlm.train.worker", ["--project", str(project.root), "--run", run_id],
                    dry_run=dry_run, env=env)
    if dry_run:  # nothing ran: keep the run out of `--resume`'s reach
        project.store.update("runs", {"id": run_id}, status="dry-run")
    return {"run_id": run_id, "config_path": str(config_path), "dry_run": dry_run, "env": env, **result}


def pending_launched_run(project, run: str | None) -> bool:
    """Whether `--resume` (of `run`, or of the latest unfinished run) means an accelerate launch."""
    from tailorlm.errors import TailorError
    from tailorlm.train.runs import start_or_resume

    try:
        _, cfg, _ = start_or_resume(project, None, run or True)
    except TailorError:
        return False  # train() says what is missing
    return cfg.launcher == "accelerate"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> None:
    """Entry point of `python -m tailorlm.train.worker`."""
    import argparse

    from tailorlm.project import Project
    from tailorlm.train.runs import train

    parser = argparse.ArgumentParser(description="Run one process of a Tailor training run (started by accelerate).")
    parser.add_argument("--project", required=True)
    parser.add_argument("--run", required=True)
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    train(Project.load(args.project), resume=args.run, launched=True)
