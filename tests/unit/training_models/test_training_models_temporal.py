"""A temporal-split bundle end to end (tiny): trained only on what happened before T,
then replayed after T by `recstream evaluate --protocol stream`, static and online."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inference.bundle import verify_bundle
from tests.unit.training_models.conftest import cyclic_sequences
from training.sequence_model import SequenceModelConfig
from training.sequence_train import SequenceTrainConfig
from training.text_finetune import TextTuneConfig
from training.train import TrainConfig, train_bundle

N_OLD, N_NEW = 24, 2  # items m24, m25 are first clicked after T
GENRES = ["Comedy", "Drama", "Horror", "Action"]


def _events() -> list[dict]:
    """60 users walk the catalog at ts 100..107; at 108 and 109 the even users click the
    two new items and the odd ones go on walking; 8 new users arrive at 108."""
    events = []
    for u, seq in enumerate(cyclic_sequences(N_OLD, n_users=60, length=10, seed=0)):
        for t, item in enumerate(seq):
            if t >= 8 and u % 2 == 0:
                item = N_OLD + (t - 8)  # m24 at 108, m25 at 109
            events.append({"user_id": f"u{u}", "item_id": f"m{item}", "ts": 100.0 + t})
    for u in range(60, 68):
        for t, item in enumerate((u % N_OLD, (u + 1) % N_OLD)):
            events.append({"user_id": f"u{u}", "item_id": f"m{item}", "ts": 108.0 + t})
    return events


def _write_event_log(path: Path, events: list[dict]) -> None:
    lines = []
    for i in range(N_OLD + N_NEW):
        attributes = {"year": 1970 + i, "genres": [GENRES[i % 4]]}
        value = {"item_id": f"m{i}", "op": "upsert", "title": f"Movie number {i}", "ts": 1.0}
        value["attributes"] = attributes
        lines.append({"topic": "item-updates", "value": value})
    for n, e in enumerate(events):
        lines.append({"topic": "user-events", "value": {**e, "event_id": f"e{n}", "type": "click"}})
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")


def _expected(events: list[dict], t_split: float) -> dict[str, int]:
    """Bucket sizes worked out from the events, independently of the evaluator."""
    order = sorted(range(len(events)), key=lambda i: (events[i]["ts"], i))
    before = [events[i] for i in order if events[i]["ts"] < t_split]
    after = [events[i] for i in order if events[i]["ts"] >= t_split]
    warm = {e["item_id"] for e in before}
    users = {e["user_id"] for e in before}
    counts = {"all": len(after), "warm_items": 0, "0": 0, "1-4": 0, "5-19": 0, "20+": 0}
    counts["new_users"] = sum(e["user_id"] not in users for e in after)
    seen: dict[str, int] = {}
    for e in after:
        item = e["item_id"]
        if item in warm:
            counts["warm_items"] += 1
            continue
        n = seen.get(item, 0)
        counts["0" if n == 0 else "1-4" if n < 5 else "5-19" if n < 20 else "20+"] += 1
        seen[item] = n + 1
    return counts


@pytest.fixture(scope="module")
def temporal(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("temporal")
    log = root / "events.jsonl"
    _write_event_log(log, _events())
    cfg = TrainConfig(
        text=TextTuneConfig(mode="lora", steps=3, batch_size=8, max_length=16),
        model=SequenceModelConfig(
            dim=32, d_model=32, n_layers=1, n_heads=2, max_len=8, dropout=0.0
        ),
        seq=SequenceTrainConfig(epochs=10, batch_size=32, lr=1e-2, patience=10, bf16=False),
        split="temporal",
        split_at=0.7,
        n_queries=20,
        threads=1,
        text_model_dir=str(tiny_bert_dir),
    )
    return train_bundle(str(log), root / "bundles", cfg, progress=False), log


def test_the_bundle_knows_only_what_happened_before_t(temporal: tuple[Path, Path]) -> None:
    bundle, _ = temporal
    manifest = verify_bundle(bundle)
    events = _events()
    cut = manifest.temporal_split
    assert cut is not None and cut.split_at == 0.7
    # 680 events in time order: the 476th (0.7 quantile) is at ts 107; all of 107 is after
    assert cut.time == 107.0
    assert cut.interactions_before == sum(e["ts"] < 107.0 for e in events)
    assert cut.interactions_after == sum(e["ts"] >= 107.0 for e in events)
    lines = (bundle / "items.jsonl").read_text().splitlines()
    items = [json.loads(line)["item_id"] for line in lines]
    assert sorted(items) == sorted(f"m{i}" for i in range(N_OLD))  # no item of the future
    # the prior counts training interactions: each user's last two before T (105, 106) are
    # leave-one-out's validation and test targets
    assert manifest.popularity is not None and manifest.popularity.as_of == 104.0


def test_evaluate_stream_replays_after_t_with_buckets(temporal: tuple[Path, Path]) -> None:
    from recstream.cli import app

    bundle, log = temporal
    runner = CliRunner()
    results = {}
    for flag in ("--online", "--no-online"):
        args = ["evaluate", "--bundle", str(bundle), "--dataset", str(log)]
        out = runner.invoke(app, [*args, "--protocol", "stream", flag, "--json"])
        assert out.exit_code == 0, out.output
        results[flag] = json.loads(out.stdout)
    expected = _expected(_events(), 107.0)
    for flag, result in results.items():
        stream = result["stream"]
        assert result["online"] is (flag == "--online")
        assert stream["all"]["n"] == expected["all"]
        assert stream["warm_items"]["n"] == expected["warm_items"]
        assert stream["new_users"]["n"] == expected["new_users"]
        for bucket in ("0", "1-4", "5-19", "20+"):
            assert stream["new_items"][bucket]["n"] == expected[bucket], bucket
        for m in [stream["all"], stream["warm_items"], *stream["new_items"].values()]:
            if m["n"]:
                assert 0.0 <= m["ndcg@10"] <= m["hr@10"] <= 1.0
    assert results["--online"]["learner"]["new_items_published"] == N_NEW
    # the bundle learned the walk: the static replay already finds most warm next items
    assert results["--no-online"]["stream"]["warm_items"]["hr@10"] > 0.5


def test_evaluate_stream_refuses_a_bundle_of_another_split(tmp_path: Path) -> None:
    from inference.testing import build_tiny_bundle
    from recstream.cli import app

    bundle = build_tiny_bundle(tmp_path, n_items=30, dim=16)
    log = tmp_path / "events.jsonl"
    _write_event_log(log, _events())
    out = CliRunner().invoke(
        app, ["evaluate", "--bundle", str(bundle), "--dataset", str(log), "--protocol", "stream"]
    )
    assert out.exit_code == 1
    assert "temporal" in out.output
