"""Log-probabilities on the wire: OpenAI's chat `logprobs.content` and the legacy completions format.

The decode loop (models/decode.py) reports token ids with their log-probabilities; this module turns
them into what clients parse. Chat: `{"content": [{"token", "logprob", "bytes", "top_logprobs"}]}`.
Completions, as vLLM and OpenAI's legacy API give them and lm-evaluation-harness's
`local-completions` reads them: `{"tokens", "token_logprobs", "top_logprobs", "text_offset"}`, where
`echo` puts the prompt's tokens first (the first one with `None`, as nothing precedes it) and
`top_logprobs` maps token text to log-probability, the chosen token included.
"""

from tailorlm.models.base import Chunk, TokenLogprob


def wanted(req) -> int | None:
    """How many alternatives per token the request asks for; None when it asks for no log-probabilities."""
    asked = getattr(req, "logprobs", None)
    if isinstance(asked, bool):  # chat: logprobs is a switch, top_logprobs the count
        return (req.top_logprobs or 0) if asked else None
    return asked


def prompts_of(prompt) -> list:
    """/v1/completions' prompt as a list of prompts, each a text or a list of token ids."""
    if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)):
        return [prompt]
    return list(prompt)


def bad_token(prompts: list, vocab_size: int) -> str | None:
    """Why a token-id prompt cannot be used (an id outside the vocabulary), or None."""
    for i, p in enumerate(prompts):
        if isinstance(p, list) and any(not 0 <= t < vocab_size for t in p):
            return f"prompt[{i}]: token ids must be in [0, {vocab_size})"
    return None


class Logprobs:
    """Each row's token log-probabilities as its chunks arrive, rendered per choice or per streamed delta."""

    def __init__(self, rows: int, tokenizer, chat: bool):
        self.tokenizer, self.chat = tokenizer, chat
        self.entries: list[list[TokenLogprob]] = [[] for _ in range(rows)]
        self.sent = [0] * rows  # entries already streamed
        self.offset = [0] * rows  # characters of the row's tokens before the next entry (text_offset)
        self._text: dict[int, str] = {}

    def take(self, index: int, chunk: Chunk) -> None:
        self.entries[index] += (chunk.prompt_logprobs or []) + (chunk.logprobs or [])

    def attach(self, choice: dict, index: int, whole: bool = False) -> dict:
        """Put the row's log-probabilities in `choice`: all of them (`whole`) or those not yet streamed."""
        new = self.entries[index] if whole else self.entries[index][self.sent[index]:]
        if not whole:
            self.sent[index] = len(self.entries[index])
        else:
            self.offset[index] = 0
        choice["logprobs"] = self._chat(new) if self.chat else self._legacy(new, index)
        return choice

    def _token(self, token: int) -> str:
        if token not in self._text:
            self._text[token] = self.tokenizer.decode([token])
        return self._text[token]

    def _chat(self, entries: list[TokenLogprob]) -> dict:
        def one(token: int, logprob: float) -> dict:
            text = self._token(token)
            return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

        return {"content": [{**one(e.token, e.logprob), "top_logprobs": [one(t, lp) for t, lp in e.top]}
                            for e in entries]}

    def _legacy(self, entries: list[TokenLogprob], index: int) -> dict:
        out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for e in entries:
            text = self._token(e.token)
            out["tokens"].append(text)
            out["token_logprobs"].append(e.logprob)
            top = None
            if e.logprob is not None:
                top = {self._token(t): lp for t, lp in e.top}
                top.setdefault(text, e.logprob)  # the chosen token is always listed, as vLLM does
            out["top_logprobs"].append(top)
            out["text_offset"].append(self.offset[index])
            self.offset[index] += len(text)
        return out


def attach(logprobs: Logprobs | None, choice: dict, index: int, whole: bool = False) -> dict:
    """`choice` with its log-probabilities when the request asked for them, else unchanged."""
    return choice if logprobs is None else logprobs.attach(choice, index, whole)
