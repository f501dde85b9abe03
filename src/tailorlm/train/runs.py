"""A training run from start to registered model version: `tailor train sft|cpt|dpo`.

A run lives in `.tailor/runs/RUN_ID/`: the resolved `config.yaml`, `checkpoints/`, the final
`model/` (adapter or weights, with the tokenizer and chat template that training used) and
`result.json`. Per-step metrics go to the store. After a crash, `--resume RUN_ID` (or `--resume`
for the latest unfinished run) continues from the last complete checkpoint with the same config.
"""

import os
import time

import yaml

from tailorlm.errors import TailorError
from tailorlm.paths import safe_name
from tailorlm.store import new_id, now
from tailorlm.train.config import TrainConfig
from tailorlm.train.trainer import last_checkpoint, write_json


def start_or_resume(project, cfg: TrainConfig | None, resume: str | bool | None) -> tuple[str, TrainConfig, bool]:
    """(run id, config, resuming?) — a resumed run reads its saved config, so nothing drifts."""
    if resume:
        rows = project.store.select("runs", order_by="created_at")
        pending = [r for r in rows if r["status"] in ("running", "failed")]
        if isinstance(resume, str) and resume is not True:
            pending = [r for r in rows if r["id"] == resume]
        if not pending:
            raise TailorError(f"no run to resume{f' named {resume}' if isinstance(resume, str) else ''}")
        row = pending[-1]
        saved = yaml.safe_load((project.root / row["output_dir"] / "config.yaml").read_text())
        return row["id"], TrainConfig.model_validate(saved), True
    if cfg is None:
        raise TailorError("a training run needs a dataset: --dataset NAME")
    run_id = f"{cfg.method}-{time.strftime('%Y%m%d-%H%M%S')}-{new_id()[:4]}"
    out = project.artifacts("runs") / run_id
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    project.store.insert("runs", id=run_id, method=cfg.method, status="running", dataset_version=None,
                         config=cfg.model_dump(mode="json"), output_dir=str(out.relative_to(project.root)),
                         created_at=now())
    return run_id, cfg, False


def train(project, cfg: TrainConfig | None = None, resume: str | bool | None = None, on_progress=None,
          on_message=lambda _m: None, launched: bool = False) -> dict:
    """Run (or resume) a training run and register its model version.

    >>> train(project, TrainConfig(dataset="tickets", max_steps=20))["model_version"]  # doctest: +SKIP
    'keelbox-support:sft@v1'
    """
    from tailorlm.train.trainer import check_trackers

    if cfg is not None and not resume:
        check_trackers(cfg.report_to)  # before the run is recorded
    run_id, cfg, resuming = start_or_resume(project, cfg, resume)
    if resuming:
        check_trackers(cfg.report_to)
    if cfg.launcher == "accelerate" and not launched:
        raise TailorError("runs with --launcher accelerate are started by `tailor train ... --launcher accelerate`")
    out = project.artifacts("runs") / run_id
    try:
        if cfg.method == "dpo":
            from tailorlm.train.dpo import run_dpo as engine
        elif cfg.method == "grpo":
            from tailorlm.train.grpo import run_grpo as engine
        elif cfg.method == "kto":
            from tailorlm.train.kto import run_kto as engine
        elif cfg.method == "pretrain":
            from tailorlm.train.pretrain import run_pretrain as engine
        else:
            from tailorlm.train.sft import run_sft as engine
        checkpoint = last_checkpoint(out / "checkpoints") if resuming else None
        if resuming:
            on_message(f"resuming {run_id} from {checkpoint.name if checkpoint else 'the start'}")
        result = engine(project, cfg, run_id, out, checkpoint, on_progress, on_message)
    except BaseException as e:
        project.store.update("runs", {"id": run_id}, status="failed", error=str(e)[:2000], finished_at=now())
        raise
    if launched and int(os.environ.get("RANK", "0")) != 0:
        return result  # the main process registers the model version
    name = safe_name(cfg.name or project.config.name, "model name")
    from tailorlm.train.registry import register

    lineage = {"base": result["base"], "parent": result.get("parent"), "dataset": result["dataset_version"],
               "method": cfg.method, "adapter": cfg.adapter, "config": cfg.model_dump(mode="json"),
               "chat_template_in": str(out.relative_to(project.root) / "model"),
               "system_prompt": cfg.system_prompt, "rung": cfg.rung}
    version = register(project, name, cfg.method, result["base"], run_id, result["dataset_version"],
                       adapter_path=result.get("adapter_path"), weights_path=result.get("weights_path"),
                       lineage=lineage, metrics=result["metrics"])
    project.store.update("runs", {"id": run_id}, status="finished", finished_at=now(),
                         dataset_version=result["dataset_version"])
    result.update(run_id=run_id, model_version=version["id"], run_dir=str(out))
    write_json(out / "result.json", result)
    return result
