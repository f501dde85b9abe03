"""The schema of `tailor.yaml`, and loading it with errors that point at a file, a line and a key.

Every field has a description: `tailor config schema` prints them as JSON Schema, and the
commented template written by `tailor init` is checked against this schema by the tests.
"""

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tailorlm.errors import ConfigError

EMBEDDED_GENERATOR = "smollm2-135m-instruct"
EMBEDDED_EMBEDDER = "all-minilm-l6-v2"

RecordKind = Literal["chat", "preference", "text", "eval"]


def registered(group: str):
    """A validator: the value must be a name registered under the entry-point group (`plugins.py`)."""

    def check(value: str) -> str:
        from tailorlm.plugins import registry

        names = registry(group)
        if value not in names:
            raise ValueError(f"must be one of {names.choices()}")
        return value

    return check


class RegisteredNames:
    """Annotation: the JSON Schema of the field is an `enum` of the names registered under `group` when the
    schema is made (not when this module loads), so `tailor config schema` lists a plugin's names too.

    >>> from pydantic import TypeAdapter
    >>> "rag" in TypeAdapter(RungKind).json_schema()["enum"]
    True
    """

    def __init__(self, group: str):
        self.group = group

    def __get_pydantic_json_schema__(self, core_schema, handler):
        from tailorlm.plugins import registry

        return {**handler(core_schema), "enum": list(registry(self.group))}


# Names from the `tailorlm.rungs` and `tailorlm.backends` entry points, so a plugin's kind or backend is valid
# tailor.yaml; an unknown name is refused as a Literal would be, listing the registered ones, and the schema
# lists them as a Literal's would be.
RungKind = Annotated[str, AfterValidator(registered("tailorlm.rungs")), RegisteredNames("tailorlm.rungs")]
Backend = Annotated[str, AfterValidator(registered("tailorlm.backends")), RegisteredNames("tailorlm.backends")]


class Strict(BaseModel):
    # Unknown keys are errors: a typo like `temprature` must not be silently ignored.
    model_config = ConfigDict(extra="forbid")


class GeneratorConfig(Strict):
    backend: Backend = Field(
        "local", description="`local` runs the model in-process with transformers; `openai` calls any OpenAI-compatible endpoint."
    )
    model: str = Field(
        EMBEDDED_GENERATOR,
        description="Embedded model name, Hugging Face model id or local folder (local backend), or the model name at the endpoint (openai backend).",
    )
    base_url: str | None = Field(None, description="Endpoint base URL for the openai backend, e.g. http://localhost:8000/v1.")
    api_key_env: str | None = Field(
        None, description="Name of the environment variable holding the endpoint's API key. The key itself never goes in this file."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype for the local backend; `auto` is float32 on CPU and bfloat16 on GPUs that support it."
    )
    trust_remote_code: bool = Field(False, description="Allow a model repository to run its own Python code. Off unless you trust it.")
    quant: Literal["none", "int8"] = Field(
        "none", description="Local backend on CPU: `int8` stores the linear layers' weights as int8 (per output "
        "channel, torchao) and computes in float32; smaller and faster to decode, slightly less accurate.")


class EmbedderConfig(Strict):
    backend: Backend = Field(
        "local", description="`local` uses sentence-transformers in-process; `openai` calls an endpoint's /v1/embeddings."
    )
    model: str = Field(
        EMBEDDED_EMBEDDER, description="Embedded model name, sentence-transformers model id or folder, or the model name at the endpoint."
    )
    base_url: str | None = Field(None, description="Endpoint base URL for the openai backend.")
    api_key_env: str | None = Field(None, description="Environment variable holding the endpoint's API key.")
    batch_size: int = Field(32, ge=1, description="Texts embedded per batch.")
    runtime: Literal["torch", "onnx", "onnx-int8"] = Field(
        "torch", description="For the local backend: torch (fp32), onnx (the same model exported to onnxruntime) or "
        "onnx-int8 (int8 weights: 1.7-3.9x the chunks/s of torch on CPU, recall@5 unchanged, cosine about 0.99 to fp32; docs/benchmarks.md). The onnx runtimes need "
        "pip install 'tailorlm[onnx]'.")


