"""`pyrt batch embed|generate IN OUT --model M.pyrt`: embeddings or completions for every row of a
Parquet, JSONL or CSV file, computed by Ray Data actors (a local Ray by default, a cluster with
--address), written as numbered Parquet part files into the folder OUT.

Resuming: rows are numbered (a row id column) and cut into parts of --rows-per-part rows; part k
holds rows [k*R, (k+1)*R) and is written to a temporary name, then renamed, so a part file is
either complete or absent. A rerun with the same input and options skips the parts already in OUT
and computes only the missing ones: an interrupted job loses and duplicates no row.
OUT/_job.json records the job; a rerun with different options is refused (exit 2)."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterator

from .exits import EXIT_OK, EXIT_USAGE, CommandError, command
from .options import Parser, at_least, fraction, subcommand_parser

EXIT_CODES = ("0 ok, 1 unreadable model or input, missing package or a failed job, 2 usage (also: a missing "
              "column, OUT holding another job)")
READERS = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "json", ".ndjson": "json", ".csv": "csv"}
JOB_FILE = "_job.json"
PART = "part-{:05d}.parquet"


def register(subparsers: Any) -> None:
    p = subcommand_parser(subparsers, "batch", __doc__, "embed or generate for every row of a file, on Ray Data",
                          EXIT_CODES)
    jobs = p.add_subparsers(dest="job", metavar="JOB", parser_class=Parser)
    jobs.required = True
    embed = jobs.add_parser("embed", help="embed a text column (sentence-transformers model)",
                            description="Adds an embedding column (float32 vectors) to every row.")
    _common(embed, "--text-column", "text", "embedding")
    embed.add_argument("--no-normalize", dest="normalize", action="store_false", default=None,
                       help="raw pooled vectors (default: as the model's modules.json says)")
    generate = jobs.add_parser("generate", help="complete a prompt column (language model)",
                               description="Adds a completion column (text) to every row.")
    _common(generate, "--prompt-column", "prompt", "completion")
    generate.add_argument("--max-new-tokens", type=at_least(0), default=128, help="tokens per completion (default 128)")
    generate.add_argument("--temperature", type=at_least(0.0, float), default=0.0, help="0 = greedy (default)")
    generate.add_argument("--top-k", type=at_least(0), default=0, help="sample among the k likeliest (0: all)")
    generate.add_argument("--top-p", type=fraction, default=1.0, help="nucleus sampling mass (default 1)")
    generate.add_argument("--seed", type=int, default=None, help="sampling seed (the same for every row)")
    generate.add_argument("--stop", action="append", default=None, help="a stop string (repeatable)")
    generate.add_argument("--chat", action="store_true", help="send each prompt as a user message through the "
                          "model's chat template")
    generate.add_argument("--context", type=at_least(16), default=None, help="context length (prompt + completion)")
    for job in (embed, generate):
        job.set_defaults(func=run)


def _common(p: argparse.ArgumentParser, column_flag: str, column_default: str, output_default: str) -> None:
    p.add_argument("input", help="a .parquet, .jsonl or .csv file")
    p.add_argument("output", help="a folder for the Parquet part files (created; reused to resume)")
    p.add_argument("--model", required=True, help="the .pyrt file (at this path on every node)")
    p.add_argument(column_flag, dest="column", default=column_default, help=f"input column (default {column_default})")
    p.add_argument("--output-column", default=output_default, help=f"added column (default {output_default})")
    p.add_argument("--id-column", default="row_id", help="added row number column (default row_id)")
    p.add_argument("--address", default=None, help="a Ray cluster (ray://host:10001 or auto); default: start a "
                   "local Ray on this machine's CPUs")
    p.add_argument("--actors", type=at_least(1), default=None, help="model actors (default: CPUs / threads)")
    p.add_argument("--threads-per-actor", type=at_least(1), default=1, help="pyrt threads (= Ray CPUs) per actor")
    p.add_argument("--batch-size", type=at_least(1), default=None, help="rows per batch sent to an actor "
                   "(default 256 for embed, 16 for generate)")
    p.add_argument("--rows-per-part", type=at_least(1), default=10_000, help="rows per output part file "
                   "(default 10000; the unit of resuming)")


# -- input, parts and the job record ----------------------------------------------------------------

def read_table(path: str) -> Any:
    """The input file as a pyarrow Table, read by its extension."""
    kind = READERS.get(Path(path).suffix.lower())
    if kind is None:
        raise CommandError(f"{path}: unknown input type (expected {', '.join(sorted(READERS))})", EXIT_USAGE)
    import pyarrow  # noqa: PLC0415
    try:
        if kind == "parquet":
            import pyarrow.parquet as reader  # noqa: PLC0415
            return reader.read_table(path)
        if kind == "json":
            import pyarrow.json as reader  # noqa: PLC0415
            return reader.read_json(path)
        import pyarrow.csv as reader  # noqa: PLC0415
        return reader.read_csv(path)
    except (OSError, pyarrow.ArrowInvalid) as exc:
        raise CommandError(f"cannot read {path}: {exc}") from exc


def job_record(args: argparse.Namespace, rows: int) -> dict[str, Any]:
    """What must match for a rerun to resume: the input, the model and every option that shapes a row."""
    skip = {"output", "address", "actors", "threads_per_actor", "batch_size", "func", "prog", "command"}
    options = {k: v for k, v in sorted(vars(args).items()) if k not in skip}
    options["input"] = os.path.abspath(args.input)
    options["model"] = os.path.abspath(args.model)
    stat = os.stat(args.input)
    return {"rows": rows, "input_size": stat.st_size, "input_mtime_ns": stat.st_mtime_ns, **options}


def prepare_output(out: Path, record: dict[str, Any]) -> None:
    """Creates OUT with its job record, or checks that the one there is this job; removes the
    temporary files an interrupted run left."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        job_file = out / JOB_FILE
        if job_file.exists():
            previous = json.loads(job_file.read_text())
            if previous != record:
                changed = sorted(k for k in set(previous) | set(record) if previous.get(k) != record.get(k))
                raise CommandError(f"{out} holds parts of another job ({', '.join(changed)} differ): use another "
                                   "output folder, or delete it to start over", EXIT_USAGE)
        else:
            write_atomically(job_file, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))
        for stale in out.glob(".*.tmp"):
            stale.unlink()
    except OSError as exc:
        raise CommandError(f"cannot use output folder {out}: {exc.strerror or exc}") from exc


