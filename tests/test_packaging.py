"""The built wheel carries every file the package opens at run time.

`pip install -e` reads the source tree, so a file missing from `package-data` only shows after a plain
`pip install .` (issue 16: `tailor init` could not find templates/tailor.yaml). This builds the
wheel from a copy of the source tree and reads its RECORD. With the environment's setuptools
(`--no-build-isolation`, falling back to pip's isolated build) it takes a few seconds and needs no
network, so it runs with the rest of the suite in CI; .ci/run also installs the wheel in a fresh
venv and runs scripts/newcomer_smoke.sh there.
"""

import csv
import io
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "tailorlm"
# Files the code opens through importlib.resources; the walk below also catches new ones.
OPENED = ["templates/tailor.yaml", "suites/general.jsonl", "examples/support/tailor.yaml",
          "examples/support/prompts/default.md",
          # the workbench (tailor ui): its templates and its only assets; no CDN at run time
          "ui/templates/base.html", "ui/templates/pair_rate.html", "ui/static/tailor.css", "ui/static/tailor.js"]


def _data_files() -> list[str]:
    """Every non-Python file under src/tailorlm: templates, examples, suites, prompts, assets."""
    return sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".py", ".pyc"))


@pytest.fixture(scope="module")
def wheel_record(tmp_path_factory) -> set[str]:
    # A copy, so the build's build/ and egg-info folders never touch the shared working tree.
    tree = tmp_path_factory.mktemp("tree")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(PACKAGE, tree / "src" / "tailorlm", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path_factory.mktemp("dist")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(tree)]
    out = subprocess.run(build + ["--no-build-isolation"], capture_output=True, text=True)
    if out.returncode != 0:  # no (recent enough) setuptools here: let pip fetch the build requirements
        out = subprocess.run(build, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    [wheel] = dist.glob("tailorlm-*.whl")
    with zipfile.ZipFile(wheel) as z:
        record = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
        rows = csv.reader(io.StringIO(z.read(record).decode()))
        return {row[0] for row in rows if row}


def test_the_wheel_records_every_data_file_of_the_package(wheel_record):
    files = _data_files()
    assert set(OPENED) <= set(files), "a file the code opens is gone from the source tree"
    missing = [f for f in files if f"tailorlm/{f}" not in wheel_record]
    assert not missing, f"not in the wheel (fix [tool.setuptools.package-data]): {missing}"


def test_the_wheel_records_every_module_and_the_entry_point(wheel_record):
    modules = sorted(p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.rglob("*.py")
                     if "__pycache__" not in p.parts)
    assert [m for m in modules if m not in wheel_record] == []
    assert any(n.endswith(".dist-info/entry_points.txt") for n in wheel_record)