class ModelsConfig(Strict):
    generator: GeneratorConfig = Field(
        default_factory=GeneratorConfig, description="The base model: every rung starts from it, and fine-tuning adapts it."
    )
    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig, description="Embeds documents and examples for retrieval.")
    judge: GeneratorConfig | None = Field(None, description="LLM-as-judge model; the generator when unset.")
    teacher: GeneratorConfig | None = Field(None, description="Model that writes synthetic data; the generator when unset.")


class TaskConfig(Strict):
    description: str = Field(..., min_length=1, description="What the model should do, in a sentence or two. Used in prompts and advice.")
    type: Literal["classification", "qa", "generation", "extraction", "chat"] = Field(
        "qa", description="The task's shape; it picks default metrics and advice."
    )
    system_prompt: str | None = Field(None, description="System prompt for the prompting rungs; a default is built from the description.")
    labels: list[str] = Field(default_factory=list, description="The allowed answers, for classification tasks.")
    label_mode: Literal["score", "constrain", "free"] = Field(
        "score", description="classification: how every rung is held to `labels`. `score` ranks each label by its "
        "likelihood as the whole answer (one prefill; gives a confidence); `constrain` decodes only label tokens; "
        "`free` keeps the model's text and extracts the label it names, if any.")
    knowledge_changes: Literal["never", "yearly", "monthly", "weekly", "daily"] = Field(
        "monthly", description="How often the facts the model needs change; frequent change favours RAG over fine-tuning."
    )
    # `schema` would shadow pydantic's BaseModel.schema, so the field has another name and the key stays `schema`.
    model_config = ConfigDict(extra="forbid", validate_by_name=True, serialize_by_alias=True)
    json_schema: dict | str | None = Field(
        None, alias="schema", description="extraction: the JSON Schema every answer must follow (an object, or a .json "
        "file relative to the project); the prompting rungs decode under it and `schema_valid` scores it.")

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, schema, info):
        if schema is not None and info.data.get("type", "extraction") != "extraction":
            raise ValueError(f"schema is for extraction tasks (task.type: extraction), not {info.data['type']}")
        if isinstance(schema, dict):
            check_json_schema(schema)
        elif isinstance(schema, str) and not schema.endswith(".json"):
            raise ValueError(f"expected a JSON Schema object or a path to a .json file, got {schema!r}")
        return schema


class SourceConfig(Strict):
    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="Short name; datasets prepared from it are named after it.")
    path: str = Field(..., description="A file, a glob or a folder of documents, relative to the project folder.")
    kind: RecordKind | None = Field(None, description="Record kind; detected from the data when unset.")
    format: Literal["auto", "jsonl", "csv", "parquet", "docs"] = Field("auto", description="File format; detected when `auto`.")
    fields: dict[str, str] = Field(default_factory=dict, description="Field mapping from Tailor's names to yours, e.g. {text: body}.")
    tags: list[str] = Field(default_factory=list, description="Tags for mixing and filtering.")
    license: str | None = Field(None, description="Licence of the data, copied into dataset manifests.")


