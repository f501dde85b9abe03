"""`tailor train ... --launcher accelerate`: the same run on N GPUs across M nodes.

The run is created here (its resolved config saved as usual), an accelerate config for the
chosen strategy (FSDP or DeepSpeed ZeRO-3, or DDP) is written beside it, and `accelerate launch`
starts `python -m tailorlm.train.worker` on every process; the worker resumes the run by id, so
a relaunch after a crash continues from the last checkpoint.
"""

import sys

from tailorlm.train.config import TrainConfig


def launch_run(project, cfg: TrainConfig, dry_run: bool = False) -> dict:
    from tailorlm.train.launch import launch, write_accelerate_config
    from tailorlm.train.runs import start_or_resume

    run_id, cfg, _ = start_or_resume(project, cfg, None)
    out = project.artifacts("runs") / run_id
    precision = "bf16" if cfg.precision in ("auto", "bf16") else ("fp16" if cfg.precision == "fp16" else "no")
    config_path = write_accelerate_config(out / "accelerate.yaml", gpus=cfg.gpus, nodes=cfg.nodes, strategy=cfg.strategy,
                                          mixed_precision=precision, gradient_checkpointing=cfg.gradient_checkpointing)
    result = launch(config_path, "tailorlm.train.worker", ["--project", str(project.root), "--run", run_id], dry_run=dry_run)
    if dry_run:  # nothing ran: keep the run out of `--resume`'s reach
        project.store.update("runs", {"id": run_id}, status="dry-run")
    return {"run_id": run_id, "config_path": str(config_path), "dry_run": dry_run, **result}


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
