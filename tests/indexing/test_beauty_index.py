"""Real-data check: an RQ-VAE index of Amazon Beauty from attribute embeddings (slow)."""

import dataclasses

import numpy as np
import pytest

from jaxrec.data import formats
from jaxrec.indexing.build import rqvae_index
from jaxrec.indexing.embed import attribute_embeddings
from jaxrec.indexing.rqvae import RQVAEConfig


@pytest.mark.slow
def test_beauty_attribute_index_is_unique_and_uses_the_codebooks(shared_data):
    path = str(shared_data / "amazon2014" / "Beauty_item2attributes.json")
    items = formats.read_item2attributes(path)
    items = [items[k] for k in sorted(items, key=int)]
    emb = attribute_embeddings(items, seed=0, source=path)
    distinct_inputs = len(np.unique(emb.round(6), axis=0))
    index, report = rqvae_index(emb, dataclasses.replace(RQVAEConfig(), epochs=40))
    assert index.num_items == 12101 and index.num_colliding_items() == 0
    assert report["collisions"] == 0 and report["levels"] == 4
    # Identical attribute bags give identical embeddings, so they must collide before resolution.
    assert report["collisions_before_resolution"] >= 12101 - distinct_inputs
    assert min(report["codebook_usage"]) > 0.9
    assert report["reconstruction_mse"] < report["embedding_variance"]
