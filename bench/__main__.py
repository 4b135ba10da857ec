"""``python -m bench``: run the benchmarks, write bench/results.json and BENCHMARKS.md.

Usage: python -m bench [--only P1,P3] [--repeats 3] [--quick] [--no-postgres]
       [--server-cpu 0] [--load-cpu 1] [--postgres URL]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    Figure,
    Options,
    add_runner_arguments,
    environment,
    postgres_choice,
    selected,
)

#: benchmark id -> module under bench/, in the order they run
BENCHMARKS = {
    "P1": "bench.p1_status_read",
    "P2": "bench.p2_patch_rate",
    "P3": "bench.p3_vs_procrastinate",
    "P4": "bench.p4_wake_latency",
    "P5": "bench.p5_fanout",
    "P6": "bench.p6_list_filter",
    "P7": "bench.p7_idle_longpolls",
}


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()


def _verdict(met: bool | None) -> str:
    return {True: "**met**", False: "**missed**", None: ""}[met]


def markdown(figures: list[Figure], env: dict[str, Any], skipped: dict[str, str], cmd: str) -> str:
    """BENCHMARKS.md: one table, then each figure's notes."""
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{cmd}` on {env['date']} ({env['cpus']} cores, {env['cpu']}, "
        f"Python {env['python']}, {env['wrk']}). Every figure is the median of "
        f"{env['repeats']} runs and stands next to its baseline measured in the same run; "
        f"servers pinned to CPU {env['server_cpu']}, load generators to CPU {env['load_cpu']}. "
        "Raw runs: [`bench/results.json`](bench/results.json). How each is measured, the "
        "profiles and what limits the missed goals: [`docs/benchmarks.md`](docs/benchmarks.md).",
        "",
        "| # | figure | median | runs | baseline (same run) | baseline median | ratio | goal | |",
        "| --- | --- | ---: | --- | --- | ---: | ---: | --- | --- |",
    ]
    for f in figures:
        runs = " · ".join(_fmt(r) for r in f.runs)
        ratio = f"{f.ratio:.3f}" if f.ratio is not None else "-"
        lines.append(
            f"| {f.benchmark} | {f.name} | {_fmt(f.median, f.unit)} | {runs} | "
            f"{f.baseline_name or '-'} | {_fmt(f.baseline_median, f.unit)} | {ratio} | "
            f"{f.goal} | {_verdict(f.met)} |"
        )
    noted = [f for f in figures if f.notes]
    if noted or skipped:
        lines += ["", "## Notes", ""]
        for name, why in skipped.items():
            lines.append(f"- skipped {name}: {why}")
        for f in noted:
            for note in f.notes:
                lines.append(f"- {f.benchmark} {f.name}: {note}")
    return "\n".join(lines) + "\n"


def _figure(recorded: dict[str, Any]) -> Figure:
    """A Figure back from its bench/results.json form."""
    names = {field.name for field in dataclasses.fields(Figure)}
    return Figure(**{k: v for k, v in recorded.items() if k in names})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    add_runner_arguments(parser)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument(
        "--before",
        type=Path,
        help="a checkout of an earlier commit; P1, P3, P6 also measure its server (before/after)",
    )
    parser.add_argument(
        "--keep-others",
        action="store_true",
        help="keep the figures of benchmarks not run now from the existing results file",
    )
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--markdown", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.repeats < 3 and not args.quick:
        parser.error("--repeats must be at least 3 (each figure is a median of >= 3 runs)")
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (Debian: apt-get install wrk util-linux)")
    wanted = selected(parser, args.only, list(BENCHMARKS))
    postgres, skipped = postgres_choice(args)
    opts = Options(
        repeats=args.repeats,
        server_cpu=args.server_cpu,
        load_cpu=args.load_cpu,
        postgres=postgres,
        quick=args.quick,
        before=args.before.resolve() if args.before else None,
    )
    env = environment(opts)
    figures: list[Figure] = []
    timings: dict[str, float] = {}
    for bench_id in wanted:
        print(f"== {bench_id} ({BENCHMARKS[bench_id]})", flush=True)
        started = time.monotonic()
        module = importlib.import_module(BENCHMARKS[bench_id])
        got: list[Figure] = module.run(opts)
        timings[bench_id] = round(time.monotonic() - started, 1)
        for f in got:
            ratio = f"  ratio {f.ratio:.3f}" if f.ratio is not None else ""
            print(f"   {f.name}: {_fmt(f.median, f.unit)}{ratio}  {_verdict(f.met)}", flush=True)
        figures += got
    cmd = (
        "make bench"
        if not argv and len(sys.argv) == 1
        else "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    )
    if args.keep_others and args.results.exists():
        earlier = json.loads(args.results.read_text())
        kept = [_figure(f) for f in earlier["figures"] if f["benchmark"] not in wanted]
        figures = sorted(kept + figures, key=lambda f: list(BENCHMARKS).index(f.benchmark))
        cmd = f"{earlier['command']}; then {cmd}"
        timings = {**earlier.get("seconds", {}), **timings}
        skipped = {**earlier.get("skipped", {}), **skipped}
    record = {
        "command": cmd,
        "environment": env,
        "skipped": skipped,
        "seconds": timings,
        "figures": [f.as_json() for f in figures],
    }
    args.results.write_text(json.dumps(record, indent=2) + "\n")
    args.markdown.write_text(markdown(figures, env, skipped, cmd))
    print(f"wrote {args.results} and {args.markdown}")


if __name__ == "__main__":
    main()
