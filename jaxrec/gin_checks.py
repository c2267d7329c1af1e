"""Gin configuration that fails loud: overrides must bind something; errors are one line.

`check_overrides` runs after gin has parsed the files and bindings and before any work: a
command-line macro override (`--gin.TRAIN_STEPZ=3`) that no configuration refers to would
otherwise be ignored. gin itself rejects unknown configurables and parameters while parsing;
`explain_gin_error` turns those (multi-line) errors into one line with the closest valid names.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Iterable, Sequence

from gin import config as gin_config
from jaxrec.data.dataset import DataError


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def binding_key(binding: str) -> str:
    """`KEY = VALUE` -> `KEY`."""
    return binding.split("=", 1)[0].strip()


def referenced_macros() -> set[str]:
    """Names of the macros some parsed binding refers to (`%NAME`)."""
    return {
        ref.scoped_selector.rsplit("/", 1)[0]
        for ref in gin_config.iterate_references(gin_config._CONFIG)
        if ref.selector == "gin.macro"
    }


def check_overrides(bindings: Sequence[str]) -> None:
    """DataError for an override macro that no configuration refers to (after parsing)."""
    used = referenced_macros()
    for binding in bindings:
        key = binding_key(binding)
        if "." in key or "/" in key or key in used:
            continue  # configurable.parameter bindings are checked by gin while parsing
        raise DataError(
            f"gin override {key!r} binds nothing: no configuration refers to %{key}"
            + _did_you_mean(key, used)
        )


def _registered_names() -> set[str]:
    names = set()
    for selector, _ in gin_config._REGISTRY.items():
        parts = selector.split(".")
        if not selector.startswith("__main__."):
            names.update(".".join(parts[k:]) for k in range(len(parts)))
    return names


def _parameters(name: str) -> list[str]:
    configurable = gin_config._REGISTRY.get_match(name)
    if configurable is None:
        return []
    fn = configurable.wrapped
    try:
        return list(inspect.signature(fn.__init__ if inspect.isclass(fn) else fn).parameters)
    except (TypeError, ValueError):
        return []


def explain_gin_error(error: Exception) -> str:
    """One line for a gin parsing error: the problem, the binding, the closest valid names."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    first = lines[0] if lines else type(error).__name__
    where = ""
    for k, ln in enumerate(lines[1:], start=1):
        if ln.startswith("In ") and k + 1 < len(lines):
            where = f" ({ln[3:]}: {lines[k + 1]})"
            break
    hint = ""
    m = re.match(r"No configurable matching '([^']+)'", first)
    if m:
        hint = _did_you_mean(m.group(1), _registered_names())
    m = re.match(r"Configurable '([^']+)' doesn't have a parameter named '([^']+)'", first)
    if m:
        hint = _did_you_mean(m.group(2), _parameters(m.group(1)))
    return f"gin: {first.rstrip('.')}{hint}{where}"
