"""``recstream replay|tail|demo|evaluate|bundles|ab``: feed, watch, demonstrate and evaluate
the streaming recommender, roll bundles out and compare them on live traffic.

Heavy imports (aiokafka, rich, training) happen inside the commands so
``recstream --help`` stays fast.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from tools.ab_report import Report


def register(app: typer.Typer) -> None:
    app.command()(replay)
    app.command()(tail)
    app.command()(demo)
    app.command()(evaluate)
    app.add_typer(bundles_app, name="bundles")
    app.add_typer(ab_app, name="ab")


class Protocol(StrEnum):
    loo = "loo"
    stream = "stream"


def evaluate(
    bundle: Annotated[Path, typer.Option(help="A bundle directory (contains manifest.json).")],
    dataset: Annotated[
        str, typer.Option(help="The dataset the bundle was trained on.")
    ] = "ml-100k",
    protocol: Annotated[
        Protocol,
        typer.Option(
            help="loo: the held-out test cases, full ranking, through the ONNX files, plus "
            "text-only users (fp32 and int8). stream: a --split temporal bundle replays every "
            "interaction after its T in time order through the worker's code, ranking each "
            "event from the state before it, then applying it (prequential)."
        ),
    ] = Protocol.loo,
    online: Annotated[
        bool,
        typer.Option(
            help="--protocol stream: clicks teach items as they do in the worker (settings "
            "RECSTREAM_INFERENCE_ONLINE__*); --no-online: the static bundle, only users' "
            "sequences move."
        ),
    ] = True,
    queries: Annotated[
        int, typer.Option(help="--protocol loo: synthetic text queries to score.")
    ] = 500,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Evaluate a bundle as serving runs it (see --protocol)."""
    from inference.settings import InferenceSettings
    from recstream.errors import RecstreamError
    from training.data import load_dataset

    try:
        ds = load_dataset(dataset)
        if protocol is Protocol.stream:
            from tools.stream_eval import evaluate_stream, print_stream_table

            run = evaluate_stream(
                bundle, ds, online=online, settings=InferenceSettings(), progress=not as_json
            )
            if as_json:
                typer.echo(json.dumps(run.result, indent=2))
            else:
                print_stream_table(run.result)
            return
        from training.evaluate_bundle import evaluate_bundle
        from training.models_cli import SHOWN_METRICS, print_metrics_table

        result = evaluate_bundle(bundle, ds, n_queries=queries, progress=not as_json)
    except RecstreamError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    print_metrics_table(f"bundle {result['bundle']} on {result['dataset']}", result, SHOWN_METRICS)


def replay(
    dataset: Annotated[str, typer.Option(help="ml-100k, ml-1m, or a path to an event log.")] = (
        "ml-100k"
    ),
    rate: Annotated[float, typer.Option(help="Events per second.")] = 100.0,
    limit: Annotated[int | None, typer.Option(help="Stop after this many events.")] = None,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    query_fraction: Annotated[float, typer.Option(help="Share of search-text events.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed for the synthesized queries.")] = 0,
) -> None:
    """Publish a dataset's interactions in time order as live events (ts = now).

    About ``query_fraction`` of the events are synthesized search queries built
    from the genres/decade of the item the user clicks next.
    """
    import asyncio

    from recstream.settings import Settings
    from tools.replay import dataset_events, publish

    settings = Settings()
    events = dataset_events(dataset, query_fraction=query_fraction, seed=seed)
    sent = asyncio.run(
        publish(events, settings=settings, rate=rate, limit=limit, duration=duration)
    )
    typer.echo(f"published {sent} events to {settings.bootstrap}")


def tail(
    bundle: Annotated[
        Path | None, typer.Option(help="Bundle for titles (default: the served one).")
    ] = None,
    from_beginning: Annotated[bool, typer.Option(help="Start at the oldest message.")] = False,
    limit: Annotated[int | None, typer.Option(help="Exit after this many messages.")] = None,
) -> None:
    """Print recommendations as they are emitted, with item titles and latency."""
    import asyncio

    from recstream.settings import Settings
    from tools.tail import Titles, follow

    settings = Settings()
    titles = Titles.from_bundle(bundle or settings.bundles)
    asyncio.run(follow(settings, titles, from_beginning=from_beginning, limit=limit))


