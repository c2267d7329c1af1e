"""The gin files that tpu_scripts/train.sh launches (gin/experiments/) parse with the trainer's
configurables and name models, tasks and checkpoints that exist."""

import pathlib

import pytest

gin = pytest.importorskip("gin")

REPO = pathlib.Path(__file__).resolve().parents[2]
ALL_GIN = sorted((REPO / "gin" / "experiments").glob("*.gin"))
# `jaxrec reproduce` recipes bind RecipeConfig; the others are python -m jaxrec.train runs.
RECIPES = [p for p in ALL_GIN if "RecipeConfig." in p.read_text()]
EXPERIMENTS = [p for p in ALL_GIN if p not in RECIPES]


MACROS = (
    "MODEL_NAME",
    "MIXTURE_OR_TASK_NAME",
    "MIXTURE_OR_TASK_MODULE",
    "TASK_FEATURE_LENGTHS",
    "INITIAL_CHECKPOINT_PATH",
    "TRAIN_STEPS",
    "BATCH_SIZE",
)


@pytest.fixture(scope="module")
def parse():
    import jaxrec.train  # noqa: F401  (registers the trainer's configurables)

    def parse_file(path: pathlib.Path) -> dict:
        gin.clear_config()
        gin.add_config_file_search_path(str(REPO / "gin"))
        gin.parse_config_files_and_bindings(
            [str(path)], ["MODEL_DIR = 'gs://bucket/run'"], finalize_config=False
        )
        return {n: gin.query_parameter(f"%{n}") for n in MACROS}

    yield parse_file
    gin.clear_config()


def test_expected_recipes_exist():
    names = {p.name for p in EXPERIMENTS}
    assert names >= {
        "tiger_beauty.gin",
        "cao_flan_t5_base_beauty.gin",
        "cao_flan_t5_xl_beauty.gin",
        "lcrec_flan_t5_base_beauty.gin",
    }


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_experiment_parses_and_names_real_things(parse, path):
    from jaxrec.models import configs
    from jaxrec.tasks import examples, items

    macros = parse(path)
    configs.get_config(macros["MODEL_NAME"])  # raises for an unknown model
    dataset, rest = macros["MIXTURE_OR_TASK_NAME"].split("_", 1)
    assert dataset == "beauty"
    repr_, task = next(
        (r, rest[len(r) + 1 :]) for r in sorted(items.ITEM_REPRS, key=len, reverse=True)
        if rest.startswith(r + "_")
    )  # fmt: skip
    assert task in (*examples.TASKS, "cao", "lcrec"), task
    assert macros["MIXTURE_OR_TASK_MODULE"] == "tasks.beauty"
    assert set(macros["TASK_FEATURE_LENGTHS"]) == {"inputs", "targets"}
    assert macros["TRAIN_STEPS"] > 0 and macros["BATCH_SIZE"] > 0
    ckpt = macros["INITIAL_CHECKPOINT_PATH"]
    if path.name.startswith("tiger"):
        assert ckpt is None and repr_ == "sid"  # trained from scratch on semantic ids
    else:
        assert ckpt.startswith("gs://t5-data/pretrained_models/t5x/flan_t5_")
        assert f"flan_t5_{macros['MODEL_NAME']}/" in ckpt


def test_tiger_shape(parse):
    from jaxrec.models import configs

    cfg = configs.get_config(parse(REPO / "gin/experiments/tiger_beauty.gin")["MODEL_NAME"])
    assert (cfg.num_encoder_layers, cfg.num_decoder_layers) == (4, 4)
    assert (cfg.emb_dim, cfg.num_heads, cfg.mlp_dim) == (128, 6, 1024)
    # The included model file binds the same shape.
    want = {"emb_dim": 128, "num_heads": 6, "num_encoder_layers": 4, "mlp_dim": 1024}
    for field, value in want.items():
        assert gin.query_parameter(f"jaxrec.models.configs.T5Config.{field}") == value


@pytest.mark.parametrize("name, size", [("cao_flan_t5_base_beauty", "base"),
                                        ("cao_flan_t5_xl_beauty", "xl"),
                                        ("lcrec_flan_t5_base_beauty", "base")])  # fmt: skip