class RungConfig(Strict):
    kind: RungKind = Field(..., description="Which way of answering this rung is (a kind registered under the "
                           "`tailorlm.rungs` entry points: Tailor's own, or a plugin's).")
    name: str | None = Field(None, description="Display name; defaults to the kind.")
    prompt: str = Field("default", description="Prompt name in the project's prompt library.")
    k: int = Field(4, ge=1, description="Few-shot examples or retrieved chunks per question.")
    selection: Literal["static", "similar"] = Field("static", description="few_shot only: fixed examples, or the most similar ones.")
    model: str | None = Field(
        None, description="sft/dpo/hybrid/cpt: the model version (id, or NAME@ALIAS) to answer with, or another rung's "
        "name to share its model. Unset: the ladder trains one with `train`.")
    dataset: str | None = Field(
        None, description="few_shot pool and the training data the ladder uses: a chat dataset (NAME or NAME@HASH); "
        "default: the first chat dataset prepared.")
    train: dict = Field(default_factory=dict, description="sft/hybrid: training settings (as in `tailor train sft`) when the ladder trains the model; "
                        "classic: {features: [tfidf, embedding], C: [...], cv_folds: 5}; prompt_opt: the search "
                        "({budget: 400, variants: 2, demo_sets: 2, similar: true, minibatch: 8, instructions: [...], seed: 0}).")
    members: list[str] = Field(default_factory=list, description="ensemble: the names of the rungs it combines (two or more).")
    vote: Literal["majority", "confidence", "judge"] | None = Field(
        None, description="ensemble: how members' answers are combined. Label tasks: `majority` or `confidence` (each "
        "member's vote weighted by its confidence; the default); other tasks: `judge` (the judge picks the best of N).")
    raft: bool = Field(False, description="hybrid: train on prompts that carry retrieved documents, distractors included (RAFT).")
    sources: Literal["auto", "user", "system"] = Field(
        "auto", description="rag/hybrid: where retrieved sources go. `user`: before the question in the user turn; "
        "`system`: after the instructions in the system turn, so the user turn stays the bare question (what a "
        "fine-tuned model was trained on). `auto`: system for hybrid, user for rag.")

    @property
    def label(self) -> str:
        return self.name or self.kind


class EvalConfig(Strict):
    suite: str = Field("golden", description="The golden suite every rung is scored on.")
    path: str | None = Field(None, description="A golden JSONL file; otherwise the test split that prepare registers.")
    metrics: list[str] = Field(default_factory=lambda: ["accuracy"], description="Metrics to report on the suite.")
    margin: float = Field(0.02, ge=0, description="Quality a cheaper rung may lose against the best and still be recommended.")
    redteam: str | None = Field(
        None, description="A red-team suite the ladder also runs every rung on (`redteam` for the shipped one, or a "
        "file in its format); its pass rate becomes a column. Unset: not run.")


class PricesConfig(Strict):
    currency: str = Field("USD", description="Currency of every price below.")
    gpu_hour: dict[str, float] = Field(default_factory=dict, description="Your price per GPU-hour, by GPU type.")
    cpu_hour: float | None = Field(None, ge=0, description="Your price per hour of the serving machine.")
    api_input_per_1m: float | None = Field(None, ge=0, description="A hosted API's price per million input tokens, for comparison.")
    api_output_per_1m: float | None = Field(None, ge=0, description="A hosted API's price per million output tokens.")


class AdviseConfig(Strict):
    latency_p95_ms: float | None = Field(
        None, gt=0, description="Slowest acceptable answer (95th percentile) in milliseconds; slower rungs are not advised for serving.")
    max_cost_per_1k: float | None = Field(None, ge=0, description="Most you will pay per 1,000 queries, in prices.currency.")
    monthly_budget: float | None = Field(None, ge=0, description="Serving budget per month, in prices.currency.")
    training_budget: float | None = Field(
        None, ge=0, description="One-off training budget in prices.currency; pre-training is advised only when its estimate fits.")
    queries_per_day: float | None = Field(
        None, ge=0, description="Expected query volume, for monthly costs and the self-hosting breakeven.")
    quality_target: float | None = Field(
        None, description="Primary-metric score that is good enough: once the best rung's lower 95% bound reaches it, "
        "the advice is to stop climbing.")
    gpu: str | None = Field(
        None, description="GPU to price training on: a name from `tailor costs --list-gpus` or a key of prices.gpu_hour.")
    mfu: float = Field(
        0.4, gt=0, le=1, description="Model FLOPs utilisation assumed for GPU-hour estimates, printed with every figure "
        "(PaLM reported 46.2% at 540B, Chowdhery et al. 2022; small models and LoRA usually reach less).")


