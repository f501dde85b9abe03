"""Person names found by the pii step: precision and recall on real text, NER against regex-only.

    python benchmarks/pii_names.py [--cases 1000] [--seed 0] [--model FOLDER ...] [--json]

Nothing here is written by hand except the frames that put a name into a sentence:
- names: every person in the `copyright` files under /usr/share/doc, taken where a name of
  2-4 capitalised words stands right before an e-mail address (`Copyright: 2004 Jane Roe
  <jr@example.org>`), with organisation words (Inc, Foundation, Project, Maintainers...), all-caps words and titles
  (Dr.) ruled out;
- sentences: the man pages under /usr/share/man (roff stripped, as `_corpus.py` does), split
  into sentences of 6-40 words; sentences about authors, copyright or bug reports, and any that
  contain a word of a copyright name, are left out, so that a name already in them is rare.

A seeded generator makes `--cases` texts: half carry one real name placed in one real sentence
(it replaces "the user"/"you" where the sentence has one, otherwise one of a few support-style
frames: "Hi, I am NAME.", "Thanks, NAME", "NAME wrote:", "(reported by NAME)"), half are real
sentences with no name. Each detector then sees every text:
- recall: planted names whose every letter is inside a found PERSON span;
- precision: found PERSON spans that overlap a planted name (a span in a name-free sentence,
  or elsewhere in the sentence, is a false positive), with 95% Wilson intervals;
- speed: characters per second over all texts, after one untimed warm-up pass.
The regex-only step runs in the same process on the same texts. Goal: recall >= 0.90 at
precision >= 0.85.
"""

import argparse
import datetime
import json
import os
import platform
import random
import re
import time
from pathlib import Path

from _corpus import MAN_ROOT, _read

from tailorlm.data.steps.pii import Redactor
from tailorlm.eval.stats import wilson_ci

GOAL_RECALL, GOAL_PRECISION = 0.90, 0.85
_ORG = re.compile(r"\b(Inc|Ltd|LLC|GmbH|Foundation|Software|Project|Team|University|Corporation|Corp|Company|"
                  r"Association|Institute|Contributors|Authors|Developers|Technologies|Systems|Group|Labs?|"
                  r"Organization|Society|Consortium|Limited|Others|Debian|Ubuntu|Free|Public|Interest|The|Maintainers|"
                  r"Ecosystem|List|Networks|Open|Source|GNU|Community|Packagers|Translators|Mailing)\b", re.I)
_NAME_BEFORE_MAIL = re.compile(r"(?:^|[:\s])((?:[A-ZÀ-Þ][\w'’-]*\.? ){1,3}[A-ZÀ-Þ][\w'’-]+)\s*<[^@>\s]+@[^>\s]+>")
_TITLE = re.compile(r"^(?:Dr|Prof|Mr|Mrs|Ms)\. ")
# A name's words are capitalised words or initials; all-caps words ("EPFL", "ICA") are affiliations.
_WORD = re.compile(r"^(?:[A-ZÀ-Þ][\w'’-]*[a-zß-ÿ][\w'’-]*|[A-ZÀ-Þ]\.?)$")
_SKIP = re.compile(r"author|copyright|written by|maintain|contribut|thank|report|bug|licen[cs]e|@|http", re.I)
_FRAMES = ["Hi, I am {name}. {s}", "{s} Thanks, {name}", "{name} wrote: {s}", "{s} (reported by {name})",
           "Dear {name}, {s}", "{s} -- {name}"]


def copyright_names() -> list[str]:
    names = set()
    for path in sorted(Path("/usr/share/doc").glob("*/copyright")):
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for line in text.splitlines():
            for m in _NAME_BEFORE_MAIL.finditer(line):
                name = _TITLE.sub("", m.group(1)).strip()  # "Dr." is not part of the name a model should find
                parts = name.split()
                if 2 <= len(parts) <= 4 and not _ORG.search(name) and all(_WORD.match(p) for p in parts):
                    names.add(name)
    return sorted(names)


def man_sentences(name_words: set[str], limit: int = 4000) -> list[str]:
    out: list[str] = []
    pages = sorted(p for d in sorted(MAN_ROOT.glob("man[1-8]")) for p in d.glob("*.gz") if not p.is_symlink())
    random.Random(1).shuffle(pages)
    for page in pages:
        text = _read(page)
        if text is None:
            continue
        flat = " ".join(text.split())
        for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", flat):
            words = s.split()
            if 6 <= len(words) <= 40 and s.endswith(".") and not _SKIP.search(s) and not name_words & set(words):
                out.append(s)
        if len(out) >= limit:
            break
    return out


def make_cases(n: int, seed: int) -> tuple[list[dict], dict]:
    names = copyright_names()
    name_words = {w for name in names for w in name.split()}
    sentences = man_sentences(name_words)
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        s = rng.choice(sentences)
        if i % 2:
            cases.append({"text": s, "names": [], "placement": None})
            continue
        name = rng.choice(names)
        spot = re.search(r"\b(the user|you)\b", s)
        if spot and rng.random() < 0.5:
            text, placement = s[:spot.start()] + name + s[spot.end():], "in the sentence"
        else:
            text, placement = rng.choice(_FRAMES).format(name=name, s=s), "in a frame"
        start = text.index(name)
        cases.append({"text": text, "names": [(start, start + len(name))], "placement": placement})
    about = {"copyright_names": len(names), "man_sentences": len(sentences), "cases": n,
             "cases_with_a_name": sum(bool(c["names"]) for c in cases), "seed": seed}
    return cases, about


