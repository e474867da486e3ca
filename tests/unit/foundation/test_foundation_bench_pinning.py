"""bench/pinning.py and bench/latency.py's capacity search (no Kafka)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from bench.latency import RateResult, find_capacity, summarize, sustained
from bench.pinning import Pinner, parse_cpus, tasks

CPUS = sorted(os.sched_getaffinity(0))


def test_parse_cpus_lists_and_ranges() -> None:
    first = CPUS[0]
    assert parse_cpus(str(first)) == {first}
    assert parse_cpus(f"{first}-{first}") == {first}
    with pytest.raises(ValueError, match="not a subset"):
        parse_cpus("4096")


def test_pinner_moves_every_thread_including_later_ones() -> None:
    target = frozenset({CPUS[-1]})
    code = (
        "import threading, time\n"
        "time.sleep(0.3)\n"
        "for _ in range(3): threading.Thread(target=time.sleep, args=(5,), daemon=True).start()\n"
        "time.sleep(5)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        pinner = Pinner(child.pid, target, interval=0.1)
        time.sleep(1.0)  # the threads started after the first pass
        assert len(tasks(child.pid)) == 4
        assert pinner.check()
        assert all(os.sched_getaffinity(t) == target for t in tasks(child.pid))
        pinner.stop()
    finally:
        child.kill()
        child.wait()


def _result(rate: float, *, p99: float, out: float | None = None) -> RateResult:
    nan = float("nan")
    return RateResult(
        mode="model", rate=rate, sent=int(rate), received=int(rate), missing=0,
        input_rate=rate, output_rate=rate if out is None else out, p50_ms=p99 / 3,
        p95_ms=nan, p99_ms=p99, max_ms=p99, load_before=0, load_after=0,
        worker_cpu_ms_per_event=0.4,
    )  # fmt: skip


def test_sustained_needs_output_rate_and_p99() -> None:
    assert sustained(_result(1000, p99=40), 100)
    assert not sustained(_result(1000, p99=140), 100)
    assert not sustained(_result(1000, p99=40, out=900), 100)


def test_capacity_steps_up_then_bisects() -> None:
    limit = 1700.0  # the fake worker keeps up to here
    seen: list[float] = []

    def measure(rate: float, phase: str = "rate") -> RateResult:
        seen.append(rate)
        r = _result(rate, p99=30 if rate <= limit else 900)
        r.phase, r.sustained = phase, sustained(r, 100)
        return r

    args = SimpleNamespace(cap_start=1000, cap_factor=1.25, cap_max=8000, cap_refine=2)
    cap, steps = find_capacity(args, measure, "model")
    assert seen[:4] == [1000, 1250, 1562, 1952]  # geometric steps up to the first failure
    assert cap is not None and 1562 <= cap <= limit
    assert len(steps) == 6


def test_summary_ratios_use_fixed_rates_only() -> None:
    floor, model = _result(1000, p99=20), _result(1000, p99=30)
    floor.mode = "passthrough"
    cap_f, cap_m = _result(3000, p99=50), _result(2000, p99=50)
    cap_f.mode, cap_f.phase, cap_f.sustained = "passthrough", "capacity", True
    cap_m.phase, cap_m.sustained = "capacity", True
    s = summarize([floor, model, cap_f, cap_m])
    assert s["capacity"] == {"passthrough": 3000, "model": 2000}
    assert s["capacity_ratio"] == pytest.approx(2 / 3)
    assert s["rates"]["1000"]["p99_ratio"] == pytest.approx(1.5)
