"""The vectorised synthetic sampler: the same planted process, streamed, seeded, readable by
`data prepare`, with the oracle of its ground-truth sample."""

import filecmp
import json

import numpy as np

from jaxrec.data import prepare, synthetic


def test_vectorised_sampler_round_trip_and_oracle(tmp_path):
    raw = tmp_path / "raw"
    s = synthetic.generate(str(raw), num_users=3000, num_items=400, seed=2, sampler="vectorised")
    assert s["sampler"] == "vectorised" and 30_000 < s["interactions"] < 42_000
    ds = prepare.prepare_dataset("synthetic", str(raw))
    oracle = ds.metadata["oracle"]
    # Every prepared user is in the ground truth and matches it (order restored from the file).
    assert (
        oracle["users"] + oracle["users_skipped"] == ds.num_users and oracle["users_skipped"] < 30
    )
    # The exact sampler's process: its oracle (planted structure) at the same settings.
    exact = synthetic.generate(str(tmp_path / "exact"), num_users=600, num_items=400, seed=2,
                               sampler="exact")  # fmt: skip
    for k in ("recall@10", "ndcg@10"):
        assert abs(s["oracle_expected"][k] - exact["oracle_expected"][k]) < 0.05
    assert abs(oracle["realised"]["recall@10"] - oracle["expected"]["recall@10"]) < 0.05
    # Item text follows the planted topics; ratings vary.
    topics = json.loads((raw / synthetic.MODEL_FILE).read_text())["item_topic"]
    by_topic = {}
    for it in ds.items:
        by_topic.setdefault(topics[it.original_id], set()).add(it.categories[1])
    assert all(len(c) == 1 for c in by_topic.values())
    assert len(np.unique(np.concatenate(ds.ratings))) >= 3


def test_vectorised_sampler_is_seeded_and_samples_the_truth(tmp_path):
    kw = dict(num_users=500, num_items=200, num_topics=5, seed=4, sampler="vectorised")
    synthetic.generate(str(tmp_path / "a"), **kw)
    synthetic.generate(str(tmp_path / "b"), **kw)
    for name in (synthetic.REVIEWS_FILE, synthetic.META_FILE, synthetic.GROUND_TRUTH_FILE):
        assert filecmp.cmp(tmp_path / "a" / name, tmp_path / "b" / name, shallow=False)
    from jaxrec.data import synthetic_scale

    s = synthetic_scale.generate_at_scale(str(tmp_path / "c"), 500, 200, 5, seed=4,
                                          truth_users=50)  # fmt: skip
    assert s["truth_users"] == 50
    ds = prepare.prepare_dataset("synthetic", str(tmp_path / "c"))
    o = ds.metadata["oracle"]
    assert o["users"] + o["users_skipped"] + o["users_without_truth"] == ds.num_users
    assert 40 <= o["users"] + o["users_skipped"] <= 50


def test_auto_keeps_the_exact_sampler_for_small_data(tmp_path):
    s = synthetic.generate(str(tmp_path / "d"), num_users=60, num_items=100, num_topics=5)
    assert "sampler" not in s  # the exact sampler's summary, as before
