"""P2's PATCH rate of this checkout next to an earlier one's, in interleaved runs.

One P2 subject per checkout (``bench.p2_patch_rate.prepare``: a fresh database,
``opstatus serve`` pinned to the server CPU, 128 executions claimed and put in progress), then
wrk with bench/lua/patch_progress.lua on the load CPU: ``--runs`` runs of
``--seconds`` each, the two servers taking turns. Prints req/s and the server's CPU
per PATCH of every run (the rate limiter on, as every benchmark has it).
``--profile FILE`` records the second run of this checkout with py-spy (raw format:
one stack and its count per line).

Usage: python bench/p2_pairs.py sqlite|postgres [--synchronous FULL] [--before PATH]
       [--runs 3] [--seconds 10] [--profile FILE] [--postgres URL]
(``--before``: a checkout whose server to measure too, e.g. a ``git worktree``.)
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent))

from bench import p2_patch_rate
from bench.common import (
    BIN,
    DEFAULT_POSTGRES,
    Options,
    cpu_times,
    opstatus,
    postgres_database,
    sqlite_database,
    wrk,
)


def main() -> None:
    """Start the subjects, then run wrk against them in turns."""
    parser = argparse.ArgumentParser(prog="python bench/p2_pairs.py")
    parser.add_argument("kind", choices=["sqlite", "postgres"])
    parser.add_argument("--synchronous", default="FULL", help="SQLite's synchronous pragma")
    parser.add_argument("--before", type=Path, help="an earlier checkout's server, too")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--profile", type=Path, help="py-spy raw output of this checkout")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    args = parser.parse_args()
    opts = Options(postgres=args.postgres)
    checkouts: list[tuple[str, Path | None]] = [("this", None)]
    if args.before is not None:
        checkouts.insert(0, ("before", args.before.resolve()))
    with contextlib.ExitStack() as stack:
        subjects = []
        for label, checkout in checkouts:
            if args.kind == "sqlite":
                url = stack.enter_context(sqlite_database(opts, "opstatus.db"))
            else:
                url = stack.enter_context(postgres_database(args.postgres, "p2pairs"))
            env = {"OPSTATUS_SQLITE_SYNCHRONOUS": args.synchronous}
            if checkout is not None:
                env["PYTHONPATH"] = str(checkout)
            server = stack.enter_context(opstatus(url, cpu=opts.server_cpu, env=env, name=label))
            agent, ids = p2_patch_rate.prepare(server.url, f"p2pairs-{label}")
            ids_file = Path(tempfile.mkstemp(prefix="bench-p2pairs-", suffix=".txt")[1])
            stack.callback(ids_file.unlink, missing_ok=True)
            ids_file.write_text("\n".join(ids) + "\n")
            subjects.append((label, server, agent, ids_file))
        for run in range(args.runs):
            for label, server, agent, ids_file in subjects:
                spy = None
                if args.profile is not None and label == "this" and run == 1:
                    argv = [str(BIN / "py-spy"), "record", "-p", str(server.pid), "-r", "200"]
                    argv += ["-d", str(int(args.seconds) - 2), "-f", "raw", "-o", str(args.profile)]
                    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
                before = cpu_times(server.pid)
                result = wrk(
                    f"{server.url}/", cpu=opts.load_cpu, seconds=args.seconds,
                    connections=p2_patch_rate.CONNECTIONS, headers={"X-API-Key": agent},
                    script=p2_patch_rate.SCRIPT, script_args=[str(ids_file)],
                )  # fmt: skip
                used = cpu_times(server.pid) - before
                per = 1000 * used.running / max(1, result.requests)
                print(
                    f"run {run} {label:6} {result.requests_per_second:7,.0f} PATCH/s  "
                    f"server CPU {per:.3f} ms per PATCH  non-2xx {result.non_2xx}",
                    flush=True,
                )
                if spy is not None:
                    spy.wait()


if __name__ == "__main__":
    main()
