"""ItemIndex: upsert/delete visibility (also under concurrent searches), HNSW tombstones."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from inference.bundle import load_bundle
from inference.index import ItemIndex, load_index


def _index(bundle_path: Path) -> ItemIndex:
    b = load_bundle(bundle_path)
    kind = b.manifest.index.kind
    return ItemIndex(
        load_index(str(b.file("index.faiss")), kind, len(b.items)),
        [it.item_id for it in b.items],
        b.vectors,
        b.popularity,
        kind=kind,
        ef_search=64,
        hnsw_m=16,
        rebuild_ratio=0.1,
    )


def _ids(idx: ItemIndex, rows: np.ndarray) -> list[str | None]:
    return [idx.item_id(int(r)) for r in rows if r >= 0]


def _unit(rng: np.random.Generator, dim: int = 32) -> np.ndarray:
    v = rng.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.mark.parametrize("fixture", ["flat_bundle", "hnsw_bundle"])
def test_upsert_replace_delete(fixture: str, request: pytest.FixtureRequest) -> None:
    idx = _index(request.getfixturevalue(fixture))
    rng = np.random.default_rng(1)
    n0 = len(idx)
    new = _unit(rng)
    idx.upsert("new-1", new)
    _, rows = idx.search(new[None], 3)
    assert _ids(idx, rows[0])[0] == "new-1" and len(idx) == n0 + 1
    moved = _unit(rng)
    idx.upsert("new-1", moved)  # replace: the old vector no longer finds it first
    _, rows = idx.search(moved[None], 1)
    assert _ids(idx, rows[0]) == ["new-1"] and len(idx) == n0 + 1
    assert np.allclose(idx.vectors[idx.row("new-1")], moved)
    target = idx.vectors[idx.row("i7")].copy()
    assert idx.delete("i7") and not idx.delete("i7") and not idx.delete("nope")
    _, rows = idx.search(target[None], 50)
    ids = _ids(idx, rows[0])
    assert "i7" not in ids and None not in ids and len(ids) == 50
    assert idx.row("i7") is None and len(idx) == n0


@pytest.mark.parametrize("fixture", ["flat_bundle", "hnsw_bundle"])
def test_mutations_are_visible_to_searches_running_in_threads(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    idx = _index(request.getfixturevalue(fixture))
    vectors = idx.vectors.copy()
    deleted: list[str] = []
    problems: list[str] = []
    stop = threading.Event()

    def searcher(seed: int) -> None:
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            gone = set(deleted)  # deleted before this search starts
            q = vectors[rng.integers(0, 200, size=4)]
            _, rows = idx.search(q, 20)
            for r in rows.ravel():
                iid = idx.item_id(int(r)) if r >= 0 else None
                if iid in gone:
                    problems.append(f"{iid} returned after delete")

    threads = [threading.Thread(target=searcher, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    rng = np.random.default_rng(0)
    try:
        for i in range(60):
            victim = f"i{i * 3}"
            idx.delete(victim)
            deleted.append(victim)
            vec = _unit(rng)
            idx.upsert(f"n{i}", vec)
            _, rows = idx.search(vec[None], 1)  # recommendable as soon as upsert returns
            if _ids(idx, rows[0]) != [f"n{i}"]:
                problems.append(f"n{i} not found right after upsert")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert problems == []
    assert len(idx) == (200 if fixture == "flat_bundle" else 400)  # 60 deleted, 60 added


def test_hnsw_tombstones_filter_inside_search_and_rebuild_compacts(hnsw_bundle: Path) -> None:
    idx = _index(hnsw_bundle)
    q = idx.vectors[:5].copy()
    victims = [f"i{r}" for r in range(0, 400, 5)]  # 80 of 400 rows
    for v in victims:
        idx.delete(v)
    assert idx.needs_rebuild  # 80 > 0.1 * 400
    _, before = idx.search(q, 10)
    assert (before >= 0).all()  # still k live hits per query
    ids_before = [_ids(idx, r) for r in before]
    assert not set(victims) & {i for ids in ids_before for i in ids}

    idx.rebuild()
    assert not idx.needs_rebuild and len(idx) == 320 and idx.vectors.shape[0] == 320
    _, after = idx.search(q, 10)
    ids_after = [_ids(idx, r) for r in after]
    overlap = np.mean(
        [len(set(a) & set(b)) / 10 for a, b in zip(ids_after, ids_before, strict=True)]
    )
    assert overlap >= 0.9


def test_rebuild_replays_mutations_made_while_building(hnsw_bundle: Path) -> None:
    idx = _index(hnsw_bundle)
    for r in range(0, 100, 2):
        idx.delete(f"i{r}")
    rng = np.random.default_rng(3)
    late = _unit(rng)
    real_build = idx._build

    def build_with_traffic(vecs: np.ndarray) -> object:
        index = real_build(vecs)
        idx.upsert("late", late)  # arrives while the new index is built aside
        idx.delete("i1")
        return index

    idx._build = build_with_traffic  # type: ignore[method-assign]
    idx.rebuild()
    _, rows = idx.search(late[None], 1)
    assert _ids(idx, rows[0]) == ["late"]
    assert idx.row("i1") is None and idx.row("i3") is not None
    assert len(idx) == 400 - 50 - 1 + 1


def test_popular_skips_deleted_and_follows_updates(flat_bundle: Path) -> None:
    idx = _index(flat_bundle)
    top = _ids(idx, idx.popular(3))
    pops = idx.popularity
    assert pops[idx.row(top[0])] == pytest.approx(1.0)
    idx.delete(top[0])
    assert _ids(idx, idx.popular(2)) == top[1:]
    assert idx.set_popularity({"i199": 5.0, "unknown": 1.0}) == 1
    assert _ids(idx, idx.popular(1)) == ["i199"]
    idx.upsert("i199", idx.vectors[0])  # a re-sent item keeps its prior
    assert _ids(idx, idx.popular(1)) == ["i199"]


def test_popular_in_hnsw_mode_survives_replacements(hnsw_bundle: Path) -> None:
    idx = _index(hnsw_bundle)
    top = _ids(idx, idx.popular(5))
    for iid in top[:3]:
        idx.upsert(iid, idx.vectors[idx.row(iid)].copy())  # tombstone + new row
    assert _ids(idx, idx.popular(5)) == top


def _arrays(idx: ItemIndex) -> list[int]:
    """Addresses of the FAISS arrays an upsert appends to."""
    import faiss

    index = idx._state.index
    if isinstance(index, faiss.IndexHNSW):
        storage = faiss.downcast_index(index.storage)
        arrays = [storage.codes, index.hnsw.neighbors, index.hnsw.levels, index.hnsw.offsets]
    else:
        arrays = [faiss.downcast_index(index.index).codes, index.id_map]
    return [int(a.data()) for a in arrays]


@pytest.mark.parametrize("fixture", ["flat_bundle", "hnsw_bundle"])
def test_upserts_after_load_do_not_copy_the_index(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    # Without the reserved headroom the first append reallocates every array
    # (a whole-index copy on the event loop: ~100 ms at 100k items).
    idx = _index(request.getfixturevalue(fixture))
    rng = np.random.default_rng(3)
    before = _arrays(idx)
    for i in range(5):
        v = _unit(rng)
        row = idx.upsert(f"new{i}", v)
        _, rows = idx.search(v[None], 1)
        assert rows[0, 0] == row
    assert _arrays(idx) == before


@pytest.mark.parametrize("fixture", ["flat_bundle", "hnsw_bundle"])
def test_text_flags_follow_upserts_growth_and_rebuilds(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    b = load_bundle(request.getfixturevalue(fixture))
    kind = b.manifest.index.kind
    flags = np.ones(len(b.items), dtype=bool)
    flags[3] = False
    idx = ItemIndex(
        load_index(str(b.file("index.faiss")), kind, len(b.items)),
        [it.item_id for it in b.items],
        b.vectors,
        b.popularity,
        kind=kind,
        hnsw_m=16,
        rebuild_ratio=0.1,
        has_text=flags,
    )
    assert not idx.has_text[3] and idx.has_text.sum() == len(b.items) - 1
    rng = np.random.default_rng(5)
    idx.upsert("i3", _unit(rng))  # a learned vector: the flag stays
    assert not idx.has_text[idx.row("i3")]
    idx.upsert("i3", _unit(rng), has_text=True)  # new text that is evidence
    assert idx.has_text[idx.row("i3")]
    for n in range(len(b.items) + 10):  # past the arrays' capacity: they grow
        idx.upsert(f"new{n}", _unit(rng), has_text=n % 2 == 0)
    assert [bool(idx.has_text[idx.row(f"new{n}")]) for n in range(4)] == [True, False] * 2
    assert len(idx.has_text) == len(idx.vectors)
    with pytest.raises(Exception, match="text flags"):
        ItemIndex(
            load_index(str(b.file("index.faiss")), kind, len(b.items)),
            [it.item_id for it in b.items],
            b.vectors,
            b.popularity,
            kind=kind,
            has_text=flags[:-1],
        )
    if kind != "hnsw":
        return
    real_build = idx._build

    def build_with_traffic(vecs: np.ndarray) -> object:
        index = real_build(vecs)
        idx.upsert("late", _unit(rng), has_text=False)  # journalled with its flag
        return index

    for n in range(0, len(b.items), 3):
        idx.delete(f"i{n}")
    assert idx.needs_rebuild
    idx._build = build_with_traffic  # type: ignore[method-assign]
    idx.rebuild()
    flagged = {idx.item_id(r) for r in np.flatnonzero(~idx.has_text)}
    expect = {f"new{n}" for n in range(1, len(b.items) + 10, 2)} | {"late"}
    assert flagged == expect


def _project(v: np.ndarray) -> np.ndarray:
    """A stand-in for a split sequence encoder's per-item input: any function of the vector."""
    return (v[:, :4] * 2.0 + 1.0).astype(np.float32)