class SynthesizeConfig(Strict):
    max_share: float = Field(
        0.3, ge=0, lt=1, description="Largest share of synthetic records in any mixed dataset version (the mix step and "
        "`data synthesize`); the excess is quarantined with reason synthetic_cap.")
    distractors: int = Field(3, ge=0, description="Distractor chunks shown beside the source chunk in each document question (RAFT).")
    oracle_share: float = Field(
        0.8, ge=0, le=1, description="Share of document questions whose prompt keeps the source chunk; the rest carry only "
        "distractors, as in RAFT (Zhang et al. 2024).")
    temperature: float = Field(0.8, ge=0, description="Teacher sampling temperature; above 0 so that variations differ.")
    max_tokens: int = Field(256, ge=8, description="Longest teacher reply, in tokens.")
    min_words: int = Field(2, ge=1, description="Fewest words in a generated question or answer.")
    max_words: int = Field(400, ge=1, description="Most words in a generated question or answer.")


class ABConfig(Strict):
    """A canary: a share of live traffic to the `candidate` alias, compared with `production` on feedback."""

    share: float = Field(0.0, ge=0, le=1, description="Share of requests for the project's production model "
                         "(`PROJECT` or `PROJECT@production`) answered by the `candidate` alias instead; 0 is off. "
                         "Sticky per user: the request's `user` field or the `user_header`.")
    user_header: str = Field("X-Tailor-User", min_length=1, description="Header naming the end user when the "
                             "request has no `user` field; requests with neither are assigned one by one.")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="Significance level of `tailor ab report` and of the "
                         "loop's promote and rollback decisions.")
    margin_thumbs_up: float = Field(0.05, ge=0, le=1, description="Non-inferiority margin: the candidate's "
                                    "thumbs-up rate may be at most this much lower (absolute) than production's.")
    margin_rating: float = Field(0.25, ge=0, le=4, description="Non-inferiority margin on the mean 1-5 rating.")
    margin_corrections: float = Field(5.0, ge=0, description="Non-inferiority margin on corrections per 100 answers.")
    min_answers: int = Field(100, ge=1, description="Answers each arm needs before `tailor loop --ab` may promote.")


class ServeConfig(Strict):
    host: str = Field("127.0.0.1", description="Address to listen on; loopback unless you mean to expose it.")
    port: int = Field(8000, ge=1, le=65535, description="Port to listen on.")
    api_keys_env: str | None = Field(
        None, description="Environment variable with comma-separated API keys; when set, requests without a valid key get 401."
    )
    redact_traces: bool = Field(True, description="Strip PII from stored traces.")
    max_request_bytes: int = Field(1_000_000, ge=1024, description="Larger request bodies are refused with 413.")
    ab: ABConfig = Field(default_factory=ABConfig, description="A/B canary of the candidate alias against production.")


class PiiConfig(Strict):
    """What the pii step and trace redaction find besides the structured kinds (e-mails, cards...)."""

    names: Literal["ner", "off"] = Field(
        "ner", description="ner: find person names (and `entities`) with the pinned offline NER model "
        "(`tailor models pull en-core-web-md`); off: structured kinds only (regexes).")
    entities: list[Literal["PERSON", "ORG", "LOCATION"]] = Field(
        default_factory=lambda: ["PERSON"], description="NER entity types to redact; ORG and LOCATION are opt-in.")
    pseudonyms: bool = Field(
        False, description="Replace each distinct name with `Person 1`, `Person 2`... consistently within one record "
        "or trace, instead of `[PERSON]`, so a conversation still reads.")
    allow: list[str] = Field(
        default_factory=list, description="Strings never redacted (case-insensitive), e.g. the company's own support "
        "address and product names; a match inside one is kept.")
    ner_model: str = Field("en-core-web-md", description="The NER model: an embedded one (en-core-web-md, or the "
                           "smaller, less accurate en-core-web-sm; see `tailor models list`) or a spaCy pipeline folder.")


class DataConfig(Strict):
    pii: PiiConfig = Field(default_factory=PiiConfig,
                           description="PII settings shared by the pii step (its own params win) and trace redaction.")
    steps: list[dict[str, dict | None]] | None = Field(
        None,
        description="Pipeline steps in order, each `name: {params}`, e.g. `- near_dedup: {threshold: 0.85}`. "
        "Unset: validate, normalize, exact_dedup, near_dedup, line_dedup, quality, language, pii, toxicity, "
        "decontaminate, split with their defaults.",
    )


