"""Automatic mixed precision: a format (and block) per tensor, from each tensor's measured
end-to-end sensitivity, under a bits budget (`--target-bpw`) or for a quality bar
(`--target-quality`).

1. Sensitivity: for each group of tensors (one tensor, or for big models one layer kind over a
   range of layers), the model runs on calibration text with only that group quantized to a probe
   format (the coarsest candidate) and everything else at source precision; the output change
   (1 - mean cosine for encoders, mean KL for decoders) is the group's measured loss. The loss of
   the other candidates is that measurement scaled by their squared weight error relative to the
   probe's (output changes grow with the square of small weight perturbations), so each group
   costs one model run, not one per candidate.
2. Allocation: per group the candidates on the lower convex hull of (bits, loss); all groups start
   at their cheapest point and the upgrade with the largest loss drop per bit goes next (the
   optimum of the Lagrangian relaxation of the knapsack) until the budget is spent.
3. Checks, measured for real on the calibration probe: the plan against every uniform candidate
   that fits the same budget (a uniform format wins if it measures better), and for a quality
   target a bisection along the upgrade path for the smallest plan that meets it.

The result is applied by the converter as exact-name --rule overrides (:meth:`Plan.rules`).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import DtypeError, RangeError
from ..formats import BLOCK_SIZES, FORMATS, format_info
from ..quality import Probe, QualityTarget, make_probe
from ..tensor import Tensor, quantize
from .source_model import SourceModel

Quantizer = Callable[[str, np.ndarray, str, int], Tensor]
EXCLUDED_FORMATS = ("f32", "bf16")
DEFAULT_BLOCKS = BLOCK_SIZES   # never smaller than f16 at the same accuracy for these weights
PER_TENSOR_LIMIT = 64               # more plannable tensors than this: group them (layer kind x layer range)
MAX_GROUPS = 24
CALIBRATION_SENTENCES = 32          # encoder probe size: bounds the sensitivity pass
CALIBRATION_TOKENS = 160            # decoder probe size
ERROR_ROWS = 256                    # rows per tensor used to estimate a candidate's weight error
CACHE_BYTES = 512 << 20             # quantized tensors kept between trials


@dataclass(frozen=True)
class Candidate:
    dtype: str
    block: int = 1

    @property
    def bits(self) -> float:
        return format_info(self.dtype).bits_per_weight(self.block)

    @property
    def label(self) -> str:
        return self.dtype + (f"/{self.block}" if format_info(self.dtype).blocked else "")

    def fits(self, shape: Sequence[int]) -> bool:
        return not format_info(self.dtype).blocked or shape[-1] % self.block == 0

    def rule(self, name: str) -> str:
        return f"^{re.escape(name)}$={self.dtype}" + (f":{self.block}" if format_info(self.dtype).blocked else "")


def candidates(formats: Sequence[str] | None = None, blocks: Sequence[int] | None = None) -> list[Candidate]:
    """Every (format, block) the planner may choose: by default each format pyrt.formats lists
    except f32/bf16, the q-formats at every block size."""
    names = list(formats) if formats else [f for f in FORMATS if f not in EXCLUDED_FORMATS]
    out = []
    for name in names:
        info = format_info(name)
        out += [Candidate(name, b) for b in blocks or DEFAULT_BLOCKS] if info.blocked else [Candidate(name)]
    if not out:
        raise DtypeError("no candidate formats")
    return out


@dataclass
class Group:
    name: str
    tensors: list[str]


def make_groups(names: Sequence[str], max_groups: int = MAX_GROUPS,
                per_tensor_limit: int = PER_TENSOR_LIMIT) -> list[Group]:
    """One group per tensor for small models; else one per layer kind ("blk.#.attn_q.weight") and
    range of layers, at most about ``max_groups``."""
    if len(names) <= per_tensor_limit:
        return [Group(n, [n]) for n in names]
    kinds: dict[str, list[str]] = {}
    for n in names:
        kinds.setdefault(re.sub(r"\d+", "#", n), []).append(n)
    buckets = max(1, max_groups // len(kinds))
    groups = []
    for kind, members in kinds.items():
        layers = sorted({int(m.group()) for n in members if (m := re.search(r"\d+", n))})
        if len(layers) <= 1:
            groups.append(Group(kind, members))
            continue
        parts: dict[int, list[str]] = {}
        for n in members:
            layer = int(re.search(r"\d+", n).group())
            parts.setdefault(layers.index(layer) * buckets // len(layers), []).append(n)
        for part, tensors in sorted(parts.items()):
            groups.append(Group(f"{kind} [{part + 1}/{buckets}]", tensors))
    return groups


@dataclass
class Option:
    candidate: Candidate
    bits: float      # total bits of the group's tensors
    loss: float      # predicted end-to-end loss with the group in this format


@dataclass
class GroupCost:
    group: Group
    elements: int
    sensitivity: float            # measured loss at the probe format
    probe: Candidate
    options: list[Option]         # lower convex hull, bits ascending
    errors: dict[str, float]      # relative weight error (Frobenius) per candidate label


@dataclass
class Plan:
    choice: dict[str, Candidate]                 # tensor name -> chosen candidate
    costs: list[GroupCost]
    bits_per_weight: float                       # whole model, fixed tensors included
    calibration: dict[str, Any]                  # measured metrics on the calibration probe
    log: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def rules(self) -> list[str]:
        return [c.rule(n) for n, c in self.choice.items()]

    def tensor_info(self) -> dict[str, dict[str, Any]]:
        """Per tensor: the group's measured sensitivity and the chosen format's predicted loss."""
        out = {}
        for cost in self.costs:
            for name in cost.group.tensors:
                c = self.choice[name]
                loss = next((o.loss for o in cost.options if o.candidate == c), None)
                out[name] = {"group": cost.group.name, "sensitivity": cost.sensitivity, "probe": cost.probe.label,
                             "predicted_loss": loss}
        return out

    def summary(self) -> dict[str, Any]:
        formats: dict[str, int] = {}
        for c in self.choice.values():
            formats[c.label] = formats.get(c.label, 0) + 1
        return {"bits_per_weight": self.bits_per_weight, "formats": formats, "calibration_metrics": self.calibration,
                "groups": len(self.costs), "seconds": self.seconds, "log": self.log}


def _lower_hull(options: list[Option]) -> list[Option]:
    """The options no mix of others beats: bits ascending, loss strictly decreasing, convex."""
    pts = sorted(options, key=lambda o: (o.bits, o.loss))
    front: list[Option] = []
    for o in pts:
        if front and o.loss >= front[-1].loss:
            continue  # costs more bits for no less loss
        while len(front) >= 2:
            a, b = front[-2], front[-1]
            # b is above the segment a -> o: drop it
            if (b.loss - a.loss) * (o.bits - a.bits) >= (o.loss - a.loss) * (b.bits - a.bits):
                front.pop()
            else:
                break
        front.append(o)
    return front


class Planner:
    """Measures sensitivities once; then plans for any budget or quality target."""

    def __init__(self, model: SourceModel, calibration_texts: Sequence[str], *,
                 candidate_list: Sequence[Candidate] | None = None, quantizer: Quantizer | None = None,
                 max_groups: int = MAX_GROUPS, probe_size: int | None = None,
                 fixed: Mapping[str, Candidate] | None = None,
                 progress: Callable[[str], None] | None = None):
        start = time.perf_counter()
        self.model = model
        self.candidates = list(candidate_list or candidates())
        self.quantizer = quantizer or (lambda name, x, dtype, block: quantize(x, dtype, block))
        self.progress = progress or (lambda message: None)
        self.reference = model.reference_tensors()
        self._cache: dict[tuple[str, Candidate], Tensor] = {}
        self._cached_bytes = 0
        self.fixed = dict(fixed or {})  # chosen by the user's rules: measured with, never planned
        self.probe = self._calibration_probe(calibration_texts, probe_size)
        names = [n for n in model.plannable() if n not in self.fixed]
        unplanned = set(model.arrays) - set(names) - set(self.fixed)  # kept at their default (f32)
        self.fixed_bits = sum(8 * self.reference[n].nbytes for n in unplanned)
        self.fixed_bits += sum(c.bits * model.arrays[n].size for n, c in self.fixed.items())
        self.elements = model.elements
        self.costs = [self._measure_group(g) for g in make_groups(names, max_groups)]
        self.sensitivity_seconds = time.perf_counter() - start

    # -- measurement -------------------------------------------------------------------------

    def _calibration_probe(self, texts: Sequence[str], size: int | None) -> Probe:
        """Evenly spaced calibration sentences (encoders) or the first tokens (decoders): their
        count bounds the time of every trial."""
        texts = [t for t in texts if t.strip()]
        if not texts:
            raise DtypeError("the calibration text is empty")
        if self.model.kind == "decoder":
            return make_probe("decoder", self.model.build(self.reference), texts, size or CALIBRATION_TOKENS)
        size = size or CALIBRATION_SENTENCES
        if len(texts) > size:
            texts = [texts[int(i * len(texts) / size)] for i in range(size)]
        return make_probe("encoder", self.model.build(self.reference), texts)

    def stored(self, name: str, c: Candidate) -> Tensor:
        key = (name, c)
        if key in self._cache:
            return self._cache[key]
        t = self.quantizer(name, self.model.arrays[name], c.dtype, c.block)
        if self._cached_bytes + t.nbytes <= CACHE_BYTES:
            self._cache[key] = t
            self._cached_bytes += t.nbytes
        return t

    def measure(self, choice: Mapping[str, Candidate], probe: Probe | None = None) -> dict[str, Any]:
        """The probe's metrics of the source model with ``choice``'s tensors quantized."""
        tensors = dict(self.reference)
        for name, c in {**self.fixed, **choice}.items():
            tensors[name] = self.stored(name, c)
        return (probe or self.probe).measure(self.model.build(tensors))

    def _sq_error(self, name: str, c: Candidate) -> tuple[float, float]:
        """(squared error, squared norm) of ``name`` stored as ``c``, from evenly spaced rows."""
        x = self.model.arrays[name]
        rows = x.reshape(-1, x.shape[-1])
        if len(rows) > ERROR_ROWS:
            rows = rows[np.linspace(0, len(rows) - 1, ERROR_ROWS).astype(np.int64)]
        scale = x.size / rows.size
        got = self.quantizer(name, rows, c.dtype, c.block).dequantize().astype(np.float64)
        ref = rows.astype(np.float64)
        return scale * float(((got - ref) ** 2).sum()), scale * float((ref ** 2).sum())

    def _measure_group(self, group: Group) -> GroupCost:
        shapes = [self.model.arrays[n].shape for n in group.tensors]
        fitting = [c for c in self.candidates if all(c.fits(s) for s in shapes)]
        if not fitting:
            raise DtypeError(f"no candidate format fits the tensors of {group.name}")
        errors = {}
        for c in fitting:
            parts = [self._sq_error(n, c) for n in group.tensors]
            errors[c] = (sum(p[0] for p in parts), sum(p[1] for p in parts))
        probe = min(fitting, key=lambda c: (c.bits, -errors[c][0]))
        loss = max(self.probe.loss(self.measure({n: probe for n in group.tensors})), 0.0)
        elements = sum(self.model.arrays[n].size for n in group.tensors)
        ref_err = errors[probe][0]
        options = [Option(c, c.bits * elements, loss * (errors[c][0] / ref_err if ref_err > 0 else 0.0))
                   for c in fitting]
        self.progress(f"{group.name}: {probe.label} loss {loss:.3e}")
        return GroupCost(group, elements, loss, probe, _lower_hull(options),
                         {c.label: (e / n) ** 0.5 if n > 0 else 0.0 for c, (e, n) in errors.items()})

    # -- allocation --------------------------------------------------------------------------

    def _events(self) -> list[tuple[float, int, int]]:
        """(loss drop per bit, group, hull index reached), best first."""
        events = []
        for g, cost in enumerate(self.costs):
            for i in range(1, len(cost.options)):
                a, b = cost.options[i - 1], cost.options[i]
                events.append(((a.loss - b.loss) / (b.bits - a.bits), g, i))
        return sorted(events, key=lambda e: -e[0])

    def _choice(self, index: Sequence[int]) -> dict[str, Candidate]:
        return {n: cost.options[i].candidate for cost, i in zip(self.costs, index) for n in cost.group.tensors}

    def _bits(self, index: Sequence[int]) -> float:
        return self.fixed_bits + sum(cost.options[i].bits for cost, i in zip(self.costs, index))

    def min_bpw(self) -> float:
        return self._bits([0] * len(self.costs)) / self.elements

    def allocate(self, bpw: float) -> list[int]:
        """Hull indices per group: the least predicted loss within ``bpw`` bits per weight."""
        budget = bpw * self.elements
        index = [0] * len(self.costs)
        if self._bits(index) > budget + 1e-6:
            raise RangeError(f"{bpw} bits/weight is below the smallest plan ({self.min_bpw():.3f})")
        bits = self._bits(index)
        for _, g, i in self._events():
            if index[g] >= i:
                continue
            step = self.costs[g].options[i].bits - self.costs[g].options[index[g]].bits
            if bits + step <= budget + 1e-6:
                index[g], bits = i, bits + step
        return index

    def path(self) -> list[list[int]]:
        """The allocations along the greedy upgrade path, smallest first."""
        index = [0] * len(self.costs)
        states = [list(index)]
        for _, g, i in self._events():
            if index[g] < i:
                index[g] = i
                states.append(list(index))
        return states

    def _uniform(self, c: Candidate) -> dict[str, Candidate] | None:
        if not all(self._fits_group(cost, c) for cost in self.costs):
            return None
        return {n: c for cost in self.costs for n in cost.group.tensors}

    def _fits_group(self, cost: GroupCost, c: Candidate) -> bool:
        return c in self.candidates and all(c.fits(self.model.arrays[n].shape) for n in cost.group.tensors)

    def _uniform_bpw(self, c: Candidate) -> float:
        return (self.fixed_bits + sum(c.bits * cost.elements for cost in self.costs)) / self.elements

    def _uniform_rivals(self, bpw: float) -> list[Candidate]:
        """Per format, the uniform candidate with the most bits within ``bpw`` (a finer block of the
        same format is never worse, so the coarser ones need no run)."""
        best: dict[str, Candidate] = {}
        for c in self.candidates:
            if self._uniform(c) is None or self._uniform_bpw(c) > bpw + 1e-9:
                continue
            if c.dtype not in best or c.bits > best[c.dtype].bits:
                best[c.dtype] = c
        return list(best.values())

    def _plan(self, choice: dict[str, Candidate], metrics: dict[str, Any], log: list[str], start: float) -> Plan:
        bits = self.fixed_bits + sum(c.bits * self.model.arrays[n].size for n, c in choice.items())
        return Plan(choice, self.costs, bits / self.elements, metrics, log,
                    self.sensitivity_seconds + time.perf_counter() - start)

    def for_bpw(self, bpw: float) -> Plan:
        """The plan with the best measured quality within ``bpw`` bits per weight."""
        start = time.perf_counter()
        choice = self._choice(self.allocate(bpw))
        metrics = self.measure(choice)
        log = [f"mixed plan: loss {self.probe.loss(metrics):.3e} on the calibration text"]
        for c in self._uniform_rivals(bpw):
            m = self.measure(self._uniform(c))
            log.append(f"uniform {c.label}: loss {self.probe.loss(m):.3e}")
            if self.probe.loss(m) < self.probe.loss(metrics):
                choice, metrics = self._uniform(c), m
                log.append(f"uniform {c.label} measures better than the mixed plan: taken")
        return self._plan(choice, metrics, log, start)

    def for_quality(self, target: QualityTarget) -> Plan:
        """The smallest plan along the upgrade path (or uniform candidate) that meets ``target``
        on the calibration text."""
        if target.kind != self.model.kind:
            raise DtypeError(f"quality target {target.text!r} is for {target.kind}s; this model is a {self.model.kind}")
        start = time.perf_counter()
        states = self.path()
        lo, hi = 0, len(states) - 1
        best = self.measure(self._choice(states[hi]))
        if not target.met(best):
            raise RangeError(f"quality target {target.text} cannot be met by the candidates: the best plan "
                             f"measures {target.metric} = {best[target.metric]:.5g} on the calibration text")
        found = (hi, best)
        log = []
        while lo < hi:
            mid = (lo + hi) // 2
            m = self.measure(self._choice(states[mid]))
            log.append(f"path step {mid}: {self._bits(states[mid]) / self.elements:.3f} bpw, "
                       f"{target.metric} {m[target.metric]:.5g}")
            if target.met(m):
                hi, found = mid, (mid, m)
            else:
                lo = mid + 1
        if found[0] != lo:
            found = (lo, self.measure(self._choice(states[lo])))
        choice, metrics = self._choice(states[found[0]]), found[1]
        bits = self._bits(states[found[0]]) / self.elements
        for c in sorted(self.candidates, key=lambda c: c.bits):
            uniform = self._uniform(c)
            if uniform is None or self._uniform_bpw(c) >= bits:
                continue
            m = self.measure(uniform)
            if target.met(m):
                log.append(f"uniform {c.label} meets the target with fewer bits: taken")
                choice, metrics = uniform, m
                break
        return self._plan(choice, metrics, log, start)


def plan_mixed_precision(model: SourceModel, calibration_texts: Sequence[str], *, target_bpw: float | None = None,
                         target_quality: QualityTarget | None = None, **planner_options: Any) -> Plan:
    """One plan for ``target_bpw`` or ``target_quality`` (exactly one of them)."""
    if (target_bpw is None) == (target_quality is None):
        raise DtypeError("give exactly one of target_bpw and target_quality")
    planner = Planner(model, calibration_texts, **planner_options)
    return planner.for_bpw(target_bpw) if target_bpw is not None else planner.for_quality(target_quality)