@pytest.mark.parametrize("fixture", ["flat_bundle", "hnsw_bundle"])
def test_sequence_inputs_follow_every_vector_change(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    b = load_bundle(request.getfixturevalue(fixture))
    kind = b.manifest.index.kind
    idx = ItemIndex(
        load_index(str(b.file("index.faiss")), kind, len(b.items)),
        [it.item_id for it in b.items],
        b.vectors,
        b.popularity,
        kind=kind,
        rebuild_ratio=0.05,
        project=_project,
    )
    assert idx.has_sequence_inputs and idx.sequence_inputs.shape == (len(b.items), 4)
    rng = np.random.default_rng(3)
    for i in range(400):  # new items (growing the arrays), replacements and deletes
        idx.upsert(f"new-{i % 150}", _unit(rng))
        if i % 7 == 0:
            idx.delete(f"i{i % 200}")
        if i % 5 == 0:  # learned vectors, in place (ItemIndex.set_vector)
            idx.set_vector(f"i{(3 * i) % 200}", _unit(rng))
    if idx.needs_rebuild:
        idx.rebuild()  # rows renumbered: the inputs move with them
    live = [r for r in range(len(idx.vectors)) if idx.item_id(r) is not None]
    np.testing.assert_allclose(idx.sequence_inputs[live], _project(idx.vectors[live]), atol=1e-6)


def test_ivf_index_upserts_deletes_and_scans_nprobe_lists() -> None:
    import faiss

    rng = np.random.default_rng(4)
    vecs = rng.standard_normal((2000, 32)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ivf = faiss.index_factory(32, "IVF16,SQ8", faiss.METRIC_INNER_PRODUCT)
    ivf.train(vecs)
    ivf.add_with_ids(vecs, np.arange(2000, dtype=np.int64))
    ids = [f"i{r}" for r in range(2000)]
    pop = np.zeros(2000, dtype=np.float32)
    one = ItemIndex(ivf, ids, vecs, pop, kind="ivf", n_probe=1)
    idx = ItemIndex(ivf, ids, vecs, pop, kind="ivf", n_probe=16)  # every list: exact order
    _, few = one.search(vecs[:200], 10)
    _, all_lists = idx.search(vecs[:200], 10)
    assert (few != all_lists).any()  # nprobe reaches FAISS
    _, rows = idx.search(vecs[:5], 1)
    assert rows[:, 0].tolist() == [0, 1, 2, 3, 4]
    new = _unit(rng)
    row = idx.upsert("new", new)
    assert _ids(idx, idx.search(new[None], 1)[1][0]) == ["new"] and row == 2000
    replaced = _unit(rng)
    assert idx.upsert("i3", replaced) == 3  # replaced in place, like flat
    assert _ids(idx, idx.search(replaced[None], 1)[1][0]) == ["i3"]
    assert idx.delete("i4")
    _, rows = idx.search(vecs[4][None], 50)
    assert "i4" not in _ids(idx, rows[0]) and not idx.needs_rebuild
    assert idx.search_depth is None  # prefix-consistent: one call serves a batch
    learned = _unit(rng)
    assert idx.set_vector("i5", learned)  # no in-place write for IVF: an upsert
    assert _ids(idx, idx.search(learned[None], 1)[1][0]) == ["i5"] and idx.row("i5") == 5


@pytest.mark.parametrize("fixture", ["flat_bundle", "hnsw_bundle"])
def test_set_vector_replaces_in_place(fixture: str, request: pytest.FixtureRequest) -> None:
    # online learning's write: the row, the FAISS arrays' size and the tombstones stay
    idx = _index(request.getfixturevalue(fixture))
    rng = np.random.default_rng(5)
    idx.upsert("new-1", _unit(rng))
    assert idx.delete("i3")  # a flat index compacts: positions no longer equal rows
    st = idx._state
    row, ntotal, dead = idx.row("i9"), st.index.ntotal, len(st.dead)
    for n in range(3):  # positions recomputed once, then reused
        # a bounded move, as learning makes (HNSW keeps the old vector's links)
        moved = idx.vectors[row] + 0.3 * _unit(rng)
        moved /= np.linalg.norm(moved)
        assert idx.set_vector("i9", moved, popularity=5.0 + n)
        _, rows = idx.search(moved[None], 1)
        assert _ids(idx, rows[0]) == ["i9"]
    assert idx.row("i9") == row and st.index.ntotal == ntotal and len(st.dead) == dead
    assert np.allclose(idx.vectors[row], moved) and idx.popularity[row] == 7.0
    assert _ids(idx, idx.popular(1)) == ["i9"]
    kept = idx.popularity[idx.row("new-1")]
    assert idx.set_vector("new-1", moved)  # popularity None: unchanged
    assert idx.popularity[idx.row("new-1")] == kept
    assert not idx.set_vector("i3", moved) and not idx.set_vector("nope", moved)


def test_set_vector_during_a_rebuild_is_replayed(hnsw_bundle: Path) -> None:
    idx = _index(hnsw_bundle)
    for r in range(0, 100, 2):
        idx.delete(f"i{r}")
    moved = _unit(np.random.default_rng(7))
    real_build = idx._build

    def build_with_traffic(vecs: np.ndarray) -> object:
        index = real_build(vecs)
        assert idx.set_vector("i1", moved, popularity=9.0)  # lands in the old index ...
        return index

    idx._build = build_with_traffic  # type: ignore[method-assign]
    idx.rebuild()  # ... and is replayed into the new one
    _, rows = idx.search(moved[None], 1)
    assert _ids(idx, rows[0]) == ["i1"] and idx.popularity[idx.row("i1")] == 9.0
