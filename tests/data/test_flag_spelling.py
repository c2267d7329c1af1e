"""One option spelling across commands (dashes), the other accepted as an alias."""

import pytest

from jaxrec import train
from jaxrec.cli import build_parser, canonical_spelling


def _parse(*argv):
    return build_parser().parse_args(canonical_spelling(list(argv)))


@pytest.mark.parametrize("sep", ["-", "_"])
def test_eval_and_data_flags_accept_both_spellings(sep):
    args = _parse("eval", f"--model{sep}dir", "m", "--dataset", "d", f"--max{sep}users", "5",
                  f"--num{sep}beams=7")  # fmt: skip
    assert (args.model_dir, args.max_users, args.num_beams) == ("m", 5, 7)
    args = _parse("data", "prepare", "--source", "p5", "--input", "x", "--out", "o",
                  f"--item{sep}order", "first_seen", f"--num{sep}negatives", "3")  # fmt: skip
    assert (args.item_order, args.num_negatives) == ("first_seen", 3)


def test_help_uses_dashes_everywhere():
    parser = build_parser()
    options = []

    def walk(p):
        for action in p._actions:
            options.extend(o for o in action.option_strings if o.startswith("--"))
            choices = getattr(action, "choices", None)
            if isinstance(choices, dict):
                for sub in choices.values():
                    walk(sub)

    walk(parser)
    assert options and not [o for o in options if "_" in o]


def test_values_and_positionals_keep_underscores():
    assert canonical_spelling(["--out", "my_dir", "--x_y=a_b", "--", "--k_v"]) == [
        "--out", "my_dir", "--x-y=a_b", "--", "--k_v"]  # fmt: skip


def test_train_accepts_dashed_gin_flags():
    assert train.rewrite_gin_args(["--gin-file=a.gin", "--gin-search-paths=x", "--gin.A_B=1"]) == [
        "--gin_file=a.gin", "--gin_search_paths=x", "--gin_bindings=A_B = 1"]  # fmt: skip
