"""How much memory a process uses and how much of it is a memory-mapped model file (Linux
/proc/<pid>/smaps). Used to check that actors on one node share a .pyrt file's pages through the
page cache: each one's proportional share (PSS) of the mapping falls as actors are added, while
its resident size (RSS) of the mapping stays the file's size."""
from __future__ import annotations

import os
from typing import Union

KEYS = {"Rss": "rss", "Pss": "pss", "Shared_Clean": "shared_clean", "Shared_Dirty": "shared_dirty",
        "Private_Clean": "private_clean", "Private_Dirty": "private_dirty"}


def process_memory(model_path: Union[str, os.PathLike], pid: Union[int, str] = "self") -> dict[str, int]:
    """Bytes: the process's ``rss``, ``pss`` and ``uss`` (private pages) from smaps_rollup, and the
    model file mapping's ``model_rss``, ``model_pss``, ``model_shared`` and ``model_private``; an
    empty dict where /proc has no smaps (not Linux)."""
    target = os.path.realpath(os.fspath(model_path))
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            total = _fields(f.read().splitlines())
        with open(f"/proc/{pid}/smaps") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    model = {k: 0 for k in KEYS.values()}
    in_model = False
    for line in lines:
        head = line.split(None, 5)
        if len(head) >= 5 and "-" in head[0] and not head[0].endswith(":"):  # a mapping's header line
            in_model = len(head) == 6 and os.path.realpath(head[5].strip()) == target
        elif in_model:
            for key, value in _fields([line]).items():
                model[key] += value
    return {"rss": total["rss"], "pss": total["pss"], "uss": total["private_clean"] + total["private_dirty"],
            "model_rss": model["rss"], "model_pss": model["pss"],
            "model_shared": model["shared_clean"] + model["shared_dirty"],
            "model_private": model["private_clean"] + model["private_dirty"]}


def _fields(lines: list[str]) -> dict[str, int]:
    out = {k: 0 for k in KEYS.values()}
    for line in lines:
        name, _, rest = line.partition(":")
        if name in KEYS:
            out[KEYS[name]] += int(rest.split()[0]) * 1024  # smaps counts kB
    return out


def actors_memory(model_path: Union[str, os.PathLike], texts: list, actors: int = 2) -> list[tuple[int, dict]]:
    """Starts ``actors`` Ray actors of one CPU, each with an Embedder on ``model_path``; each embeds
    ``texts`` twice (every page the model needs is touched by all), then reports its pyrt thread count
    and :func:`process_memory`. The actors are ended before returning."""
    import numpy as np  # noqa: PLC0415
    import ray  # noqa: PLC0415

    from .ray import Embedder  # noqa: PLC0415
    from .runtime import get_num_threads  # noqa: PLC0415

    @ray.remote(num_cpus=1)
    class Holder:
        def __init__(self, path: str):
            self.embed = Embedder(path)

        def run(self, batch: list) -> tuple[int, dict]:
            self.embed({"text": np.array(batch, dtype=object)})
            return get_num_threads(), self.embed.memory()

    holders = [Holder.remote(os.fspath(model_path)) for _ in range(actors)]
    try:
        ray.get([h.run.remote(texts) for h in holders])
        return ray.get([h.run.remote(texts) for h in holders])
    finally:
        for h in holders:
            ray.kill(h)
