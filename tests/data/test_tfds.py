"""The TFDS builder over a canonical dataset, read back through seqio's TfdsDataSource."""

import numpy as np
import seqio

from jaxrec.data import canonical, prepare, synthetic
from jaxrec.data import tfds as jtfds
from jaxrec.data.processing import PrepareOptions


def test_tfds_builder_feeds_seqio(tmp_path):
    synthetic.generate(str(tmp_path / "raw"), num_users=40, num_items=60, num_topics=4, seed=2)
    ds = prepare.prepare_dataset(
        "synthetic",
        str(tmp_path / "raw"),
        options=PrepareOptions(num_negatives=20),
        name="tfds_synth",
    )
    canonical.write_dataset(ds, tmp_path / "ds")
    jtfds.build(str(tmp_path / "ds"), str(tmp_path / "tfds"))
    source = seqio.TfdsDataSource(
        tfds_name="jaxrec_tfds_synth:1.0.0", tfds_data_dir=str(tmp_path / "tfds")
    )
    assert source.num_input_examples("test") == ds.num_users
    assert source.num_input_examples("train") == sum(len(s) - 3 for s in ds.sequences)
    by_user = {}
    for ex in source.get_dataset("test", shuffle=False).as_numpy_iterator():
        by_user[int(ex["user"])] = ex
    for u in range(ds.num_users):
        want = ds.example(u, "test")
        got = by_user[u]
        assert int(got["target"]) == want.target
        np.testing.assert_array_equal(got["history"], want.history)
        np.testing.assert_array_equal(got["negatives"], ds.negatives[u])
        assert float(got["target_rating"]) == want.target_rating
