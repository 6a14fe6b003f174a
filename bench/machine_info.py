"""Describe the machine a benchmark ran on: CPU model, ISA flags, cache sizes, cores, memory, load.

Benchmarks without their machine are not comparable, so every table the bench tools print starts
with this block. Sources are Linux sysfs and /proc (read directly, no lscpu parsing needed); on other
systems the fields that cannot be read say "unknown" rather than failing.

Run directly (`python bench/machine_info.py`) to print the block as markdown.
"""
from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

SYSFS_CPU = Path("/sys/devices/system/cpu")

# The flags that matter for pyrt's kernels and its peers' (MLAS picks AVX-512 VNNI paths from these).
ISA_FLAGS_OF_INTEREST = (
    "sse4_2", "avx", "f16c", "fma", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq",
    "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def parse_size(text: str) -> int:
    """'32K' / '1024K' / '32M' / '64 KiB' (sysfs and lscpu spellings) -> bytes."""
    t = text.strip().upper().replace("IB", "").replace(" ", "")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def cpu_model() -> str:
    text = _read(Path("/proc/cpuinfo")) or ""
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    """ISA flags of interest that /proc/cpuinfo lists for the first CPU, in a fixed order."""
    text = _read(Path("/proc/cpuinfo")) or ""
    for line in text.splitlines():
        if line.startswith("flags"):
            present = set(line.split(":", 1)[1].split())
            return [f for f in ISA_FLAGS_OF_INTEREST if f in present]
    return []


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def caches() -> list[dict]:
    """One entry per cache of cpu0: level, type, size in bytes, and how many CPUs share it."""
    out = []
    for index in sorted((SYSFS_CPU / "cpu0" / "cache").glob("index*")):
        size = _read(index / "size")
        level = _read(index / "level")
        if size is None or level is None:
            continue
        shared = _read(index / "shared_cpu_list") or ""
        out.append({
            "level": int(level),
            "type": _read(index / "type") or "Unknown",
            "size_bytes": parse_size(size),
            "shared_by_cpus": _count_cpu_list(shared),
        })
    return out


def _count_cpu_list(text: str) -> int:
    """'0-3,8' -> 5."""
    count = 0
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        count += (int(hi) - int(lo) + 1) if hi else 1
    return count


def cache_size(level: int, kind: str = "Unified") -> int | None:
    """Bytes of one instance of the cache at ``level`` ('Data' for L1d, 'Unified' for L2/L3)."""
    for c in caches():
        if c["level"] == level and c["type"] == kind:
            return c["size_bytes"]
    return None


def last_level_cache_bytes(default: int = 32 << 20) -> int:
    """Size of the largest cache (L3 here); ``default`` where sysfs has no cache information."""
    sizes = [c["size_bytes"] for c in caches() if c["type"] in ("Unified", "Data")]
    return max(sizes) if sizes else default


def memory_bytes() -> int | None:
    text = _read(Path("/proc/meminfo")) or ""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


def describe() -> dict:
    """Everything above as one dict (JSON-ready)."""
    return {
        "cpu_model": cpu_model(),
        "isa_flags": cpu_flags(),
        "cores_usable": usable_cores(),
        "caches": caches(),
        "memory_bytes": memory_bytes(),
        "load_average": load_average(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def _human(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} B"


def cache_summary(cache_list: list[dict]) -> str:
    names = {("Data", 1): "L1d", ("Unified", 2): "L2", ("Unified", 3): "L3"}
    parts = []
    for c in cache_list:
        name = names.get((c["type"], c["level"]))
        if name:
            sharing = "per CPU" if c["shared_by_cpus"] <= 1 else f"shared by {c['shared_by_cpus']} CPUs"
            parts.append(f"{name} {_human(c['size_bytes'])} ({sharing})")
    return ", ".join(parts) or "unknown"


def markdown_lines(info: dict) -> list[str]:
    """The machine as markdown bullet lines (the "Machine" block of docs/benchmarks.md)."""
    load = info["load_average"]
    load_end = info.get("load_average_end")
    load_text = " / ".join(f"{v:.2f}" for v in load) if load else "unknown"
    if load_end:
        load_text += " at start, " + " / ".join(f"{v:.2f}" for v in load_end) + " at end"
    return [
        f"- CPU: {info['cpu_model']}, {info['cores_usable']} usable cores",
        f"- ISA flags: {' '.join(info['isa_flags']) or 'unknown'}",
        f"- Caches: {cache_summary(info['caches'])}",
        f"- Memory: {_human(info['memory_bytes'])}",
        f"- OS: {info['os']}, Python {info['python']}",
        f"- Load average (1/5/15 min): {load_text}",
        f"- Date: {info['date_utc']}",
    ]


if __name__ == "__main__":
    print("\n".join(markdown_lines(describe())))
