"""The PNG of ``recstream ab report --plot``: each bucket's HR@k and MRR@k with 95 %
intervals, its model versions beside it, and canary − control with its interval.

matplotlib is an optional dependency (the ``report`` extra, also in ``dev``); it is
imported here only, when a plot is asked for.
"""

from __future__ import annotations

from pathlib import Path

from recstream.errors import ConfigError
from tools.ab_report import Report

__all__ = ["plot_report"]


def plot_report(report: Report, out: Path, title: str) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError(
            "--plot needs matplotlib: pip install 'recstream[report]' (it is in the dev extra)"
        ) from exc
    k = report.k
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), constrained_layout=True)
    for ax, stat, label in ((axes[0], "hr", f"HR@{k}"), (axes[1], "mrr", f"MRR@{k}")):
        names, values, lows, highs = [], [], [], []
        for g in report.buckets:
            lo, hi = report.bucket_intervals.get(g.bucket, {}).get(stat, (float("nan"),) * 2)
            v = g.hr if stat == "hr" else g.mrr
            names.append(f"{g.bucket}\n(all versions, {g.clicks} clicks)")
            values.append(v)
            lows.append(v - lo)
            highs.append(hi - v)
        xs = range(len(names))
        ax.bar(xs, values, yerr=[lows, highs], capsize=6, color=["#4c72b0", "#dd8452"][: len(xs)])
        for i, g in enumerate(report.buckets):  # each model version of the bucket as a dot
            for version in (x for x in report.groups if x.bucket == g.bucket):
                v = version.hr if stat == "hr" else version.mrr
                ax.plot(i, v, "k.", ms=8)
                ax.annotate(version.model_version, (i, v), xytext=(6, 0), fontsize=7,
                            textcoords="offset points", va="center")  # fmt: skip
        ax.set_xticks(list(xs), names, fontsize=8)
        ax.set_ylabel(label)
        ax.set_title(f"{label} by bucket (95 % bootstrap interval; dots: versions)", fontsize=9)
    ax = axes[2]
    if report.diffs:
        labels = [f"{d.statistic.upper()}@{k}" for d in report.diffs]
        vals = [d.value for d in report.diffs]
        err = [[d.value - d.low for d in report.diffs], [d.high - d.value for d in report.diffs]]
        ax.errorbar(range(len(vals)), vals, yerr=err, fmt="o", capsize=8, color="#c44e52")
        ax.axhline(0.0, color="grey", lw=1, ls="--")
        ax.set_xticks(range(len(vals)), labels)
        ax.set_xlim(-0.6, len(vals) - 0.4)
        ax.set_title("canary − control (95 % interval, bootstrap over users)", fontsize=9)
    else:
        ax.text(0.5, 0.5, "no difference: one bucket only", ha="center", va="center")
        ax.set_axis_off()
    fig.suptitle(title, fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
