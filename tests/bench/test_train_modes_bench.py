"""The training-layout benchmark feeds every layout the same targets."""

import numpy as np

from jaxrec.bench import train_modes


def test_layouts_hold_the_same_targets_and_shapes():
    windows = train_modes.beauty_like_windows(300, 500, seed=3)
    total = sum(len(w) - 1 for w in windows)
    assert abs(total / 300 - train_modes.MEAN_TARGETS_PER_USER) < 1.0  # Beauty-like
    codes = np.random.default_rng(0).integers(3, 60, (500, 4)).astype(np.int32)
    counts = {}
    for mode in ("tiger", "per_prefix", "prefix_shared"):
        arrays = train_modes.mode_arrays(mode, windows, codes)
        enc = arrays["encoder_input_tokens"]
        width = 80 if mode == "tiger" else 20
        assert enc.shape[1] == width and (enc.ndim == 2) == (mode == "tiger")
        counts[mode] = int((arrays["decoder_target_tokens"] == 1).sum())  # one EOS per target
        (batch,) = train_modes.mode_batches(mode, windows, codes, 7, 1)
        assert len(batch["encoder_input_tokens"]) == 7
    assert counts == {"tiger": total, "per_prefix": total, "prefix_shared": total}
    assert len(train_modes.mode_arrays("prefix_shared", windows, codes)["encoder_input_tokens"]) < (
        total / 5
    )  # packed: several users' targets per row
