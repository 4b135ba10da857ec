"""``python -m faults``: run the fault scenarios, write FAULTS.md and faults/results.json.

Usage: python -m faults [--only F1,F3] [--quick] [--no-postgres] [--postgres URL]
Exits 1 when any scenario's goal did not hold.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, Options, add_runner_arguments, environment, postgres_choice, selected
from faults.common import Outcome

#: scenario id -> module under faults/, in the order they run
SCENARIOS = {
    "F1": "faults.f1_server_kill",
    "F2": "faults.f2_postgres_restart",
    "F3": "faults.f3_agent_kill",
    "F4": "faults.f4_idempotent_retries",
    "F5": "faults.f5_rate_limit_burst",
    "F6": "faults.f6_bad_input",
    "F7": "faults.f7_soak",
}


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def markdown(outcomes: list[Outcome], env: dict[str, Any], skipped: dict[str, str]) -> str:
    lines = [
        "# Faults",
        "",
        f"Written by `make faults` (`python -m faults`) on {env['date']} ({env['cpus']} cores, "
        f"{env['cpu']}, Python {env['python']}). Raw record: "
        "[`faults/results.json`](faults/results.json).",
        "",
        "| # | scenario | goal | result | key figures |",
        "| --- | --- | --- | --- | --- |",
    ]
    for o in outcomes:
        figures = "; ".join(f"{k}: {_value(v)}" for k, v in o.figures.items())
        verdict = "**held**" if o.passed else "**FAILED**"
        lines.append(f"| {o.scenario} | {o.title} | {o.goal} | {verdict} | {figures} |")
    for name, why in skipped.items():
        lines += ["", f"Skipped {name}: {why}"]
    for o in outcomes:
        lines += ["", f"## {o.scenario}: {o.title}", "", f"Goal: {o.goal}", ""]
        lines += [f"- {k}: {_value(v)}" for k, v in o.figures.items()]
        if o.details:
            lines += [""] + [f"- {d}" for d in o.details]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m faults", description=__doc__)
    add_runner_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, short soak")
    parser.add_argument("--results", type=Path, default=ROOT / "faults" / "results.json")
    parser.add_argument("--markdown", type=Path, default=ROOT / "FAULTS.md")
    args = parser.parse_args(argv)
    wanted = selected(parser, args.only, list(SCENARIOS))
    postgres, skipped = postgres_choice(args)
    opts = Options(
        repeats=1,
        server_cpu=args.server_cpu,
        load_cpu=args.load_cpu,
        postgres=postgres,
        quick=args.quick,
    )
    env = environment(opts)
    outcomes: list[Outcome] = []
    for scenario in wanted:
        print(f"== {scenario} ({SCENARIOS[scenario]})", flush=True)
        started = time.monotonic()
        outcome: Outcome = importlib.import_module(SCENARIOS[scenario]).run(opts)
        outcome.figures["scenario seconds"] = round(time.monotonic() - started, 1)
        print(f"   {'held' if outcome.passed else 'FAILED'}: {outcome.figures}", flush=True)
        outcomes.append(outcome)
    record = {
        "environment": env,
        "skipped": skipped,
        "outcomes": [o.as_json() for o in outcomes],
    }
    args.results.write_text(json.dumps(record, indent=2) + "\n")
    args.markdown.write_text(markdown(outcomes, env, skipped))
    print(f"wrote {args.results} and {args.markdown}")
    if not all(o.passed for o in outcomes):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
