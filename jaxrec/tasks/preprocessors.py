"""Pure preprocessors: rendered item strings in, one {"inputs", "targets"} text example out.

Items arrive already rendered (semantic ids, "item_12", titles: see `items.ItemRenderer`), so
these functions know nothing about datasets or vocabularies; builders (`examples.py`) decide
which items go in, which guarantees the no-leakage rule. Randomness comes only from the
`random.Random` passed in, so every example is reproducible.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from jaxrec.tasks.templates import Template

SEP = ", "
MASK = "[MASK]"


def _fill(template: Template, **fields) -> dict[str, str]:
    inputs, targets = template
    return {"inputs": inputs.format(**fields), "targets": targets.format(**fields)}


def retrieval(history: Sequence[str], target: str, template: Template) -> dict[str, str]:
    """Next-item prediction.

    >>> retrieval(["<a_1><b_2>", "<a_3><b_4>"], "<a_5><b_6>", ("After {history}?", "{item}"))
    {'inputs': 'After <a_1><b_2>, <a_3><b_4>?', 'targets': '<a_5><b_6>'}
    """
    return _fill(template, history=SEP.join(history), item=target)


def ranking(
    history: Sequence[str], candidates: Sequence[str], target: str, template: Template
) -> dict[str, str]:
    """Pick the next item from a candidate list (already shuffled by the caller).

    >>> ranking(["item_1"], ["item_7", "item_2"], "item_2", ("{history} | {candidates}", "{item}"))
    {'inputs': 'item_1 | item_7, item_2', 'targets': 'item_2'}
    """
    return _fill(template, history=SEP.join(history), candidates=SEP.join(candidates), item=target)


def format_rating(r: float) -> str:
    """4.0 -> "4", 3.5 -> "3.5"."""
    return f"{r:g}"


def rating(
    history: Sequence[str],
    ratings: Sequence[float] | None,
    target: str,
    target_rating: float,
    template: Template,
) -> dict[str, str]:
    """Rating prediction; history items carry their rating where it is known (not NaN).

    >>> rating(["item_1", "item_2"], [5.0, float("nan")], "item_3", 4.0, ("{history}; {item}",
    ...        "{rating}"))
    {'inputs': 'item_1 (5 stars), item_2; item_3', 'targets': '4'}
    """
    if ratings is None:
        ratings = [float("nan")] * len(history)
    shown = [
        h if r != r else f"{h} ({format_rating(r)} stars)"  # r != r is NaN
        for h, r in zip(history, ratings, strict=True)
    ]
    return _fill(
        template, history=SEP.join(shown), item=target, rating=format_rating(target_rating)
    )


def masked_items(
    history: Sequence[str], rng: random.Random, template: Template, mask_rate: float = 0.2
) -> dict[str, str]:
    """Masked item modeling (Cao et al.): hide a seeded fraction of the history (at least one).

    >>> masked_items(["i1", "i2", "i3", "i4", "i5"], random.Random(0), ("{history}", "{masked}"))
    {'inputs': 'i1, i2, i3, [MASK], i5', 'targets': 'i4'}
    """
    n = len(history)
    k = min(n, max(1, round(mask_rate * n)))
    masked = sorted(rng.sample(range(n), k))
    hidden = set(masked)
    shown = [MASK if i in hidden else h for i, h in enumerate(history)]
    return _fill(template, history=SEP.join(shown), masked=SEP.join(history[i] for i in masked))


def sentinel(k: int) -> str:
    return f"<extra_id_{k}>"


def _segment(total: int, parts: int, rng: random.Random) -> list[int]:
    """Split `total` into `parts` positive integers, uniformly at random."""
    cuts = sorted(rng.sample(range(1, total), parts - 1)) if parts > 1 else []
    bounds = [0, *cuts, total]
    return [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def span_corruption(
    text: str,
    rng: random.Random,
    template: Template,
    noise_density: float = 0.15,
    mean_span: float = 3.0,
) -> dict[str, str]:
    """T5 span corruption over words: masked spans -> sentinels; targets list the spans.

    As in T5, kept and masked spans alternate, starting with a kept span and ending with a
    masked one; the targets are the masked spans each preceded by its sentinel, closed by one
    final sentinel.

    >>> span_corruption("a b c d e f g h i j", random.Random(1), ("{text}", "{spans}"))
    {'inputs': 'a b c d e f g h <extra_id_0>', 'targets': '<extra_id_0> i j <extra_id_1>'}
    """
    words = text.split()
    n = len(words)
    if n < 2:
        raise ValueError("span corruption needs at least two words")
    num_noise = min(n - 1, max(1, round(n * noise_density)))
    num_spans = max(1, min(round(num_noise / mean_span), num_noise, n - num_noise))
    noise_lens = _segment(num_noise, num_spans, rng)
    keep_lens = _segment(n - num_noise, num_spans, rng)
    inputs, targets, pos = [], [], 0
    for k, (keep, noise) in enumerate(zip(keep_lens, noise_lens, strict=True)):
        inputs.extend(words[pos : pos + keep])
        pos += keep
        inputs.append(sentinel(k))
        targets.append(sentinel(k))
        targets.extend(words[pos : pos + noise])
        pos += noise
    targets.append(sentinel(num_spans))
    return _fill(template, text=" ".join(inputs), spans=" ".join(targets))


def bpr(
    history: Sequence[str], positive: str, negative: str, rng: random.Random, template: Template
) -> dict[str, str]:
    """Pairwise preference: the true next item vs a sampled negative, in seeded random order.

    >>> bpr(["i1"], "i2", "i9", random.Random(3), ("{history}: {first} or {second}", "{item}"))
    {'inputs': 'i1: i2 or i9', 'targets': 'i2'}
    """
    first, second = (positive, negative) if rng.random() < 0.5 else (negative, positive)
    return _fill(template, history=SEP.join(history), first=first, second=second, item=positive)


def item2index(title: str, description: str, item: str, template: Template) -> dict[str, str]:
    """Item text -> its tokens (LC-Rec alignment; item-level, no user data).

    >>> item2index("Rose Oil", "", "<a_1><b_2>", ('"{title}" {description}', "{item}"))
    {'inputs': '"Rose Oil" ', 'targets': '<a_1><b_2>'}
    """
    return _fill(template, title=title, description=description, item=item)


def index2item(item: str, title: str, template: Template) -> dict[str, str]:
    """Item tokens -> its title (LC-Rec alignment).

    >>> index2item("<a_1><b_2>", "Rose Oil", ("title of {item}?", "{title}"))
    {'inputs': 'title of <a_1><b_2>?', 'targets': 'Rose Oil'}
    """
    return _fill(template, item=item, title=title)


def fusion_title(history: Sequence[str], target_title: str, template: Template) -> dict[str, str]:
    """Token history -> the next item's title (LC-Rec fusion seqrec, one direction).

    >>> fusion_title(["<a_1>", "<a_2>"], "Rose Oil", ("{history}", "{title}"))
    {'inputs': '<a_1>, <a_2>', 'targets': 'Rose Oil'}
    """
    return _fill(template, history=SEP.join(history), title=target_title)


def fusion_index(titles: Sequence[str], target: str, template: Template) -> dict[str, str]:
    """Title history -> the next item's tokens (LC-Rec fusion seqrec, other direction).

    >>> fusion_index(["Rose Oil", "Soap"], "<a_3>", ("{titles}", "{item}"))
    {'inputs': '"Rose Oil", "Soap"', 'targets': '<a_3>'}
    """
    return _fill(template, titles=SEP.join(f'"{t}"' for t in titles), item=target)


def item_search(
    history: Sequence[str], query: str, target: str, template: Template
) -> dict[str, str]:
    """User query + history -> the item searched for (LC-Rec `user.json` intentions).

    >>> item_search(["i1"], "something floral", "i4", ("{history} / {query}", "{item}"))
    {'inputs': 'i1 / something floral', 'targets': 'i4'}
    """
    return _fill(template, history=SEP.join(history), query=query, item=target)


def preference(history: Sequence[str], text: str, template: Template) -> dict[str, str]:
    """History -> a stated preference (LC-Rec `user.json` explicit preferences).

    >>> preference(["i1", "i2"], "likes floral scents", ("{history}", "{preference}"))
    {'inputs': 'i1, i2', 'targets': 'likes floral scents'}
    """
    return _fill(template, history=SEP.join(history), preference=text)
