"""The wire format of `tailor serve`: OpenAI's request and response shapes as pydantic models.

FastAPI validates requests against these models and publishes them in `/openapi.json`, which a
test fuzzes. Unknown request fields are ignored, as OpenAI-compatible servers do, so clients that
send newer parameters still work. An omitted `temperature` means 0 (greedy), as everywhere in
Tailor, so a served answer matches what eval and the ladder measured.
"""

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator


def _clean(text: str) -> str:
    # JSON may carry lone surrogates ("\ud800"); tokenizers and SQLite refuse them, so they become U+FFFD.
    return text if text.isascii() else text.encode("utf-8", "replace").decode("utf-8", "replace")


def _integer(value):
    # JSON Schema counts 2.0 as an integer, so floats pass (when whole); booleans and strings do not.
    if isinstance(value, (bool, str)):
        raise ValueError("must be an integer")
    return value


Text = Annotated[str, AfterValidator(_clean)]
def Int(**limits):
    """An integer field type; the limits must come before the validator to reach the JSON Schema."""
    return Annotated[int, Field(strict=False, **limits), BeforeValidator(_integer)]


Budget = Int(ge=1, le=1_000_000)
NonEmpty = Annotated[str, Field(min_length=1), AfterValidator(_clean)]


class Lax(BaseModel):
    # Unknown fields are ignored; known ones must have their documented type ("stream": "yes" is an error).
    model_config = ConfigDict(extra="ignore", strict=True)


class ContentPart(Lax):
    type: Literal["text"] = Field(..., description="Only text parts are supported.")
    text: Text


class FunctionCall(Lax):
    name: NonEmpty
    arguments: Text = Field(..., description="The arguments as a JSON text.")


