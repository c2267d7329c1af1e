"""Raw format readers: real layouts, and clear errors naming file and line."""

import gzip
import json
import math

import pytest

from jaxrec.data import formats
from jaxrec.data.dataset import DataError


def _write_gz(path, lines):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


REVIEW_2014 = (
    "{{'reviewerID': '{u}', 'asin': '{i}', 'reviewerName': 'J. Doe', 'helpful': [0, 0], "
    "'reviewText': 'ok', 'overall': {r}, 'summary': 's', 'unixReviewTime': {t}, "
    "'reviewTime': '01 1, 2014'}}"
)


def test_amazon_2014_reviews_are_python_literals(tmp_path):
    path = _write_gz(
        tmp_path / "reviews_Beauty_5.json.gz",
        [
            REVIEW_2014.format(u="A1", i="B01", r=5.0, t=100),
            REVIEW_2014.format(u="A2", i="B02", r=3.0, t=50),
        ],
    )
    inter = formats.read_amazon_reviews(path)
    assert inter.users == ["A1", "A2"]
    assert inter.items == ["B01", "B02"]
    assert inter.ratings == [5.0, 3.0]
    assert inter.timestamps == [100, 50]
    assert inter.source.startswith("amazon2014")


def test_amazon_2014_reader_never_evaluates_code(tmp_path):
    path = _write_gz(tmp_path / "r.json.gz", ["{'reviewerID': __import__('os').getpid()}"])
    with pytest.raises(DataError, match=r"r\.json\.gz:1: malformed Python dict literal"):
        formats.read_amazon_reviews(path, version=2014)


def test_missing_field_names_file_and_line(tmp_path):
    path = _write_gz(
        tmp_path / "r.json.gz",
        [REVIEW_2014.format(u="A1", i="B01", r=5.0, t=1), "{'reviewerID': 'A2', 'overall': 4.0}"],
    )
    with pytest.raises(DataError, match=r"r\.json\.gz:2: missing field\(s\) asin, unixReviewTime"):
        formats.read_amazon_reviews(path, version=2014)


def test_non_utf8_bytes_are_an_error(tmp_path):
    path = tmp_path / "r.json"
    good = json.dumps({"reviewerID": "A1", "asin": "B", "overall": 5, "unixReviewTime": 1})
    path.write_bytes(good.encode() + b'\n{"reviewerID": "\xff\xfe"}\n')
    with pytest.raises(DataError, match=r"r\.json:2: not valid UTF-8"):
        formats.read_amazon_reviews(str(path), version=2018)


def test_amazon_2018_json_lines_and_meta(tmp_path):
    reviews = _write_gz(
        tmp_path / "Beauty.json.gz",
        [
            json.dumps(
                {
                    "overall": 4.0,
                    "verified": True,
                    "reviewTime": "09 1, 2016",
                    "reviewerID": "U1",
                    "asin": "I1",
                    "style": {"Size:": " 8 oz"},
                    "reviewerName": "x",
                    "reviewText": "y",
                    "summary": "z",
                    "unixReviewTime": 1472688000,
                }
            ),
        ],
    )
    assert formats.detect_amazon_version(reviews) == 2018
    inter = formats.read_amazon_reviews(reviews)
    assert (inter.users, inter.items, inter.ratings) == (["U1"], ["I1"], [4.0])
    meta = _write_gz(
        tmp_path / "meta_Beauty.json.gz",
        [
            json.dumps(
                {
                    "asin": "I1",
                    "title": "Rose  Soap",
                    "brand": "Acme",
                    "category": ["Beauty", "Bath", "Beauty"],
                    "description": ["Nice.", "Pink."],
                    "price": "$12.99",
                    "main_cat": "All Beauty",
                }
            )
        ],
    )
    item = formats.read_amazon_meta(meta)["I1"]
    assert item.title == "Rose Soap"
    assert item.categories == ("Beauty", "Bath")
    assert item.description == "Nice. Pink."
    assert item.price == 12.99


