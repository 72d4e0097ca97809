"""``make bench``: every benchmark in turn, one markdown table. ``python -m bench poll sweep`` runs only those named.

Every figure is judged against a baseline measured in the same run on the same machine (or, where the target is
absolute, reported beside one for context). Missing a target does not fail the run; a benchmark that errors does.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime

from bench import activations, billing, console, crypto, inner_api, inner_billing, invoices, observability, poll, sweep
from bench.common import Report, Row, print_report

BENCHMARKS: dict[str, Callable[[], Report]] = {
    "crypto": crypto.run,
    "poll": poll.run,
    "observability": observability.run,
    "activations": activations.run,
    "sweep": sweep.run,
    "inner_api": inner_api.run,
    "billing": billing.run,
    "inner_billing": inner_billing.run,
    "console": console.run,
    "invoices": invoices.run,
}


def main(argv: list[str]) -> int:
    unknown = [name for name in argv if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    report, failed, started = Report(), False, time.monotonic()
    for name in argv or list(BENCHMARKS):
        print(f"bench: running {name} ...", file=sys.stderr, flush=True)
        began = time.monotonic()
        try:
            result = BENCHMARKS[name]()
        except Exception as exc:
            traceback.print_exc()
            failed = True
            result = Report([Row(name, "error", "—", "—", f"{type(exc).__name__}: {exc}"[:200], False)])
        report.rows += result.rows
        report.notes += [note for note in result.notes if note not in report.notes]
        print(f"bench: {name} took {time.monotonic() - began:.0f}s", file=sys.stderr, flush=True)
    print_report(report)
    print(f"\n({datetime.now(UTC):%Y-%m-%d %H:%M} UTC; whole run {time.monotonic() - started:.0f}s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
