"""Collaborative item embeddings from the training interactions, for semantic indexing.

Text embeddings place an item by what it says; two items bought one after the other by many
users may still read nothing alike. Learnable-tokenisation work (LETTER, Wang et al., 2024)
adds that collaborative signal to the quantiser's input so that items with similar neighbours
get similar codes, which a generative recommender can then predict from one another. This
module gives the signal without a trained recommender:

    next-item transitions a -> b in every user's training part (all but the last two items)
    ─▶ counts C [items, items] ─▶ positive PMI ─▶ truncated SVD  C ≈ U S Vᵀ
    ─▶ [U √S | V √S]: what tends to follow the item, and what it tends to follow

Only the training parts of the sequences are read, so validation and test targets never
shape the index. Items with no transition in training get a zero row (logged); combined with
text (`embed.combine_embeddings`), their codes come from the text part alone.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import sparse

from jaxrec.data.dataset import DataError, Dataset
from jaxrec.indexing.embed import normalize_rows

log = logging.getLogger(__name__)


def transition_counts(dataset: Dataset):
    """scipy.sparse CSR [num_items, num_items]: how often item a is directly followed by b in
    the users' training parts."""
    heads, tails = [], []
    for u in range(dataset.num_users):
        seq = np.asarray(dataset.train_sequence(u), np.int64)
        heads.append(seq[:-1])
        tails.append(seq[1:])
    rows, cols = np.concatenate(heads), np.concatenate(tails)
    n = dataset.num_items
    # Converting to CSR sums the duplicate (a, b) entries into counts.
    return sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)).tocsr()


def positive_pmi(counts):
    """PPMI of a sparse count matrix: max(0, log(c_ab * total / (c_a. * c_.b))), sparse."""
    coo = counts.tocoo()
    total = float(coo.data.sum())
    row_sums = np.asarray(counts.sum(axis=1)).ravel()
    col_sums = np.asarray(counts.sum(axis=0)).ravel()
    pmi = np.log(coo.data * total / (row_sums[coo.row] * col_sums[coo.col]))
    keep = pmi > 0
    return sparse.csr_matrix((pmi[keep], (coo.row[keep], coo.col[keep])), shape=counts.shape)


def transition_embeddings(
    dataset: Dataset, dim: int = 32, seed: int = 0, source: str = "dataset"
) -> np.ndarray:
    """float32 [num_items, 2 * k] (k = min(dim, items - 1)), rows L2-normalised (zero for
    items without a training transition): `[U √S | V √S]` of the PPMI transition matrix."""
    from sklearn.decomposition import TruncatedSVD

    counts = transition_counts(dataset)
    if counts.nnz == 0:
        raise DataError(
            f"{source}: no training transitions (every user has fewer than 4 interactions), "
            "so no collaborative embedding can be derived"
        )
    ppmi = positive_pmi(counts)
    k = max(1, min(dim, dataset.num_items - 1))
    svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=7, random_state=seed)
    out_part = svd.fit_transform(ppmi)  # U S
    scale = np.sqrt(np.maximum(svd.singular_values_, 1e-12))
    emb = normalize_rows(np.concatenate([out_part / scale, svd.components_.T * scale], axis=1))
    active = np.asarray((counts.sum(axis=0) + counts.sum(axis=1).T) > 0).ravel()
    log.info(
        "transition embeddings: %d transitions between %d items -> %d dims; %d item(s) "
        "without any training transition get a zero row",
        int(counts.sum()), int(active.sum()), emb.shape[1], int((~active).sum()),
    )  # fmt: skip
    return emb.astype(np.float32)
