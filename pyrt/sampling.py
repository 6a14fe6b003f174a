"""Per-request token sampling for the decode loop (the batch engine's TokenSampler): penalties,
logit bias, a grammar mask, then greedy or temperature / top-k / top-p / min-p sampling.

No per-token sort of the vocabulary: the candidates of top-k, top-p and min-p are found with
threshold passes over the logits (a compare and a count, much cheaper than np.argpartition on a
49k vocabulary), and only that small candidate set is sorted. A draw from the whole distribution
goes through per-block sums instead of a cumulative sum over the vocabulary."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from .errors import InternalError, RangeError
from .generation_options import GenerationOptions

# Thresholds (relative probability to the most likely token) tried in turn to bound the top-p set.
_TOP_P_THRESHOLDS = (2.0 ** -8, 2.0 ** -16, 2.0 ** -32, 0.0)
# Logit distances below the maximum tried in turn to find at least top_k candidates.
_TOP_K_SPANS = (4.0, 8.0, 16.0, 32.0, np.inf)
_DRAW_BLOCK = 256


class LogitsConstraint(Protocol):
    """A grammar that restricts the next token (pyrt.structured)."""

    def mask(self, logits: np.ndarray) -> None:
        """Sets the logits of disallowed tokens to -inf, in place."""

    def accept(self, token_id: int) -> None:
        """Advances past the chosen token."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What the sampler reports about a token: its log-probability under the model's distribution
    (the raw logits: before penalties, bias, mask and temperature) and the ``top_logprobs`` most
    likely alternatives as (token id, logprob), most likely first. None when not requested."""
    logprob: float | None = None
    top_logprobs: tuple[tuple[int, float], ...] | None = None


_NO_INFO = TokenInfo()


class Sampler:
    """Chooses each next token of one request; one instance per request (it keeps the request's
    random generator, penalty counts and grammar state), called on the decoding thread.

    ``Sampler(options, vocab_size, prompt_ids=(), constraint=None)``; ``sampler(logits, generated)``
    returns ``(token_id, TokenInfo)`` where ``generated`` is the ids produced so far. The repetition
    penalty applies to the prompt and generated tokens, frequency and presence penalties to the
    generated ones (as vLLM and the OpenAI API)."""

    def __init__(self, options: GenerationOptions, vocab_size: int, prompt_ids: Sequence[int] = (),
                 constraint: LogitsConstraint | None = None):
        self.options = options
        self.vocab_size = int(vocab_size)
        self.constraint = constraint
        self._rng = np.random.default_rng(options.seed)
        self._bias_ids = np.fromiter(options.logit_bias.keys(), np.int64, len(options.logit_bias))
        self._bias = np.fromiter(options.logit_bias.values(), np.float32, len(options.logit_bias))
        if len(self._bias_ids) and self._bias_ids.max() >= self.vocab_size:
            raise RangeError(f"logit_bias token id {int(self._bias_ids.max())} is outside the vocabulary "
                             f"[0, {self.vocab_size})")
        self._repeat = options.repetition_penalty != 1.0
        self._count_penalty = options.frequency_penalty != 0.0 or options.presence_penalty != 0.0
        self._seen = set(int(i) for i in prompt_ids) if self._repeat else set()  # repetition-penalized ids
        self._seen_ids = np.fromiter(self._seen, np.int64, len(self._seen))
        self._counts: dict[int, int] = {}
        self._n_counted = 0
        self._padded = np.zeros(-(-self.vocab_size // _DRAW_BLOCK) * _DRAW_BLOCK, np.float32)

    # -- the TokenSampler protocol ----------------------------------------------------------------

    def __call__(self, logits: np.ndarray, generated: Sequence[int]) -> tuple[int, TokenInfo]:
        z = self.processed_logits(logits, generated)
        if self.options.greedy:
            token = int(np.argmax(z))
            if z[token] == -np.inf:
                raise InternalError("every token is masked: the grammar allows no continuation")
        else:
            token = self._draw(z)
        info = self._info(logits, token) if self.options.logprobs else _NO_INFO
        if self.constraint is not None:
            self.constraint.accept(token)
        return token, info

    # -- steps ------------------------------------------------------------------------------------

    def processed_logits(self, logits: np.ndarray, generated: Sequence[int]) -> np.ndarray:
        """The logits after bias, penalties and the grammar mask (a copy when any applies)."""
        o = self.options
        if len(logits) != self.vocab_size:
            raise RangeError(f"logits have {len(logits)} entries, the vocabulary {self.vocab_size}")
        if len(generated) > self._n_counted:
            for t in generated[self._n_counted:]:
                self._counts[int(t)] = self._counts.get(int(t), 0) + 1
            self._n_counted = len(generated)
            if self._repeat and not self._seen.issuperset(self._counts):
                self._seen.update(self._counts)
                self._seen_ids = np.fromiter(self._seen, np.int64, len(self._seen))
        if not (len(self._bias_ids) or self.constraint is not None or self._repeat and len(self._seen_ids)
                or self._count_penalty and self._counts):
            return logits
        z = np.array(logits, dtype=np.float32)
        if len(self._bias_ids):
            z[self._bias_ids] += self._bias
        if self._repeat and len(self._seen_ids):
            seen = z[self._seen_ids]
            z[self._seen_ids] = np.where(seen > 0, seen / o.repetition_penalty, seen * o.repetition_penalty)
        if self._count_penalty and self._counts:
            ids = np.fromiter(self._counts.keys(), np.int64, len(self._counts))
            n = np.fromiter(self._counts.values(), np.float32, len(self._counts))
            z[ids] -= n * np.float32(o.frequency_penalty) + np.float32(o.presence_penalty)
        if self.constraint is not None:
            self.constraint.mask(z)
        return z

    def distribution(self, z: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """The sampling distribution of processed logits ``z``: (candidate ids, probabilities),
        most likely first, or (None, relative weights of the whole vocabulary) when no filter
        removes anything."""
        o = self.options
        top = float(z.max())
        if top == -np.inf:
            raise InternalError("every token is masked: the grammar allows no continuation")
        if o.top_k and o.top_k < self.vocab_size:
            for span in _TOP_K_SPANS:  # a compare pass finds >= top_k candidates without a partition
                ids = np.flatnonzero(z >= top - span)
                if len(ids) >= o.top_k:
                    break
            weights = np.exp((z[ids].astype(np.float64) - top) / o.temperature)
            if len(ids) > o.top_k:
                keep = np.argpartition(-weights, o.top_k - 1)[:o.top_k]
                ids, weights = ids[keep], weights[keep]
            total = weights.sum()
        else:
            weights = self._padded[:self.vocab_size]
            np.subtract(z, np.float32(top), out=weights)
            weights *= np.float32(1.0 / o.temperature)
            np.exp(weights, out=weights)
            if o.top_p >= 1.0 and o.min_p <= 0.0:
                return None, weights
            total = float(weights.sum(dtype=np.float64))
            for threshold in _TOP_P_THRESHOLDS:
                if threshold < o.min_p:
                    threshold = o.min_p
                ids = np.flatnonzero(weights >= threshold)
                if threshold <= o.min_p or o.top_p >= 1.0 or weights[ids].sum(dtype=np.float64) >= o.top_p * total:
                    break
            weights = weights[ids].astype(np.float64)
        order = np.lexsort((ids, -weights))  # most likely first, ties by id
        ids, p = ids[order], weights[order] / total
        n = int(np.count_nonzero(p > 0.0))  # masked tokens among the top_k candidates
        if o.min_p > 0.0:
            n = min(n, int(np.count_nonzero(p >= o.min_p * p[0])))
        if o.top_p < 1.0:
            n = min(n, int(np.searchsorted(np.cumsum(p), o.top_p)) + 1)
        return ids[:n], p[:n] / p[:n].sum()

    def _draw(self, z: np.ndarray) -> int:
        ids, p = self.distribution(z)
        if ids is not None:
            return int(ids[min(int(np.searchsorted(np.cumsum(p), self._rng.random())), len(ids) - 1)])
        # The whole vocabulary: find the block, then the token inside it (no vocabulary-long cumsum).
        blocks = self._padded.reshape(-1, _DRAW_BLOCK)
        self._padded[self.vocab_size:] = 0.0
        block_mass = np.cumsum(blocks.sum(axis=1, dtype=np.float64))
        u = self._rng.random() * block_mass[-1]
        b = min(int(np.searchsorted(block_mass, u, side="right")), len(blocks) - 1)
        u -= block_mass[b - 1] if b else 0.0
        inside = np.cumsum(blocks[b], dtype=np.float64)
        i = min(int(np.searchsorted(inside, u, side="right")), _DRAW_BLOCK - 1)
        while blocks[b, i] == 0.0 and i > 0:  # rounding past the last token of mass in the block
            i -= 1
        return b * _DRAW_BLOCK + i

    def _info(self, logits: np.ndarray, token: int) -> TokenInfo:
        top = float(logits.max())
        log_z = top + float(np.log(np.exp(logits - np.float32(top)).sum(dtype=np.float64)))
        alternatives = None
        k = self.options.top_logprobs
        if k:
            cand = np.argpartition(-logits, k - 1)[:k]
            cand = cand[np.lexsort((cand, -logits[cand]))]
            alternatives = tuple((int(t), float(logits[t]) - log_z) for t in cand)
        return TokenInfo(float(logits[token]) - log_z, alternatives)
