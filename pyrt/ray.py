"""pyrt on Ray Data: callable classes for ``Dataset.map_batches`` (docs/scale-out.md).

    ds = ray.data.read_parquet("corpus.parquet")
    ds = ds.map_batches(Embedder, fn_constructor_args=("minilm-q8.pyrt",), concurrency=2, num_cpus=1,
                        batch_size=256, batch_format="pyarrow")

or, with the checks done in the driver before any actor starts, ``embed_dataset(ds, "minilm-q8.pyrt",
actors=2)`` / ``generate_dataset(ds, "smollm2.pyrt", actors=2, max_new_tokens=64)``.

Each actor opens the .pyrt file by its path (the file must be at that path on every node): the
classes keep and pickle only their settings, never a model. The file is memory-mapped, so actors
on one node share its pages through the page cache. Each actor runs pyrt on as many threads as
Ray gives it CPUs (``num_cpus``), so actors x threads fit the node (the first batch sets pyrt's
process-wide thread count: ``threads`` if given, else the CPUs Ray assigned, else unchanged). Batches may be pyarrow
Tables, pandas DataFrames or dicts of numpy arrays; the result has the same kind, with one column
added. This module needs the ``ray`` extra: pip install 'pyrt-infer[ray]'.
"""
from __future__ import annotations

import inspect
import os
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from .errors import DtypeError, FileIOError, PyrtError

Batch = Any  # pyarrow.Table | pandas.DataFrame | dict[str, np.ndarray]
DEFAULT_ROWS_PER_BATCH = 256


class ColumnError(PyrtError, ValueError):
    """A batch or dataset lacks the column a job reads, or already has the one it would write."""


def check_model_path(path: Union[str, os.PathLike]) -> str:
    """The path as a string; FileIOError when no readable file is there (checked before a job starts,
    so a typo fails in the driver instead of in every actor)."""
    path = os.fspath(path)
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise FileIOError(f"model file {path!r} does not exist or is not readable (on a cluster it must be at "
                          "this path on every node)")
    return path


def actor_threads(requested: Optional[int] = None) -> int:
    """Threads for pyrt in this process: ``requested``, else the CPUs Ray assigned to this actor or
    task, else pyrt's current setting (outside Ray)."""
    if requested is not None:
        if isinstance(requested, bool) or int(requested) < 1:
            raise DtypeError(f"threads must be a positive integer, got {requested!r}")
        return int(requested)
    try:
        import ray  # noqa: PLC0415 - optional dependency
        if ray.is_initialized():
            cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 0)
            if cpus >= 1:
                return int(cpus)
    except ImportError:
        pass
    from .runtime import get_num_threads  # noqa: PLC0415
    return get_num_threads()


# -- batches of any of Ray Data's formats -------------------------------------------------------------

def batch_columns(batch: Batch) -> list[str]:
    if isinstance(batch, Mapping):
        return list(batch.keys())
    names = getattr(batch, "column_names", None)  # pyarrow.Table
    return list(names) if names is not None else [str(c) for c in batch.columns]


def text_column(batch: Batch, name: str) -> list[str]:
    """The column's values as a list of str; ColumnError / DtypeError name the column and row."""
    if name not in batch_columns(batch):
        raise ColumnError(f"no column {name!r} in the batch (columns: {', '.join(batch_columns(batch))})")
    column = batch[name]
    values = column.to_pylist() if hasattr(column, "to_pylist") else list(column)
    for row, value in enumerate(values):
        if not isinstance(value, str):
            raise DtypeError(f"column {name!r} row {row} is {type(value).__name__}, expected text")
    return values


def with_column(batch: Batch, name: str, values: Union[np.ndarray, Sequence[str]]) -> Batch:
    """The batch with column ``name`` added: a float32 [rows, dim] array becomes a fixed-size list
    (Arrow) or one vector per row; a list of str a string column."""
    if name in batch_columns(batch):
        raise ColumnError(f"the batch already has a column {name!r}: choose another output column")
    is_matrix = isinstance(values, np.ndarray) and values.ndim == 2
    if isinstance(batch, Mapping):
        return {**batch, name: values if is_matrix else np.asarray(values, dtype=object)}
    if hasattr(batch, "append_column"):  # pyarrow.Table
        import pyarrow as pa  # noqa: PLC0415
        if is_matrix:
            flat = pa.array(np.ascontiguousarray(values, dtype=np.float32).reshape(-1))
            return batch.append_column(name, pa.FixedSizeListArray.from_arrays(flat, values.shape[1]))
        return batch.append_column(name, pa.array(list(values), type=pa.string()))
    out = batch.copy(deep=False)  # pandas.DataFrame
    out[name] = list(values)  # one vector (or string) per row
    return out


