"""One progress protocol for every long job, and the one terminal display the CLI shows it with.

A progress callback is `on_progress(task, done, total, **info)`:
- `task` names what advances ("embedding chunks", "shop:few_shot", "train sft");
- `done` of `total` units (`total` None while unknown);
- `info` is optional detail the display shows after the bar (`loss=0.41`, `tokens_per_s=812`).

The public API (`tailorlm.evaluate`, `tailorlm.ladder`, `tailorlm.train`, ...) takes callbacks of this shape,
and prepare, the RAG index build, eval and rag eval call it directly. Some stages still call narrower
shapes internally (generate's batch sizes, the training loops); the adapters below (`for_task`, `counting`,
`for_training`) turn the protocol into those. A stage that moved to the protocol still accepts its old
shape from callers not yet moved (`native`: a callback without `**info` is the old shape). `display()` is
the CLI's rich progress bar, fed by the same callback.

>>> seen = []
>>> record = lambda task, done, total, **info: seen.append((task, done, total))
>>> native(record, pair)("shop:rag", 3, 10); seen
[('shop:rag', 3, 10)]
>>> native(lambda done, total: seen.append((done, total)), pair)("shop:rag", 4, 10); seen[-1]
(4, 10)
"""

import contextlib
from typing import Protocol


class OnProgress(Protocol):
    def __call__(self, task: str, done: int, total: int | None, **info) -> None: ...


def native(on_progress, legacy):
    """What a stage that speaks the protocol calls: `on_progress` itself when it takes the protocol's
    `**info`, None as None, else (a caller not yet moved) `legacy(on_progress)`, the stage's old shape
    adapted from the protocol."""
    if on_progress is None:
        return None
    import inspect

    try:
        params = inspect.signature(on_progress).parameters.values()
    except (TypeError, ValueError):  # a callable without a signature: take it at its word
        return on_progress
    return on_progress if any(p.kind is p.VAR_KEYWORD for p in params) else legacy(on_progress)


def pair(done_total):
    """Eval's old `(done, total)` callback, fed from the protocol."""
    return lambda task, done, total, **info: done_total(done, total)


def index_shape(embedded_made_finished):
    """The RAG index build's old `(embedded, chunks_so_far, chunking_done)` callback, fed from the protocol
    (`total` is the chunks made when it is known: more than embedded, or all of them at the end)."""
    return lambda task, done, total, **info: embedded_made_finished(done, done if total is None else total,
                                                                     total == done)


def messages(say):
    """rag eval's old `(message)` callback, fed from the protocol: each task's name once, when it starts."""
    seen = set()

    def report(task: str, done: int, total: int | None, **info) -> None:
        if task not in seen:
            seen.add(task)
            say(task)

    return report


def for_task(on_progress: OnProgress | None, task: str):
    """A `(done, total)` callback (eval, generate) that reports as `task`; None stays None."""
    if on_progress is None:
        return None
    return lambda done, total: on_progress(task, done, total)


def counting(on_progress: OnProgress | None, task: str):
    """An `(advanced_by, total)` callback (generate_file reports each batch's size) that reports the running
    total as `task`; None stays None."""
    if on_progress is None:
        return None
    done = 0

    def report(advanced: int, total: int) -> None:
        nonlocal done
        done += advanced
        on_progress(task, done, total)

    return report


def for_training(on_progress: OnProgress | None, task: str):
    """A training loop's `(step, total, logs, tokens_per_s)` callback that reports as `task`, with the loss
    (or, for grpo, the reward and the KL) as info; None stays None."""
    if on_progress is None:
        return None

    def report(step: int, total: int | None, logs: dict, tokens_per_s: float) -> None:
        info = {k: logs[k] for k in ("loss", "eval_loss", "reward_mean", "reward_std", "kl") if k in logs}
        on_progress(task, step, total, tokens_per_s=tokens_per_s, **info)

    return report


def describe(info: dict) -> str:
    """The display's text for a step's info: `loss 0.4120  812 tok/s`, or grpo's reward, std and KL."""
    tps = info.get("tokens_per_s")
    rate = f"{tps:.0f} tok/s" if isinstance(tps, (int, float)) else ""
    if "reward_mean" in info:  # grpo: the loss says little; the reward and the drift from the start do
        return (f"reward {info['reward_mean']:.3f} ±{info.get('reward_std', 0):.3f}  kl {info.get('kl', 0):.4f}  "
                f"{rate.replace('tok/s', 'sampled tok/s')}").strip()
    loss = info.get("loss", info.get("eval_loss"))
    parts = [f"loss {loss:.4f}" if isinstance(loss, (int, float)) else "", rate,
             *(f"{k} {v}" for k, v in info.items() if k not in ("loss", "eval_loss", "tokens_per_s", "kl", "reward_std"))]
    return "  ".join(p for p in parts if p)


@contextlib.contextmanager
def display(enabled: bool = True):
    """A rich progress display, one bar per task; yields (on_progress, console). Off (for --json), the
    callback does nothing and the console is rich's own (output still goes where it should).

    >>> with display(False) as (on_progress, console):
    ...     on_progress("answering", 1, 2)
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeRemainingColumn(), disable=not enabled, transient=False)
    tasks: dict[str, int] = {}

    def on_progress(task: str, done: int, total: int | None, **info) -> None:
        if task not in tasks:
            tasks[task] = progress.add_task(task, total=total or None, info="")
        progress.update(tasks[task], completed=done, total=total or None, info=describe(info))

    with progress:
        yield on_progress, progress.console
