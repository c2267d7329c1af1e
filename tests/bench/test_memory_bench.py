"""The memory benchmark lowers the real train step from abstract shapes and reads XLA's analysis."""

import jax

from jaxrec.bench import memory


def test_measure_reports_sharded_state_and_peak():
    result = memory.measure(
        "tiny", (2, 2), batch=4, inputs=16, targets=4, dtype="float32", layers=1
    )
    params, state = memory.state_bytes("tiny", (2, 2), "adafactor", fsdp=False)
    # Eval-shape of the full (2-layer) tiny model vs the compiled 1-layer one: more params.
    assert params > result["params"] > 0
    # Params are float32 and mostly split 2 ways over `model`: < full size, > a quarter.
    assert result["params"] * 4 / 4 < result["state_bytes_per_device"] < result["params"] * 4 * 2
    # XLA's argument bytes are the same state plus the batch (within a few scalar bytes).
    assert result["argument_bytes"] > 0.99 * result["state_bytes_per_device"]
    assert result["peak_bytes_per_device"] > result["state_bytes_per_device"]
    assert result["alias_bytes"] > 0  # the donated state is reused for the output
    assert result["backend"] == jax.default_backend()
    assert set(result["fits"]) == set(memory.HBM_GIB)
