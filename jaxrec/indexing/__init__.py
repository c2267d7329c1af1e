"""Item indexing: item ids as token sequences an LLM can generate.

- `item_index.ItemIndex`: the interface tasks and decoding use (any scheme), LC-Rec `.index.json`.
- `trie`: static-shape prefix tables for constrained decoding.
- `embed`: item embeddings (text encoder, attribute TF-IDF + SVD, `.npy`).
- `rqvae`, `kmeans`, `sinkhorn`: the RQ-VAE that turns embeddings into semantic ids.
- `collisions`: deterministic resolution so every item has a unique sequence.
- `schemes`: semantic, random, sequential and title ids; `load_index` (resolves collisions).
- `build`: `build_index(dataset, method, ...)`, used by `jaxrec index build`.
"""
