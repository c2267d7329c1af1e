"""The shared Amazon data: published sizes, and P5 vs LC-Rec layouts agree."""

import json

import numpy as np
import pytest

from jaxrec.cli import main
from jaxrec.data import prepare
from jaxrec.data.processing import PrepareOptions

SIZES = {
    "amazon2014/Beauty.txt": (22363, 12101, 198502),
    "amazon2014/Sports_and_Outdoors.txt": (35598, 18357, 296337),
    "amazon2014/Toys_and_Games.txt": (19412, 11924, 167597),
    "lcrec/Beauty.inter.json": (22363, 12101, 198502),
}


@pytest.mark.parametrize("rel", sorted(SIZES))
def test_stats_match_the_published_table(shared_data, capsys, rel):
    assert main(["data", "stats", str(shared_data / rel), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (stats["users"], stats["items"], stats["interactions"]) == SIZES[rel]


def test_p5_and_lcrec_layouts_prepare_to_the_same_dataset(shared_data):
    opts = PrepareOptions(num_negatives=0)
    p5 = prepare.prepare_dataset("p5", str(shared_data / "amazon2014/Beauty.txt"), options=opts)
    lc = prepare.prepare_dataset(
        "lcrec", str(shared_data / "lcrec/Beauty.inter.json"), options=opts, name="Beauty"
    )
    assert p5.num_users == lc.num_users == 22363
    # Source ids differ by one (P5 is 1-based, LC-Rec 0-based): compare in source ids.
    assert [int(it.original_id) for it in p5.items] == [int(it.original_id) + 1 for it in lc.items]
    # Same seed and same first-appearance order: identical shuffled ids, sequences and targets.
    assert all(np.array_equal(a, b) for a, b in zip(p5.sequences, lc.sequences, strict=True))
    for split in ("validation", "test"):
        np.testing.assert_array_equal(p5.targets(split), lc.targets(split))
    assert p5.metadata["filters"]["kcore_removed_interactions"] == 0
    assert p5.items[0].attributes  # S3-Rec attributes are attached