# -- the callable classes -----------------------------------------------------------------------------

class _ModelByPath:
    """Holds settings only; the model opens on first use in the process that uses it (an actor), and
    pickling sends the settings, never the model."""

    def __init__(self, settings: dict[str, Any], threads: Optional[int]):
        self._settings = settings
        self._threads = threads
        self._model: Any = None

    def __reduce__(self):
        return (_rebuild, (type(self), self._settings))

    def _open(self) -> Any:
        raise NotImplementedError

    @property
    def model(self) -> Any:
        if self._model is None:
            from .runtime import set_num_threads  # noqa: PLC0415
            set_num_threads(actor_threads(self._threads))
            self._model = self._open()
        return self._model

    @property
    def model_path(self) -> str:
        return self._settings["model_path"]

    def memory(self) -> dict[str, int]:
        """This process's memory and the model file's share of it (bytes; Linux): see
        :func:`pyrt.ray_memory.process_memory`."""
        from .ray_memory import process_memory  # noqa: PLC0415
        return process_memory(self.model_path)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self._settings.items())
        return f"pyrt.ray.{type(self).__name__}({shown})"


def _rebuild(cls: type, settings: dict[str, Any]) -> Any:
    return cls(**settings)


class Embedder(_ModelByPath):
    """``map_batches`` class: embeds ``text_column`` with a converted sentence-transformers model
    into ``output_column`` (float32 vectors). ``batch_size``: sentences per forward pass;
    ``threads``: pyrt threads (default: the actor's CPUs); ``activations``: as SentenceEncoder;
    ``encode_options``: keywords of SentenceEncoder.encode (e.g. normalize_embeddings=True, truncate_dim=256)."""

    def __init__(self, model_path: Union[str, os.PathLike], text_column: str = "text",
                 output_column: str = "embedding", batch_size: int = 32, threads: Optional[int] = None,
                 activations: str = "exact", **encode_options: Any):
        from .encoder import SentenceEncoder  # noqa: PLC0415
        accepted = set(inspect.signature(SentenceEncoder.encode).parameters) - {"self", "sentences", "batch_size"}
        unknown = sorted(set(encode_options) - accepted)
        if unknown:
            raise TypeError(f"SentenceEncoder.encode takes no option {', '.join(unknown)} "
                            f"(it takes {', '.join(sorted(accepted))})")
        settings = dict(model_path=os.fspath(model_path), text_column=text_column, output_column=output_column,
                        batch_size=batch_size, threads=threads, activations=activations, **encode_options)
        super().__init__(settings, threads)
        self._encode_options = dict(encode_options, batch_size=batch_size)

    def _open(self) -> Any:
        from .encoder import SentenceEncoder  # noqa: PLC0415
        return SentenceEncoder(check_model_path(self.model_path), activations=self._settings["activations"])

    def __call__(self, batch: Batch) -> Batch:
        texts = text_column(batch, self._settings["text_column"])
        vectors = self.model.encode(texts, **self._encode_options)
        return with_column(batch, self._settings["output_column"], vectors.reshape(len(texts), -1))


