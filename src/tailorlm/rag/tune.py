"""`tailor rag eval SUITE --tune`: search the retrieval settings on a retrieval suite, keep the winner.

For each chunk size the index is built once (or reused), and every question's vector and BM25
candidate lists are fetched once; the fusions (score or rrf, BM25 weights, rrf constants) are then
computed from those lists, so trying a setting costs no search. The winner by the chosen metric
(ties go to the current settings, then to the earlier candidate) is compared, paired, with the
current settings and with vector search alone, and written into tailor.yaml's `rag:` section under
a comment naming the suite, the metric and the gain.

The suite is a retrieval suite (`sources`, `chunks` or `sections` per question). The ladder's golden
suite is refused, and never opened: tuning on it would make the ladder's comparison meaningless.
"""

import datetime
import json

import yaml

from tailorlm.errors import TailorError
from tailorlm.paths import inside

FTS_WEIGHTS = (0.25, 0.5, 1.0, 1.5, 2.0)
RRF_KS = (20, 60)
TUNED_KEYS = ("search", "fusion", "fts_weight", "rrf_k", "chunk_tokens")
COMMENT = "# tuned by `tailor rag eval"


def candidates(cfg) -> list[dict]:
    """The settings tried at one chunk size: the current ones first, then each single method, then the fusions."""
    current = {"search": cfg.search, "fusion": cfg.fusion, "fts_weight": cfg.fts_weight, "rrf_k": cfg.rrf_k}
    out = [current, {**current, "search": "vector"}, {**current, "search": "fts"}]
    out += [{"search": "hybrid", "fusion": "score", "fts_weight": w, "rrf_k": cfg.rrf_k} for w in FTS_WEIGHTS]
    out += [{"search": "hybrid", "fusion": "rrf", "fts_weight": w, "rrf_k": c} for w in FTS_WEIGHTS for c in RRF_KS]
    seen, unique = set(), []
    for c in out:
        key = json.dumps(c, sort_keys=True)
        if key not in seen:
            seen.add(key)
            unique.append(c)
    return unique


def golden_paths(project) -> set:
    """The golden suite's file(s), resolved: what --tune must never read."""
    paths = set()
    if project.config.eval.path:
        paths.add((project.root / project.config.eval.path).resolve())
    return paths


def tune(project, suite: str, chunk_tokens: list[int] | None = None, k: int = 5, metric: str = "mrr",
         write: bool = True, embedder=None, on_progress=lambda _msg: None) -> dict:
    """Search mode, fusion, weights, rrf_k and chunk size on `suite`; write the winner into tailor.yaml.

    >>> tune(project, "questions.jsonl", chunk_tokens=[120, 200])["winner"]  # doctest: +SKIP
    {'search': 'hybrid', 'fusion': 'score', 'fts_weight': 1.0, 'rrf_k': 60, 'chunk_tokens': 200}
    """
    from tailorlm.eval.retrieval import score_queries
    from tailorlm.models import get_embedder
    from tailorlm.rag.evaluate import METRICS, index_for, load_suite, paired_deltas, ranked_ids
    from tailorlm.rag.index import fuse

    if metric not in METRICS:
        raise TailorError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    if inside(project.root, suite).resolve() in golden_paths(project):
        raise TailorError(f"{suite} is the ladder's golden suite (eval.path); tune on a separate retrieval suite, "
                          "or the ladder's comparison is no longer a held-out check")
    questions = load_suite(project, suite)
    cfg = project.config.rag
    sizes = chunk_tokens or [cfg.chunk_tokens]
    embedder = embedder or get_embedder(project.config.models.embedder)
    qvecs = embedder.embed([q["question"] for q in questions])
    pool = max(k * 4, 20)  # as RagIndex.search's hybrid pool
    docs: list = []
    results = []
    for size in sizes:
        index = index_for(project, embedder, size, docs, on_progress)
        table = index._table()
        on_progress(f"searching {len(questions)} questions at chunk_tokens={size}")
        lists = [(index._vector(table, v, pool, None), index._fts(table, q["question"], pool, None))
                 for q, v in zip(questions, qvecs)]
        for c in candidates(cfg):
            runs = []
            for q, (vec, fts) in zip(questions, lists):
                if c["search"] == "vector":
                    hits = vec
                elif c["search"] == "fts":
                    hits = fts
                else:
                    hits = fuse([vec, fts], [1.0, c["fts_weight"]], c["fusion"], c["rrf_k"])
                runs.append((ranked_ids(q, hits[:k]), q["relevant"]))
            scores = score_queries(runs, k)
            results.append({"setting": {**c, "chunk_tokens": size}, **{m: scores[m] for m in METRICS},
                            "per_query": scores["per_query"]})
    # max() keeps the first of equal scores: the current settings come first, then the candidates in order
    winner = max(results, key=lambda r: r[metric]["mean"])
    current = results[0]
    vector = next(r for r in results if r["setting"]["search"] == "vector" and r["setting"]["chunk_tokens"] == cfg.chunk_tokens
                  ) if cfg.chunk_tokens in sizes else next(r for r in results if r["setting"]["search"] == "vector")
    report = {"suite": suite, "n": len(questions), "k": k, "metric": metric, "unit": questions[0]["unit"],
              "tried": len(results), "winner": winner["setting"], "current": current["setting"],
              "winner_scores": {m: winner[m] for m in METRICS}, "current_scores": {m: current[m] for m in METRICS},
              "vs_current": paired_deltas(current, winner), "vs_vector": paired_deltas(vector, winner),
              "results": [{k_: v for k_, v in r.items() if k_ != "per_query"} for r in results], "written": False}
    if write:
        d = report["vs_current"][metric]
        comment = (f"{COMMENT} {suite} --tune` {datetime.date.today().isoformat()}: {metric}@{k} "
                   f"{winner[metric]['mean']:.3f} (n={len(questions)}), {d['delta']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] "
                   f"vs the settings before")
        values = {key: winner["setting"][key] for key in TUNED_KEYS}
        write_rag_settings(project, values, comment)
        report["written"] = True
        report["reindex"] = winner["setting"]["chunk_tokens"] != cfg.chunk_tokens
    return report


