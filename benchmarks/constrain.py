"""Constrained decoding: the grammar libraries compared, and Tailor's overhead against free decoding.

    python benchmarks/constrain.py [--libs llguidance,xgrammar,outlines-core] [--reps 3] [--json]

Part 1 compares the grammar engines on the embedded SmolLM2 tokenizer (49,152 tokens), each driven
through its own Python API with the same bit-mask layout:
- install footprint: the size of the installed distribution and of everything it requires that the
  project does not already have (from importlib.metadata; pass the ones to compare on the path, e.g.
  `pip install --target /tmp/g xgrammar` and `PYTHONPATH=/tmp/g`);
- compile time (median of --reps, caches off) of (a) a choice among the example's 8 labels and (b) a
  JSON Schema of an object with 4 typed fields;
- mask time per token: the real model decodes greedily under the grammar once; that answer's tokens
  are then replayed --reps times through a fresh matcher (compute the mask, accept the token), so the
  figure is the engine's alone.

Part 2 runs `LocalGenerator` itself (llguidance through models/constrain.py), one row and a batch
of 8, the JSON Schema and the choice against free decoding in the same run, alternating, medians of
--reps: the per-token time (prefill subtracted: a max_tokens=1 call of the same prompts) and its ratio.

Part 3 (`--label-modes`) scores the Keelbox example's prompting rungs on its golden tickets twice in
one run, `task.label_mode: constrain` (greedy decoding under a choice over the labels) and `score`
(each label's likelihood as the whole answer), through `build_rung` and `evaluate` as the ladder does.
"""

import argparse
import json
import platform
import statistics
import time
from importlib import metadata

LABELS = ["billing", "login_sso", "sync_conflict", "data_restore", "api_error", "performance", "account_deletion",
          "feature_request"]
SCHEMA = {"type": "object", "properties": {
    "product": {"type": "string", "maxLength": 40},
    "severity": {"type": "string", "enum": ["low", "medium", "high"]},
    "users_affected": {"type": "integer", "minimum": 0},
    "refund_requested": {"type": "boolean"},
}, "required": ["product", "severity", "users_affected", "refund_requested"], "additionalProperties": False}
TICKETS = ["I was charged twice for my subscription this month.", "SSO login loops back to the start page.",
           "Two laptops show different versions of the same file.", "Please bring back last week's folder.",
           "The API answers 500 on every upload.", "Search takes a minute since Tuesday.",
           "Close my account and erase my data.", "Could you add a dark mode?"]
EXTRACT = ("Extract product, severity (low, medium or high), users_affected and refund_requested as JSON "
           "from this ticket: {}")
CLASSIFY = "Classify this support ticket as one of: " + ", ".join(LABELS) + ".\nTicket: {}"


def _requires(dist) -> list[str]:
    """Names of what a distribution requires on this platform, extras left out."""
    from packaging.requirements import Requirement

    out = []
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            out.append(req.name.lower().replace("_", "-"))
    return out


def _closure(names) -> set[str]:
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            todo.extend(_requires(metadata.distribution(name)))
        except metadata.PackageNotFoundError:
            pass
    return seen


def footprint(dist: str) -> dict:
    """MB installed by `dist`, and what it requires (all the way down) that Tailor does not already pull."""
    def size(name):
        try:
            return round(sum((f.size or 0) for f in (metadata.distribution(name).files or [])) / 1e6, 1)
        except metadata.PackageNotFoundError:
            return "not installed"

    have = _closure(n for n in _requires(metadata.distribution("tailorlm")) if n not in ENGINES)
    new = sorted(_closure([dist]) - have - {dist})
    return {"own_mb": size(dist), "version": metadata.version(dist), "pulls": {n: size(n) for n in new}}


class XGrammar:
    def __init__(self, tok, vocab):
        import xgrammar as xgr

        self.xgr, self.info = xgr, xgr.TokenizerInfo.from_huggingface(tok, vocab_size=vocab)

    def compile(self, kind):
        comp = self.xgr.GrammarCompiler(self.info, cache_enabled=False)
        if kind == "choice":
            return comp.compile_grammar("root ::= " + " | ".join(json.dumps(x) for x in LABELS))
        return comp.compile_json_schema(SCHEMA, any_whitespace=False)

    def matcher(self, g):
        return self.xgr.GrammarMatcher(g)

    def fill(self, m, row):
        m.fill_next_token_bitmask(row[None], 0)

    def accept(self, m, token):
        assert m.accept_token(token)

    def done(self, m):
        return m.is_terminated()


