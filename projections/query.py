"""``hub query``: read-only SQL against whichever backend is configured.

chDB has no per-call read-only mode, so statements are checked here: one statement, of a
kind that only reads. The server backend additionally runs them with ``readonly=1``.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

from projections.backends import Backend

FORMATS: Final = {"table": "PrettyCompactMonoBlock", "csv": "CSVWithNames", "json": "JSONEachRow"}
_READING: Final = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"})
# Strings, quoted names and comments, which may contain anything, including ';'.
_OPAQUE: Final = re.compile(
    r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.)*\"|`(?:[^`\\]|\\.)*`|--[^\n]*|#[^\n]*|/\*.*?\*/",
    re.S,
)
_WORD: Final = re.compile(r"[A-Za-z_]+")


class QueryRefused(Exception):
    pass


class QueryRequest(msgspec.Struct, frozen=True, kw_only=True):
    sql: str
    format: str = "table"


class QueryReply(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    data: str = ""
    error: str = ""


def check_read_only(sql: str) -> str:
    """The statement without a trailing ``;``, or ``QueryRefused`` saying why not."""
    bare = _OPAQUE.sub(" ", sql).strip()
    statement = bare.rstrip("; \n\t")
    if ";" in statement:
        raise QueryRefused("hub query runs one statement at a time; remove the ';'")
    words = [word.upper() for word in _WORD.findall(statement)]
    if not words:
        raise QueryRefused("the query is empty")
    if words[0] not in _READING:
        raise QueryRefused(
            f"hub query is read-only: {words[0]} statements are refused "
            "(allowed: SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS)"
        )
    if "OUTFILE" in words:
        raise QueryRefused("hub query is read-only: INTO OUTFILE is refused")
    return sql.strip().rstrip(";").strip()


async def run_query(backend: Backend, sql: str, output: str = "table") -> bytes:
    fmt = FORMATS.get(output)
    if fmt is None:
        raise QueryRefused(f"format {output!r}: use one of {', '.join(FORMATS)}")
    return await backend.query(check_read_only(sql), fmt=fmt, readonly=True)
