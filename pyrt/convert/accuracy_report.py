"""The converter's quality pass: the mixed-precision plan (--target-bpw / --target-quality) before
the tensors are written, and the end-to-end accuracy report after: the converted model against the
source weights on the evaluation texts, stored in the file's metadata under report["accuracy"].

Holding the source values in memory is what both need; a plain conversion without either keeps
the converter's one-tensor-at-a-time memory bound."""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import UnsupportedError
from ..quality import describe_texts, evaluation_sentences, evaluation_text, make_probe, parse_quality_target
from ..tensor import Tensor
from .plan import Candidate, Plan, Quantizer, plan_mixed_precision
from .readers import Source, SourceTensor
from .rules import Rule, choose
from .source_model import SourceModel, model_kind


def default_texts(kind: str) -> list[str]:
    return evaluation_sentences() if kind == "encoder" else [evaluation_text()]


def calibration_or_default(texts: Sequence[str] | None) -> tuple[list[str], str]:
    if texts is not None:
        return list(texts), "user"
    from ..calibration import default_calibration_texts

    return default_calibration_texts(), "pyrt default (pyrt/data/calibration)"


class QualityPass:
    """One conversion's plan and accuracy measurement (inactive when neither is asked for)."""

    def __init__(self, source: Source, *, target_bpw: float | None, target_quality: str | None, accuracy: bool,
                 calibration_texts: Sequence[str] | None, evaluation_texts: Sequence[str] | None,
                 quantizer: Quantizer, loader: Callable[[SourceTensor], np.ndarray], user_rules: Sequence[Rule] = (),
                 progress: Callable[[str], None] | None = None):
        self.targeted = target_bpw is not None or target_quality is not None
        self.active = accuracy or self.targeted
        self.model: SourceModel | None = None
        self.plan: Plan | None = None
        self.skipped: str | None = None
        self.kept: dict[str, Tensor] = {}
        self.calibration: dict[str, Any] | None = None
        self.evaluation_texts = list(evaluation_texts) if evaluation_texts is not None else None
        if not self.active:
            return
        if model_kind(source) is None:
            if self.targeted:
                raise UnsupportedError(f"{source.path.name}: --target-bpw/--target-quality need a model pyrt can run "
                                       "(a BERT sentence encoder or a Llama GGUF decoder)")
            self.active, self.skipped = False, "not measured: pyrt runs no model of this architecture"
            return
        target = parse_quality_target(target_quality) if target_quality is not None else None
        self.model = SourceModel.from_source(source, loader)
        if self.targeted:
            texts, name = calibration_or_default(calibration_texts)
            self.calibration = describe_texts(name, texts)
            fixed = {}
            for name in self.model.plannable():  # tensors the user's rules decide are not planned
                if any(r.pattern.search(name) for r in user_rules):
                    c = choose(name, self.model.arrays[name].shape, "f16", 32, tuple(user_rules))
                    fixed[name] = Candidate(c.dtype, c.block)
            self.plan = plan_mixed_precision(self.model, texts, target_bpw=target_bpw, target_quality=target,
                                             quantizer=quantizer, progress=progress, fixed=fixed)

    def values(self, name: str) -> np.ndarray | None:
        """The source values already in memory (None: the converter loads them)."""
        return None if self.model is None else self.model.arrays.get(name)

    def rules(self) -> list[str]:
        return self.plan.rules() if self.plan else []

    def annotate(self, row: dict[str, Any], stored: Tensor) -> None:
        """Adds the plan's sensitivity figures to a report row; keeps the stored tensor to measure."""
        if self.active:
            self.kept[row["name"]] = stored
        info = self.plan.tensor_info().get(row["name"]) if self.plan else None
        row["sensitivity"] = None if info is None else info["sensitivity"]
        if info is not None:
            row["plan_group"], row["predicted_loss"] = info["group"], info["predicted_loss"]

    def finish(self) -> dict[str, Any]:
        """The report's "accuracy" section."""
        if not self.active or self.model is None:
            return {"measured": False, "reason": self.skipped or "not requested (--no-accuracy)"}
        start = time.perf_counter()
        texts = self.evaluation_texts if self.evaluation_texts is not None else default_texts(self.model.kind)
        reference = self.model.reference_tensors()
        probe = make_probe(self.model.kind, self.model.build(reference), texts)
        metrics = probe.measure(self.model.build({**reference, **self.kept}))
        section = {"measured": True, "kind": self.model.kind, "metrics": metrics,
                   "reference": "source weights, every tensor in f32",
                   "evaluation": describe_texts("user" if self.evaluation_texts is not None else
                                                "pyrt default (pyrt/data/evaluation)", texts),
                   "calibration": self.calibration, "seconds": time.perf_counter() - start}
        if self.plan is not None:
            section["plan"] = self.plan.summary()
        self.kept.clear()
        return section
