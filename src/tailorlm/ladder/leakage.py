"""The ladder's leakage check: no eval example may appear in a train set or a few-shot pool.

An example leaks when a training or pool record has the same normalised user text, or shares a
13-word n-gram with it (the decontaminate step's rule, so the two agree). `tailor data prepare`
already drops such records; the ladder checks again at run time, because a dataset or a model
version can come from anywhere.
"""

from tailorlm.data.steps.decontaminate import ngrams
from tailorlm.eval.metrics import normalize_answer


def _user_texts(messages) -> list[str]:
    return [m["content"] for m in messages if m.get("role") == "user" and isinstance(m.get("content"), str)]


def find_leaks(suite, pools: dict[str, list], n: int = 13) -> list[dict]:
    """[{eval, pool, record, how}] for every eval example found in a pool of chat records."""
    exact, grams = {}, {}
    for e in suite.examples:
        for text in _user_texts(e.input):
            exact.setdefault(normalize_answer(text), e.id)
            for g in ngrams(text, n):
                grams.setdefault(g, e.id)
    leaks, seen = [], set()
    for pool, records in pools.items():
        for r in records:
            for text in _user_texts(r.content.get("messages") or []):
                hit = exact.get(normalize_answer(text))
                how = "same text"
                if hit is None:
                    hit = next((grams[g] for g in ngrams(text, n) if g in grams), None)
                    how = f"shares a {n}-word passage"
                if hit is not None and (hit, pool, r.id) not in seen:
                    seen.add((hit, pool, r.id))
                    leaks.append({"eval": hit, "pool": pool, "record": r.id, "how": how})
    return leaks
