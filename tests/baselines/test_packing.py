import numpy as np
import pytest

from jaxrec.baselines import packing


def test_user_windows_cover_each_target_once():
    seq = np.arange(120)
    windows = packing.user_windows(seq, max_len=50)
    assert all(len(w) <= 51 for w in windows)
    targets = np.concatenate([w[1:] for w in windows])
    np.testing.assert_array_equal(targets, seq[1:])
    # the last window has the full context for the most recent targets
    np.testing.assert_array_equal(windows[-1], seq[-51:])
    assert packing.user_windows(np.arange(1), 50) == []


def test_pack_rows_layout():
    rng = np.random.default_rng(0)
    windows = [rng.integers(0, 100, size=rng.integers(2, 12)) for _ in range(60)]
    rows = packing.pack_rows(windows, row_len=20)
    assert rows.inputs.shape[1] == 20
    assert rows.num_tokens == sum(len(w) - 1 for w in windows)
    # packing actually shares rows and never needs more rows than tokens require + slack
    assert len(rows.inputs) < len(windows)
    assert len(rows.inputs) <= np.ceil(rows.num_tokens / 20) + 2
    recovered = []
    for r in range(len(rows.inputs)):
        for seg in set(rows.segments[r].tolist()) - {0}:
            sel = rows.segments[r] == seg
            np.testing.assert_array_equal(rows.positions[r][sel], np.arange(sel.sum()))
            inp, tgt = rows.inputs[r][sel] - 1, rows.targets[r][sel] - 1
            np.testing.assert_array_equal(inp[1:], tgt[:-1])
            recovered.append(tuple(np.append(inp, tgt[-1])))
    assert sorted(recovered) == sorted(tuple(w) for w in windows)
    assert (rows.inputs[rows.segments == 0] == 0).all()


def test_pad_rows_and_errors():
    rows = packing.pad_rows([np.array([3, 4, 5])], max_len=4)
    np.testing.assert_array_equal(rows.inputs, [[4, 5, 0, 0]])
    np.testing.assert_array_equal(rows.targets, [[5, 6, 0, 0]])
    np.testing.assert_array_equal(rows.segments, [[1, 1, 0, 0]])
    with pytest.raises(ValueError):
        packing.pack_rows([np.arange(30)], row_len=10)


def test_history_batch_keeps_last_items():
    tokens, last = packing.history_batch([np.arange(7), np.array([2])], max_len=5)
    np.testing.assert_array_equal(tokens[0], np.arange(2, 7) + 1)
    np.testing.assert_array_equal(tokens[1], [3, 0, 0, 0, 0])
    np.testing.assert_array_equal(last, [4, 0])