def write_rag_settings(project, values: dict, comment: str) -> None:
    """Set keys of tailor.yaml's `rag:` section in place, keeping every comment; validated before writing."""
    from tailorlm.config import parse_config
    from tailorlm.project import CONFIG_FILE

    path = project.root / CONFIG_FILE
    text = path.read_text(encoding="utf-8")
    new_text = set_section_keys(text, "rag", values, comment)
    project.config = parse_config(new_text, CONFIG_FILE)  # refuse to write a config that would not load
    path.write_text(new_text, encoding="utf-8")


def set_section_keys(text: str, section: str, values: dict, comment: str) -> str:
    """`text` with `section.key: value` set for each of `values` (replaced where present, else added at the
    end of the section), and `comment` as the section's first line (replacing an earlier tuning comment).

    >>> print(set_section_keys("rag:\\n  k: 4  # why\\n  search: fts\\n", "rag", {"search": "hybrid"}, "# tuned"), end="")
    rag:
      # tuned
      k: 4  # why
      search: "hybrid"
    """
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    entry = next(((k, v) for k, v in root.value if k.value == section), None) if root is not None else None
    if entry is None or (isinstance(entry[1], yaml.ScalarNode) and entry[1].value in ("", "null", "~")):
        if entry is not None:  # `rag:` with nothing under it
            del lines[entry[0].start_mark.line]
        body = [f"  {comment}\n"] + [f"  {k}: {json.dumps(v)}\n" for k, v in values.items()]
        return "".join(lines) + f"{section}:\n" + "".join(body)
    key_node, node = entry
    if not isinstance(node, yaml.MappingNode) or node.flow_style:
        if isinstance(node, yaml.MappingNode) and not node.value:  # `rag: {}`
            row = key_node.start_mark.line
            lines[row] = lines[row][: key_node.start_mark.column] + f"{section}:\n"
            return set_section_keys("".join(lines), section, values, comment)
        raise TailorError(f"tailor.yaml: {section} is not a block mapping; write it as `{section}:` with indented keys")
    indent = " " * node.value[0][0].start_mark.column
    edits: dict[int, list[str]] = {}  # first line of a key -> its replacement lines (later lines of it removed)
    drop: set[int] = set()
    last = node.value[-1][1].end_mark.line + (1 if node.value[-1][1].end_mark.column else 0)
    added = []
    for name, value in values.items():
        found = next(((k, v) for k, v in node.value if k.value == name), None)
        if found is None:
            added.append(f"{indent}{name}: {json.dumps(value)}\n")
            continue
        k, v = found
        row = k.start_mark.line
        tail = lines[v.end_mark.line][v.end_mark.column:] if v.end_mark.line == row else "\n"
        edits[row] = [f"{indent}{name}: {json.dumps(value)}{tail if tail.strip() else chr(10)}"]
        drop.update(range(row + 1, v.end_mark.line + (1 if v.end_mark.column else 0)))
    out = []
    first = node.value[0][0].start_mark.line
    for i, line in enumerate(lines):
        if i == first:
            # the comment goes first in the section; an earlier tuning comment just above is replaced
            while out and out[-1].strip().startswith(COMMENT):
                out.pop()
            out.append(f"{indent}{comment}\n")
        if i == last:
            out += added
        if i in drop:
            continue
        out += edits.get(i, [line])
    if last >= len(lines):
        out += added
    return "".join(out)