class RagConfig(Strict):
    uri: str | None = Field(
        None, description="LanceDB URI for the index; .tailor/indexes/rag when unset. Object storage works too "
        "(s3://bucket/path, gs://..., az://...), with credentials from the environment.")
    sources: list[str] = Field(default_factory=list, description="Sources to index; every document (text) source when empty.")
    chunk_tokens: int = Field(200, ge=32, le=2048, description="Largest chunk, in embedder tokens (the heading trail included).")
    overlap_tokens: int = Field(32, ge=0, description="Tokens repeated between consecutive chunks of one section.")
    search: Literal["hybrid", "vector", "fts"] = Field(
        "hybrid", description="hybrid fuses vector and full-text (BM25) results (see fusion); or one of them alone.")
    fusion: Literal["score", "rrf"] = Field(
        "score", description="How hybrid fuses: score sums each list's min-max normalised scores, weighted; rrf sums "
        "weighted reciprocal ranks. score measured best on the Debian FAQ and the man pages (docs/benchmarks.md).")
    fts_weight: float = Field(1.0, ge=0, description="Weight of the BM25 list in hybrid fusion; the vector list weighs 1.")
    rrf_k: int = Field(60, ge=1, description="The rank constant of rrf fusion: larger flattens the top of each list.")
    heading_boost: float = Field(2.0, ge=0, description="BM25 boost of a match in the chunk's heading trail (text weighs 1).")
    title_boost: float = Field(1.0, ge=0, description="BM25 boost of a match in the document's title.")
    fts_stem: bool = Field(True, description="Stem words in the BM25 index (English): 'packages' matches 'package'.")
    fts_remove_stop_words: bool = Field(
        False, description="Drop stop words from the BM25 index. Kept by default: questions that echo a heading "
        "('How do I put a package on hold?') rank better with them, and BM25's IDF already makes them weigh little.")
    fts_ascii_folding: bool = Field(True, description="Fold accented letters to ASCII in the BM25 index (café = cafe).")
    k: int = Field(4, ge=1, description="Chunks retrieved per question.")
    rerank: str = Field("none", pattern=r"^(none|llm|cross-encoder:.+)$",
                        description="none, llm (the generator scores each candidate), or cross-encoder:PATH (a local model).")
    context_tokens: int = Field(1024, ge=64, description="Most tokens of retrieved sources put into the prompt.")
    ann_min_rows: int = Field(20000, ge=1000, description="From this many chunks an approximate vector index (IVF-PQ) is built; below it, search is exact.")
    ann_refine_factor: int = Field(
        10, ge=1, description="With the approximate index, re-rank this many times k candidates on full vectors: "
        "at 100k chunks, 10 found 90% of the exact top 10 against 41% without re-ranking, at ~5 ms more per query.")


class StoreConfig(Strict):
    url: str | None = Field(
        None, description="SQLAlchemy URL of the state database; .tailor/tailor.db (SQLite) when unset. A PostgreSQL URL works too."
    )