class LLGuidance:
    def __init__(self, tok, vocab):
        import llguidance.hf

        self.ll, self.tok = llguidance, llguidance.hf.from_tokenizer(tok, n_vocab=vocab)

    def compile(self, kind):
        from tailorlm.models.constrain import JSON_OPTIONS

        M = self.ll.LLMatcher
        g = (M.grammar_from_lark("start: " + " | ".join(json.dumps(x) for x in LABELS)) if kind == "choice"
             else M.grammar_from_json_schema(SCHEMA, defaults=JSON_OPTIONS))
        M(self.tok, g)  # llguidance builds the grammar when a matcher is made: that is its compile
        return g

    def matcher(self, g):
        return self.ll.LLMatcher(self.tok, g)

    def fill(self, m, row):
        m.unsafe_compute_mask_ptr(row.data_ptr(), row.numel() * 4)

    def accept(self, m, token):
        assert m.consume_token(token)

    def done(self, m):
        return m.is_stopped()


class OutlinesCore:
    def __init__(self, tok, vocab):
        import outlines_core as oc

        # Vocabulary.from_pretrained goes to the hub: the token -> bytes table is built here instead.
        dec = {c: b for b, c in _byte_chars().items()}
        table = {}
        for s, i in tok.get_vocab().items():
            if i not in set(tok.all_special_ids):
                table.setdefault(bytes(dec[c] for c in s), []).append(i)
        self.oc, self.vocab = oc, oc.Vocabulary(tok.eos_token_id, table)

    def compile(self, kind):
        from outlines_core.json_schema import build_regex_from_schema

        regex = "(" + "|".join(LABELS) + ")" if kind == "choice" else build_regex_from_schema(json.dumps(SCHEMA), "")
        return self.oc.Index(regex, self.vocab)

    def matcher(self, g):
        return self.oc.Guide(g)

    def fill(self, m, row):
        m.write_mask_into(row.data_ptr(), row.numel(), 4)

    def accept(self, m, token):
        m.advance(token, return_tokens=False)

    def done(self, m):
        return m.is_finished()


ENGINES = {"llguidance": LLGuidance, "xgrammar": XGrammar, "outlines-core": OutlinesCore}


