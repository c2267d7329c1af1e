"""Readers for the raw formats recommendation researchers have on disk.

Every reader returns `Interactions` (records in file order) and, where the format has them, item
metadata keyed by the source's item id. Errors name the file and the line (or JSON record).

Formats:
  * Amazon 2014: `reviews_{Cat}_5.json.gz` (one Python dict literal per line, parsed with
    `ast.literal_eval`), `meta_{Cat}.json.gz` (likewise), `ratings_{Cat}.csv`
    (`user,item,rating,timestamp`, no header).
  * Amazon 2018: strict JSON lines (`reviews`/`meta`), ratings CSV `item,user,rating,timestamp`.
  * P5 / S3-Rec: `{Cat}.txt` (`user item item ...` chronological) + `{Cat}_item2attributes.json`;
    P5's `sequential_data.txt` + `datamaps.json` (its `id2item` gives the original asins).
  * LC-Rec: `{name}.inter.json` (`{"user": [item, ...]}`), `{name}.item.json`.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import gzip
import io
import json
import math
import os
import re
from collections.abc import Iterator
from typing import Any

from jaxrec.data.dataset import DataError, Item

NO_TIMESTAMP = -1


@dataclasses.dataclass
class Interactions:
    """Interaction records in file order. Parallel lists; rating NaN / timestamp -1 if unknown."""

    users: list[str] = dataclasses.field(default_factory=list)
    items: list[str] = dataclasses.field(default_factory=list)
    ratings: list[float] = dataclasses.field(default_factory=list)
    timestamps: list[int] = dataclasses.field(default_factory=list)
    source: str = ""
    # Sequence formats (P5, LC-Rec) carry order, not time: `timestamps` then hold positions.
    positions_only: bool = False

    def append(self, user: str, item: str, rating: float = math.nan, ts: int = NO_TIMESTAMP):
        self.users.append(user)
        self.items.append(item)
        self.ratings.append(rating)
        self.timestamps.append(ts)

    def __len__(self) -> int:
        return len(self.users)

    @property
    def has_ratings(self) -> bool:
        return any(not math.isnan(r) for r in self.ratings)

    @property
    def has_timestamps(self) -> bool:
        return not self.positions_only and any(t != NO_TIMESTAMP for t in self.timestamps)


# -- low-level line readers -------------------------------------------------------------------
def _open_binary(path: str):
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def iter_lines(path: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, decoded line) for non-blank lines; non-UTF-8 bytes are an error."""
    with _open_binary(path) as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{path}:{lineno}: not valid UTF-8 (byte {raw[e.start]:#04x} at column "
                    f"{e.start + 1})"
                ) from None
            if line.strip():
                yield lineno, line


def _parse_record(path: str, lineno: int, line: str, strict_json: bool) -> dict[str, Any]:
    try:
        record = json.loads(line) if strict_json else ast.literal_eval(line.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        # TypeError: a literal such as {[1]: 2} (unhashable key); RecursionError: deep nesting
        kind = "JSON" if strict_json else "Python dict literal"
        raise DataError(f"{path}:{lineno}: malformed {kind}: {e}") from None
    if not isinstance(record, dict):
        raise DataError(f"{path}:{lineno}: expected an object, got {type(record).__name__}")
    return record


def _require(path: str, lineno: int, record: dict, fields: tuple[str, ...]) -> None:
    missing = [f for f in fields if f not in record or record[f] in (None, "")]
    if missing:
        raise DataError(f"{path}:{lineno}: missing field(s) {', '.join(missing)}")


def _as_float(path: str, lineno: int, field: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{path}:{lineno}: field {field} is not a number: {value!r}") from None
    if not math.isfinite(out):
        raise DataError(f"{path}:{lineno}: field {field} is not finite: {value!r}")
    return out


def _as_int(path: str, lineno: int, field: str, value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DataError(f"{path}:{lineno}: field {field} is not an integer: {value!r}") from None


def detect_amazon_version(path: str) -> int:
    """2018 files are strict JSON lines; 2014 files are Python dict literals."""
    for _, line in iter_lines(path):
        try:
            json.loads(line)
            return 2018
        except (ValueError, RecursionError):
            return 2014
    raise DataError(f"{path}: file is empty")


# -- Amazon reviews / meta / ratings ----------------------------------------------------------
def read_amazon_reviews(path: str, version: int | None = None) -> Interactions:
    """Amazon 2014 (`reviews_{Cat}_5.json.gz`) or 2018 review files."""
    version = version or detect_amazon_version(path)
    strict = version == 2018
    out = Interactions(source=f"amazon{version}:{os.path.basename(path)}")
    for lineno, line in iter_lines(path):
        rec = _parse_record(path, lineno, line, strict)
        _require(path, lineno, rec, ("reviewerID", "asin", "overall", "unixReviewTime"))
        out.append(
            str(rec["reviewerID"]),
            str(rec["asin"]),
            _as_float(path, lineno, "overall", rec["overall"]),
            _as_int(path, lineno, "unixReviewTime", rec["unixReviewTime"]),
        )
    return out


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return " ".join(_text(v) for v in value if v)
    return " ".join(str(value).split())


def _price(value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(str(value).strip().lstrip("$").replace(",", ""))
    except ValueError:
        return None  # 2018 meta has prices like "$3.99 - $12.99" or HTML snippets


def read_amazon_meta(path: str, version: int | None = None) -> dict[str, Item]:
    """Item metadata (title, brand, categories, description, price) keyed by asin."""
    version = version or detect_amazon_version(path)
    strict = version == 2018
    items: dict[str, Item] = {}
    for lineno, line in iter_lines(path):
        rec = _parse_record(path, lineno, line, strict)
        _require(path, lineno, rec, ("asin",))
        asin = str(rec["asin"])
        if asin in items:
            raise DataError(f"{path}:{lineno}: duplicate item {asin!r}")
        if version == 2014:
            cats = rec.get("categories") or []
            flat = [c for path_ in cats for c in (path_ if isinstance(path_, list) else [path_])]
        else:
            flat = rec.get("category") or []
        categories: list[str] = []
        for c in flat:
            c = _text(c)
            if c and c not in categories:
                categories.append(c)
        items[asin] = Item(
            original_id=asin,
            title=_text(rec.get("title")),
            brand=_text(rec.get("brand")),
            categories=tuple(categories),
            description=_text(rec.get("description")),
            price=_price(rec.get("price")),
        )
    return items


def read_amazon_ratings_csv(path: str, version: int = 2014) -> Interactions:
    """`ratings_{Cat}.csv`: 2014 order `user,item,rating,timestamp`; 2018 `item,user,...`."""
    out = Interactions(source=f"amazon{version}-ratings:{os.path.basename(path)}")
    for lineno, line in iter_lines(path):
        row = next(csv.reader(io.StringIO(line)))
        if len(row) != 4:
            raise DataError(f"{path}:{lineno}: expected 4 comma-separated fields, got {len(row)}")
        if version == 2014:
            user, item, rating, ts = row
        else:
            item, user, rating, ts = row
        if not user or not item:
            raise DataError(f"{path}:{lineno}: empty user or item id")
        out.append(
            user,
            item,
            _as_float(path, lineno, "rating", rating),
            _as_int(path, lineno, "timestamp", ts),
        )
    return out


# -- P5 / S3-Rec sequence files ---------------------------------------------------------------
def read_sequence_txt(path: str) -> Interactions:
    """`user item item ...` per line, chronological (S3-Rec `{Cat}.txt`, P5 sequential_data).

    Every token is an integer id; anything else is an error at `file:line:column`.
    """
    out = Interactions(source=f"p5:{os.path.basename(path)}", positions_only=True)
    seen: dict[str, int] = {}
    for lineno, line in iter_lines(path):
        for m in re.finditer(r"\S+", line):
            if not m.group().isdecimal() or not m.group().isascii():
                what = "user" if m.start() == len(line) - len(line.lstrip()) else "item"
                raise DataError(
                    f"{path}:{lineno}:{m.start() + 1}: {what} id {m.group()!r} is not an integer"
                )
        parts = line.split()
        user, seq = parts[0], parts[1:]
        if user in seen:
            raise DataError(
                f"{path}:{lineno}: duplicate user {user!r} (first on line {seen[user]})"
            )
        seen[user] = lineno
        if not seq:
            raise DataError(f"{path}:{lineno}: user {user!r} has an empty history")
        for pos, item in enumerate(seq):
            out.append(user, item, math.nan, pos)
    return out


def json_kind(value: Any, show: bool = False) -> str:
    """What a JSON value is, for messages: "a string", "null", ...; `show`: with the value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        kind = "a boolean"
    elif isinstance(value, int):
        kind = "an integer"
    elif isinstance(value, float):
        kind = "a number"
    elif isinstance(value, str):
        kind = "a string"
    elif isinstance(value, list):
        kind = "a list"
    elif isinstance(value, dict):
        kind = "an object"
    else:
        kind = f"a {type(value).__name__}"
    if not show:
        return kind
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return f"{kind} {text if len(text) <= 40 else text[:37] + '...'}"


def read_json_object(path: str) -> dict[str, Any]:
    """A JSON object file; duplicate keys are an error (json would silently keep the last)."""

    def no_duplicates(pairs):
        obj = {}
        for k, v in pairs:
            if k in obj:
                raise DataError(f"{path}: duplicate key {k!r}")
            obj[k] = v
        return obj

    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f, object_pairs_hook=no_duplicates)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 at byte {e.start}") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: malformed JSON: {e.msg}") from None
    except RecursionError:
        raise DataError(f"{path}: malformed JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a JSON object at the top level")
    return obj


def read_item2attributes(path: str) -> dict[str, Item]:
    """S3-Rec `{Cat}_item2attributes.json`: `{"item": [attribute_id, ...]}`."""
    items = {}
    for item, attrs in read_json_object(path).items():
        if not isinstance(attrs, list) or not all(isinstance(a, int) for a in attrs):
            raise DataError(f"{path}: item {item!r}: attributes must be a list of integers")
        items[item] = Item(original_id=item, attributes=tuple(attrs))
    return items


def read_p5_datamaps(path: str) -> dict[str, str]:
    """P5 `datamaps.json`: returns `id2item` (sequence item id -> original asin)."""
    maps = read_json_object(path)
    if "id2item" not in maps or not isinstance(maps["id2item"], dict):
        raise DataError(f"{path}: missing object 'id2item'")
    return {str(k): str(v) for k, v in maps["id2item"].items()}


# -- LC-Rec layout ----------------------------------------------------------------------------
def read_lcrec_inter(path: str) -> Interactions:
    """`{name}.inter.json`: `{"user": [item, ...]}`, chronological, integer item ids."""
    out = Interactions(source=f"lcrec:{os.path.basename(path)}", positions_only=True)
    for user, seq in read_json_object(path).items():
        if not isinstance(seq, list):
            raise DataError(
                f"{path}: user {user!r}: expected a list of item ids, got {json_kind(seq)}"
            )
        if not seq:
            raise DataError(f"{path}: user {user!r} has an empty history")
        for pos, item in enumerate(seq):
            if isinstance(item, bool) or not isinstance(item, int | str):
                raise DataError(f"{path}: user {user!r}, position {pos}: bad item id {item!r}")
            out.append(str(user), str(item), math.nan, pos)
    return out


def read_lcrec_items(path: str) -> dict[str, Item]:
    """`{name}.item.json`: `{"item": {"title": ..., "description": ..., ...}}`."""
    items = {}
    for item, rec in read_json_object(path).items():
        if not isinstance(rec, dict):
            raise DataError(f"{path}: item {item!r}: expected an object")
        cats = rec.get("categories") or ()
        if isinstance(cats, str):
            cats = tuple(c.strip() for c in cats.split(",") if c.strip())
        items[item] = Item(
            original_id=str(rec.get("original_id", item)),
            title=_text(rec.get("title")),
            brand=_text(rec.get("brand")),
            categories=tuple(cats),
            description=_text(rec.get("description")),
            price=_price(rec.get("price")),
            attributes=tuple(rec.get("attributes") or ()),
        )
    return items
