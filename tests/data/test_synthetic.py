"""The synthetic default: planted structure, Amazon-2014 round trip, oracle metrics."""

import filecmp
import json

import numpy as np

from jaxrec.data import canonical, formats, prepare, synthetic


def test_generation_is_seeded(tmp_path):
    a = synthetic.generate(str(tmp_path / "a"), num_users=60, num_items=100, num_topics=5, seed=3)
    synthetic.generate(str(tmp_path / "b"), num_users=60, num_items=100, num_topics=5, seed=3)
    files = (synthetic.META_FILE, synthetic.REVIEWS_FILE, synthetic.GROUND_TRUTH_FILE,
             synthetic.MODEL_FILE)  # fmt: skip
    for name in files:  # byte-identical, gzip headers included (no timestamp in them)
        assert filecmp.cmp(tmp_path / "a" / name, tmp_path / "b" / name, shallow=False)
    assert a["users"] == 60


def test_round_trip_through_the_amazon_2014_reader(tmp_path):
    raw = tmp_path / "raw"
    synthetic.generate(str(raw), num_users=150, num_items=120, num_topics=6, seed=0)
    reviews, meta = synthetic.raw_paths(str(raw))
    assert formats.detect_amazon_version(reviews) == 2014
    ds = prepare.prepare_dataset("synthetic", str(raw))
    truth = json.loads((raw / synthetic.GROUND_TRUTH_FILE).read_text())
    # Interleaved file with same-day ties: the reader must restore each user's exact order.
    matched = 0
    for u, seq in enumerate(ds.sequences):
        rec = truth[ds.users[u]]
        asins = [ds.items[i].original_id for i in seq.tolist()]
        matched += asins == rec["history"] + [rec["target"]]
    assert matched == ds.metadata["oracle"]["users"] >= 0.9 * ds.num_users
    assert ds.has_ratings and ds.has_text and ds.timestamps is not None
    item = ds.items[0]
    assert item.title and item.brand and item.categories[0] == "Beauty" and item.description
    # The oracle is stored with the prepared dataset.
    canonical.write_dataset(ds, tmp_path / "ds")
    again = canonical.read_dataset(str(tmp_path / "ds"))
    oracle = again.metadata["oracle"]
    assert 0 < oracle["expected"]["recall@1"] <= oracle["expected"]["recall@10"] <= 1


def test_planted_structure_is_learnable(tmp_path):
    """The oracle far exceeds popularity, and item text reveals the latent topic."""
    raw = tmp_path / "raw"
    synthetic.generate(str(raw), num_users=400, num_items=200, num_topics=8, seed=1)
    ds = prepare.prepare_dataset("synthetic", str(raw))
    counts = ds.train_item_counts()
    top10 = set(np.argsort(-counts, kind="stable")[:10].tolist())
    pop_recall10 = float(np.mean([t in top10 for t in ds.targets("test").tolist()]))
    assert ds.metadata["oracle"]["expected"]["recall@10"] > 3 * max(pop_recall10, 0.02)
    topics = json.loads((raw / synthetic.MODEL_FILE).read_text())["item_topic"]
    by_topic = {}
    for it in ds.items:
        by_topic.setdefault(topics[it.original_id], set()).add(it.categories[1])
    assert all(len(cats) == 1 for cats in by_topic.values())
    # Ratings depend on topic affinity: not constant.
    assert len(np.unique(np.concatenate(ds.ratings))) >= 3