class ToolCall(Lax):
    id: NonEmpty
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(Lax):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[ContentPart] | None = None
    name: Text | None = None
    tool_calls: list[ToolCall] | None = Field(None, description="An assistant's earlier calls.")
    tool_call_id: Text | None = Field(None, description="In a `tool` message: the call it answers.")

    def plain(self) -> dict:
        """The message as the chat template wants it: a role and one string (plus earlier tool
        calls, and the call a tool result answers, in OpenAI's shape)."""
        content = self.content
        if isinstance(content, list):
            content = "".join(p.text for p in content)
        role = "system" if self.role == "developer" else self.role
        out = {"role": role, "content": content or ""}
        if self.tool_calls:
            out["tool_calls"] = [c.model_dump() for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


FunctionName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class Function(Lax):
    name: FunctionName
    description: Text | None = None
    parameters: dict | None = Field(None, description="A JSON Schema for the arguments (default: any object).")
    strict: bool | None = None


class Tool(Lax):
    type: Literal["function"]
    function: Function


class FunctionChoice(Lax):
    name: FunctionName


class NamedTool(Lax):
    type: Literal["function"]
    function: FunctionChoice


class TextFormat(Lax):
    type: Literal["text"]


class JSONObjectFormat(Lax):
    type: Literal["json_object"]


class JSONSchemaSpec(Lax):
    # Traces and upstreams get the field under its wire name, `schema` (a name BaseModel keeps for itself).
    model_config = ConfigDict(extra="ignore", strict=True, serialize_by_alias=True)

    name: Text = "answer"
    description: Text | None = None
    schema_: dict = Field(..., alias="schema", description="The JSON Schema the answer must be valid for.")
    strict: bool | None = Field(None, description="Enforced either way on the local backend.")


class JSONSchemaFormat(Lax):
    type: Literal["json_schema"]
    json_schema: JSONSchemaSpec


class StreamOptions(Lax):
    include_usage: bool = Field(False, description="Send a last chunk with the token usage.")


class Sampling(Lax):
    """What chat and text completions share."""

    model: Text = Field(..., description="A name from GET /v1/models.")
    max_tokens: Budget | None = Field(None, description="Most tokens to generate (default 256).")
    max_completion_tokens: Budget | None = Field(None, description="Newer name for max_tokens.")
    temperature: float = Field(0.0, ge=0, le=2, description="0 (the default) is greedy and reproducible.")
    top_p: float = Field(1.0, gt=0, le=1)
    stop: Text | Annotated[list[Text], Field(max_length=4)] | None = Field(
        None, description="Up to 4 strings that end the answer (not included in it).")
    seed: Int() | None = Field(None, description="Seeds sampling (any integer); a seeded request is decoded alone.")
    n: Int(ge=1, le=16) = Field(1, description="Answers to generate.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: Text | None = None
    response_format: TextFormat | JSONObjectFormat | JSONSchemaFormat | None = Field(
        None, description="json_object or json_schema: the answer is held to it by constrained decoding.")
    guided_choice: Annotated[list[NonEmpty], Field(min_length=1)] | None = Field(
        None, description="vLLM's: the answer is exactly one of these strings.")
    guided_json: dict | None = Field(None, description="vLLM's: the answer is JSON valid for this schema.")
    guided_regex: NonEmpty | None = Field(None, description="vLLM's: the answer fully matches this regex.")

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class ChatRequest(Sampling):
    messages: list[Message] = Field(..., min_length=1)
    tools: Annotated[list[Tool], Field(max_length=128)] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedTool | None = Field(
        None, description="Default: auto when tools are given, else none.")
    parallel_tool_calls: bool = Field(True, description="False: at most one call per answer.")
    logprobs: bool = Field(False, description="Return each answer token's log-probability (local backend).")
    top_logprobs: Int(ge=0, le=20) | None = Field(None, description="With logprobs: the most likely tokens per position.")


TokenIds = Annotated[list[Int(ge=0)], Field(min_length=1)]

class CompletionRequest(Sampling):
    prompt: (NonEmpty | Annotated[list[NonEmpty], Field(min_length=1, max_length=64)] | TokenIds
             | Annotated[list[TokenIds], Field(min_length=1, max_length=64)]) = Field(
        ..., description="Text to continue, as is (no chat template); a list of texts; token ids; or a list of those.")
    logprobs: Int(ge=0, le=20) | None = Field(
        None, description="Return each token's log-probability and this many most likely alternatives (local backend).")
    echo: bool = Field(False, description="Start the answer with the prompt; with logprobs, score the prompt's tokens too.")


class EmbeddingRequest(Lax):
    model: Text
    input: Text | Annotated[list[Text], Field(min_length=1, max_length=2048)] = Field(
        ..., description="A text or up to 2048 texts.")
    encoding_format: Literal["float", "base64"] = Field("float", description="base64: little-endian float32 bytes.")

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


SIGNALS = ("thumbs", "rating", "correction", "comment")


class FeedbackRequest(BaseModel):
    # A misspelt field must not be dropped silently; and at least one signal must be given.
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"anyOf": [
        {"required": [k], "properties": {k: {"not": {"type": "null"}}}} for k in SIGNALS]})

    trace_id: Text = Field(..., description="The `id` of the response being rated.")
    thumbs: Literal["up", "down"] | None = None
    rating: Int(ge=1, le=5) | None = None
    correction: Text | None = Field(None, description="What the answer should have been.")
    comment: Text | None = None

    @model_validator(mode="after")
    def _some_signal(self):
        if all(getattr(self, k) is None for k in SIGNALS):
            raise ValueError("give at least one of thumbs, rating, correction or comment")
        return self


# Responses: documented for clients and checked by the fuzz test.

class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None = Field(..., description="None when the answer is tool calls.")
    tool_calls: list[ToolCall] | None = None


FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: dict | None = Field(None, description="{content: [{token, logprob, bytes, top_logprobs}]} (when asked).")


class ChatCompletion(BaseModel):
    id: str = Field(..., description="The trace id: send it with feedback.")
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    tailor: dict = Field(default_factory=dict, description="The rung, model version and citations behind the answer.")


class TextChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"]
    logprobs: dict | None = Field(None, description="tokens, token_logprobs, top_logprobs, text_offset (when asked).")


class TextCompletion(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage


class Embedding(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class Embeddings(BaseModel):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class Model(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[Model]


class FeedbackStored(BaseModel):
    object: Literal["feedback"]
    trace_id: str
    ids: list[str] = Field(..., description="One stored row per signal: thumbs, rating, correction, comment.")


class Health(BaseModel):
    status: Literal["ok"]
    backend: str
    queue_depth: int


class ErrorBody(BaseModel):
    message: str
    type: str
    code: str | None = None


class Error(BaseModel):
    error: ErrorBody
