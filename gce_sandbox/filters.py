"""The list `filter` expression language of the Compute API, for the cases clients send.

Supported (documented for instances.list / aggregatedList): comparisons
`field = value`, `field != value`, `field > value`, `<`, `>=`, `<=`, `field : value`
(has / glob), the legacy `field eq regex` / `field ne regex`, dotted fields
(`labels.env = prod`, `scheduling.preemptible = true`), quoted values, parentheses,
AND / OR / NOT, and space-separated parenthesised terms (implicit AND, as the
google.cloud.gcp_compute inventory plugin joins its `filters`).
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from .errors import ApiError

_TOKEN = re.compile(r"""\s*(?:(\()|(\))|("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(!=|>=|<=|=|:|>|<)|([^\s()=!<>:"']+))""")


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ApiError(400, f"Invalid list filter expression '{text}'.", "invalid")
        pos = m.end()
        if m.group(1):
            tokens.append(("(", "("))
        elif m.group(2):
            tokens.append((")", ")"))
        elif m.group(3):
            tokens.append(("str", m.group(3)[1:-1]))
        elif m.group(4):
            tokens.append(("op", m.group(4)))
        else:
            word = m.group(5)
            if word in ("AND", "OR", "NOT"):
                tokens.append((word, word))
            elif word in ("eq", "ne"):
                tokens.append(("op", word))
            else:
                tokens.append(("word", word))
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else (None, None)

    def take(self):
        tok = self.peek()
        self.i += 1
        return tok

    def error(self):
        return ApiError(400, f"Invalid list filter expression '{self.text}'.", "invalid")

    def parse(self):
        if not self.tokens:
            return lambda r: True
        node = self.expr_or()
        if self.i != len(self.tokens):
            raise self.error()
        return node

    def expr_or(self):
        left = self.expr_and()
        while self.peek()[0] == "OR":
            self.take()
            right = self.expr_and()
            left = (lambda a, b: lambda r: a(r) or b(r))(left, right)
        return left

    def expr_and(self):
        left = self.expr_not()
        while True:
            kind = self.peek()[0]
            if kind == "AND":
                self.take()
            elif kind not in ("(", "word", "NOT"):
                return left
            right = self.expr_not()
            left = (lambda a, b: lambda r: a(r) and b(r))(left, right)

    def expr_not(self):
        if self.peek()[0] == "NOT":
            self.take()
            inner = self.expr_not()
            return lambda r: not inner(r)
        if self.peek()[0] == "(":
            self.take()
            inner = self.expr_or()
            if self.take()[0] != ")":
                raise self.error()
            return inner
        return self.comparison()

    def comparison(self):
        kind, field = self.take()
        if kind != "word":
            raise self.error()
        kind, op = self.take()
        if kind != "op":
            raise self.error()
        kind, value = self.take()
        if kind not in ("word", "str"):
            raise self.error()
        return lambda r: _compare(_lookup(r, field), op, value)


def _lookup(resource: dict, field: str) -> Any:
    cur: Any = resource
    for part in field.split("."):
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list):
            cur = [c.get(part) if isinstance(c, dict) else None for c in cur]
        else:
            return None
    return cur


def _as_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return "" if v is None else str(v)


def _compare(actual: Any, op: str, value: str) -> bool:
    if isinstance(actual, list):
        if op in ("!=", "ne"):
            return all(_compare(a, op, value) for a in actual) if actual else True
        return any(_compare(a, op, value) for a in actual)
    text = _as_text(actual)
    # Resource URLs compare on their last segment too (e.g. zone = us-central1-a).
    candidates = {text, text.rsplit("/", 1)[-1]} if "/" in text else {text}
    if op == "=":
        return actual is not None and any(fnmatch.fnmatchcase(c, value) for c in candidates)
    if op == "!=":
        return not any(fnmatch.fnmatchcase(c, value) for c in candidates)
    if op == ":":
        if value == "*":
            return actual is not None
        return actual is not None and any(fnmatch.fnmatchcase(c, value) for c in candidates)
    if op == "eq":
        return actual is not None and any(re.fullmatch(value, c) for c in candidates)
    if op == "ne":
        return not any(re.fullmatch(value, c) for c in candidates)
    try:
        a, b = float(text), float(value)
    except ValueError:
        a, b = text, value  # type: ignore[assignment]
    return {">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b}[op]


def compile_filter(text: str | None):
    """A predicate over a resource dict; an empty filter matches everything."""
    return _Parser(text or "").parse()