def demo(
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: until Ctrl-C).")
    ] = None,
    rate: Annotated[float, typer.Option(help="Replayed events per second.")] = 50.0,
    web_port: Annotated[int, typer.Option(help="The demo worker's HTTP port.")] = 6066,
) -> None:
    """The whole system on this machine, one command.

    Starts a local Apache Kafka, fetches MovieLens-100K, trains a quick bundle
    (cached under the state dir), starts a worker, replays events plus a few
    text-only new users, and shows live recommendations with titles and a
    latency summary. Ctrl-C stops everything it started.
    """
    from tools.demo import run_demo

    run_demo(duration=duration, rate=rate, web_port=web_port)


bundles_app = typer.Typer(
    help=(
        "What a bundles root serves, and canary rollouts: candidate -> promote, or rollback. "
        "Workers follow the pointers (CURRENT = control, CANDIDATE = canary) within "
        "RECSTREAM_WORKER_RELOAD_INTERVAL_S; every change is an atomic pointer rename."
    ),
    no_args_is_help=True,
)
RootOption = Annotated[
    Path | None,
    typer.Option(
        "--root", help="The bundles root (default: RECSTREAM_BUNDLE_DIR, else <state_dir>/bundles)."
    ),
]


def _root(root: Path | None) -> Path:
    from recstream.settings import Settings

    return root if root is not None else Settings().bundles


def _apply(fn: object, *args: object) -> None:
    from recstream.errors import RecstreamError

    try:
        change = fn(*args)  # type: ignore[operator]
    except RecstreamError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    for line in change.lines() or ["nothing changed"]:
        typer.echo(line)