class ProjectConfig(Strict):
    """The whole of tailor.yaml."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="Project name; prefixes served model names.")
    task: TaskConfig = Field(..., description="What the custom model is for.")
    models: ModelsConfig = Field(default_factory=ModelsConfig, description="Generator, embedder, judge and teacher.")
    sources: list[SourceConfig] = Field(default_factory=list, description="Where raw data comes from.")
    rungs: list[RungConfig] = Field(
        default_factory=lambda: [RungConfig(kind="zero_shot")], description="The ways of answering that the ladder compares."
    )
    eval: EvalConfig = Field(default_factory=EvalConfig, description="The golden suite and its metrics.")
    data: DataConfig = Field(default_factory=DataConfig, description="How `tailor data prepare` cleans sources into datasets.")
    rag: RagConfig = Field(default_factory=RagConfig, description="The retrieval index and the rag rung.")
    prices: PricesConfig = Field(default_factory=PricesConfig, description="Price table for cost estimates; no live prices.")
    advise: AdviseConfig = Field(default_factory=AdviseConfig,
                                 description="Constraints and assumptions for `tailor advise` and `tailor costs`.")
    synthesize: SynthesizeConfig = Field(
        default_factory=SynthesizeConfig, description="`tailor data synthesize`: teacher-written data and the cap on its share.")
    serve: ServeConfig = Field(default_factory=ServeConfig, description="The OpenAI-compatible server.")
    store: StoreConfig = Field(default_factory=StoreConfig, description="Where state lives.")

    @model_validator(mode="after")
    def _extraction_metrics(self):
        # An extraction task with a schema is also scored on whether its answers follow it.
        if self.task.json_schema is not None and "metrics" not in self.eval.model_fields_set:
            self.eval.metrics = ["exact_match", "schema_valid"]
        return self

    @field_validator("sources")
    @classmethod
    def _unique_source_names(cls, sources: list[SourceConfig]) -> list[SourceConfig]:
        names = [s.name for s in sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique; repeated: {', '.join(dupes)}")
        return sources


def overridden(section: BaseModel, **given):
    """A copy of a config section with the values given (None: not given; a CLI passes every flag), checked
    as tailor.yaml's own values are; a bad one is a ConfigError naming the field.

    >>> overridden(RagConfig(), k=8, search=None).k
    8
    """
    values = {k: v for k, v in given.items() if v is not None}
    if not values:
        return section
    try:
        return type(section).model_validate({**section.model_dump(by_alias=True), **values})
    except ValidationError as e:
        first = e.errors()[0]
        raise ConfigError(f"{_dotted(tuple(first['loc']))}: {_say(first)} (got {first.get('input')!r})") from e


def check_json_schema(schema: dict) -> None:
    """ValueError unless `schema` is a valid JSON Schema (by the metaschema of its `$schema`, else 2020-12)."""
    try:
        from jsonschema import SchemaError
        from jsonschema.validators import validator_for
    except ImportError as e:
        raise ValueError("checking a JSON Schema needs the jsonschema package: pip install jsonschema") from e
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as e:
        where = "/".join(str(p) for p in e.path)
        raise ValueError(f"not a valid JSON Schema: {e.message}" + (f" (at {where})" if where else "")) from e


def _load_task_schema(cfg: ProjectConfig, root, filename: str, folder: Path) -> None:
    """Read a `task.schema` given as a file into the config, checked like an inline one."""
    ref = cfg.task.json_schema
    if not isinstance(ref, str):
        return
    import json

    where = f"{filename}:{_line_of(root, ('task', 'schema'))}: task.schema"
    try:
        schema = json.loads((folder / ref).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{where}: cannot read {ref}: {e.strerror or e}") from e
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where}: {ref}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from e
    if not isinstance(schema, dict):
        raise ConfigError(f"{where}: {ref} holds a {type(schema).__name__}, not a JSON Schema object")
    try:
        check_json_schema(schema)
    except ValueError as e:
        raise ConfigError(f"{where}: {ref}: {e}") from e
    cfg.task.json_schema = schema


def load_config(path: Path) -> ProjectConfig:
    """Read and validate a tailor.yaml.

    >>> cfg = load_config(Path("tailor.yaml"))  # doctest: +SKIP
    >>> cfg.models.generator.model
    'smollm2-135m-instruct'
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    return parse_config(text, path.name, folder=path.parent)


