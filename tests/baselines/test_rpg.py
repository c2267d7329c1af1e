import argparse
import json

import jax
import numpy as np
import pytest

from jaxrec.baselines import packing, popularity, rpg, sasrec
from jaxrec.cli import baseline as baseline_cmd
from jaxrec.data.canonical import write_dataset
from jaxrec.data.dataset import DataError

from .test_sasrec import NUM_ITEMS, cycle_dataset

M, K = 4, 8


def tiny_config(**kw) -> rpg.RPGConfig:
    base = dict(
        num_items=NUM_ITEMS, d_model=32, mlp_dim=64, num_heads=2, max_len=20, row_len=20,
        batch_rows=16, epochs=15, patience=5, eval_every=3, eval_batch=64, learning_rate=5e-3,
        warmup_steps=20, embed_dropout=0.1, attention_dropout=0.1, num_codebooks=M,
        codebook_size=K,
    )  # fmt: skip
    base.update(kw)
    return rpg.RPGConfig(**base)


def random_codes(seed=0, num_items=NUM_ITEMS):
    return np.random.default_rng(seed).integers(0, K, (num_items, M)).astype(np.int32)


def init(cfg, codes, seed=0):
    model = rpg.RPG(cfg, codes)
    return model, sasrec.init_params(model, seed)


def test_item_scores_are_the_sum_of_code_logits_and_rank_as_log_probabilities():
    cfg = tiny_config()
    codes = random_codes()
    codes[7] = codes[3]  # two items sharing their whole id
    model, params = init(cfg, codes)
    hidden = jax.random.normal(jax.random.PRNGKey(1), (5, cfg.d_model))
    logits = np.asarray(model.apply({"params": params}, hidden, method=rpg.RPG.code_logits))
    assert logits.shape == (5, M, K)
    scores = np.asarray(model.apply({"params": params}, hidden, method=rpg.RPG.item_logits))
    brute = np.array([[logits[b, np.arange(M), codes[i]].sum() for i in range(NUM_ITEMS)]
                      for b in range(5)])  # fmt: skip
    np.testing.assert_allclose(scores, brute, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(scores[:, 7], scores[:, 3])
    # Sum of log-softmax per codebook = scores minus a per-user constant: the same ranking.
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    by_logp = np.array([[logp[b, np.arange(M), codes[i]].sum() for i in range(NUM_ITEMS)]
                        for b in range(5)])  # fmt: skip
    shift = by_logp - scores
    np.testing.assert_allclose(shift, np.broadcast_to(shift[:, :1], shift.shape), atol=1e-3)
    # Logits are cosines over the temperature.
    assert np.abs(logits).max() <= 1.0 / cfg.temperature + 1e-3


def test_loss_is_the_mean_code_cross_entropy_and_packing_keeps_it():
    ds = cycle_dataset(num_users=40, seed=1, long_users=2)
    cfg = tiny_config(dropout=0.0)
    codes = random_codes(2)
    model, params = init(cfg, codes, seed=3)
    windows = packing.training_windows(ds, cfg.max_len)
    packed = packing.pack_rows(windows, cfg.row_len)
    padded = packing.pad_rows(windows, cfg.max_len)
    lp = sasrec.dataset_loss(model, params, packed, 8)
    ld = sasrec.dataset_loss(model, params, padded, 8)
    assert lp == pytest.approx(ld, rel=1e-5)
    # By hand for the first padded row: mean over codebooks of -log softmax at the code.
    row = padded.take(np.arange(1))

    def fwd(m, r):
        return m.code_logits(m(r.inputs, r.segments, r.positions))

    logits = np.asarray(jax.jit(lambda p: model.apply({"params": p}, row, method=fwd))(params))
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))  # [1, len, M, K]
    valid = row.targets[0] > 0
    tgt = codes[row.targets[0][valid] - 1]  # [n, M]
    by_hand = -logp[0][valid][np.arange(valid.sum())[:, None], np.arange(M), tgt].mean()
    total, count = sasrec.loss_sum(model, params, {k: getattr(row, k) for k in
                                   ("inputs", "targets", "segments", "positions")})  # fmt: skip
    assert float(total) / float(count) == pytest.approx(by_hand, rel=1e-4)


def test_rpg_learns_cycles_from_distinct_ids():
    ds = cycle_dataset()
    # Distinct ids: item i's codes are its base-8 digits (plus a random fourth code).
    codes = random_codes(5)
    codes[:, 0], codes[:, 1] = np.arange(NUM_ITEMS) // K, np.arange(NUM_ITEMS) % K
    model, res = rpg.train(ds, tiny_config(), codes)
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    m = sasrec.evaluate(model, res.params, ds, "test", exclude_history=False)
    pop = popularity.evaluate(ds, "test")
    assert m["num_users"] == ds.num_users
    assert m["ndcg@10"] > pop["ndcg@10"] + 0.1, (m, pop)


