"""Which format each tensor gets.

Defaults (docs/format.md, "Conversion rules"):
  * 1-D tensors (biases, norm weights), any tensor whose name says "norm" and relative position
    bias tables (MPNet) stay f32: they are tiny and the model is sensitive to them.
  * Embedding tables take q8 when --dtype is a q-format (their rows are gathered, not multiplied,
    and with tied weights the table is also the output head; q8 keeps that accurate at ~half the
    size of f16), otherwise the requested --dtype.
  * Other 2-D tensors (matmul weights [N, K]) take --dtype; tensors of 3 or more dimensions stay f32.
  * Integer tensors (e.g. BERT's position_ids buffer) are not weights and are skipped (reported).
  * --rule 'REGEX=DTYPE' (or REGEX=DTYPE:BLOCK) overrides all of that: rules are tried in order, the
    first whose regex matches the tensor name (re.search) decides.
Fallbacks, applied after the choice and recorded in the report:
  * q-formats need K % block == 0: a smaller block that divides K is used (128 -> 64 -> 32), else f16.
  * f16 (or a q-format's FP16 scale) cannot hold the tensor's range: bf16 (or stop, if asked).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import DtypeError
from ..formats import BLOCK_SIZES, FORMATS, effective_block

Q_FORMATS = ("q8", "q4", "q4a", "q4n", "q5")
EMBEDDING_DTYPE_FOR_Q = "q8"
NORM_PATTERN = re.compile(r"norm|(^|[._])ln(_?\w*)?([._]|$)", re.IGNORECASE)
# MPNet's [buckets, heads] bias table: a few hundred values, added to every attention score.
RELATIVE_BIAS_PATTERN = re.compile(r"relative_attention_bias")
EMBEDDING_PATTERN = re.compile(
    r"(^|[._])(word_embeddings|position_embeddings|token_type_embeddings|embed_tokens|embed_positions|"
    r"token_embd|tok_embeddings|wte|wpe|embeddings?)([._]|$)", re.IGNORECASE)


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern
    dtype: str
    block: int | None = None

    @property
    def text(self) -> str:
        return f"{self.pattern.pattern}={self.dtype}" + (f":{self.block}" if self.block else "")


@dataclass(frozen=True)
class Choice:
    dtype: str
    block: int
    reason: str


def parse_rule(text: str) -> Rule:
    """'REGEX=DTYPE' or 'REGEX=DTYPE:BLOCK'; the regex may itself contain '=' (split at the last)."""
    regex, sep, target = text.rpartition("=")
    if not sep or not regex:
        raise DtypeError(f"rule {text!r} must look like 'REGEX=DTYPE' (e.g. 'attn=q8')")
    dtype, _, block = target.partition(":")
    if dtype not in FORMATS:
        raise DtypeError(f"rule {text!r}: unknown format {dtype!r} (expected one of {', '.join(FORMATS)})")
    try:
        pattern = re.compile(regex)
    except re.error as exc:
        raise DtypeError(f"rule {text!r}: bad regular expression: {exc}") from exc
    if block:
        if not block.isdigit() or int(block) not in BLOCK_SIZES:
            raise DtypeError(f"rule {text!r}: block must be one of {BLOCK_SIZES}")
        return Rule(pattern, dtype, int(block))
    return Rule(pattern, dtype)


def default_choice(name: str, shape: tuple[int, ...], dtype: str) -> tuple[str, str]:
    if len(shape) < 2:
        return "f32", "1-D: kept f32"
    if RELATIVE_BIAS_PATTERN.search(name):
        return "f32", "relative position bias: kept f32"
    if NORM_PATTERN.search(name):
        return "f32", "norm: kept f32"
    if EMBEDDING_PATTERN.search(name):
        if dtype in Q_FORMATS:
            return EMBEDDING_DTYPE_FOR_Q, f"embedding: {EMBEDDING_DTYPE_FOR_Q} (default for q-formats)"
        return dtype, "embedding"
    if len(shape) == 2:
        return dtype, "matmul weight"
    return "f32", f"{len(shape)}-D: kept f32"


def fit_block(dtype: str, block: int, shape: tuple[int, ...]) -> tuple[str, int, str]:
    """The block actually used: q-formats need the last dimension to be a multiple of it."""
    if dtype not in Q_FORMATS:
        return dtype, 1, ""
    k = shape[-1] if shape else 1
    if k % block == 0:
        return dtype, block, ""
    for smaller in sorted((b for b in BLOCK_SIZES if b < block), reverse=True):
        if k % smaller == 0:
            return dtype, smaller, f"K={k} not a multiple of {block}: block {smaller}"
    return "f16", 1, f"K={k} not a multiple of any block: f16 instead of {dtype}"


def choose(name: str, shape: tuple[int, ...], dtype: str, block: int, rules: tuple[Rule, ...] = ()) -> Choice:
    effective_block(dtype, block)  # validates the requested dtype/block
    for rule in rules:
        if rule.pattern.search(name):
            target, why = rule.dtype, f"rule {rule.text}"
            target_block = rule.block or block
            break
    else:
        target, why = default_choice(name, shape, dtype)
        target_block = block
    target, target_block, note = fit_block(target, target_block, shape)
    return Choice(target, target_block, f"{why}; {note}" if note else why)