def write_atomically(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


def missing_parts(out: Path, rows: int, rows_per_part: int) -> list[int]:
    return [k for k in range(math.ceil(rows / rows_per_part)) if not (out / PART.format(k)).exists()]


def input_blocks(table: Any, id_column: str, parts: list[int], rows_per_part: int, rows_per_block: int) -> Iterator[Any]:
    """The rows of ``parts`` with their row ids, in blocks of at most ``rows_per_block`` rows (an actor
    takes whole blocks: one block per part would leave actors idle)."""
    import pyarrow as pa  # noqa: PLC0415
    for k in parts:
        start = k * rows_per_part
        piece = table.slice(start, rows_per_part)
        piece = piece.add_column(0, id_column, pa.array(range(start, start + piece.num_rows), type=pa.int64()))
        for offset in range(0, piece.num_rows, rows_per_block):
            yield piece.slice(offset, rows_per_block)


# -- the job ----------------------------------------------------------------------------------------

def start_ray(args: argparse.Namespace, actors: int | None) -> bool:
    """Connects to --address, or starts a local Ray; True when this command started it."""
    import ray  # noqa: PLC0415
    if ray.is_initialized():
        return False
    quiet = dict(include_dashboard=False, logging_level="WARNING")
    if args.address:
        ray.init(address=args.address, logging_level="WARNING")
    else:
        cpus = (actors or max(1, (os.cpu_count() or 1) // args.threads_per_actor)) * args.threads_per_actor
        ray.init(num_cpus=cpus, **quiet)
    return True


def mapped_dataset(args: argparse.Namespace, ds: Any) -> Any:
    from ..ray import embed_dataset, generate_dataset  # noqa: PLC0415
    common = dict(output_column=args.output_column, actors=args.actors, threads_per_actor=args.threads_per_actor)
    if args.batch_size:
        common["rows_per_batch"] = args.batch_size
    if args.job == "embed":
        extra = {} if args.normalize is None else {"normalize": args.normalize}
        return embed_dataset(ds, args.model, text_column=args.column, **common, **extra)
    return generate_dataset(ds, args.model, prompt_column=args.column, max_new_tokens=args.max_new_tokens,
                            temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                            stop=args.stop, chat=args.chat, context_length=args.context, **common)


def write_parts(batches: Iterator[Any], out: Path, id_column: str, rows: int, rows_per_part: int,
                todo: list[int]) -> None:
    """Collects result rows by part; writes each part as soon as all its rows are in."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415
    pending: dict[int, list[Any]] = {}
    done = 0
    for batch in batches:
        first = pc.min(batch[id_column]).as_py() // rows_per_part
        last = pc.max(batch[id_column]).as_py() // rows_per_part
        for k in range(first, last + 1):
            lo = k * rows_per_part
            piece = batch.filter(pc.and_(pc.greater_equal(batch[id_column], lo),
                                         pc.less(batch[id_column], lo + rows_per_part)))
            pending.setdefault(k, []).append(piece)
            if sum(t.num_rows for t in pending[k]) == min(rows_per_part, rows - lo):
                part = pa.concat_tables(pending.pop(k)).sort_by(id_column)
                write_atomically(out / PART.format(k), lambda tmp: pq.write_table(part, tmp))
                done += 1
                print(f"part {k} written ({done}/{len(todo)} of this run)", file=sys.stderr, flush=True)
    if pending:
        raise CommandError(f"the job returned incomplete parts {sorted(pending)}: rerun to complete them")


def ray_failure(exc: BaseException) -> CommandError:
    """A one-line error from a failed Ray job: the pyrt error an actor raised, if its text shows one."""
    text = str(exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("pyrt.") and "Error" in ln]
    message = lines[-1] if lines else (text.strip().splitlines() or [type(exc).__name__])[-1]
    return CommandError(f"the Ray job failed: {message}")


def batch(args: argparse.Namespace) -> int:
    try:
        import pyarrow  # noqa: PLC0415
        import ray  # noqa: PLC0415
    except ImportError as exc:
        raise CommandError(f"pyrt batch needs Ray Data: {exc} (pyrt's extra that brings it: "
                           "pip install 'pyrt-infer[ray]')") from exc
    from .. import load  # noqa: PLC0415
    from ..ray import DEFAULT_ROWS_PER_BATCH, ColumnError  # noqa: PLC0415

    load(args.model).close()  # a missing or broken model file fails here, before Ray starts
    table = read_table(args.input)
    for name, needed in ((args.column, True), (args.output_column, False), (args.id_column, False)):
        if (name in table.column_names) != needed:
            what = "has no column" if needed else "already has a column"
            raise CommandError(f"{args.input} {what} {name!r} (columns: {', '.join(table.column_names)})", EXIT_USAGE)
    column_type = table.schema.field(args.column).type
    if not (pyarrow.types.is_string(column_type) or pyarrow.types.is_large_string(column_type)):
        raise CommandError(f"{args.input}: column {args.column!r} holds {column_type}, not text", EXIT_USAGE)
    out = Path(args.output)
    prepare_output(out, job_record(args, table.num_rows))
    todo = missing_parts(out, table.num_rows, args.rows_per_part)
    total = math.ceil(table.num_rows / args.rows_per_part)
    print(f"{table.num_rows} rows in {total} parts of {args.rows_per_part}; {total - len(todo)} already in {out}, "
          f"{len(todo)} to compute", file=sys.stderr, flush=True)
    if not todo:
        return EXIT_OK
    started = start_ray(args, args.actors)
    try:
        rows_per_block = args.batch_size or (DEFAULT_ROWS_PER_BATCH if args.job == "embed" else 16)
        ds = ray.data.from_arrow(list(input_blocks(table, args.id_column, todo, args.rows_per_part, rows_per_block)))
        try:
            mapped = mapped_dataset(args, ds)
        except ColumnError as exc:
            raise CommandError(str(exc), EXIT_USAGE) from exc
        try:
            write_parts(mapped.iter_batches(batch_size=None, batch_format="pyarrow"), out, args.id_column,
                        table.num_rows, args.rows_per_part, todo)
        except ray.exceptions.RayError as exc:
            raise ray_failure(exc) from exc
    finally:
        if started:
            ray.shutdown()
    print(f"{table.num_rows} rows -> {out}", file=sys.stderr)
    return EXIT_OK


run = command(batch, extras=("ray",))
