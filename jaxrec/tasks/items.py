"""How items appear in prompts and targets: one representation for all tasks of a run.

    "sid"       semantic-id tokens from an `ItemIndex`:       <a_12><b_7><c_201><d_3>
    "id"        the dataset's (shuffled) dense id as text:     item_1234
    "id_title"  id plus quoted title (Cao et al.):             item_1234 "Lavender Body Lotion"
    "title"     the title alone:                               Lavender Body Lotion

Dataset ids are randomly shuffled by `jaxrec data prepare` (item_order="shuffle"), so numeric
ids do not leak interaction order.
"""

from __future__ import annotations

import dataclasses

from jaxrec.data.dataset import DataError, Dataset
from jaxrec.indexing.item_index import ItemIndex

ITEM_REPRS = ("sid", "id", "id_title", "title")
_TITLE_STRIP = " \t.!?,;:`\"'"


def clean_title(title: str) -> str:
    """Title without surrounding punctuation/quotes and inner newlines (LC-Rec does the same)."""
    return " ".join(title.split()).strip(_TITLE_STRIP)


@dataclasses.dataclass(frozen=True)
class ItemRenderer:
    """Renders item ids as strings; `strings[i]` is item i.

    Attributes:
      repr: one of ITEM_REPRS.
      strings: per item, the rendered string.
      titles: per item, its cleaned title ("" if none).
      descriptions: per item, its description (may be "").
      new_tokens: vocabulary additions (item tokens) this representation needs.
      index: the item index for "sid", else None.
    """

    repr: str
    strings: tuple[str, ...]
    titles: tuple[str, ...]
    descriptions: tuple[str, ...]
    new_tokens: tuple[str, ...]
    index: ItemIndex | None = None

    def __call__(self, item: int) -> str:
        return self.strings[item]

    def many(self, items) -> list[str]:
        return [self.strings[i] for i in items]

    @property
    def has_titles(self) -> bool:
        return any(self.titles)

    @property
    def has_semantic_ids(self) -> bool:
        return self.index is not None and not self.index.is_text


def make_renderer(
    ds: Dataset, item_repr: str, index: ItemIndex | None = None, max_description_chars: int = 200
) -> ItemRenderer:
    """Build the renderer for `ds`; errors say what is missing (index, titles)."""
    if item_repr not in ITEM_REPRS:
        raise ValueError(f"item_repr must be one of {ITEM_REPRS}, got {item_repr!r}")
    titles = tuple(clean_title(it.title) for it in ds.items)
    descriptions = tuple(
        " ".join(it.description.split())[:max_description_chars] for it in ds.items
    )
    new_tokens: tuple[str, ...] = ()
    if item_repr == "sid":
        if index is None:
            raise DataError(f"dataset {ds.name!r}: item_repr 'sid' needs an item index")
        if index.num_items != ds.num_items:
            raise DataError(
                f"dataset {ds.name!r} has {ds.num_items} items but the index has {index.num_items}"
            )
        strings = tuple(index.format_item(i) for i in range(ds.num_items))
        new_tokens = tuple(index.item_tokens())
    elif item_repr == "id":
        strings = tuple(f"item_{i}" for i in range(ds.num_items))
    else:
        missing = [i for i, t in enumerate(titles) if not t]
        if item_repr == "title" and missing:
            raise DataError(
                f"dataset {ds.name!r}: item_repr 'title' needs a title for every item; "
                f"{len(missing)} item(s) have none (first ids {missing[:5]})"
            )
        if item_repr == "id_title":
            strings = tuple(f'item_{i} "{t}"' if t else f"item_{i}" for i, t in enumerate(titles))
        else:
            strings = titles
    return ItemRenderer(
        repr=item_repr,
        strings=strings,
        titles=titles,
        descriptions=descriptions,
        new_tokens=new_tokens,
        index=index if item_repr == "sid" else None,
    )
