"""LC-Rec's `{name}.user.json`: LLM-written user preferences and search intentions.

    {"user_explicit_preference": {"<uid>": ["likes ...", "prefers ...", ...], ...},
     "user_vague_intention": {
        "train": {"<uid>": {"querys": [user_related, item_related], "item": 17,
                            "inters": [3, 9, ...]}, ...},
        "test":  {...same shape...}}}

User ids are LC-Rec's (the keys of `{name}.inter.json`), i.e. our `Dataset.users` strings;
item ids are LC-Rec's dense ids, i.e. ours when the dataset was prepared from the LC-Rec layout.
"""

from __future__ import annotations

import dataclasses
import os

from jaxrec.data.dataset import DataError, Dataset
from jaxrec.data.formats import read_json_object


@dataclasses.dataclass(frozen=True)
class Intention:
    """One search intention: two queries, the item searched for and the history before it."""

    queries: tuple[str, ...]
    item: int
    history: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class UserInfo:
    """Per dense user id: explicit preferences and per-split intentions."""

    preferences: dict[int, tuple[str, ...]]
    intentions: dict[str, dict[int, Intention]]  # "train" / "test" -> user -> intention


def user_info_path(data_dir: str, name: str) -> str:
    return os.path.join(data_dir, f"{name}.user.json")


def read_user_info(path: str, ds: Dataset) -> UserInfo:
    """Parse and check `path` against `ds` (unknown users or items are errors)."""
    obj = read_json_object(path)
    dense = {u: i for i, u in enumerate(ds.users)}

    def user_of(uid: str, where: str) -> int:
        if uid not in dense:
            raise DataError(f"{path}: {where}: unknown user {uid!r}")
        return dense[uid]

    def item_of(x, where: str) -> int:
        if isinstance(x, bool) or not isinstance(x, int | str) or not str(x).isdigit():
            raise DataError(f"{path}: {where}: bad item id {x!r}")
        if int(x) >= ds.num_items:
            raise DataError(f"{path}: {where}: item {x} outside the catalogue ({ds.num_items})")
        return int(x)

    prefs_obj = obj.get("user_explicit_preference", {})
    if not isinstance(prefs_obj, dict):
        raise DataError(f"{path}: 'user_explicit_preference' must be an object")
    preferences = {}
    for uid, prefs in prefs_obj.items():
        if isinstance(prefs, str):
            prefs = [prefs]
        if not isinstance(prefs, list) or not all(isinstance(p, str) for p in prefs):
            raise DataError(f"{path}: user_explicit_preference[{uid!r}]: expected strings")
        preferences[user_of(uid, "user_explicit_preference")] = tuple(p.strip() for p in prefs)

    intentions: dict[str, dict[int, Intention]] = {}
    vague = obj.get("user_vague_intention", {})
    if not isinstance(vague, dict):
        raise DataError(f"{path}: 'user_vague_intention' must be an object")
    for split, records in vague.items():
        if not isinstance(records, dict):
            raise DataError(f"{path}: user_vague_intention[{split!r}] must be an object")
        out = {}
        for uid, rec in records.items():
            where = f"user_vague_intention[{split!r}][{uid!r}]"
            if not isinstance(rec, dict) or not {"querys", "item", "inters"} <= set(rec):
                raise DataError(f"{path}: {where}: needs 'querys', 'item' and 'inters'")
            queries = rec["querys"]
            if isinstance(queries, str):
                queries = [queries]
            if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
                raise DataError(f"{path}: {where}: 'querys' must be strings")
            out[user_of(uid, where)] = Intention(
                queries=tuple(q.strip() for q in queries if q.strip()),
                item=item_of(rec["item"], where),
                history=tuple(item_of(x, where) for x in rec["inters"]),
            )
        intentions[split] = out
    return UserInfo(preferences=preferences, intentions=intentions)