def _byte_chars() -> dict[int, str]:
    """GPT-2's byte -> printable character table, in which byte-level BPE vocabularies are written."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars, n = keep[:], 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(keep, map(chr, chars)))


def engine_decode(gen, engine, grammar, prompt_ids, max_tokens=64) -> list[int]:
    """Greedy tokens of the real model under one engine's mask (no KV cache tricks: the answer is short)."""
    import numpy as np
    import torch

    from tailorlm.models.kv import returned_cache, with_cache

    vocab = gen.model.get_output_embeddings().weight.shape[0]
    row = torch.full(((vocab + 31) // 32,), -1, dtype=torch.int32)
    m, ids, past, out = engine.matcher(grammar), torch.tensor([prompt_ids]), None, []
    for _ in range(max_tokens):
        with torch.inference_mode():
            o = gen.model(input_ids=ids, use_cache=True, **with_cache(past))
            past, logits = returned_cache(o), o.logits[0, -1].clone()
        engine.fill(m, row)
        bits = torch.from_numpy(np.unpackbits(row.numpy().view(np.uint8), bitorder="little"))[:vocab]
        token = int(logits.masked_fill(bits == 0, float("-inf")).argmax())
        if token in gen.eos_ids:
            break
        engine.accept(m, token)
        out.append(token)
        if engine.done(m):
            break
        ids = torch.tensor([[token]])
    return out


def compare_engines(gen, names, reps) -> dict:
    import torch

    tok, vocab = gen.tokenizer, gen.model.get_output_embeddings().weight.shape[0]
    prompts = {"choice": gen.encode([{"role": "user", "content": CLASSIFY.format(TICKETS[0])}]),
               "json": gen.encode([{"role": "user", "content": EXTRACT.format(TICKETS[4])}])}
    out = {}
    for name in names:
        try:
            started = time.perf_counter()
            engine = ENGINES[name](tok, vocab)
            setup = time.perf_counter() - started
        except ImportError as e:
            out[name] = {"error": f"not importable: {e}"}
            continue
        res = {"footprint": footprint(name), "tokenizer_setup_s": round(setup, 3)}
        for kind, prompt in prompts.items():
            times = []
            for _ in range(reps):
                started = time.perf_counter()
                grammar = engine.compile(kind)
                times.append(time.perf_counter() - started)
            answer = engine_decode(gen, engine, grammar, prompt)
            row = torch.full(((vocab + 31) // 32,), -1, dtype=torch.int32)
            per = []
            for _ in range(reps * 5):
                m = engine.matcher(grammar)
                started = time.perf_counter()
                for t in answer:
                    engine.fill(m, row)
                    engine.accept(m, t)
                per.append((time.perf_counter() - started) / len(answer))
            res[kind] = {"compile_ms": round(1000 * statistics.median(times), 2), "answer": tok.decode(answer),
                         "answer_tokens": len(answer), "mask_us_per_token": round(1e6 * statistics.median(per), 1)}
        out[name] = res
    return out


def overhead(gen, reps) -> dict:
    """Tailor's constrained decode loop against free decoding, per generated token, same run."""
    from tailorlm.models import constrain as C
    from tailorlm.models.base import GenParams

    cases = {"json_schema": (EXTRACT, C.json_schema(SCHEMA)), "choice": (CLASSIFY, C.choice(LABELS))}
    spent = _time_calls(C.RowMasks, ["apply", "accept"])
    out = {}
    for case, (template, spec) in cases.items():
        for rows in (1, 8):
            batch = [[{"role": "user", "content": template.format(t)}] for t in TICKETS[:rows]]
            constrained = gen.generate_batch(batch, GenParams(max_tokens=64, constraint=spec), batch_size=rows)
            steps = max(c.usage.completion_tokens for c in constrained)  # the batch decodes this many steps
            timings = {"prefill": [], "free": [], "constrained": []}
            for _ in range(reps):  # alternate, so drifting load hits both sides alike
                for side, params in (("prefill", GenParams(max_tokens=1)), ("free", GenParams(max_tokens=steps)),
                                     ("constrained", GenParams(max_tokens=64, constraint=spec))):
                    spent[0] = 0.0
                    started = time.perf_counter()
                    done = gen.generate_batch(batch, params, batch_size=rows)
                    timings[side].append((time.perf_counter() - started, max(c.usage.completion_tokens for c in done)))
                    if side == "constrained":
                        timings.setdefault("mask", []).append(spent[0] / timings[side][-1][1])
            prefill = statistics.median(t for t, _ in timings["prefill"])

            def per_token(side):
                return statistics.median((t - prefill) / max(n - 1, 1) for t, n in timings[side])

            free, held, mask = per_token("free"), per_token("constrained"), statistics.median(timings["mask"])
            out[f"{case}_x{rows}"] = {"steps": steps, "free_ms_per_step": round(1000 * free, 2),
                                      "constrained_ms_per_step": round(1000 * held, 2), "ratio": round(held / free, 3),
                                      "mask_ms_per_step": round(1000 * mask, 3), "mask_share_of_free_step": round(mask / free, 4),
                                      "all_valid": _valid(case, [c.text for c in constrained])}
    return out


def label_modes() -> list[dict]:
    """The example's zero_shot, few_shot and rag rungs under label_mode constrain and score."""
    import tempfile
    from pathlib import Path

    from tailorlm.data.pipeline import prepare
    from tailorlm.eval.runner import default_params, evaluate
    from tailorlm.eval.suite import load_suite
    from tailorlm.rungs.build import build_rung
    from tailorlm.models.pool import ModelPool
    from tailorlm.project import Project
    from tailorlm.quickstart import create_example
    from tailorlm.rag.documents import index_documents
    from tailorlm.rag.index import RagIndex

    project = Project.load(create_example(Path(tempfile.mkdtemp()) / "keelbox"))
    prepare(project)
    RagIndex.for_project(project).build(index_documents(project, None)[0])
    pool, suite, params = ModelPool(project), load_suite(project), default_params(project)
    rows = []
    for spec in project.config.rungs:
        if spec.kind not in ("zero_shot", "few_shot", "rag"):
            continue
        for mode in ("constrain", "score"):
            rung = build_rung(project, spec, pool)
            rung.hold_to(project.config.task.labels, mode)
            rung.name = f"{spec.label}-{mode}"
            started = time.perf_counter()
            m = evaluate(project, rung, suite, ["accuracy", "macro_f1"], params, fresh=True)["metrics"]
            rows.append({"rung": spec.label, "label_mode": mode, "n": m["accuracy"]["n"],
                         "accuracy": [round(m["accuracy"][k], 3) for k in ("score", "low", "high")],
                         "macro_f1": round(m["macro_f1"]["score"], 3), "seconds": round(time.perf_counter() - started, 1)})
    return rows


def _time_calls(cls, names: list[str]) -> list[float]:
    """Wrap methods of `cls` so the seconds spent in them add up in the returned one-item list."""
    spent = [0.0]
    for name in names:
        def timed(self, *a, _inner=getattr(cls, name), **kw):
            started = time.perf_counter()
            try:
                return _inner(self, *a, **kw)
            finally:
                spent[0] += time.perf_counter() - started
        setattr(cls, name, timed)
    return spent


def _valid(case, texts) -> bool:
    if case == "choice":
        return all(t in LABELS for t in texts)
    from jsonschema import Draft202012Validator

    v = Draft202012Validator(SCHEMA)
    return all(v.is_valid(json.loads(t)) for t in texts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--libs", default="llguidance,xgrammar,outlines-core", help="engines to compare (part 1)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--skip-overhead", action="store_true", help="leave out part 2")
    ap.add_argument("--label-modes", action="store_true", help="add part 3 (about 5 minutes here)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import os

    import torch

    from tailorlm.models.local import LocalGenerator

    gen = LocalGenerator.load("smollm2-135m-instruct")
    result = {"benchmark": "constrain", "model": "smollm2-135m-instruct (fp32)", "threads": torch.get_num_threads(),
              "machine": platform.machine(), "load_average": os.getloadavg(),
              "engines": compare_engines(gen, [n for n in args.libs.split(",") if n], args.reps)}
    if not args.skip_overhead:
        result["overhead"] = overhead(gen, args.reps)
    if args.label_modes:
        result["label_modes"] = label_modes()
    result["load_average_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(result))
        return
    print(f"engines on the SmolLM2 tokenizer (load average {result['load_average'][0]:.1f}):")
    for name, r in result["engines"].items():
        if "error" in r:
            print(f"  {name}: {r['error']}")
            continue
        fp = r["footprint"]
        pulls = ", ".join(f"{k} {v} MB" for k, v in fp["pulls"].items()) or "nothing else"
        print(f"  {name} {fp['version']}: {fp['own_mb']} MB, pulls {pulls}; tokenizer setup {r['tokenizer_setup_s']} s")
        for kind in ("choice", "json"):
            k = r[kind]
            print(f"    {kind:6} compile {k['compile_ms']} ms, mask {k['mask_us_per_token']} us/token, "
                  f"{k['answer_tokens']} tokens: {k['answer']}")
    for case, r in result.get("overhead", {}).items():
        print(f"  {case}: {r['steps']} steps, free {r['free_ms_per_step']} ms/step, constrained "
              f"{r['constrained_ms_per_step']} ms/step, ratio {r['ratio']}x; in the mask {r['mask_ms_per_step']} ms/step "
              f"({100 * r['mask_share_of_free_step']:.2f}% of a free step); all valid: {r['all_valid']}")
    for r in result.get("label_modes", []):
        acc = r["accuracy"]
        print(f"  {r['rung']:17} {r['label_mode']:9} accuracy {acc[0]:.3f} [{acc[1]:.3f}, {acc[2]:.3f}] "
              f"macro-F1 {r['macro_f1']:.3f}  {r['seconds']} s (n={r['n']})")


if __name__ == "__main__":
    main()
