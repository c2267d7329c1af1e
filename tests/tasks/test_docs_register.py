"""README and docs/data.md show how to register a new dataset in three lines, and they work."""

import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
MARK = "<!-- register-dataset -->\n```bash\n"


def _block(doc: str) -> list[str]:
    text = (REPO / doc).read_text()
    assert MARK in text, f"{doc} lacks the register-dataset block"
    return text.split(MARK, 1)[1].split("```", 1)[0].strip().splitlines()


def test_three_lines_in_readme_and_docs_that_register_the_tasks(tiny_dir, cache_dir, monkeypatch):
    lines = _block("README.md")
    assert lines == _block("docs/data.md") and len(lines) == 3
    module = re.search(r"printf '(.*)' > tasks/mycat\.py", lines[1]).group(1).replace("\\n", "\n")
    monkeypatch.setenv("JAXREC_MYCAT_DIR", tiny_dir)
    monkeypatch.setenv("JAXREC_CACHE_DIR", cache_dir)
    namespace: dict = {}
    exec(compile(module, "tasks/mycat.py", "exec"), namespace)
    mixture = re.search(r"MIXTURE_OR_TASK_NAME=(\S+)", lines[2]).group(1)
    assert mixture in namespace["REGISTERED"]
    assert "--gin.MIXTURE_OR_TASK_MODULE=tasks.mycat" in lines[2]


@pytest.fixture
def cache_dir(tmp_path):
    return str(tmp_path)