def wilson(k: int, n: int) -> list[float]:
    """95% Wilson interval of k/n, from the library's eval statistics."""
    if n == 0:
        return [0.0, 1.0]
    ci = wilson_ci(k, n)
    return [round(ci["low"], 4), round(ci["high"], 4)]


def score(cases: list[dict], found: list[list]) -> dict:
    planted = hit = spans = right = 0
    misses, false_pos = [], []
    for case, matches in zip(cases, found):
        people = [(m.start, m.end) for m in matches if m.type == "PERSON"]
        for a, b in case["names"]:
            planted += 1
            if _recalled(case, matches):  # one name per case
                hit += 1
            elif len(misses) < 8:
                misses.append(case["text"][a:b])
        for s, e in people:
            spans += 1
            if any(s < b and a < e for a, b in case["names"]):
                right += 1
            elif len(false_pos) < 8:
                false_pos.append(case["text"][s:e])
    by_placement = {}
    for where in ("in the sentence", "in a frame"):
        mine = [(c, ms) for c, ms in zip(cases, found) if c["placement"] == where]
        k = sum(_recalled(c, ms) for c, ms in mine)
        by_placement[where] = {"planted": len(mine), "recall": round(k / len(mine), 4) if mine else None,
                               "recall_ci95": wilson(k, len(mine))}
    return {"recall_by_placement": by_placement, "planted": planted, "recalled": hit, "recall": round(hit / planted, 4) if planted else None,
            "recall_ci95": wilson(hit, planted), "person_spans": spans, "correct_spans": right,
            "precision": round(right / spans, 4) if spans else None, "precision_ci95": wilson(right, spans),
            "missed_examples": misses, "false_positive_examples": false_pos}


def _recalled(case: dict, matches: list) -> bool:
    people = [(m.start, m.end) for m in matches if m.type == "PERSON"]
    return all(any(s <= i < e for s, e in people) for a, b in case["names"] for i in range(a, b)
               if case["text"][i].isalpha())


def run(redactor: Redactor, cases: list[dict]) -> dict:
    texts = [c["text"] for c in cases]
    redactor.find(texts[:50])  # warm-up: model load, first batches
    start = time.perf_counter()
    found = redactor.find(texts)
    seconds = time.perf_counter() - start
    out = score(cases, found)
    out.update(seconds=round(seconds, 3), chars_per_s=round(sum(map(len, texts)) / seconds))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1000, help="Texts to generate; half carry a planted name.")
    ap.add_argument("--seed", type=int, default=0, help="Seed of the case generator.")
    ap.add_argument("--model", action="append", default=[],
                    help="Another spaCy pipeline folder to compare (repeatable); the embedded sm and md always run.")
    ap.add_argument("--json", action="store_true", help="Print one JSON object instead of text.")
    args = ap.parse_args()

    cases, about = make_cases(args.cases, args.seed)
    detectors = {"regex only (names: off)": Redactor(names="off"),
                 "ner en-core-web-sm": Redactor(names="ner", ner_model="en-core-web-sm"),
                 "ner en-core-web-md (default)": Redactor(names="ner", ner_model="en-core-web-md")}
    detectors.update({f"ner {m}": Redactor(names="ner", ner_model=m) for m in args.model})
    results = {name: run(r, cases) for name, r in detectors.items()}
    for r in results.values():
        r["meets_goal"] = bool(r["recall"] and r["precision"] and r["recall"] >= GOAL_RECALL
                               and r["precision"] >= GOAL_PRECISION)
    out = {"benchmark": "pii_names", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()}, "data": about,
           "goal": {"recall": GOAL_RECALL, "precision": GOAL_PRECISION}, "results": results}
    if args.json:
        print(json.dumps(out, indent=1, ensure_ascii=False))
        return
    print(f"PII names on real text: {about['copyright_names']} names from /usr/share/doc/*/copyright, "
          f"{about['man_sentences']} man-page sentences; {about['cases']} texts ({about['cases_with_a_name']} with a "
          f"planted name), seed {about['seed']}; {out['machine']['platform']}, {out['date']}")
    for name, r in results.items():
        p = "n/a" if r["precision"] is None else f"{r['precision']:.3f} {r['precision_ci95']}"
        print(f"  {name:<28} recall {r['recall']:.3f} {r['recall_ci95']}  precision {p}  "
              f"({r['person_spans']} spans)  {r['chars_per_s']:,} chars/s  goal {'met' if r['meets_goal'] else 'NOT met'}")
        if r["person_spans"]:
            print("    recall by placement: " + "; ".join(f"{k} {v['recall']:.3f} {v['recall_ci95']} (n={v['planted']})"
                                                      for k, v in r["recall_by_placement"].items()))
            print(f"    missed e.g. {r['missed_examples'][:5]}; false positives e.g. {r['false_positive_examples'][:5]}")


if __name__ == "__main__":
    main()
