"""The parent side of a fuzz campaign: worker subprocesses run ranges of cases; a worker that dies
by a signal is a crash and one that stops making progress is a hang; either way the case is saved as
a reproducer and the worker restarts after it. Time limits count CPU seconds, not wall time. Used by tests/fuzz/test_fuzz.py (a bounded run) and
bench/fuzz_campaign.py (the long one)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fuzz.harness import KINDS, case_input, seed_files

TESTS_DIR = Path(__file__).resolve().parents[1]
REGRESSIONS = TESTS_DIR / "data" / "fuzz_regressions"


def _spawn(seed: int, start: int, stop: int, progress: Path, results: Path, nice: int) -> subprocess.Popen:
    import pyrt

    pythonpath = os.pathsep.join([str(Path(pyrt.__file__).resolve().parents[1]), str(TESTS_DIR)])
    cmd = [sys.executable, "-m", "fuzz.harness", str(seed), str(start), str(stop), str(progress), str(results)]
    # PYTHONSAFEPATH and a neutral folder: `-m` must not find a checkout's uncompiled pyrt first.
    return subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": pythonpath, "PYRT_NUM_THREADS": "1",
                                      "PYTHONSAFEPATH": "1"}, cwd=tempfile.gettempdir(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=(lambda: os.nice(nice)) if nice else None)


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used: progress is judged against it, not the wall
    clock, so that a worker starved on a busy machine is not taken for a hung one."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _read_index(progress: Path) -> int:
    try:
        return int.from_bytes(progress.read_bytes()[:8], "little")
    except (OSError, ValueError):
        return -1


def save_reproducer(seed: int, index: int, outcome: str, out_dir: Path = REGRESSIONS) -> Path:
    """Writes case ``index``'s bytes as <kind>-<seed>-<index>.<ext> with a .json note beside it."""
    with tempfile.TemporaryDirectory() as tmp:
        kind, data = case_input(seed_files(Path(tmp)), seed, index)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{kind}-{seed}-{index}.{kind}"
    path.write_bytes(data)
    path.with_suffix(path.suffix + ".json").write_text(json.dumps({"kind": kind, "seed": seed, "index": index,
                                                                    "outcome": outcome}) + "\n")
    return path


def run_campaign(seed: int, cases: int, workers: int = 1, chunk: int = 2000, hang_seconds: float = 30.0,  # CPU s
                 nice: int = 0, save: bool = True, log=print, deadline: float | None = None) -> dict:
    """Runs cases [0, cases) of campaign ``seed`` (no new chunk starts after ``deadline``, a
    time.monotonic() value); returns counts per outcome, the reproducers written, the worst peak RSS
    of a worker, and the rate."""
    counts: dict[str, int] = {}
    findings: list[dict] = []
    peak_kib = 0
    start_time = time.perf_counter()
    pending = [(s, min(s + chunk, cases)) for s in range(0, cases, chunk)]
    running: list[tuple[subprocess.Popen, int, int, Path, Path, float, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        serial = 0
        while pending or running:
            if deadline is not None and time.monotonic() > deadline:
                pending = []
            while pending and len(running) < workers:
                lo, hi = pending.pop(0)
                serial += 1
                progress, results = tmpdir / f"p{serial}", tmpdir / f"r{serial}"
                progress.write_bytes((lo).to_bytes(8, "little"))
                running.append((_spawn(seed, lo, hi, progress, results, nice), lo, hi, progress, results,
                                0.0, lo))
            time.sleep(0.2)
            still = []
            for proc, lo, hi, progress, results, seen_at, seen_index in running:
                index = _read_index(progress)
                status = proc.poll()
                if status is None:
                    cpu = _cpu_seconds(proc.pid)
                    if index != seen_index:
                        still.append((proc, lo, hi, progress, results, cpu, index))
                    elif cpu - seen_at > hang_seconds:
                        proc.kill()
                        proc.wait()
                        findings.append({"index": index, "outcome": "hang"})
                        counts["hang"] = counts.get("hang", 0) + 1
                        if index + 1 < hi:
                            pending.insert(0, (index + 1, hi))
                    else:
                        still.append((proc, lo, hi, progress, results, seen_at, seen_index))
                    continue
                lines = [json.loads(l) for l in results.read_text().splitlines()] if results.exists() else []
                for line in lines:
                    if "counts" in line:
                        for k, v in line["counts"].items():
                            counts[k] = counts.get(k, 0) + v
                        peak_kib = max(peak_kib, line["peak_rss_kib"])
                    else:
                        findings.append(line)
                if status != 0 or not any("counts" in l for l in lines):
                    # Died (by a signal: status < 0) at `index`: count the cases before it from its
                    # own lines is impossible, so they are rerun; the crashing case is recorded.
                    outcome = f"crash:{-status}" if status < 0 else f"worker-exit:{status}"
                    findings.append({"index": index, "outcome": outcome})
                    counts[outcome] = counts.get(outcome, 0) + 1
                    if lo < index:
                        pending.insert(0, (lo, index))  # rerun what the dead worker had not reported
                    if index + 1 < hi:
                        pending.insert(0, (index + 1, hi))
                    for p in (progress, results):
                        p.unlink(missing_ok=True)
            if log and len(still) < len(running):
                log(f"{sum(counts.values())} cases in {time.perf_counter() - start_time:.0f} s: {dict(sorted(counts.items()))}")
            running = still
    seconds = time.perf_counter() - start_time
    # Reproducers: every crash, hang and foreign exception (deduplicated by outcome and kind).
    written, seen = [], set()
    for f in findings:
        key = (f["outcome"], KINDS[f["index"] % len(KINDS)])
        if save and key not in seen and f["index"] >= 0:
            seen.add(key)
            try:
                written.append(str(save_reproducer(seed, f["index"], f["outcome"])))
            except Exception as exc:  # noqa: BLE001 - a case the mutators cannot rebuild: keep the summary
                written.append(f"case {f['index']}: not reproducible ({type(exc).__name__}: {exc})")
    return {"seed": seed, "cases": sum(counts.values()), "counts": counts, "kinds": list(KINDS),
            "findings": findings[:50], "reproducers": written, "seconds": seconds,
            "rate_per_s": sum(counts.values()) / seconds if seconds else 0.0, "worst_worker_peak_rss_kib": peak_kib}