def test_flan_recipes_bind_the_checkpoint_shape(parse, name, size):
    from jaxrec.models import configs

    macros = parse(REPO / f"gin/experiments/{name}.gin")
    assert macros["MODEL_NAME"] == size
    want = configs.get_config(size)
    for field in ("emb_dim", "num_heads", "num_encoder_layers", "mlp_dim"):
        assert gin.query_parameter(f"jaxrec.models.configs.T5Config.{field}") == getattr(
            want, field
        )


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_reproduce_recipes_parse_into_a_recipe_config(path):
    from jaxrec.cli.reproduce import recipe_config
    from jaxrec.models import configs

    cfg = recipe_config([str(path)], [])
    configs.get_config(cfg.model, **dict(cfg.model_overrides))  # real model fields
    assert cfg.minutes > 0 and cfg.train.mode in ("prefix_shared", "per_prefix")
    assert cfg.encoder_causal or cfg.train.mode == "per_prefix"
    gin.clear_config()


def test_recipes_with_includes_parse_without_false_errors(caplog):
    """gin probes a relative include as a package resource first and logs "Path not found"
    before finding it on the search path; users must not see that as an error."""
    import logging

    from jaxrec.cli.reproduce import recipe_config

    with caplog.at_level(logging.INFO):
        cfg = recipe_config(["experiments/tiger_prefix_shared_mim_bpr_align.gin"], [])
    assert cfg.train.aux_tasks == ("mim", "bpr", "item2index", "index2item")
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if "system_path_file_exists" in r.getMessage()]
    gin.clear_config()


def test_ablation_recipes_keep_the_network_they_were_measured_with():
    """docs/reproduce.md's ablation rows ran on the 2 + 2-layer network; the default recipe
    moved to 4 + 4 layers, which must not change what the ablation commands run."""
    from jaxrec.cli.reproduce import recipe_config

    def layers(files):
        cfg = recipe_config(files, [])
        net = dict(cfg.model_overrides)
        gin.clear_config()
        return net["num_encoder_layers"], net["num_decoder_layers"], net["dropout_rate"]

    assert layers([]) == (4, 4, 0.15)  # the default recipe
    small = (2, 2, 0.1)
    assert layers(["experiments/tiger_prefix_shared_2x2.gin"]) == small
    assert layers(["experiments/tiger_prefix_shared_mim_bpr.gin"]) == small
    assert layers(["experiments/tiger_prefix_shared_mim_bpr_align.gin"]) == small


def test_hybrid_recipe_is_the_default_network_with_a_scaled_dense_head():
    from jaxrec.cli.reproduce import recipe_config

    default = dict(recipe_config([], []).model_overrides)
    gin.clear_config()
    cfg = recipe_config(["experiments/tiger_prefix_shared_hybrid.gin"], [])
    gin.clear_config()
    assert cfg.hybrid and cfg.item_id_inputs and cfg.train.next_item_loss > 0
    assert (cfg.num_beams, cfg.test_num_beams) == (20, 40)  # step with 20, weight and test 40
    assert (cfg.epochs, cfg.steps) == (63, 0)  # a fixed plan, not the generative's budget
    assert dict(cfg.model_overrides) == {**default, "scale_item_logits": True}


def test_plateau_ablation_differs_from_the_hybrid_recipe_only_in_auxiliary_tasks():
    """Issue 20's ablation C compares the hybrid recipe with itself plus auxiliary tasks: any
    other difference (network, head, losses, schedule) would confound its rows."""
    import dataclasses

    from jaxrec.cli.reproduce import recipe_config

    def load(name):
        cfg = recipe_config([f"experiments/{name}.gin"], [])
        gin.clear_config()
        return cfg

    base = load("tiger_prefix_shared_hybrid")
    rows = {
        ("mim", "bpr"): load("tiger_prefix_shared_hybrid_mim_bpr"),
        ("mim", "bpr", "item2index", "index2item"): load(
            "tiger_prefix_shared_hybrid_mim_bpr_align"
        ),
    }
    for tasks, cfg in rows.items():
        assert cfg.train.aux_tasks == tasks and cfg.train.aux_rate == 0.25
        assert cfg.name != base.name
        same_train = dataclasses.replace(cfg.train, aux_tasks=(), aux_rate=base.train.aux_rate)
        assert same_train == base.train
        assert dataclasses.replace(cfg, name=base.name, train=base.train) == base
