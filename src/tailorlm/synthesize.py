"""`tailor data synthesize`: teacher-written training data, verified, tagged and capped.

It writes a dataset version but sits above the data floor, beside the ladder: it drives a teacher
model, retrieval, the rag rung's prompt and the judge (docs/architecture.md, "Floors").

A teacher model (`models.teacher`, else the generator; any backend) writes two kinds of chat
records:
- **self-instruct** variations of seed examples (Wang et al. 2023, "Self-Instruct"): the teacher
  sees a few real training examples and writes a new one in the same format;
- **document questions, RAFT-style** (Zhang et al. 2024, "RAFT"): the teacher reads one chunk and
  writes a question and its answer; the training prompt then carries that chunk (in
  `synthesize.oracle_share` of the records) among distractor chunks, numbered and fenced exactly as
  the rag rung shows retrieved sources, and the answer cites the chunk.

Every record is tagged `synthetic: true` with its teacher, method and the prompt that produced it.
Verification is a list of steps, each quarantining what it drops: format and length, duplicates
of the real data (or of each other), eval contamination, and optionally a minimum judge score.
The version is then mixed with the real dataset (synthetic records join its training split only;
validation and test stay real) and the synthetic share capped at `synthesize.max_share`.

A weak teacher (the embedded 135M model) is allowed but flagged, and a teacher that is the model
being trained draws a warning: a model trained on its own outputs reinforces its own mistakes
and narrows its outputs (Shumailov et al. 2024, "AI models collapse when trained on recursively
generated data", Nature).
"""

import hashlib
import json
import random
import re
from collections import Counter
from typing import Iterable, Iterator

from tailorlm.config import EMBEDDED_GENERATOR
from tailorlm.data.record import Record
from tailorlm.data.steps.base import Filter, Step
from tailorlm.data.steps.mix import cap_synthetic, is_synthetic
from tailorlm.errors import TailorError

WEAK = (f"the teacher is the embedded {EMBEDDED_GENERATOR} model: expect weak, often wrong examples. Set models.teacher "
        "to a stronger model (any backend) for data worth training on")
SEEDS_PER_PROMPT = 3


def _self_instruct_prompt(task, seeds: list[Record]) -> str:
    shown = []
    for i, r in enumerate(seeds, 1):
        user = next(m["content"] for m in reversed(r.content["messages"]) if m["role"] == "user")
        reply = r.content["messages"][-1]["content"]
        shown.append(f"Example {i}\nUSER: {user}\nASSISTANT: {reply}")
    labels = f"\nThe ASSISTANT reply must be exactly one of: {', '.join(task.labels)}." if task.labels else ""
    return (f"You write training examples for this task: {task.description.strip()}\n\nHere are real examples:\n\n"
            + "\n\n".join(shown)
            + f"\n\nWrite one new example of the same kind and quality, different from these.{labels}\n"
            "Reply in exactly this format:\nUSER: <the user's message>\nASSISTANT: <the ideal reply>")


def _qa_prompt(task, label: str, text: str) -> str:
    return (f"Task: {task.description.strip()}\n\nHere is a passage from {label}:\n<<<\n{text}\n>>>\n\n"
            "Write one question a user might ask that this passage answers, and its answer, using only the passage.\n"
            "Reply in exactly this format:\nQUESTION: <the question>\nANSWER: <the answer>")


def _parse(text: str, first: str, second: str) -> tuple[str, str] | None:
    m = re.search(rf"{first}:\s*(.+?)\s*{second}:\s*(.+)", text, re.IGNORECASE | re.DOTALL)
    if not m:
        return None
    return m.group(1).strip(), m.group(2).strip()


def _record(messages: list[dict], meta: dict) -> Record:
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return Record(f"syn-{digest[:12]}", "chat", {"messages": messages}, meta)


