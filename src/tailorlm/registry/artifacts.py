"""The typed artifacts every stage writes and reads: dataset versions, model versions, reports, ladders, aliases.

Each type matches what is stored today (a version's `manifest.json`, a `model_versions` row, a
`report.json`, a `ladder.json`, an `aliases` row), field for field. Keys a type does not name are kept
(`extra="allow"`), so a file written by a newer or older Tailor round-trips unchanged, and
`to_dict()` gives back the plain dictionary the rest of the code indexes.

One drift is healed on load: RAFT manifests written before the fix named their step `name`
instead of `step`; `StepSummary` reads either.

>>> DatasetVersion.model_validate(manifest).steps[0].step  # doctest: +SKIP
'validate'
"""

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field


class _Artifact(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def to_dict(self) -> dict:
        """The plain dictionary, as written to disk (extra keys included)."""
        return self.model_dump()


class StepSummary(_Artifact):
    """One pipeline step's part of a manifest: its parameters and what it kept, dropped and counted."""

    step: str = Field(validation_alias=AliasChoices("step", "name"), description="The step's name (validate, dedup, raft ...).")
    params: dict[str, Any] = Field(default_factory=dict, description="The step's parameters, as configured.")
    kept: int = Field(0, description="Records the step passed on.")
    dropped: dict[str, int] = Field(default_factory=dict, description="Records the step dropped, by reason.")
    stats: dict[str, Any] = Field(default_factory=dict, description="The step's own counts (upsampled, tokens ...).")


class Accounting(_Artifact):
    """read + added = kept + rejected_by_readers + dropped_by_steps, checked before a version is written."""

    read: int = Field(0, description="Records the readers produced.")
    rejected_by_readers: int = Field(0, description="Inputs the readers could not turn into records.")
    added: int = Field(0, description="Records the steps added (upsampling).")
    dropped_by_steps: int = Field(0, description="Records the steps dropped.")
    kept: int = Field(0, description="Records in the version.")
    holds: bool = Field(True, description="Whether the equation holds.")


class DatasetVersion(_Artifact):
    """A dataset version's manifest (`.tailor/datasets/NAME/HASH/manifest.json`)."""

    id: str = Field(description="NAME@HASH6.")
    name: str = Field(description="The dataset's name.")
    kind: str = Field(description="chat | preference | text | eval.")
    content_hash: str = Field(description="sha256 of the records and the recipe.")
    created_at: str = Field("", description="When it was first written (UTC, ISO 8601).")
    path: str = Field(description="Its folder, relative to the project root.")
    splits: dict[str, int] = Field(default_factory=dict, description="Records per split.")
    steps: list[StepSummary] = Field(default_factory=list, description="What each step did, in order.")
    accounting: Accounting = Field(default_factory=Accounting, description="The record accounting.")
    sources: list[dict[str, Any]] = Field(default_factory=list, description="Sources with their files' hashes.")
    parents: list[str] = Field(default_factory=list, description="Versions this one was derived from.")
    license: str | list[str] | None = Field(None, description="Licence of the data.")
    recipe: dict[str, Any] = Field(default_factory=dict, description="What the hash covers besides the records.")

    @property
    def n_records(self) -> int:
        return sum(self.splits.values())


class ModelVersion(_Artifact):
    """A registered model version (a `model_versions` row): a base model plus an adapter or weights, and lineage."""

    id: str = Field(description="NAME:METHOD@vN.")
    name: str = Field(description="The model name versions are numbered under.")
    version: int = Field(description="N in @vN.")
    base_model: str = Field(description="The base model it was trained from.")
    adapter_path: str | None = Field(None, description="LoRA adapter folder, relative to the project root.")
    weights_path: str | None = Field(None, description="Full weights folder, for a full fine-tune or pretrain.")
    run_id: str | None = Field(None, description="The run that trained it.")
    dataset_version: str | None = Field(None, description="The dataset version it was trained on.")
    lineage: dict[str, Any] = Field(default_factory=dict, description="Config, system prompt, rung and parents.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="The run's final metrics.")
    created_at: str = Field("", description="When it was registered.")

    @property
    def method(self) -> str:
        return self.id.partition(":")[2].partition("@")[0]

    @property
    def path(self) -> str | None:
        return self.adapter_path or self.weights_path


class Report(_Artifact):
    """An eval report (`.tailor/reports/ID/report.json`): one subject on one suite, per example and in aggregate."""

    id: str = Field(description="rep-HASH12 of what was measured.")
    kind: str = Field("eval", description="eval.")
    subject: str = Field(description="The served name measured (PROJECT:RUNG, a version id).")
    rung: dict[str, Any] = Field(default_factory=dict, description="The rung's description (prompt, model version ...).")
    suite: dict[str, Any] = Field(default_factory=dict, description="name, version, n, source.")
    params: dict[str, Any] = Field(default_factory=dict, description="Sampling parameters.")
    metrics: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Per metric: mean, low, high, n, method.")
    primary: str | None = Field(None, description="The first metric.")
    errors: int = Field(0, description="Examples whose answer failed.")
    created_at: str = Field("", description="When it was written.")
    path: str | None = Field(None, description="report.json, relative to the project root.")
    examples: list[dict[str, Any]] = Field(default_factory=list, description="Per example: input, prediction, scores.")


class Ladder(_Artifact):
    """A ladder (`.tailor/reports/ladder-*/ladder.json`): rungs compared on one suite, and a recommendation."""

    id: str = Field(description="ladder-DATE-RANDOM6.")
    kind: str = Field("ladder", description="ladder.")
    suite: dict[str, Any] = Field(default_factory=dict, description="name, version, n, source.")
    primary: str | None = Field(None, description="The metric rungs are ranked on.")
    metrics: list[str] = Field(default_factory=list, description="Every metric scored.")
    margin: float | None = Field(None, description="eval.margin at the time.")
    rungs: list[dict[str, Any]] = Field(default_factory=list, description="One row per rung, cheapest first.")
    comparisons: list[dict[str, Any]] = Field(default_factory=list, description="Adjacent rungs, paired.")
    recommendation: dict[str, Any] = Field(default_factory=dict, description="rung, reason, best.")
    created_at: str = Field("", description="When it was written.")
    path: str | None = Field(None, description="ladder.json, relative to the project root.")


class ReportEntry(_Artifact):
    """A report's row in the store: what `reports list` shows, and how every reader finds a report."""

    id: str
    subject: str
    suite: str
    n: int = 0
    metrics: dict[str, Any] = Field(default_factory=dict)
    path: str
    created_at: str = ""

    @property
    def kind(self) -> str:
        # Ladders share the reports table, marked by their subject (the store's format stays as it is).
        return "ladder" if self.subject == "ladder" else "eval"


class _Named(_Artifact):
    """Which alias: its scope, the name it belongs to, and the alias itself."""

    scope: str = Field(description="model | dataset | suite.")
    name: str = Field(description="The model or dataset name.")
    alias: str = Field(description="production, candidate, latest, golden ...")

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.alias}"


class Alias(_Named):
    """A movable name for a target: `support@production` -> `support:sft@v3`, `tickets@latest` -> `tickets@3f9a1c`."""

    target: str = Field(description="The id it points at.")
    updated_at: str = Field("", description="When it last moved.")


class AliasMove(_Named):
    """One move of an alias (an `alias_history` row): where it points now, where it pointed before, and why."""

    target: str = Field(description="The id it was moved to.")
    previous: str | None = Field(None, description="The id it pointed at before; None for its first move.")
    reason: str | None = Field(None, description="Why it moved (promoted by hand, gate passed, rollback ...).")
    at: str = Field("", description="When it moved (read from alias_history; empty on the move just made).")
