"""The validation hook's log text (`jaxrec.training.selection.describe`)."""

import numpy as np

from jaxrec.training.selection import describe

KEYS = ("recall@10", "ndcg@10")


def test_plain_metrics_print_the_selection_keys_only():
    m = {"recall@10": 0.0426, "ndcg@10": 0.02061, "recall@20": 0.06, "num_users": 5000}
    assert describe(m, KEYS) == "recall@10 0.0426 ndcg@10 0.0206"


def test_a_hybrid_prints_each_part_and_the_chosen_weight():
    gen = {"recall@10": 0.0426, "ndcg@10": 0.0206}
    dense = {"recall@10": np.float32(0.0346), "ndcg@10": np.float32(0.0181), "recall@20": 0.05}
    m = {
        "recall@10": 0.0450, "ndcg@10": 0.0214, "fusion_weight": 0.35,
        "generative": gen, "dense": dense,
        "by_weight": {"generative": gen, "dense": dense, "w=0.35": gen},  # not a part
        "num_users": 5000,
    }  # fmt: skip
    assert describe(m, KEYS) == (
        "recall@10 0.0450 ndcg@10 0.0214 (generative 0.0426 0.0206; dense 0.0346 0.0181; "
        "weight 0.35)"
    )


def test_a_part_missing_a_key_is_not_printed():
    m = {"recall@10": 0.1, "ndcg@10": 0.05, "dense": {"recall@10": 0.2}}
    assert describe(m, KEYS) == "recall@10 0.1000 ndcg@10 0.0500"