def parse_config(text: str, filename: str = "tailor.yaml", folder: Path | None = None) -> ProjectConfig:
    """Validate tailor.yaml's text; `folder` (the project's) resolves files the config names, e.g. task.schema."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        raise ConfigError(f"{filename}:{_yaml_error(e)}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{filename}: invalid YAML: {e}") from e
    if data is None:
        raise ConfigError(f"{filename}:1: the file is empty; it needs at least `name:` and `task:` with a "
                          "`description:` (`tailor init` writes a commented one)")
    if not isinstance(data, dict):
        raise ConfigError(f"{filename}:1: expected a mapping of keys (name:, task:, ...), got a {_yaml_kind(data)}")
    _check_duplicates(root, filename, ())
    try:
        cfg = ProjectConfig.model_validate(data)
    except ValidationError as e:
        raise _located(e, root, filename, ()) from e
    _check_steps(cfg, root, filename)
    if folder is not None:
        _load_task_schema(cfg, root, filename, folder)
    return cfg


def _located(e: ValidationError, root, filename: str, prefix: tuple) -> ConfigError:
    first = e.errors()[0]
    loc = prefix + tuple(first["loc"])
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return ConfigError(f"{filename}:{_line_of(root, loc)}: {_dotted(loc)}: {_say(first)}{more}")


def _check_steps(cfg: ProjectConfig, root, filename: str) -> None:
    """Each `data.steps` entry must name a known step with valid parameters."""
    from tailorlm.plugins import registry

    steps = registry("tailorlm.steps")  # what data.steps.STEPS is: config reads it without importing data

    for i, item in enumerate(cfg.data.steps or []):
        loc = ("data", "steps", i)
        if len(item) != 1:
            raise ConfigError(f"{filename}:{_line_of(root, loc)}: {_dotted(loc)}: each step is one `name: {{params}}` entry")
        (name, params), = item.items()
        if name not in steps:
            raise ConfigError(f"{filename}:{_line_of(root, loc)}: {_dotted(loc)}: unknown step {name!r}; "
                              f"steps: {', '.join(steps)}")
        try:
            steps[name].Params(**(params or {}))
        except ValidationError as e:
            raise _located(e, root, filename, loc + (name,)) from e


def _yaml_kind(data) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(data), type(data).__name__)


def _check_duplicates(node, filename: str, loc: tuple) -> None:
    """PyYAML lets the last of two equal keys win in silence; a repeated key is almost always a
    paste that meant to change the first one."""
    if isinstance(node, yaml.MappingNode):
        first: dict = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in first:
                    raise ConfigError(f"{filename}:{key.start_mark.line + 1}: {_dotted(loc + (key.value,))}: duplicate "
                                      f"key (first at line {first[key.value]}); the last one would win")
                first[key.value] = key.start_mark.line + 1
            _check_duplicates(value, filename, loc + (key.value,))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicates(item, filename, loc + (i,))


def _yaml_error(e: "yaml.MarkedYAMLError") -> str:
    """`line: message`. An unclosed bracket or quote is reported where it opens (the user's mistake;
    the parser only notices it later); anything else where the parser stopped, which for a bad
    indentation is the misaligned line, not the start of the mapping around it."""
    opened = e.context_mark if e.context and ("flow" in e.context or "quoted" in e.context) else None
    start = opened or e.problem_mark or e.context_mark
    line = start.line + 1 if start else 1
    problem = e.problem or ""
    if problem.startswith("expected <block end>") and e.context_mark:
        what = "list" if "collection" in (e.context or "") else "mapping"
        msg = (f"bad indentation: this line does not line up with the {what} it is in "
               f"(which starts at line {e.context_mark.line + 1})")
    elif "'\\t'" in problem or "\t" in problem:
        msg = "a tab in the indentation; YAML indents with spaces only"
    elif problem == "mapping values are not allowed here":
        msg = f"{problem} (a key indented further than the one above it, or two `key:`s on one line?)"
    else:
        msg = ", ".join(p for p in (e.context, e.problem) if p)
        if opened and e.problem_mark and e.problem_mark.line + 1 != line:
            msg += f" (noticed at line {e.problem_mark.line + 1})"
    return f"{line}: invalid YAML: {msg}"


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _say(err: dict[str, Any]) -> str:
    ctx = err.get("ctx") or {}
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "greater_than_equal":
        return f"must be >= {ctx['ge']}"
    if kind == "less_than_equal":
        return f"must be <= {ctx['le']}"
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return err["msg"][0].lower() + err["msg"][1:]


def _line_of(node: Any, loc: tuple) -> int:
    """The 1-based line of the YAML node at `loc`, or of its nearest existing parent."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    # An unknown key is reported where the key is written.
                    child = value if part != loc[-1] else key
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            break
        node, line = child, child.start_mark.line + 1
    return line