class Teaching:
    """One synthesize run's teacher, parameters and what it produced (records and unparseable replies)."""

    def __init__(self, project, teacher, teacher_cfg, seed: int):
        from tailorlm.models.base import GenParams

        self.project, self.teacher, self.cfg = project, teacher, project.config.synthesize
        self.rng = random.Random(seed)
        self.params = GenParams(temperature=self.cfg.temperature, max_tokens=self.cfg.max_tokens, seed=seed)
        self.weak = teacher_cfg.backend == "local" and teacher_cfg.model == EMBEDDED_GENERATOR
        self.meta = {"synthetic": True, "teacher": teacher_cfg.model, "teacher_backend": teacher_cfg.backend,
                     "teacher_weak": self.weak, "tags": ["synthetic"], "source": "synthetic"}
        self.records: list[Record] = []
        self.unparseable: list[dict] = []
        self.stats: Counter[str] = Counter()

    def _ask(self, prompts: list[str]) -> list[str]:
        batch = [[{"role": "user", "content": p}] for p in prompts]
        return [c.text for c in self.teacher.generate_batch(batch, self.params, batch_size=8)]

    def _reject(self, prompt: str, reply: str, method: str) -> None:
        self.unparseable.append({"step": "synthesize", "reason": "unparseable", "id": None, "file": None, "line": None,
                                 "record": {"reply": reply}, "meta": {**self.meta, "method": method, "prompt": prompt}})

    def _answers(self, prompts: list[str], method: str, first: str, second: str) -> Iterator[tuple[int, tuple[str, str]]]:
        """(position, (first, second)) for each prompt whose reply parses; the rest are quarantined."""
        for pos, (prompt, reply) in enumerate(zip(prompts, self._ask(prompts))):
            self.stats[method] += 1
            parsed = _parse(reply, first, second)
            if parsed is None:
                self._reject(prompt, reply, method)
            else:
                yield pos, parsed

    def self_instruct(self, seeds: list[Record], n: int, split: str) -> None:
        task = self.project.config.task
        picks = [self.rng.sample(seeds, min(SEEDS_PER_PROMPT, len(seeds))) for _ in range(n)]
        prompts = [_self_instruct_prompt(task, p) for p in picks]
        for pos, (user, reply) in self._answers(prompts, "self_instruct", "USER", "ASSISTANT"):
            chosen = picks[pos]
            system = [m for m in chosen[0].content["messages"][:1] if m["role"] == "system"]
            messages = system + [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
            self.records.append(_record(messages, {**self.meta, "method": "self_instruct", "prompt": prompts[pos],
                                                   "seed_ids": [r.id for r in chosen], "split": split}))

    def doc_questions(self, sources: list[str] | None, n: int, split: str) -> None:
        from tailorlm.rungs.prompts import load_prompt
        from tailorlm.models.base import GenParams
        from tailorlm.rag.documents import index_documents
        from tailorlm.rungs.rag import RagRung

        rag, task = self.project.config.rag, self.project.config.task
        chunks = _chunks(index_documents(self.project, sources)[0], rag.chunk_tokens, rag.overlap_tokens)
        if not chunks:
            raise TailorError("the documents gave no text to write questions from")
        picks = self.rng.sample(range(len(chunks)), min(n, len(chunks)))
        prompts = [_qa_prompt(task, _label(chunks[i]), chunks[i].text) for i in picks]
        # the rag rung's own prompt building, with the hits given instead of retrieved: the training
        # prompt is what the hybrid rung will show (system prompt, guard, numbered fenced sources)
        rung = RagRung(None, None, system=load_prompt(self.project)["text"], context_tokens=rag.context_tokens)
        for pos, (question, answer) in self._answers(prompts, "raft", "QUESTION", "ANSWER"):
            oracle = chunks[picks[pos]]
            others = [c for c in chunks if c.doc_id != oracle.doc_id] or [c for c in chunks if c is not oracle]
            hits = self.rng.sample(others, min(self.cfg.distractors, len(others)))
            if self.rng.random() < self.cfg.oracle_share:
                hits.insert(self.rng.randrange(len(hits) + 1), oracle)
            prepared = rung.prepare([{"role": "user", "content": question}], GenParams(), hits=hits)
            if oracle in prepared.used and "[" not in answer:
                answer = f"{answer} [{prepared.used.index(oracle) + 1}]"
            messages = prepared.messages + [{"role": "assistant", "content": answer}]
            self.records.append(_record(messages, {**self.meta, "method": "raft", "prompt": prompts[pos], "oracle": oracle.id,
                                                   "oracle_in_context": oracle in prepared.used, "split": split,
                                                   "distractors": [h.id for h in prepared.used if h is not oracle]}))


def _label(hit) -> str:
    return hit.path + (f" > {hit.heading}" if hit.heading else "")


def _chunks(docs: list[Record], chunk_tokens: int, overlap_tokens: int) -> list:
    """Every chunk of the documents as a rag `Hit`, so the prompt is built exactly as at query time."""
    from tailorlm.rag.chunking import chunk_record
    from tailorlm.rag.index import INJECTION, Hit

    out = []
    for doc in docs:
        for c in chunk_record(doc, max_tokens=chunk_tokens, overlap_tokens=overlap_tokens):
            if c.text.strip():
                out.append(Hit(f"{doc.id}#{c.index}", doc.id, doc.meta.get("path", doc.id), " > ".join(c.heading), c.text,
                               0.0, doc.meta.get("source", ""), "injection" if INJECTION.search(c.text) else ""))
    return out


class CheckFormat(Filter):
    """A generated example must have a user turn and a reply of sensible length; a classification
    reply must be one of the task's labels."""

    name = "check_format"

    def __init__(self, labels: list[str], min_words: int, max_words: int):
        super().__init__()
        self.labels = {label.casefold() for label in labels}
        self.params = {"labels": labels, "min_words": min_words, "max_words": max_words}
        self.min_words, self.max_words = min_words, max_words

    def keep(self, record: Record) -> bool | tuple[bool, str]:
        messages = record.content["messages"]
        user = next(m["content"] for m in reversed(messages) if m["role"] == "user")
        reply = messages[-1]["content"]
        if self.labels:
            return reply.strip().strip(".").casefold() in self.labels or (False, "not_a_label")
        for text in (user, reply):
            words = len(text.split())
            if words < self.min_words:
                return False, "too_short"
            if words > self.max_words:
                return False, "too_long"
        if user.strip().casefold() == reply.strip().casefold():
            return False, "echo"
        return True


class DedupAgainstReal(Step):
    """Drop generated records that repeat the real data (exactly or nearly) or each other; the
    real records only serve as references and are never dropped."""

    name = "dedup_real"

    def __init__(self, real: list[Record]):
        super().__init__()
        # copies: the dedup steps write duplicate markers into the meta of what they drop
        self.real = [Record(r.id, r.kind, r.content, dict(r.meta)) for r in real]

    def run(self, records: Iterable[Record]) -> Iterator[Record]:
        from tailorlm.data.steps.dedup import ExactDedup, NearDedup

        records = list(records)
        real_ids = {r.id for r in self.real}
        survivors = self.real + records
        for step in (ExactDedup(), NearDedup()):
            survivors = list(step(survivors))
        alive = {r.id for r in survivors}
        for r in records:
            if r.id in alive:
                yield r
            else:
                of = r.meta.get("duplicate_of") or r.meta.get("near_duplicate_of")
                self.drop(r, "duplicate_of_real" if of in real_ids else "duplicate")


class JudgeScore(Step):
    """Keep generated records that the judge (eval/judge.py's rubric scoring, 1-5) scores at least
    `min_score`; an unparseable verdict scores 1."""

    name = "judge_score"

    def __init__(self, judge, min_score: int):
        super().__init__()
        self.judge, self.min_score = judge, min_score
        self.params = {"min_score": min_score, "judge": getattr(judge, "name", str(judge))}

    def run(self, records: Iterable[Record]) -> Iterator[Record]:
        from tailorlm.eval.judge import rubric_scores

        records = list(records)
        asked = [{"question": next(m["content"] for m in reversed(r.content["messages"]) if m["role"] == "user"),
                  "answer": r.content["messages"][-1]["content"]} for r in records]
        scores = rubric_scores(self.judge, asked)["scores"] if records else []
        for r, score in zip(records, scores):
            r.meta["judge_score"] = score
            self.stats[f"score_{score:g}"] += 1
            if score >= self.min_score:
                yield r
            else:
                self.drop(r, "low_judge_score")


class SyntheticCap(Step):
    """Quarantine synthetic records beyond `max_share` of the whole (reason `synthetic_cap`)."""

    name = "synthetic_cap"

    def __init__(self, max_share: float, seed: int = 0):
        super().__init__()
        self.max_share, self.seed = max_share, seed
        self.params = {"max_share": max_share, "seed": seed}

    def run(self, records: Iterable[Record]) -> Iterator[Record]:
        yield from cap_synthetic(list(records), self.max_share, self.drop, self.seed)


def synthesize(project, seeds: str | None = None, docs: list[str] | None = None, n: int = 20, name: str | None = None,
               mix_with: str | None = None, mix: bool = True, max_share: float | None = None,
               min_judge_score: int | None = None, teacher=None, judge=None, seed: int = 0,
               log=lambda _m: None) -> dict:
    """Generate, verify, tag and cap synthetic chat records; write them as a dataset version.

    `seeds` is a chat dataset whose training split seeds self-instruct; `docs` names document
    sources for RAFT questions (`[]` means `rag.sources` or every document source). The result is
    mixed into `mix_with` (default: `seeds`) unless `mix` is False. `teacher` and `judge` replace
    the configured models (tests pass fakes).

    >>> synthesize(project, seeds="tickets", n=50)["synthetic"]["share"]  # doctest: +SKIP
    0.23
    """
    from tailorlm.data.pipeline import eval_references, run_steps
    from tailorlm.data.steps.decontaminate import Decontaminate
    from tailorlm.data.versions import load_records
    from tailorlm.models import get_generator

    cfg = project.config
    if not seeds and docs is None:
        raise TailorError("nothing to synthesize from: give --seeds DATASET (self-instruct variations) and/or "
                          "--docs SOURCE (questions from documents)")
    share = cfg.synthesize.max_share if max_share is None else max_share
    if not 0 <= share < 1:
        raise TailorError(f"max_share must be in [0, 1), got {share}")
    teacher_cfg = cfg.models.teacher or cfg.models.generator
    seed_manifest = _chat_version(project, seeds) if seeds else None
    base_manifest = _chat_version(project, mix_with or seeds) if mix and (mix_with or seeds) else None
    real_splits = {s: load_records(project, base_manifest, s) for s in base_manifest["splits"]} if base_manifest else {}
    train_split = "train" if "train" in (real_splits or {"train": 0}) else "data"
    name = name or (f"{(mix_with or seeds)}-synth" if base_manifest else f"{seeds or 'docs'}-synthetic")

    teaching = Teaching(project, teacher or get_generator(teacher_cfg), teacher_cfg, seed)
    pool: list[Record] = []
    warnings = [WEAK] if teaching.weak else []
    if teacher_cfg.model == cfg.models.generator.model:
        warnings.append(f"the teacher ({teacher_cfg.model}) is the generator you would fine-tune: training a model on "
                        "its own outputs reinforces its mistakes (model collapse, Shumailov et al. 2024)")
    if seed_manifest:
        pool = load_records(project, seed_manifest, "train" if "train" in seed_manifest["splits"] else None)
        pool = [r for r in pool if not is_synthetic(r)]  # variations of variations drift: seed from real data only
        if not pool:
            raise TailorError(f"{seed_manifest['id']} has no real training examples to seed from")
        log(f"self-instruct: {n} variations of {len(pool)} seed examples, teacher {teacher_cfg.model}")
        teaching.self_instruct(pool, n, train_split)
    if docs is not None:
        log(f"document questions: {n}, teacher {teacher_cfg.model}")
        teaching.doc_questions(docs or None, n, train_split)

    quarantine = list(teaching.unparseable)
    real = [r for rs in real_splits.values() for r in rs] or pool
    steps = [CheckFormat(cfg.task.labels, cfg.synthesize.min_words, cfg.synthesize.max_words), DedupAgainstReal(real),
             Decontaminate(references=eval_references(project, name, []))]
    if min_judge_score:
        from tailorlm.eval.judge import judge_for

        judge, judge_warning = (judge, None) if judge else judge_for(project)
        warnings += [judge_warning] if judge_warning else []
        steps.append(JudgeScore(judge, min_judge_score))
    log("verifying: format, duplicates of the real data, eval contamination" + (", judge" if min_judge_score else ""))
    verified = _verify(steps, teaching.records, quarantine)
    splits = {s: list(rs) for s, rs in real_splits.items()}
    caps = [SyntheticCap(share, seed)] if base_manifest else []  # a synthetic-only version is not a mix
    splits[train_split] = run_steps(caps, splits.get(train_split, []) + verified, quarantine)
    if not base_manifest:
        warnings.append("this version is synthetic only; mix it with real data (--mix-with) before training on it")
    generated = len(teaching.records) + len(teaching.unparseable)
    summaries = [{"step": "synthesize", "params": {"teacher": teacher_cfg.model, "n": n, "seed": seed,
                                                    "temperature": cfg.synthesize.temperature},
                  "kept": len(teaching.records), "dropped": dict(Counter(q["reason"] for q in teaching.unparseable)),
                  "stats": dict(teaching.stats)}] + [s.summary() for s in [*steps, *caps]]
    return _write(project, name, splits, quarantine, summaries, warnings, teaching, generated,
                  seed_manifest, base_manifest, share, docs)


def _core(record: Record) -> Record:
    """What verification looks at: the question and the answer. A RAFT prompt is mostly retrieved
    sources, shared between records and quoting the documents the golden answers come from; judged
    whole, different questions over the same sources would look like duplicates or contamination."""
    if record.meta.get("method") != "raft":
        return record
    question = record.content["messages"][1]["content"].rsplit("\n\nQuestion: ", 1)[-1]
    messages = [{"role": "user", "content": question}, record.content["messages"][-1]]
    return Record(record.id, record.kind, {"messages": messages}, record.meta)  # the same meta: marks carry over


def _verify(steps: list, records: list[Record], quarantine: list[dict]) -> list[Record]:
    """Run the verification steps on each record's core; keep (and quarantine) whole records."""
    from tailorlm.data.pipeline import run_steps

    whole = {r.id: r for r in records}
    start = len(quarantine)
    kept = run_steps(steps, [_core(r) for r in records], quarantine)
    for entry in quarantine[start:]:
        entry["record"] = whole[entry["id"]].content
    return [whole[r.id] for r in kept]


def _chat_version(project, ref: str) -> dict:
    from tailorlm.data.versions import resolve

    manifest = resolve(project, ref)
    if manifest["kind"] != "chat":
        raise TailorError(f"{manifest['id']} holds {manifest['kind']} records; synthesize seeds and mixes chat datasets")
    return manifest


def _write(project, name, splits, quarantine, summaries, warnings, teaching, generated,
           seed_manifest, base_manifest, share, docs) -> dict:
    from tailorlm.data.versions import write_version

    n_real = sum(len(rs) for rs in splits.values()) - sum(1 for rs in splits.values() for r in rs if is_synthetic(r))
    kept_synthetic = sum(1 for rs in splits.values() for r in rs if is_synthetic(r))
    dropped = sum(sum(s["dropped"].values()) for s in summaries)
    accounting = {"read": n_real + generated, "rejected_by_readers": 0, "added": 0, "dropped_by_steps": dropped,
                  "kept": n_real + kept_synthetic}
    accounting["holds"] = accounting["read"] == accounting["kept"] + dropped
    if not accounting["holds"]:  # a bug, never the user's fault: refuse to write a version
        raise RuntimeError(f"accounting broken for {name}: {accounting}")
    total = n_real + kept_synthetic
    synthetic = {"n": kept_synthetic, "share": kept_synthetic / total if total else 0.0, "max_share": share,
                 "teachers": [teaching.meta["teacher"]], "teacher_weak": teaching.weak,
                 "methods": dict(Counter(r.meta["method"] for rs in splits.values() for r in rs if is_synthetic(r)))}
    parents = [m["id"] for m in (seed_manifest, base_manifest) if m]
    manifest = {
        "kind": "chat", "license": base_manifest.get("license") if base_manifest else None,
        "parents": sorted(set(parents)),
        "sources": (base_manifest["sources"] if base_manifest else []) + [
            {"name": "synthetic", "path": None, "files": [], "teacher": teaching.meta["teacher"]}],
        "steps": summaries, "accounting": accounting, "synthetic": synthetic, "warnings": warnings,
        "recipe": {"parents": sorted(set(parents)), "docs": docs, "steps": [{"step": s["step"], "params": s["params"]}
                                                                           for s in summaries]},
    }
    out = write_version(project, name, splits, manifest, quarantine)
    return {"id": out["id"], "path": out["path"], "splits": out["splits"], "generated": generated,
            "kept": kept_synthetic, "dropped": _by_reason(summaries), "synthetic": synthetic, "warnings": warnings,
            "teacher": {"model": teaching.meta["teacher"], "backend": teaching.meta["teacher_backend"],
                        "weak": teaching.weak}}


def _by_reason(summaries: list[dict]) -> dict:
    out: Counter[str] = Counter()
    for s in summaries:
        for reason, count in s["dropped"].items():
            out[f"{s['step']}: {reason}"] += count
    return dict(out)
