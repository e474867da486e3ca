"""OnnxRecommender end to end over a real tiny bundle."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from inference.errors import InferenceError
from inference.recommender import OnnxRecommender, item_text
from inference.settings import CandidateSettings, FusionSettings, InferenceSettings
from inference.testing import build_tiny_bundle, genre_of
from inference.types import Request


def _genres(rec: OnnxRecommender, items: list) -> list[str]:
    return [genre_of(rec.index.row(it.item_id)) for it in items]


def test_text_query_returns_items_of_that_genre(rec: OnnxRecommender) -> None:
    res = rec.recommend(Request("u1", query="something funny, a comedy with jokes", k=10))
    assert len(res.items) == 10 and res.model_version == "tiny-flat"
    assert _genres(rec, res.items) == ["comedy"] * 10
    assert all("query" in it.sources for it in res.items)
    assert res.items[0].because == "something funny, a comedy with jokes"
    assert res.query_vector is not None and res.query_vector.shape == (32,)
    assert set(res.timings) == {"encode_text", "encode_sequence", "search", "fuse"}


def test_history_drives_recommendations_and_is_excluded(rec: OnnxRecommender) -> None:
    history = ["i1", "i9", "i17", "i25"]  # horror
    res = rec.recommend(Request("u2", history=history, exclude=frozenset({"i33"}), k=10))
    ids = [it.item_id for it in res.items]
    assert not set(ids) & {*history, "i33"}
    assert _genres(rec, res.items).count("horror") >= 8
    assert all(it.because in history for it in res.items if "sequence" in it.sources)


def test_cold_user_without_query_gets_popular_items(rec: OnnxRecommender) -> None:
    res = rec.recommend(Request("u3", history=["unknown-item"], k=5))
    expected = [rec.index.item_id(int(r)) for r in rec.index.popular(5)]
    assert [it.item_id for it in res.items] == expected
    assert all(it.sources == ("popular",) and it.because is None for it in res.items)


def test_fresh_query_beats_history_and_old_query_fades(rec: OnnxRecommender) -> None:
    history = ["i1", "i9", "i17", "i25", "i41"]  # horror
    fresh = rec.recommend(
        Request("u", history=history, query="love wedding romance", query_age_s=0)
    )
    stale = rec.recommend(
        Request("u", history=history, query="love wedding romance", query_age_s=36_000)
    )
    assert _genres(rec, fresh.items).count("romance") > _genres(rec, stale.items).count("romance")
    assert _genres(rec, stale.items).count("horror") >= 8


def test_results_are_deterministic_across_loads(flat_bundle: Path) -> None:
    reqs = [
        Request("a", history=["i3", "i11"], query="space robots", query_age_s=30),
        Request("b", query="cowboy desert"),
        Request("c"),
    ]
    one = OnnxRecommender.load(flat_bundle).recommend_batch(reqs)
    two = OnnxRecommender.load(flat_bundle).recommend_batch(reqs)
    assert [r.items for r in one] == [r.items for r in two]


def _mixed_requests(rec: OnnxRecommender) -> list[Request]:
    rng = np.random.default_rng(7)
    cached = rec.encode_texts(["scary monster"])[0]
    reqs = []
    for i in range(40):
        hist = [f"i{j}" for j in rng.integers(0, 200, size=int(rng.integers(0, 12)))]
        kind = i % 5
        reqs.append(
            Request(
                f"u{i}",
                history=[*hist, "ghost-item"] if kind == 3 else hist,
                query=["funny jokes", "space robot", None, "  ", "love story"][kind],
                query_age_s=float(rng.integers(0, 3000)),
                query_vector=cached if i == 7 else None,
                exclude=frozenset(f"i{j}" for j in range(0, 200, 2)) if i == 11 else frozenset(),
                k=[10, 3, 25, 0, 10][kind],
            )
        )
    return reqs


@pytest.mark.parametrize("which", ["rec", "hnsw_rec"])
def test_batch_equals_single_requests_item_for_item(
    which: str, request: pytest.FixtureRequest
) -> None:
    rec: OnnxRecommender = request.getfixturevalue(which)
    reqs = _mixed_requests(rec)
    batch = rec.recommend_batch(reqs)
    assert [r.user_id for r in batch] == [q.user_id for q in reqs]
    for req, got in zip(reqs, batch, strict=True):
        alone = rec.recommend(req)
        assert [(i.item_id, i.sources, i.because) for i in got.items] == [
            (i.item_id, i.sources, i.because) for i in alone.items
        ], req.user_id
        assert np.allclose([i.score for i in got.items], [i.score for i in alone.items], atol=1e-5)
    assert len(batch[3].items) == 0  # k=0
    excluded = {f"i{j}" for j in range(0, 200, 2)}
    assert len(batch[11].items) == 3 and not {i.item_id for i in batch[11].items} & excluded


def test_request_losing_its_hits_to_exclusions_is_searched_again(flat_bundle: Path) -> None:
    small = InferenceSettings(candidates=CandidateSettings(query=5, popular=0, exclusion_margin=2))
    rec = OnnxRecommender.load(flat_bundle, small)
    comedies = [f"i{r}" for r in range(0, 200, 8)]  # 25 items
    req = Request("u", query="funny comedy jokes", exclude=frozenset(comedies[:20]), k=5)
    got = rec.recommend_batch([req, Request("v", query="funny comedy jokes", k=5)])
    assert sorted(it.item_id for it in got[0].items) == sorted(comedies[20:])
    assert got[1].items[0].item_id in comedies[:20]


def test_upsert_is_recommendable_at_once_and_delete_is_final(rec: OnnxRecommender) -> None:
    rec.upsert_item("brand-new", "Jokes Galore", "hilarious jokes funny laugh comedy comedy")
    assert rec.title("brand-new") == "Jokes Galore" and rec.n_items == 201
    res = rec.recommend(Request("u", query="hilarious jokes", k=5))
    assert res.items[0].item_id == "brand-new"
    rec.delete_item("brand-new")
    rec.delete_item("i0")
    rec.delete_item("not-there")  # harmless
    for req in (Request("u", query="hilarious jokes", k=50), Request("v", k=200)):
        ids = {it.item_id for it in rec.recommend(req).items}
        assert not ids & {"brand-new", "i0"}
    assert rec.title("brand-new") is None and rec.n_items == 199


def test_hnsw_recommender_tombstones_and_maintain(hnsw_rec: OnnxRecommender) -> None:
    for r in range(0, 400, 3):
        hnsw_rec.delete_item(f"i{r}")
    res = hnsw_rec.recommend(Request("u", query="funny comedy", k=10))
    assert len(res.items) == 10 and all(int(i.item_id[1:]) % 3 for i in res.items)
    assert hnsw_rec.maintain() and not hnsw_rec.maintain()
    again = hnsw_rec.recommend(Request("u", query="funny comedy", k=10))
    assert len({i.item_id for i in again.items} & {i.item_id for i in res.items}) >= 9


def test_bad_input_does_not_crash(rec: OnnxRecommender) -> None:
    res = rec.recommend_batch(
        [
            Request("a", query="   ", query_vector=np.ones(5, dtype=np.float32), k=4),
            Request("b", history=["nope"] * 3, query="x" * 10_000, k=-1),
        ]
    )
    assert [len(r.items) for r in res] == [4, 0]
    rec.upsert_item("blank", "", None)  # no text at all: a zero vector, still servable
    huge = rec.recommend(Request("c", query="comedy", k=10**9))
    # every item but the blank one, which has no text for the query source to propose it by
    assert rec.n_items == 201 and len(huge.items) == 200
    assert "blank" not in {it.item_id for it in huge.items}
    assert res[0].query_vector is None
    assert rec.recommend_batch([]) == []
    rec.encode_texts([" ".join(["comedy"] * 50)])
    assert rec.truncated_texts >= 1


def test_closed_recommender_refuses(rec: OnnxRecommender) -> None:
    rec.close()
    with pytest.raises(InferenceError, match="closed"):
        rec.recommend(Request("u"))
    with pytest.raises(InferenceError, match="closed"):
        rec.upsert_item("x", "funny comedy")


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSTREAM_INFERENCE_THREADS", "2")
    monkeypatch.setenv("RECSTREAM_INFERENCE_FUSION__QUERY_HALF_LIFE_S", "30")
    monkeypatch.setenv("RECSTREAM_INFERENCE_CANDIDATES__SEQUENCE", "7")
    s = InferenceSettings()
    assert (s.threads, s.fusion.query_half_life_s, s.candidates.sequence) == (2, 30.0, 7)


def test_item_text_prefixes_title_only_when_missing() -> None:
    assert item_text("Heat", None) == "Heat"
    assert item_text("Heat", "Heat (1995) Action") == "Heat (1995) Action"
    assert item_text("Heat", "a crime film") == "Heat. a crime film"


def test_serving_path_never_imports_torch(flat_bundle: Path) -> None:
    code = (
        "import sys, inference, inference.cli, inference.testing\n"
        "from inference import OnnxRecommender, Request\n"
        f"rec = OnnxRecommender.load({str(flat_bundle)!r})\n"
        "rec.upsert_item('x', 'X', 'funny')\n"
        "assert rec.recommend(Request('u', history=['i1'], query='funny')).items\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


async def test_hot_swap_of_real_recommenders(
    flat_bundle: Path, hnsw_bundle: Path, tmp_path: Path
) -> None:
    from inference.recommender import recommender_loader
    from stream.metrics import WorkerMetrics
    from stream.model import ModelHolder
    from stream.overlay import ItemOverlay

    root = tmp_path / "bundles"
    for bundle in (flat_bundle, hnsw_bundle):
        shutil.copytree(bundle, root / bundle.name)
    (root / "CURRENT").write_text("tiny-flat")
    loader = recommender_loader(InferenceSettings.defaults())
    holder = ModelHolder(root, loader=loader, metrics=WorkerMetrics(), overlay=ItemOverlay())
    assert await holder.maybe_reload()
    old = holder.current
    assert isinstance(old, OnnxRecommender)
    assert old.recommend(Request("u", query="comedy")).model_version == "tiny-flat"
    (root / "CURRENT").write_text("tiny-hnsw")
    assert await holder.maybe_reload()
    # The old model is closed at the swap (between batches, nothing uses it any more).
    with pytest.raises(InferenceError, match="closed"):
        old.recommend(Request("u"))
    new = holder.current
    assert isinstance(new, OnnxRecommender)
    assert new.recommend(Request("u", query="comedy")).model_version == "tiny-hnsw"


def test_cli_import_stays_light() -> None:
    code = (
        "import sys, inference.cli\n"
        "heavy = {'numpy', 'onnxruntime', 'faiss', 'torch'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_the_bundles_tuned_warm_prior_is_served_unless_settings_name_one(
    flat_bundle: Path, bundles_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert OnnxRecommender.load(flat_bundle).settings.fusion.warm_prior() == 0.1  # no entry
    heavy = build_tiny_bundle(bundles_root, version="tiny-heavy-prior", popularity_weight_warm=50.0)
    served = OnnxRecommender.load(heavy)
    assert served.settings.fusion.popularity_weight_warm == 50.0
    history = [served.index.item_id(r) for r in range(0, 40, 4)]
    popular = {served.index.item_id(int(r)) for r in np.argsort(-served.index.popularity)[:30]}
    top = [it.item_id for it in served.recommend(Request("u", history=history, k=10)).items]
    own = OnnxRecommender.load(
        heavy, InferenceSettings(fusion=FusionSettings(popularity_weight_warm=0.0))
    )
    plain = [it.item_id for it in own.recommend(Request("u", history=history, k=10)).items]
    # at 50 x the sequence's weight the prior decides the list; at 0 it has no say
    assert len(popular.intersection(top)) >= 9 and len(popular.intersection(plain)) < 9
    monkeypatch.setenv("RECSTREAM_INFERENCE_FUSION__POPULARITY_WEIGHT_WARM", "0.2")
    # the environment is read where the settings are built (the worker's edge), not below
    assert OnnxRecommender.load(heavy).settings.fusion.popularity_weight_warm == 50.0
    from_env = InferenceSettings()
    assert OnnxRecommender.load(heavy, from_env).settings.fusion.popularity_weight_warm == 0.2


def test_an_item_without_usable_text_never_wins_a_text_query(rec: OnnxRecommender) -> None:
    query = "something funny, a comedy with jokes"
    qvec = rec.encode_texts([query])[0]
    # a placeholder item sitting on the query itself: the hub the rule is for
    rec.upsert_item("hub", "unkonwn", None)
    assert not rec.index.has_text[rec.index.row("hub")]
    rec.index.upsert("hub", qvec)  # e.g. a learned vector; the text flag stays
    res = rec.recommend(Request("u", query=query, k=10))
    assert "hub" not in [it.item_id for it in res.items] and len(res.items) == 10
    # the same vector with usable text is the query's first pick (so the rule is what holds)
    rec.upsert_item("hub", "Jokes", None)
    rec.index.upsert("hub", qvec)
    assert rec.recommend(Request("u", query=query, k=10)).items[0].item_id == "hub"
    # behaviour still ranks a textless item: the sequence source proposes it
    rec.upsert_item("hub", "", None)
    hist = rec.recommend(Request("u", history=["i1", "i9", "i17", "i25"], k=rec.n_items))
    assert [it.sources for it in hist.items if it.item_id == "hub"] == [("sequence",)]


def test_a_catalog_without_usable_text_answers_queries_without_searching_for_text(
    flat_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = OnnxRecommender.load(flat_bundle, None)
    for row in range(len(rec.index)):
        item = rec.index.item_id(row)
        assert item is not None
        rec.index.upsert(item, rec.index.vectors[row].copy(), has_text=False)
    depths: list[int] = []
    search = rec.index.search

    def spy(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        depths.append(k)
        return search(queries, k)

    monkeypatch.setattr(rec.index, "search", spy)
    queries = [Request(f"u{i}", query="funny comedy jokes", k=10) for i in range(8)]
    got = rec.recommend_batch(queries)
    assert all(len(r.items) == 10 for r in got)  # the popular source still answers
    assert not [it for r in got for it in r.items if "query" in it.sources]
    # the old code searched once, found no row with text, then searched every request
    # again over the whole catalog (597 ms per batch of 32 on 100k items)
    assert max(depths, default=0) < len(rec.index), depths


def test_query_vectors_are_cached_by_text_and_bounded(flat_bundle: Path) -> None:
    rec = OnnxRecommender.load(flat_bundle, InferenceSettings(query_cache_size=2))
    enc = rec.text_encoder
    first = rec.recommend(Request("u1", query="funny comedy", k=5))
    assert enc.encoded == 1
    again = rec.recommend(Request("u2", query="  funny comedy ", k=5))  # same cleaned text
    assert enc.encoded == 1  # from the cache
    assert [i.item_id for i in again.items] == [i.item_id for i in first.items]
    rec.recommend_batch([Request("u3", query="scary horror"), Request("u4", query="war")])
    assert enc.encoded == 3
    rec.recommend(Request("u5", query="funny comedy"))  # dropped: least recently used
    assert enc.encoded == 4
    off = OnnxRecommender.load(flat_bundle, InferenceSettings(query_cache_size=0))
    off.recommend(Request("u1", query="funny comedy"))
    off.recommend(Request("u1", query="funny comedy"))
    assert off.text_encoder.encoded == 2


def test_warm_up_serves_every_bucket_and_leaves_no_trace(flat_bundle: Path) -> None:
    rec = OnnxRecommender.load(flat_bundle)
    before = rec.recommend(Request("u1", history=["i3", "i5"], query="funny", k=5))
    seconds = rec.warm_up(batch_sizes=(1, 4))
    assert seconds > 0 and rec.text_encoder.encoded > 1
    assert rec._query_cache is not None and len(rec._query_cache) == 0  # warm texts dropped
    after = rec.recommend(Request("u1", history=["i3", "i5"], query="funny", k=5))
    assert [i.item_id for i in after.items] == [i.item_id for i in before.items]


def test_a_rebuild_in_another_thread_never_renumbers_rows_under_a_batch(
    hnsw_rec: OnnxRecommender,
) -> None:
    # maintain() runs off the event loop (stream.app): a batch in progress must see one
    # numbering of rows from its first lookup to its last id, however long it takes.
    for r in range(0, 400, 3):
        hnsw_rec.delete_item(f"i{r}")
    reqs = [
        Request("u", history=("i1", "i2", "i4"), query="funny comedy", k=10),
        Request("v", history=("i5", "i7"), exclude=frozenset({"i8"}), k=10),
        Request("w", query="scary horror", k=10),
    ]
    before = [[(i.item_id, i.score) for i in r.items] for r in hnsw_rec.recommend_batch(reqs)]
    built, old_state = threading.Event(), hnsw_rec.index._state
    real_build, real_queries = hnsw_rec.index._build, hnsw_rec._query_vectors

    def build(vecs: np.ndarray) -> object:
        index = real_build(vecs)
        built.set()
        return index

    swapped_mid_batch: list[bool] = []

    def queries_after_the_build(requests):  # type: ignore[no-untyped-def]
        assert built.wait(30)
        time.sleep(0.5)  # room for a swap that would not wait for the batch
        swapped_mid_batch.append(hnsw_rec.index._state is not old_state)
        return real_queries(requests)

    hnsw_rec.index._build = build  # type: ignore[method-assign]
    hnsw_rec._query_vectors = queries_after_the_build  # type: ignore[method-assign]
    with ThreadPoolExecutor(1) as pool:
        done = pool.submit(hnsw_rec.maintain)
        during = hnsw_rec.recommend_batch(reqs)
        assert done.result(30) is True
    assert swapped_mid_batch == [False]
    assert [[(i.item_id, i.score) for i in r.items] for r in during] == before
    assert hnsw_rec.index._state is not old_state and len(hnsw_rec.index.vectors) == 266
    hnsw_rec._query_vectors = real_queries  # type: ignore[method-assign]
    after = hnsw_rec.recommend_batch(reqs)
    assert all(int(i.item_id[1:]) % 3 for r in after for i in r.items)