def test_codes_are_checked():
    cfg = tiny_config()
    with pytest.raises(DataError, match=r"ids: long ids of shape \(40, 3\), expected \(40, 4\)"):
        rpg.check_codes(np.zeros((40, 3)), cfg, 40, "ids")
    bad = random_codes()
    bad[9, 2] = K
    with pytest.raises(DataError, match=r"ids: item 9 has code 8 in codebook 2, outside \[0, 8\)"):
        rpg.check_codes(bad, cfg, 40, "ids")


def test_nan_scores_are_an_error_not_a_perfect_rank():
    from jaxrec.baselines import ranking

    scores = np.zeros((3, 5))
    scores[1, 2] = np.nan
    with pytest.raises(FloatingPointError, match="NaN scores for 1 user"):
        ranking.target_ranks(scores, np.array([0, 1, 2]))


def _cli(tmp_path, capsys, *extra):
    from jaxrec.cli import main

    code = main(["baseline", "rpg", str(tmp_path), "--json", "--epochs", "2",
                 "--d-model", "16", "--num-heads", "2", "--batch-rows", "4",
                 "--embeddings", "transitions", "--num-codebooks", "4",
                 "--codebook-size", "8", "--pca-dim", "16", *extra])  # fmt: skip
    out = capsys.readouterr()
    return code, out


def test_cli_trains_ids_and_model(tmp_path, capsys):
    write_dataset(cycle_dataset(num_users=60, seed=2), str(tmp_path))
    code, out = _cli(tmp_path, capsys, "--warmup-steps", "5")
    assert code == 0, out.err
    result = json.loads(out.out.strip().splitlines()[-1])
    assert result["model"] == "rpg" and result["num_users"] == 60
    ids = result["long_ids"]
    assert (ids["num_codebooks"], ids["codebook_size"], ids["pca_dim"]) == (4, 8, 16)
    assert 0 <= ids["shared_items"] <= NUM_ITEMS
    assert 0.0 <= result["ndcg@10"] <= result["recall@10"] <= 1.0


def test_cli_errors_are_one_line(tmp_path, capsys):
    write_dataset(cycle_dataset(num_users=60, seed=2), str(tmp_path))
    code, out = _cli(tmp_path, capsys, "--pca-dim", "10")
    assert code == 2
    assert out.err.strip() == ("jaxrec: error: --pca-dim 10 is not a multiple of "
                               "--num-codebooks 4")  # fmt: skip
    # A learning rate that overflows the parameters ends with one line, not a traceback.
    code, out = _cli(tmp_path, capsys, "--learning-rate", "1e38", "--warmup-steps", "0")
    assert code == 1
    assert out.err.strip().splitlines()[-1].startswith("jaxrec: error: RPG: training loss nan")


def test_parser_defaults_are_rpgs_published_setting():
    parser = argparse.ArgumentParser()
    baseline_cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(["baseline", "rpg", "data"])
    assert (args.learning_rate, args.d_model, args.num_heads) == (1e-2, 448, 4)
    assert (args.num_codebooks, args.codebook_size, args.temperature) == (32, 256, 0.03)
    sas = parser.parse_args(["baseline", "sasrec", "data"])
    assert (sas.learning_rate, sas.d_model, sas.num_heads) == (2e-3, 64, 1)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_learning_rate_warms_up_then_holds_or_decays_to_zero(schedule):
    import jax.numpy as jnp

    cfg = sasrec.SASRecConfig(num_items=5, epochs=3, learning_rate=1.0, warmup_steps=10,
                              schedule=schedule)  # fmt: skip
    opt = sasrec.optimizer_for(cfg, steps_per_epoch=10)  # 30 steps in all
    params = jnp.zeros(())
    state = opt.init(params)
    sizes = []
    for _ in range(30):  # a constant gradient: Adam's step is the learning rate
        update, state = opt.update(jnp.ones(()), state, params)
        sizes.append(-float(update))
    np.testing.assert_allclose(sizes[:11], np.linspace(0.0, 1.0, 11), atol=1e-3)
    if schedule == "constant":
        np.testing.assert_allclose(sizes[10:], 1.0, atol=1e-3)
    else:
        assert all(a > b for a, b in zip(sizes[10:], sizes[11:], strict=False))
        assert sizes[-1] < 0.01
