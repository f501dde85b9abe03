"""RAFT training data: chat examples whose prompts carry retrieved documents, distractors included.

The hybrid rung (a fine-tuned model plus retrieval) answers with numbered sources in its prompt.
Trained on bare questions, the model has never seen that prompt; RAFT (Zhang et al. 2024) trains
it the way it is used. For each training example the question is retrieved for, and the prompt is
built by the rag rung's own `prepare`, so training and serving prompts cannot drift apart:
- `distractors` of the k sources are chunks drawn at random from the index;
- for a share `p_no_oracle` of examples every source is a distractor, so the model also learns to
  answer (or decline) when retrieval missed.
The result is a chat dataset version `NAME-raft` whose manifest names its parent.
"""

import random

from tailorlm.models.base import GenParams


def raft_records(rung, records, distractors: int = 1, p_no_oracle: float = 0.2, seed: int = 0) -> list:
    """RAFT versions of chat records (the last user turn answered by the last assistant turn)."""
    from dataclasses import replace

    rng = random.Random(seed)
    pool = rung.index.chunks()
    out = []
    for r in records:
        msgs = r.content["messages"]
        if len(msgs) < 2 or msgs[-1]["role"] != "assistant":
            continue
        question = msgs[-2]["content"]
        retrieved = rung.retrieve(question)[: rung.k]
        keep = 0 if rng.random() < p_no_oracle else max(0, rung.k - distractors)
        retrieved_ids = {h.id for h in retrieved}  # a distractor is never one of the retrieved sources
        noise = [h for h in rng.sample(pool, len(pool)) if h.id not in retrieved_ids][: rung.k - keep]
        hits = retrieved[:keep] + noise
        rng.shuffle(hits)
        prepared = rung.prepare(msgs[:-1], GenParams(max_tokens=64), hits=hits)
        content = {**r.content, "messages": prepared.messages + [msgs[-1]]}
        meta = {**r.meta, "raft": {"oracle": keep, "distractors": len(noise), "sources": [h.id for h in prepared.used]}}
        out.append(replace(r, content=content, meta=meta))
    return out


def build_raft_dataset(project, rung, dataset: str, distractors: int = 1, p_no_oracle: float = 0.2, seed: int = 0) -> dict:
    """Write `NAME-raft` from a chat dataset's train and validation splits; returns its manifest."""
    from tailorlm.data.versions import load_records, resolve, write_version

    parent = resolve(project, dataset)
    splits = {s: raft_records(rung, load_records(project, parent, s), distractors, p_no_oracle, seed)
              for s in parent["splits"] if s != "test"}
    params = {"k": rung.k, "distractors": distractors, "p_no_oracle": p_no_oracle, "seed": seed,
              "prompt": rung.meta.get("prompt")}
    # The same step shape as the pipeline's summaries, so `data show`, `diff` and `report` read it.
    kept = sum(len(v) for v in splits.values())
    step = {"step": "raft", "params": params, "kept": kept, "dropped": {}, "stats": {}}
    # Read from the parent's splits (its test split stays out), so the accounting holds as prepare's does.
    accounting = {"read": kept, "rejected_by_readers": 0, "added": 0, "dropped_by_steps": 0, "kept": kept, "holds": True}
    manifest = {"kind": "chat", "parents": [parent["id"]],
                "recipe": {"parent": parent["id"], "steps": [{"step": "raft", "params": params}]},
                "steps": [step], "accounting": accounting, "sources": parent.get("sources", []), "license": parent.get("license")}
    return write_version(project, f"{parent['name']}-raft", splits, manifest, [])