def test_amazon_2014_meta_flattens_category_paths(tmp_path):
    meta = _write_gz(
        tmp_path / "meta_Beauty.json.gz",
        [
            "{'asin': 'B1', 'title': 'Lotion', 'price': 7.5, 'brand': 'Acme', "
            "'categories': [['Beauty', 'Skin Care'], ['Beauty', 'Bath']], 'description': 'Soft.'}",
            "{'asin': 'B2', 'categories': [['Beauty']]}",
        ],
    )
    items = formats.read_amazon_meta(meta)
    assert items["B1"].categories == ("Beauty", "Skin Care", "Bath")
    assert items["B1"].price == 7.5
    assert items["B2"].title == ""  # 2014 meta often lacks titles: empty, counted later


def test_ratings_csv_column_order_by_year(tmp_path):
    path = tmp_path / "ratings_Beauty.csv"
    path.write_text("AUSER,BITEM,5.0,1360000000\n")
    r14 = formats.read_amazon_ratings_csv(str(path), 2014)
    r18 = formats.read_amazon_ratings_csv(str(path), 2018)
    assert (r14.users, r14.items) == (["AUSER"], ["BITEM"])
    assert (r18.users, r18.items) == (["BITEM"], ["AUSER"])
    path.write_text("AUSER,BITEM,five,1360000000\n")
    with pytest.raises(DataError, match=r"ratings_Beauty\.csv:1: field rating is not a number"):
        formats.read_amazon_ratings_csv(str(path))


def test_sequence_txt_and_errors(tmp_path):
    path = tmp_path / "Beauty.txt"
    path.write_text("1 3 2 5\n2 4 1\n")
    inter = formats.read_sequence_txt(str(path))
    assert inter.users == ["1", "1", "1", "2", "2"]
    assert inter.items == ["3", "2", "5", "4", "1"]
    assert not inter.has_timestamps and all(math.isnan(r) for r in inter.ratings)
    path.write_text("1 3 2\n2 4\n1 7 8\n")
    with pytest.raises(DataError, match=r"Beauty\.txt:3: duplicate user '1' \(first on line 1\)"):
        formats.read_sequence_txt(str(path))
    path.write_text("1 3 2\n2\n")
    with pytest.raises(DataError, match=r"Beauty\.txt:2: user '2' has an empty history"):
        formats.read_sequence_txt(str(path))


def test_p5_datamaps_and_attributes(tmp_path):
    maps = tmp_path / "datamaps.json"
    maps.write_text(
        json.dumps({"user2id": {"A": "1"}, "item2id": {"B0": "1"}, "id2item": {"1": "B0"}})
    )
    assert formats.read_p5_datamaps(str(maps)) == {"1": "B0"}
    attrs = tmp_path / "X_item2attributes.json"
    attrs.write_text(json.dumps({"1": [3, 4], "2": "oops"}))
    with pytest.raises(DataError, match="item '2': attributes must be a list of integers"):
        formats.read_item2attributes(str(attrs))


def test_lcrec_inter_rejects_duplicate_users_and_bad_ids(tmp_path):
    path = tmp_path / "X.inter.json"
    path.write_text('{"0": [1, 2, 3], "0": [4, 5, 6]}')
    with pytest.raises(DataError, match="duplicate key '0'"):
        formats.read_lcrec_inter(str(path))
    path.write_text('{"0": [1, 2, {"x": 1}]}')
    with pytest.raises(DataError, match=r"user '0', position 2: bad item id"):
        formats.read_lcrec_inter(str(path))
    path.write_text('{"0": [1, 2,')
    with pytest.raises(DataError, match=r"X\.inter\.json:1: malformed JSON"):
        formats.read_lcrec_inter(str(path))


def test_sequence_txt_non_integer_token_is_an_error_at_line_and_column(tmp_path):
    lines = [f"{u} {u + 1} {u + 2} {u + 3}" for u in range(1, 1000)]
    lines.append("1000 7 B00abc 9")  # line 1000: an asin among integer ids
    path = tmp_path / "Beauty.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"^{path}:1000:8: item id 'B00abc' is not an integer$"):
        formats.read_sequence_txt(str(path))
    path.write_text("u1 1 2 3\n")
    with pytest.raises(DataError, match=r":1:1: user id 'u1' is not an integer"):
        formats.read_sequence_txt(str(path))
