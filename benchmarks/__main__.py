"""``make bench`` / ``python -m benchmarks [--quick] [--only NAME ...] [--json PATH]``: every benchmark
beside its reference, one table on stdout (Markdown) and the same as JSON. Never fails on a missed
target: the table says which targets hold."""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from benchmarks.common import Row, machine

DEFAULT_JSON = Path(__file__).resolve().parent / "results.json"


def _suites(quick: bool) -> dict[str, Callable[[], list[Row]]]:
    from benchmarks import handoff, intake, loop, pickup, polling, scale, storm, waiting

    # waiting composes its rows from polling's of the same run: measured once when both are chosen
    polling_rows = functools.cache(lambda: polling.measure(repeats=3 if quick else 11))
    return {
        "intake": lambda: intake.measure(rounds=2 if quick else 5, seconds=2 if quick else 5),
        "handoff": lambda: handoff.measure(repeats=1 if quick else 3, quick=quick),
        "loop": lambda: loop.measure(rounds=1 if quick else 3, seconds=4 if quick else 10),
        "pickup": lambda: pickup.measure(repeats=3 if quick else 11),
        "polling": polling_rows,
        "storm": lambda: storm.measure(repeats=1 if quick else 3, events=1000 if quick else 10_000),
        "scale": lambda: scale.measure(quick=quick),
        "waiting": lambda: waiting.measure(polling_rows(), repeats=3 if quick else 11, stack_repeats=2 if quick else 7,
                                           concurrent=5 if quick else 50, hold=3 if quick else 20),
    }


def table(rows: list[Row]) -> str:
    lines = ["| benchmark | measured | reference (same run) | target | holds |", "|---|---|---|---|---|"]
    for row in rows:
        holds = {True: "yes", False: "**no**", None: "-"}[row.met]
        lines.append(f"| {row.what} | {row.value} | {row.reference} | {row.target} | {holds} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few, short repeats: a smoke run, not figures")
    parser.add_argument(
        "--only", nargs="+", choices=["intake", "handoff", "loop", "pickup", "polling", "storm", "scale", "waiting"]
    )
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"where to write the results ({DEFAULT_JSON.name})"
    )
    args = parser.parse_args(argv)
    suites = _suites(args.quick)
    chosen = args.only or list(suites)
    host = machine()
    began = time.monotonic()
    rows: list[Row] = []
    for name in chosen:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            rows.extend(suites[name]())
        except Exception as exc:  # a benchmark that cannot run is reported, never a failed build
            traceback.print_exc()
            rows.append(Row(name, f"{name}: could not run", f"{type(exc).__name__}: {exc}"[:200]))
    host["minutes"] = round((time.monotonic() - began) / 60, 1)
    print(
        f"\nmachine: {host['cpu']}, {host['cores']} cores, {host['memory_gb']} GB, {host['os']}, Python {host['python']}, "
        f"prefect {host['prefect']}, uvicorn {host['uvicorn']}, {host['wrk']}; load at start {host['load_1min_at_start']}\n"
    )
    print(table(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "quick": args.quick,
                "machine": host,
                "rows": [r.as_json() for r in rows],
            },
            indent=1,
            default=str,
        )
    )
    print(f"\nwritten to {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