@bundles_app.command("status")
def bundles_status(
    root: RootOption = None,
    verify: Annotated[
        bool, typer.Option(help="Also check every file's sha256 of each pointed-at bundle.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the pointers (CURRENT, CANDIDATE, PREVIOUS), what serves, and every bundle."""
    import json

    from inference.bundle.verify import verify_bundle
    from tools.bundles import status

    state = status(_root(root), verify=verify_bundle if verify else None)
    if as_json:
        typer.echo(json.dumps(state, indent=2))
        return
    typer.echo(f"root {state['root']}; serving (control): {state['serving'] or '-'}")
    for name, entry in state["pointers"].items():
        extra = ""
        if "verified" in entry:
            extra = " (verified)" if entry["verified"] else " (FAILED verification)"
        if entry.get("problem"):
            extra += f": {entry['problem']}"
        typer.echo(f"  {name:<9} {entry['version'] or '-'}{extra}")
    for b in state["bundles"]:
        typer.echo(f"  bundle {b['version']}  created {b['created_at']}")


@bundles_app.command("candidate")
def bundles_candidate(
    version: Annotated[
        str | None, typer.Argument(help="A sealed bundle directory name inside the root.")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Stop the canary instead.")] = False,
    root: RootOption = None,
) -> None:
    """Start the canary on VERSION (verified first), or stop it with --clear.

    The canary's share of users is the workers' RECSTREAM_WORKER_CANARY_SHARE.
    """
    from tools.bundles import candidate, clear_candidate

    if clear == (version is not None):
        raise typer.BadParameter("give a VERSION or --clear (not both)")
    if clear:
        _apply(clear_candidate, _root(root))
    else:
        _apply(candidate, _root(root), version)


@bundles_app.command("promote")
def bundles_promote(root: RootOption = None) -> None:
    """The candidate becomes CURRENT for everyone (verified first).

    What served before is kept as PREVIOUS, for `recstream bundles rollback`.
    """
    from tools.bundles import promote

    _apply(promote, _root(root))


@bundles_app.command("rollback")
def bundles_rollback(root: RootOption = None) -> None:
    """CURRENT goes back to PREVIOUS (what served before the last promote; verified first)."""
    from tools.bundles import rollback

    _apply(rollback, _root(root))


ab_app = typer.Typer(
    help="Compare the canary and control buckets on what users did (from the topics).",
    no_args_is_help=True,
)


def _when(text: str, now: float) -> float:
    """Epoch seconds from '-2h' / '-30m' / '-90s' / '-1d' (before now), 'now', epoch
    seconds, or an ISO 8601 time (UTC when it names no zone)."""
    import datetime as dt
    import re

    text = text.strip()
    m = re.fullmatch(r"-(\d+(?:\.\d+)?)([smhd])", text)
    if m:
        return now - float(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]]
    if text == "now":
        return now
    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(
            f"{text!r}: use -2h / -30m / now / epoch seconds / 2026-12-07T20:00:00Z"
        ) from exc
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp()


@ab_app.command("report")
def ab_report(
    start: Annotated[
        str,
        typer.Option(
            "--from", help="Start of the range: -2h, -30m, epoch seconds or ISO 8601 (UTC)."
        ),
    ],
    end: Annotated[str, typer.Option("--to", help="End of the range (same forms).")] = "now",
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="A hit is a click in the top k.")] = 10,
    lookback: Annotated[
        float,
        typer.Option(
            help="Seconds of lists read before --from (a click is judged against an earlier "
            "list; older lists are not read: such clicks count as no_recommendation)."
        ),
    ] = 3600.0,
    lists_per_user: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Lists kept per user while replaying, as the worker keeps them (default: "
            "RECSTREAM_WORKER_FEEDBACK_LISTS_PER_USER, 4). A click is judged only against "
            "these: when the worker lagged so far that all were sent after the click, it "
            "counted no_recommendation, and so does the report.",
        ),
    ] = None,
    resamples: Annotated[int, typer.Option(min=100, help="Bootstrap resamples.")] = 2000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Also write a PNG here. Needs matplotlib: the 'report' extra "
            "(pip install 'recstream\\[report]'; the dev extra has it too)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """HR@k and MRR@k per bucket and model version, from `recommendations` and `user-events`.

    Every click in the range is judged as the worker judged it live, with the same
    code (docs/metrics.md): the lists are replayed in the order the worker sent them,
    keeping each user's last --lists-per-user, and a click, at its own answer, is
    judged against the newest kept list sent before it (emitted_ts <= the click's
    ts). A click whose answer was not read is not judged. The difference canary -
    control gets a 95 % interval from a seeded bootstrap over users. Reads Kafka
    only (RECSTREAM_BOOTSTRAP, topic settings), no Prometheus; shows progress while
    reading.
    """
    import json
    import time

    from recstream.errors import RecstreamError
    from recstream.settings import Settings
    from stream.settings import WorkerSettings
    from tools.ab_kafka import read_range_sync
    from tools.ab_report import build_report, join

    now = time.time()
    t0, t1 = _when(start, now), _when(end, now)
    if t1 <= t0:
        raise typer.BadParameter("--to must be after --from")
    settings = Settings()
    per_user = lists_per_user or WorkerSettings().feedback_lists_per_user
    try:
        read = read_range_sync(settings, t0, t1, lookback_s=lookback, progress=not as_json)
        judged = join(read.sent, read.clicks, k, per_user=per_user)
        report = build_report(
            judged,
            k=k,
            per_user=per_user,
            lists_read=len(read.sent),
            resamples=resamples,
            seed=seed,
        )
        if plot is not None:
            from tools.ab_plot import plot_report

            title = f"recstream A/B {_iso(t0)} to {_iso(t1)}: {report.clicks_read} clicks"
            plot_report(report, plot, title)
    except (RecstreamError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        out = report.to_json()
        out["from"], out["to"] = t0, t1
        typer.echo(json.dumps(out, indent=2))
        return
    _print_report(report, t0, t1)
    if plot is not None:
        typer.echo(f"plot written to {plot}")


def _iso(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _print_report(report: Report, t0: float, t1: float) -> None:
    from rich.console import Console
    from rich.table import Table

    k = report.k
    console = Console()
    console.print(
        f"{_iso(t0)} to {_iso(t1)}: {report.clicks_read} clicks, {report.lists_read} lists read"
    )
    table = Table(title=f"Clicks judged against the user's latest earlier list (k={k})")
    for col in ("bucket", "model version", "clicks", "users", f"HR@{k}", f"MRR@{k}", "95 % (HR)"):
        table.add_column(col, justify="left" if col in ("bucket", "model version") else "right")
    for g in [*report.groups, *report.buckets]:
        ci = report.bucket_intervals.get(g.bucket, {}).get("hr") if g.model_version == "*" else None
        table.add_row(
            g.bucket,
            "all" if g.model_version == "*" else g.model_version,
            str(g.clicks),
            str(len(g.users)),
            f"{g.hr:.4f}",
            f"{g.mrr:.4f}",
            f"{ci[0]:.4f}-{ci[1]:.4f}" if ci else "",
        )
    console.print(table)
    for (bucket, version), n in sorted(report.no_recommendation.items()):
        console.print(f"no earlier list: {n} clicks ({bucket}, {version})")
    if report.unanswered:
        console.print(f"not judged (their answer was not read): {report.unanswered} clicks")
    for d in report.diffs:
        verdict = "excludes 0" if d.excludes_zero else "includes 0"
        console.print(
            f"canary - control {d.statistic.upper()}@{k}: {d.value:+.4f} "
            f"(95 % {d.low:+.4f} to {d.high:+.4f}, {verdict}; {d.resamples} resamples)"
        )
    if not report.diffs:
        console.print("no difference: clicks were judged against one bucket's lists only")
