"""Training batches from a seqio task or mixture: `python -m jaxrec.train`'s data."""

from __future__ import annotations

from collections.abc import Callable, Iterator


def make_batches(
    mixture_or_task_name: str,
    task_feature_lengths: dict[str, int],
    batch_size: int,
    split: str = "train",
    seed: int = 0,
    shuffle: bool = True,
    pack: bool = False,
    use_cached: bool = False,
) -> Callable[[int], Iterator[dict]]:
    """`start_step -> iterator` over this host's numpy batches of a seqio task/mixture.

    The data order is a pure function of (seed, step): seqio shuffles with `seed`, repeats
    forever, batches after `EncDecFeatureConverter(pack=pack)`, and the iterator skips the
    `start_step` batches already trained on. Each host reads its shard (global batch / hosts).
    """
    import jax
    import seqio

    if batch_size % jax.process_count():
        raise ValueError(f"BATCH_SIZE {batch_size} not divisible by {jax.process_count()} hosts")
    host_batch = batch_size // jax.process_count()
    converter = seqio.EncDecFeatureConverter(pack=pack)
    shard = seqio.ShardInfo(index=jax.process_index(), num_shards=jax.process_count())

    def batches(start_step: int) -> Iterator[dict]:
        ds = seqio.get_dataset(
            mixture_or_task_name,
            task_feature_lengths=dict(task_feature_lengths),
            feature_converter=converter,
            dataset_split=split,
            use_cached=use_cached,
            shuffle=shuffle,
            num_epochs=None,
            shard_info=shard,
            seed=seed,
            batch_size=host_batch,
        )
        return ds.skip(start_step).as_numpy_iterator()

    return batches
