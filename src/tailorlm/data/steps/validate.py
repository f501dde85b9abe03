"""The `validate` step: checks that need the record's meaning, not just its syntax.

Chat records: roles in a sensible order (an optional system turn first, then user and assistant
taking turns, tool results after an assistant's tool call), no empty content, an assistant turn
last (what SFT learns from), and a token length that fits the model's context.
"""

from typing import Callable

from pydantic import Field

from tailorlm.data.record import Record
from tailorlm.data.steps.base import Filter, StepParams


class Validate(Filter):
    name = "validate"

    class Params(StepParams):
        require_assistant_last: bool = Field(True, description="Chat records must end with an assistant turn (needed for SFT).")
        max_tokens: int | None = Field(
            None, ge=1, description="Longest record in tokens (chat template included); unset: the model's context length.")

    def __init__(self, count_tokens: Callable[[Record], int] | None = None, context: int | None = None, **params):
        super().__init__(**params)
        # Counting tokens needs the project's tokenizer; the pipeline passes it and the context in.
        self.count_tokens = count_tokens
        self.limit = self.p.max_tokens or context

    def keep(self, record: Record) -> bool | tuple[bool, str]:
        if record.kind == "chat":
            problem = chat_problem(record.content["messages"], self.p.require_assistant_last)
            if problem:
                return False, problem
        if record.kind == "preference" and record.content["chosen"].strip() == record.content["rejected"].strip():
            return False, "chosen_equals_rejected"
        if self.count_tokens:
            n = self.count_tokens(record)
            record.meta["tokens"] = n
            # Documents are chunked for RAG and packed for pre-training, so only examples have a limit.
            if self.limit and record.kind != "text" and n > self.limit:
                return False, "too_many_tokens"
        return True


def chat_problem(messages: list[dict], require_assistant_last: bool = True) -> str | None:
    """The first thing wrong with a conversation's turns, as a reason string, or None."""
    turns = list(messages)
    if turns and turns[0]["role"] == "system":
        turns = turns[1:]
    if any(m["role"] == "system" for m in turns):
        return "system_not_first"
    if not turns:
        return "no_turns"
    if turns[0]["role"] != "user":
        return "first_turn_not_user"
    previous = None
    for m in turns:
        if not (m.get("content") or "").strip() and not m.get("tool_calls"):
            return "empty_content"
        role = m["role"]
        if role == "tool":
            if previous not in ("assistant_tool_call", "tool"):
                return "tool_without_call"
            previous = "tool"
            continue
        if role == previous or (role == "user" and previous == "assistant_tool_call"):
            return "roles_not_alternating"
        previous = "assistant_tool_call" if role == "assistant" and m.get("tool_calls") else role
    if require_assistant_last and turns[-1]["role"] != "assistant":
        return "assistant_not_last"
    return None
