"""Property-based cases for the raw readers (hypothesis).

* Random valid files round-trip exactly: every record comes back, in order.
* Random corruptions of a valid file are either accepted with the counts an independent parse
  of the corrupted bytes gives, or refused with a one-line DataError naming the file: never
  another exception (a traceback), never a record silently dropped.

`COUNTS` tallies the corruption cases; docs/data.md records a run's figures
(`python -m pytest -q tests/data/test_reader_properties.py -s` prints them).
"""

import ast
import collections
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxrec.data import formats
from jaxrec.data.dataset import DataError

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
COUNTS = collections.Counter()

ids = st.integers(min_value=0, max_value=10**6)
histories = st.dictionaries(ids, st.lists(ids, min_size=1, max_size=8), min_size=1, max_size=12)
asin = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=10)
reviews = st.lists(
    st.tuples(asin, asin, st.sampled_from([1.0, 2.0, 3.0, 4.0, 5.0]), st.integers(0, 2**31)),
    min_size=1,
    max_size=12,
)


def _p5_text(h):
    return "".join(f"{u} {' '.join(map(str, seq))}\n" for u, seq in h.items())


def _p5_expected(text):
    """Independent parse of a P5 file: (user, item) pairs, or None if it must be refused."""
    pairs, seen = [], set()
    for line in text.splitlines():
        tokens = line.split()
        if not tokens:
            continue
        if not all(t.isascii() and t.isdecimal() for t in tokens) or len(tokens) < 2:
            return None
        if tokens[0] in seen:
            return None
        seen.add(tokens[0])
        pairs += [(tokens[0], t) for t in tokens[1:]]
    return pairs


def _reviews_2014(rows):
    return "".join(
        repr({"reviewerID": u, "asin": i, "overall": r, "unixReviewTime": t}) + "\n"
        for u, i, r, t in rows
    )


def _reviews_expected(text):
    pairs = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            rec = ast.literal_eval(line.strip())
            pairs.append((str(rec["reviewerID"]), str(rec["asin"])))
        except Exception:
            return None
    return pairs


# -- round trips -------------------------------------------------------------------------------
@SETTINGS
@given(h=histories)
def test_p5_round_trip(tmp_path, h):
    path = tmp_path / "P.txt"
    path.write_text(_p5_text(h))
    inter = formats.read_sequence_txt(str(path))
    assert list(zip(inter.users, inter.items, strict=True)) == [
        (str(u), str(i)) for u, seq in h.items() for i in seq
    ]


@SETTINGS
@given(h=histories)
def test_lcrec_round_trip(tmp_path, h):
    path = tmp_path / "L.inter.json"
    path.write_text(json.dumps({str(u): seq for u, seq in h.items()}))
    inter = formats.read_lcrec_inter(str(path))
    assert list(zip(inter.users, inter.items, strict=True)) == [
        (str(u), str(i)) for u, seq in h.items() for i in seq
    ]


@SETTINGS
@given(rows=reviews)
def test_amazon_2014_round_trip(tmp_path, rows):
    path = tmp_path / "reviews_R_5.json"
    path.write_text(_reviews_2014(rows))
    inter = formats.read_amazon_reviews(str(path), 2014)
    assert list(zip(inter.users, inter.items, inter.ratings, inter.timestamps, strict=True)) == [
        tuple(r) for r in rows
    ]


# -- corruptions -------------------------------------------------------------------------------
corruption = st.tuples(
    st.sampled_from(["truncate", "delete", "insert", "flip", "duplicate-line"]),
    st.floats(0, 1),
    st.floats(0, 1),
    st.binary(min_size=1, max_size=6),
)


def _corrupt(data: bytes, op) -> bytes:
    kind, a, b, junk = op
    i = min(int(a * len(data)), max(len(data) - 1, 0))
    j = min(len(data), i + 1 + int(b * 8))
    if kind == "truncate":
        return data[:i]
    if kind == "delete":
        return data[:i] + data[j:]
    if kind == "insert":
        return data[:i] + junk + data[i:]
    if kind == "flip":
        return data[:i] + bytes([data[i] ^ (1 + int(b * 254))]) + data[i + 1 :] if data else data
    lines = data.splitlines(keepends=True)
    k = int(a * len(lines)) if lines else 0
    return b"".join(lines[: k + 1] + lines[k : k + 1] + lines[k + 1 :])


def _check(path, read, expected_fn, data):
    try:
        text = data.decode("utf-8")
        expected = expected_fn(text)
    except UnicodeDecodeError:
        expected = None
    COUNTS["tried"] += 1
    try:
        inter = read(str(path))
    except DataError as e:
        msg = str(e)
        assert "\n" not in msg and msg.startswith(str(path)), msg
        COUNTS["refused cleanly"] += 1
        return
    got = list(zip(inter.users, inter.items, strict=True))
    if expected is None or got != expected:
        COUNTS["data lost"] += 1
    assert got == expected, "accepted, but not every record came back"
    COUNTS["accepted, identical counts"] += 1


@SETTINGS
@given(h=histories, op=corruption)
def test_p5_corruptions(tmp_path, h, op):
    path = tmp_path / "P.txt"
    data = _corrupt(_p5_text(h).encode(), op)
    path.write_bytes(data)
    _check(path, formats.read_sequence_txt, _p5_expected, data)


@SETTINGS
@given(rows=reviews, op=corruption)
def test_amazon_2014_corruptions(tmp_path, rows, op):
    path = tmp_path / "reviews_R_5.json"
    data = _corrupt(_reviews_2014(rows).encode(), op)
    path.write_bytes(data)

    def read(p):
        inter = formats.read_amazon_reviews(p, 2014)
        assert all(math.isfinite(r) for r in inter.ratings)
        return inter

    _check(path, read, _reviews_expected, data)


@SETTINGS
@given(h=histories, op=corruption)
def test_lcrec_corruptions(tmp_path, h, op):
    path = tmp_path / "L.inter.json"
    data = _corrupt(json.dumps({str(u): seq for u, seq in h.items()}).encode(), op)
    path.write_bytes(data)

    def expected(text):
        try:
            obj = json.loads(text)
        except ValueError:
            return None
        if not isinstance(obj, dict) or not all(
            isinstance(v, list) and v and all(type(i) in (int, str) for i in v)
            for v in obj.values()
        ):
            return None
        return [(u, str(i)) for u, seq in obj.items() for i in seq]

    _check(path, formats.read_lcrec_inter, expected, data)


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if COUNTS:
        print(f"\nreader corruption cases: {dict(COUNTS)}")
        assert COUNTS["data lost"] == 0