class Generator(_ModelByPath):
    """``map_batches`` class: generates a completion of each ``prompt_column`` value into
    ``output_column``. Greedy by default; temperature/top_k/top_p sample with ``seed`` (the same
    seed for every row, so a row's completion does not depend on how rows are batched); ``stop``
    strings end a completion; ``chat=True`` sends each prompt as a user message through the
    model's chat template. ``threads``: pyrt threads (default: the actor's CPUs)."""

    def __init__(self, model_path: Union[str, os.PathLike], prompt_column: str = "prompt",
                 output_column: str = "completion", max_new_tokens: int = 128, temperature: float = 0.0,
                 top_p: float = 1.0, top_k: int = 0, seed: Optional[int] = None,
                 stop: Union[str, Sequence[str], None] = None, chat: bool = False,
                 context_length: Optional[int] = None, threads: Optional[int] = None):
        from .errors import RangeError  # noqa: PLC0415
        from .llm import sample_token  # noqa: PLC0415
        if int(max_new_tokens) < 0:
            raise RangeError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        # Bad sampling options fail here, in the driver, not in every actor.
        sample_token(np.zeros(1, np.float32), np.random.default_rng(0), temperature, top_k, top_p)
        stop = [stop] if isinstance(stop, str) else (list(stop) if stop else None)
        settings = dict(model_path=os.fspath(model_path), prompt_column=prompt_column, output_column=output_column,
                        max_new_tokens=int(max_new_tokens), temperature=float(temperature), top_p=float(top_p),
                        top_k=int(top_k), seed=seed, stop=stop, chat=bool(chat), context_length=context_length,
                        threads=threads)
        super().__init__(settings, threads)

    def _open(self) -> Any:
        from .llm import LanguageModel  # noqa: PLC0415
        extra = {} if self._settings["context_length"] is None else {"context_length": self._settings["context_length"]}
        return LanguageModel(check_model_path(self.model_path), **extra)

    def __call__(self, batch: Batch) -> Batch:
        s = self._settings
        prompts = text_column(batch, s["prompt_column"])
        completions = [self.model.generate([{"role": "user", "content": p}] if s["chat"] else p,
                                           max_new_tokens=s["max_new_tokens"], temperature=s["temperature"],
                                           top_k=s["top_k"], top_p=s["top_p"], seed=s["seed"], stop=s["stop"])
                       for p in prompts]
        return with_column(batch, s["output_column"], completions)


# -- whole datasets, checked in the driver ------------------------------------------------------------

def _map(ds: Any, cls: type, settings: dict[str, Any], input_column: str, actors: Optional[int],
         threads_per_actor: int, rows_per_batch: int) -> Any:
    from .model import load  # noqa: PLC0415
    load(check_model_path(settings["model_path"])).close()  # not a pyrt file: fails here, not in the actors
    names = list(ds.schema().names)
    if input_column not in names:
        raise ColumnError(f"the dataset has no column {input_column!r} (columns: {', '.join(names)})")
    if settings["output_column"] in names:
        raise ColumnError(f"the dataset already has a column {settings['output_column']!r}: choose another "
                          "output column")
    instance = cls(**settings, threads=threads_per_actor)  # validates the options here
    if actors is None:
        import ray  # noqa: PLC0415
        actors = max(1, int(ray.cluster_resources().get("CPU", 1)) // threads_per_actor)
    from ray.data import ActorPoolStrategy  # noqa: PLC0415
    return ds.map_batches(cls, fn_constructor_kwargs=instance._settings, compute=ActorPoolStrategy(size=int(actors)),
                          num_cpus=threads_per_actor, batch_size=rows_per_batch, batch_format="pyarrow")


def embed_dataset(ds: Any, model_path: Union[str, os.PathLike], *, text_column: str = "text",
                  output_column: str = "embedding", actors: Optional[int] = None, threads_per_actor: int = 1,
                  rows_per_batch: int = DEFAULT_ROWS_PER_BATCH, batch_size: int = 32, **encode_options: Any) -> Any:
    """``ds`` with an ``output_column`` of embeddings, computed by ``actors`` Embedder actors (default:
    the cluster's free CPUs / threads_per_actor) of ``threads_per_actor`` CPUs each. Raises
    FileIOError (no model file) or ColumnError before anything runs."""
    settings = dict(model_path=os.fspath(model_path), text_column=text_column, output_column=output_column,
                    batch_size=batch_size, **encode_options)
    return _map(ds, Embedder, settings, text_column, actors, threads_per_actor, rows_per_batch)


def generate_dataset(ds: Any, model_path: Union[str, os.PathLike], *, prompt_column: str = "prompt",
                     output_column: str = "completion", actors: Optional[int] = None, threads_per_actor: int = 1,
                     rows_per_batch: int = 16, **generate_options: Any) -> Any:
    """``ds`` with an ``output_column`` of completions by Generator actors (see :func:`embed_dataset`;
    ``generate_options``: Generator's keywords)."""
    settings = dict(model_path=os.fspath(model_path), prompt_column=prompt_column, output_column=output_column,
                    **generate_options)
    return _map(ds, Generator, settings, prompt_column, actors, threads_per_actor, rows_per_batch)


__all__ = ["Embedder", "Generator", "ColumnError", "embed_dataset", "generate_dataset", "actor_threads"]
