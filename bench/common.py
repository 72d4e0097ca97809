"""What every benchmark shares: the result row, the markdown table, free ports and CPU accounting."""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Row:
    """One line of the table: the product's figure, the baseline's, and the ratio or target it is judged by."""

    benchmark: str
    figure: str
    baseline: str
    baseline_figure: str
    ratio_target: str
    passed: bool | None = None  # None: reported for context, no target


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def verdict(passed: bool | None) -> str:
    return "—" if passed is None else ("yes" if passed else "**NO**")


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| benchmark | figure | baseline | figure | ratio / target | pass? |",
        "|---|---:|---|---:|---|:---:|",
    ]
    lines += [
        f"| {r.benchmark} | {r.figure} | {r.baseline} | {r.baseline_figure} | {r.ratio_target} | {verdict(r.passed)} |"
        for r in rows
    ]
    return "\n".join(lines)


def print_report(report: Report) -> None:
    print(markdown_table(report.rows))
    if report.notes:
        print()
        for note in report.notes:
            print(f"- {note}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (from /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


class CpuMeter:
    """CPU used by a process over a wall-clock window, as a share of one core."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._cpu = process_cpu_seconds(pid)
        self._wall = time.monotonic()

    def share(self) -> float:
        return (process_cpu_seconds(self.pid) - self._cpu) / (time.monotonic() - self._wall)


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent busy since boot (from /proc/stat)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / CLOCK_TICKS


class MachineMeter:
    """Cores kept busy over a wall-clock window by everything on the machine (other sessions' tests included)."""

    def __init__(self) -> None:
        self._busy = machine_busy_seconds()
        self._wall = time.monotonic()

    def cores(self) -> float:
        return (machine_busy_seconds() - self._busy) / (time.monotonic() - self._wall)


def rate(value: float, unit: str = "/s") -> str:
    return f"{value:,.0f}{unit}"


def percent(value: float) -> str:
    return f"{value:.0%}"
