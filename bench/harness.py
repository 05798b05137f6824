"""What the benchmark scripts share: settings, scratch databases, timings, tables."""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from scopegate.settings import Settings

# The benches share tests/support/ (servers, load, scratch databases) with the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support import database as support_database

HOST = "127.0.0.1"
SECRET = "bench-secret-not-for-production-0123456789abcdef"


def settings_for(url: str, base_url: str = f"http://{HOST}") -> Settings:
    """The benches measure the work, not the limits: rate limits off (300 mints a
    minute per parent credential would stop ``bench/authz.py``'s cold-token case)."""
    return Settings(database_url=url, secret_key=SECRET, base_url=base_url, log_level="WARNING",
                    rate_limits_enabled=False)


@contextmanager
def scratch_database(admin_url: str, name: str) -> Iterator[str]:
    """A fresh PostgreSQL database ``<name>_<pid>`` beside ``admin_url``'s, dropped after."""
    with support_database.scratch_database(admin_url, f"{name}_{os.getpid()}") as url:
        yield url


@dataclass(frozen=True)
class Timing:
    median_us: float
    p95_us: float
    iterations: int
    #: The 10th percentile: on a machine shared with other load, the least disturbed.
    p10_us: float = 0.0


def summarize(samples: list[float]) -> Timing:
    return Timing(
        median_us=statistics.median(samples),
        p95_us=statistics.quantiles(samples, n=100)[94],
        iterations=len(samples),
        p10_us=statistics.quantiles(samples, n=10)[0],
    )


def table(header: list[str], rows: list[list[str]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])
