"""What every table of the config is built from: the strict base model and the field types."""

from __future__ import annotations

from collections import Counter
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def path_text(path: str) -> str:
    if not path:
        raise ValueError("must not be empty")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise ValueError("must not contain control characters (NUL, newline, tab)")
    if path != path.strip():
        raise ValueError("has leading or trailing spaces")
    return path


PathText = Annotated[str, Field(max_length=4096), AfterValidator(path_text)]
"""A file or directory name: no control characters (a NUL would fail every open), no spaces
around it."""

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
PositiveFloat = Annotated[float, Field(gt=0)]
BandEdges = Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=2, max_length=2)]


class Strict(BaseModel):
    """A table: unknown keys refused, no type coercion, frozen, no nan or inf."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


def refuse_duplicates(where: str, names: list[str]) -> None:
    repeated = sorted(n for n, count in Counter(names).items() if count > 1)
    if repeated:
        raise ValueError(f"{where}: duplicate name(s) {', '.join(map(repr, repeated))}")
