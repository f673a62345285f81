"""How deep a TOML text nests arrays and inline tables, found before tomllib recurses into it."""

from __future__ import annotations

MAX_NESTING = 32
"""Arrays and inline tables nested deeper than this are refused before parsing (a gateway
config needs 3 levels; tomllib would recurse until RecursionError)."""


def too_deep(text: str) -> tuple[int, str] | None:
    """(line, key) where arrays/inline tables first nest deeper than MAX_NESTING, else None.

    A scan of brackets outside strings and comments; tomllib itself recurses per level."""
    depth, line, key, table, i = 0, 1, "", "", 0
    while i < len(text):
        c = text[i]
        if c == "\n":
            line += 1
        elif c == "#":
            i = _line_end(text, i) - 1
        elif c in "\"'":
            quote = text[i : i + 3] if text[i : i + 3] in ('"""', "'''") else c
            end = _string_end(text, i + len(quote), quote)
            line += text.count("\n", i, end)
            i = end - 1
        elif c in "[{":
            if depth == 0:
                statement = text[text.rfind("\n", 0, i) + 1 : i]
                if "=" not in statement:  # a [table] or [[array]] header
                    table = text[i : _line_end(text, i)].strip("[] \t")
                key = ".".join(filter(None, (table, statement.split("=")[0].strip())))
            depth += 1
            if depth > MAX_NESTING:
                return line, key or "(top level)"
        elif c in "]}":
            depth = max(0, depth - 1)
        i += 1
    return None


def _line_end(text: str, start: int) -> int:
    end = text.find("\n", start)
    return len(text) if end < 0 else end


def _string_end(text: str, start: int, quote: str) -> int:
    """Index just past the string that opened with `quote` before `start` (or the text's end)."""
    i = start
    while i < len(text):
        if text[i] == "\\" and quote[0] == '"':
            i += 2
            continue
        if text.startswith(quote, i):
            return i + len(quote)
        if text[i] == "\n" and len(quote) == 1:
            return i  # an unterminated one-line string: tomllib reports it
        i += 1
    return len(text)
