"""Leakage checks shared by the synthetic and real-data tests."""

from __future__ import annotations

import re
from collections import Counter

SID_RUN = re.compile(r"(?:<[a-z]_\d+>)+")
NUM_ID = re.compile(r"item_\d+")


def mentions(text: str, renderer) -> list[str]:
    """Item strings mentioned in `text` (sid runs or item_N ids)."""
    if renderer.repr == "sid":
        return SID_RUN.findall(text)
    return NUM_ID.findall(text)


def assert_no_leak(examples, ds, renderer, check_titles: bool = True) -> int:
    """No train example of user u mentions u's validation/test target (by id or title).

    Held-out items whose rendering equals one of the user's training items (semantic-id
    collisions), or whose title other items share, cannot be told apart in text and are
    skipped. Returns the examples checked.
    """
    checked = 0
    all_titles = sorted({t for t in renderer.titles if t}, key=len, reverse=True)
    title_count = Counter(renderer.titles)
    for ex in examples:
        if ex.user < 0:
            continue
        seq = ds.sequences[ex.user].tolist()
        train = set(seq[:-2])
        train_strings = {renderer(i) for i in train}
        text = ex.inputs + " || " + ex.targets
        found = set(mentions(text, renderer))
        for held in seq[-2:]:
            if held in train:
                continue
            s = renderer(held)
            if s not in train_strings:
                assert s not in found, f"user {ex.user}: held-out item {held} ({s}) in {text!r}"
            title = renderer.titles[held]
            if check_titles and title and title_count[title] == 1:  # shared titles: ambiguous
                # Blank out every other title first (longest first): a held-out title may be
                # a prefix of another item's title.
                rest = text
                for other in all_titles:
                    if other != title:
                        rest = rest.replace(other, " ")
                pattern = re.escape(title) + r"(?![\w])"
                assert not re.search(pattern, rest), f"user {ex.user}: title of {held} in {text!r}"
        if ex.target_item >= 0:
            assert ex.target_item not in seq[-2:] or ex.target_item in train
        checked += 1
    return checked
