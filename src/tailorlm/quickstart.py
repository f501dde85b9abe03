"""The README's main job: an example project, answered by the embedded model, offline.

It copies the example project that ships with Tailor (a fictional company's documents, support
tickets and golden questions) into a folder, then answers a few of its golden questions with the
zero-shot rung, the cheapest one, and shows each answer beside the reference. The rungs above
it (few-shot, RAG, fine-tuning) are what the rest of Tailor measures.
"""

import json
import shutil
import time
from importlib import resources
from pathlib import Path

from tailorlm.errors import TailorError

EXAMPLE = "support"


def example_dir(name: str = EXAMPLE) -> Path:
    return Path(str(resources.files("tailorlm") / "examples" / name))


def create_example(path: Path, name: str = EXAMPLE) -> Path:
    """Copy the shipped example project to `path`, unless a project is already there."""
    path = Path(path)
    if (path / "tailor.yaml").exists():
        return path
    if path.exists() and any(path.iterdir()):
        raise TailorError(f"{path} exists and is not a Tailor project; choose an empty or new folder")
    try:
        shutil.copytree(example_dir(name), path, dirs_exist_ok=True)
    except OSError as e:
        raise TailorError(f"cannot create the example project in {path}: {e.strerror or e}") from e
    return path


def run_quickstart(path: Path | str = "tailor-quickstart", n_questions: int = 3, log=print) -> dict:
    """Create the example project at `path` and answer `n_questions` golden questions zero-shot.

    >>> run_quickstart("demo", n_questions=1)["answers"][0]["question"]  # doctest: +SKIP
    'How long are deleted files kept on the Team plan?'
    """
    from tailorlm.chat import chat_messages, system_prompt
    from tailorlm.generate import read_requests
    from tailorlm.models import get_generator
    from tailorlm.models.base import GenParams
    from tailorlm.project import Project

    started = time.perf_counter()
    root = create_example(Path(path))
    project = Project.load(root)
    project.store  # state folder and database, checked writable before any model work
    log(f"[1/3] example project ready: {project.root}")

    cfg = project.config.models.generator
    log(f"[2/3] loading the generator {cfg.model} (first use fetches and converts it once)")
    gen = get_generator(cfg)

    questions, _ = read_requests(project.root / "questions.jsonl")
    questions = questions[:n_questions]
    system = system_prompt(project.config.task)
    log(f"[3/3] answering {len(questions)} golden questions with the zero-shot rung")
    completions = gen.generate_batch([chat_messages(system) + q.messages for q in questions],
                                     GenParams(max_tokens=96), batch_size=len(questions))
    answers = []
    for q, c in zip(questions, completions):
        answers.append({"id": q.id, "question": q.messages[-1]["content"], "answer": c.text.strip(),
                        "reference": q.reference, "completion_tokens": c.usage.completion_tokens})
        log(f"\nQ: {answers[-1]['question']}\nA: {answers[-1]['answer']}\n   (reference: {q.reference})")
    report = project.artifacts("reports") / "quickstart.jsonl"
    report.write_text("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in answers))
    elapsed = time.perf_counter() - started
    log(f"\nDone in {elapsed:.0f} s. Answers saved to {report}")
    log("A 135M model answering zero-shot knows nothing about this company: that is the bottom rung. "
        "Few-shot, RAG and fine-tuning are the rungs above it.")
    return {"project": str(project.root), "rung": "zero_shot", "model": cfg.model, "n": len(answers),
            "answers": answers, "report": str(report), "seconds": round(elapsed, 1)}
