"""One loaded base model shared by every model version that adapts it.

The ladder scores several LoRA model versions, and the server answers for all of them at once;
loading a 135M-to-8B base model per version would multiply memory. `ModelPool` loads each base
once, attaches each version's adapter to it under the version's id (peft multi-adapter), and
hands out generators that switch to their adapter (or disable adapters, for the base) for the
length of each decode. Decodes are serialised by one lock per base: a CPU is saturated by one
batched decode anyway, and the server batches requests for the same model together.

Full fine-tunes load as their own model. Generators for OpenAI-compatible backends pass through.
"""

import threading
from contextlib import contextmanager
from pathlib import Path

from tailorlm.models.local import LocalGenerator


class PooledGenerator(LocalGenerator):
    """A LocalGenerator over a shared (possibly peft-wrapped) model, pinned to one adapter or none."""

    def __init__(self, shared: "_Base", adapter: str | None, tokenizer, name: str):
        super().__init__(shared.model, tokenizer, name=name)
        self.shared, self.adapter = shared, adapter

    @contextmanager
    def _pinned(self):
        """The shared model, switched to this generator's adapter (or none) while the block runs."""
        with self.shared.lock:
            self.model = self.shared.model  # the base may have been wrapped by peft since this was made
            if self.shared.peft is None:
                yield
            elif self.adapter is None:
                with self.shared.peft.disable_adapter():
                    yield
            else:
                self.shared.peft.set_adapter(self.adapter)
                yield

    def _decode(self, prompts, params, constraints=None):
        with self._pinned():
            yield from super()._decode(prompts, params, constraints)

    def score_choices(self, conversations, choices):
        with self._pinned():
            return super().score_choices(conversations, choices)


class _Base:
    def __init__(self, generator: LocalGenerator):
        self.generator, self.model, self.peft = generator, generator.model, None
        self.adapters: set[str] = set()
        self.lock = threading.RLock()

    def attach(self, adapter_id: str, path: Path) -> None:
        from peft import PeftModel

        with self.lock:
            if adapter_id in self.adapters:
                return
            if self.peft is None:
                self.peft = PeftModel.from_pretrained(self.model, str(path), adapter_name=adapter_id, is_trainable=False)
                self.model = self.peft.eval()
            else:
                self.peft.load_adapter(str(path), adapter_name=adapter_id, is_trainable=False)
            self.adapters.add(adapter_id)


class ModelPool:
    """Generators for the project's base model and model versions, each base loaded once.

    >>> pool = ModelPool(project)  # doctest: +SKIP
    >>> pool.for_version(registry.model(project, "support:sft@v2").to_dict()).generate(messages)  # doctest: +SKIP
    """

    def __init__(self, project, generator=None):
        self.project = project
        self._injected = generator  # tests and benchmarks hand in an already loaded generator
        self._bases: dict[str, _Base] = {}
        self._full: dict[str, object] = {}
        self._default = None
        self._lock = threading.Lock()

    def default(self):
        """The project's configured generator (local or an OpenAI-compatible endpoint)."""
        if self._default is None:
            cfg = self.project.config.models.generator
            if isinstance(self._injected, LocalGenerator) or (self._injected is None and cfg.backend == "local"):
                base = self._base(cfg.model)
                self._default = PooledGenerator(base, None, base.generator.tokenizer, base.generator.name)
            else:
                from tailorlm.models import get_generator

                self._default = self._injected or get_generator(cfg)
        return self._default

    def _base(self, model: str) -> _Base:
        with self._lock:
            if model not in self._bases:
                cfg = self.project.config.models.generator
                if model == cfg.model and isinstance(self._injected, LocalGenerator):
                    gen = self._injected
                else:
                    gen = LocalGenerator.load(model, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code, quant=cfg.quant)
                self._bases[model] = _Base(gen)
            return self._bases[model]

    def _merged(self, parent_id: str) -> _Base:
        """A base for versions trained from another version: the base with the parent chain's adapters merged
        in (training started from exactly those weights), loaded once per parent."""
        from tailorlm.registry.resolve import model

        key = f"merged:{parent_id}"
        with self._lock:
            if key not in self._bases:
                chain, ref = [], parent_id
                while ref:
                    chain.append(model(self.project, ref).to_dict())
                    ref = chain[-1]["lineage"].get("parent")
                root, cfg = self.project.root, self.project.config.models.generator
                # Full weights already contain everything before them: start from the newest, merge what follows.
                full = next((i for i, v in enumerate(chain) if v.get("weights_path")), len(chain))
                start = str(root / chain[full]["weights_path"]) if full < len(chain) else chain[-1]["base_model"]
                gen = LocalGenerator.load(start, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code, name=parent_id)
                model = gen.model
                for v in reversed(chain[:full]):
                    if v.get("adapter_path"):
                        from peft import PeftModel

                        model = PeftModel.from_pretrained(model, str(root / v["adapter_path"])).merge_and_unload()
                from tailorlm.models.quant import quantize

                # Quantised after merging: adapters cannot be merged into int8 weights.
                self._bases[key] = _Base(LocalGenerator(quantize(model, cfg.quant).eval(), gen.tokenizer, name=parent_id))
            return self._bases[key]

    def for_version(self, version: dict):
        """A generator answering as a registered model version (`registry.model(...).to_dict()`)."""
        from transformers import AutoTokenizer

        root = self.project.root
        if version.get("weights_path"):
            with self._lock:
                if version["id"] not in self._full:
                    cfg = self.project.config.models.generator
                    self._full[version["id"]] = LocalGenerator.load(str(root / version["weights_path"]), dtype=cfg.dtype,
                                                                    name=version["id"], quant=cfg.quant)
            return self._full[version["id"]]
        parent = version.get("lineage", {}).get("parent")
        base = self._merged(parent) if parent else self._base(version["base_model"])
        path = root / version["adapter_path"]
        base.attach(version["id"], path)
        # The tokenizer saved with the adapter carries the chat template and EOS training used.
        tokenizer = AutoTokenizer.from_pretrained(str(path)) if (path / "tokenizer_config.json").exists() else base.generator.tokenizer
        return PooledGenerator(base, version["id"], tokenizer, version["id"])
