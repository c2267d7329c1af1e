"""Prompt templates per task: several phrasings each, none mentioning a user id.

A template is an (inputs, targets) pair of `str.format` strings. Training draws one template
per example from a seeded stream (`pick`); evaluation uses a fixed one (index 0 by default) so
scores are comparable between runs. Field names:

    history     the user's past items, oldest first, joined by ", "
    titles      the same history as quoted titles (fusion task)
    candidates  a shuffled candidate list (ranking)
    item        one item as the model reads/emits it (semantic ids, "item_12", title...)
    first/second  the two items of a BPR pair
    rating, title, description, text, spans, masked, query, preference
"""

from __future__ import annotations

import random

Template = tuple[str, str]

TEMPLATES: dict[str, tuple[Template, ...]] = {
    "retrieval": (
        (
            "Here are the items a user bought, oldest first: {history}. "
            "Which item will the user buy next?",
            "{item}",
        ),
        ("Purchase history: {history}. Predict the next item.", "{item}"),
        ("A shopper has interacted with {history}. Recommend the item they want next.", "{item}"),
        ("Given the sequence {history}, what comes next?", "{item}"),
        ("Items viewed so far: {history}. Suggest one more item for this shopper.", "{item}"),
    ),
    "ranking": (
        (
            "A user bought {history}. From the candidates {candidates}, "
            "pick the item the user will buy next.",
            "{item}",
        ),
        ("History: {history}. Candidates: {candidates}. Which candidate comes next?", "{item}"),
        (
            "Choose from {candidates} the best next item for a shopper whose purchases were "
            "{history}.",
            "{item}",
        ),
        (
            "Rank the candidates {candidates} for the history {history} and answer with the top "
            "one.",
            "{item}",
        ),
    ),
    "rating": (
        (
            "A user rated these items: {history}. How many stars (1 to 5) will the user give "
            "{item}?",
            "{rating}",
        ),
        ("Past ratings: {history}. Predict the rating of {item}.", "{rating}"),
        ("Given the rated history {history}, what score from 1 to 5 fits {item}?", "{rating}"),
    ),
    "mim": (
        (
            "Some items in this purchase sequence are hidden as [MASK]: {history}. "
            "Which items are hidden, in order?",
            "{masked}",
        ),
        ("Fill in the masked items of the sequence {history}.", "{masked}"),
        ("The sequence {history} has missing entries marked [MASK]. Recover them.", "{masked}"),
    ),
    "mlm": (
        ("Fill in the blanks in these product titles: {text}", "{spans}"),
        ("Restore the missing words: {text}", "{spans}"),
        ("Some words of the item descriptions are masked: {text}", "{spans}"),
    ),
    "bpr": (
        ("A user bought {history}. Which of {first} and {second} will the user prefer?", "{item}"),
        ("History: {history}. Pick the better next item: {first} or {second}.", "{item}"),
        ("Given the purchases {history}, choose between {first} and {second}.", "{item}"),
    ),
    "item2index": (
        ('Which item has the title "{title}"?', "{item}"),
        ('Give the identifier of the product "{title}". {description}', "{item}"),
        ('An item is described as: "{title}". {description} What is its index?', "{item}"),
    ),
    "index2item": (
        ("What is the title of item {item}?", "{title}"),
        ("Describe the product {item} by its title.", "{title}"),
        ("Item {item} is called what?", "{title}"),
    ),
    "fusion_title": (
        ("A user bought {history}. What is the title of the item they will buy next?", "{title}"),
        ("Purchase history: {history}. Name the next item by its title.", "{title}"),
        ("Given the sequence {history}, give the title of the next item.", "{title}"),
    ),
    "fusion_index": (
        ("A user bought these products: {titles}. Which item comes next?", "{item}"),
        ("Purchased titles: {titles}. Predict the identifier of the next item.", "{item}"),
        ("Given a history of {titles}, recommend the next item.", "{item}"),
    ),
    "itemsearch": (
        ("A shopper who bought {history} asks: {query} Which item fits?", "{item}"),
        ("Query: {query} Purchase history: {history}. Find the matching item.", "{item}"),
        (
            'Search request "{query}" from a user with history {history}. Answer with an item.',
            "{item}",
        ),
    ),
    "preference": (
        ("A user bought {history}. Describe the user's preferences.", "{preference}"),
        ("What does a shopper with the history {history} like?", "{preference}"),
        ("Summarise the taste of a user who purchased {history}.", "{preference}"),
    ),
}


def pick(task: str, rng: random.Random | None, fixed: int = 0) -> Template:
    """The template for one example: drawn from `rng`, or `TEMPLATES[task][fixed]` if None."""
    choices = TEMPLATES[task]
    if rng is None:
        return choices[fixed % len(choices)]
    return choices[rng.randrange(len(choices))]


def corpus() -> list[str]:
    """Every template with its fields removed (text for training a SentencePiece model)."""
    out = []
    for templates in TEMPLATES.values():
        for inputs, targets in templates:
            for t in (inputs, targets):
                out.append(t.replace("{", "").replace("}", ""))
    return out
