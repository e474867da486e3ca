"""Training's bundle contents: the index kind by catalog size, the popularity prior.

Writing and verifying bundles is the serving core's (inference/bundle/), tested in
tests/unit/inference/test_inference_bundle.py.
"""

from __future__ import annotations

import numpy as np

from tests.unit.training_models.conftest import random_unit
from training.bundle_files import popularity_prior, training_mask
from training.data.types import Interactions
from training.index_build import build_index


def test_index_kind_follows_catalog_size() -> None:
    x = random_unit(600, 16, seed=0)
    flat = build_index(x, exact_max=1000)
    assert flat.kind == "flat" and flat.recall_at_10 == 1.0
    _, ids = flat.index.search(x[:3], 1)
    assert ids[:, 0].tolist() == [0, 1, 2]  # ids are row numbers
    hnsw = build_index(x, exact_max=100, kind="hnsw", n_probe_queries=200)
    assert hnsw.kind == "hnsw" and hnsw.params["M"] == 32
    assert 0.9 <= hnsw.recall_at_10 <= 1.0


def test_large_catalogs_get_ivf_probing_enough_lists_for_user_like_queries() -> None:
    x = random_unit(4000, 16, seed=1)
    built = build_index(x, exact_max=100, n_probe_queries=200, target_recall=0.9)
    assert built.kind == "ivf" and built.params["nlist"] == 256 and built.params["codes"] == "sq8"
    nprobe = built.params["nprobe"]
    assert isinstance(nprobe, int) and 1 <= nprobe <= 256
    assert built.user_recall_at_10 >= 0.9  # what the chosen nprobe was chosen for
    _, ids = built.index.search(x[:3], 1)
    assert ids[:, 0].tolist() == [0, 1, 2]  # ids are row numbers
    fewer = build_index(x, exact_max=100, n_probe_queries=200, target_recall=0.5)
    assert fewer.params["nprobe"] < nprobe  # a lower target probes fewer lists


def test_popularity_uses_training_events_only() -> None:
    # user 0: items 0,1,2,3 (2 and 3 held out); user 1 has only two events (all train)
    inter = Interactions(
        user=np.array([0, 0, 0, 0, 1, 1], np.int32),
        item=np.array([0, 1, 2, 3, 1, 1], np.int32),
        ts=np.array([1.0, 2.0, 3.0, 4.0, 1.0, 1.0]),
        user_ids=["u0", "u1"],
    )
    keep = training_mask(inter)
    assert keep.tolist() == [True, True, False, False, True, True]
    pop = popularity_prior(inter, 4, keep=keep)
    assert pop.dtype == np.float32 and pop.max() == 1.0
    assert pop[1] == 1.0 and pop[2] == 0.0 and pop[3] == 0.0 and 0 < pop[0] < 1
