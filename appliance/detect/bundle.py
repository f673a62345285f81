"""Model bundles: a directory holding an int8 TFLite autoencoder and the manifest that explains it.

Layout of a bundle directory:

    model.tflite        the int8 model (name given by the manifest's `model_file`)
    manifest.json       `Manifest` as JSON: feature names and order, scaler, quantisation,
                        threshold defaults, training data span, version, sha256 of the model
    signature.ed25519   an Ed25519 signature over manifest.json (which pins the model through
                        `model_sha256`); checked for every bundle that arrives over the air
                        (appliance/ota/signing.py, docs/MODELS.md), before `load_bundle`.

`load_bundle` refuses anything it cannot fully trust (missing or unknown fields, wrong types,
non-finite numbers, a model whose sha256 differs from the manifest) with a `BundleError` naming the
file and the field. It keeps the verified model bytes in memory, so the runtime loads exactly the
bytes that were hashed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal, NoReturn, get_args

import numpy as np

from appliance.errors import BundleError
from appliance.records import FloatArray

MANIFEST_FORMAT = 1
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.tflite"
SIGNATURE_FILE = "signature.ed25519"

TFLITE_IDENTIFIER = b"TFL3"
"""FlatBuffer file identifier of a TFLite model, at bytes 4..8."""

# Limits on what a manifest may hold: it arrives over the air, so every size is bounded before
# anything is done with it (docs/MODELS.md).
MAX_MANIFEST_BYTES = 2 * 1024 * 1024
MAX_FEATURES = 10_000
MAX_FEATURE_NAME_CHARS = 128
MAX_JSON_DEPTH = 32
MAX_TEXT_CHARS = 64
"""Longest free text field checked by a pattern or a parser (times, rules)."""
SHOWN_CHARS = 60
"""How much of a refused value an error message repeats."""

VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")
VERSION_RULE = "1-40 letters, digits, '.', '_' or '-', starting with a letter or digit"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""An asset's name, as the config allows it."""
FILE_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
BUNDLE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}-[0-9a-f]{12}")

ThresholdRule = Literal["fixed", "adaptive"]


@dataclass(frozen=True, slots=True)
class Quantization:
    """Affine int8 quantisation of a tensor: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int


@dataclass(frozen=True, slots=True)
class ThresholdDefaults:
    """Threshold settings shipped with a model; the asset's config may override them."""

    rule: ThresholdRule
    fixed_threshold: float
    """Calibrated on the training data's int8 reconstruction errors (a high quantile)."""
    k: float
    window: int
    warmup: int
    clear_ratio: float
    critical_factor: float


@dataclass(frozen=True, slots=True)
class DataSpan:
    """What the model was trained on: UTC ISO 8601 times (None when unknown) and row count."""

    start_utc: str | None
    end_utc: str | None
    rows: int


@dataclass(frozen=True, slots=True)
class Manifest:
    """manifest.json: everything needed to score with the model and to know where it came from."""

    format: int
    asset: str | None
    """None for a generic model (any asset with these feature names)."""
    version: str
    created_utc: str
    feature_names: tuple[str, ...]
    scaler_mean: tuple[float, ...]
    scaler_scale: tuple[float, ...]
    input_quant: Quantization
    output_quant: Quantization
    threshold: ThresholdDefaults
    data_span: DataSpan
    model_file: str
    model_sha256: str
    training: Mapping[str, Any] = field(default_factory=dict)
    """Free-form, JSON-serialisable information about training (epochs, layers, loss, ...)."""

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["feature_names"] = list(self.feature_names)
        raw["scaler_mean"] = list(self.scaler_mean)
        raw["scaler_scale"] = list(self.scaler_scale)
        raw["training"] = dict(self.training)
        return raw

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str) -> Manifest:
        """Parse and validate; `source` (usually the file path) prefixes every error."""
        return manifest_from_dict(_parse_json(text, source), source)


@dataclass(frozen=True, slots=True)
class ModelBundle:
    """A verified bundle: its manifest and the model bytes whose sha256 matched it."""

    path: Path
    manifest: Manifest
    model_bytes: bytes = field(repr=False)
    scaler_mean: FloatArray = field(init=False, repr=False, compare=False)
    """The manifest's scaler as read-only arrays, built once (they are used for every score)."""
    scaler_scale: FloatArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("scaler_mean", "scaler_scale"):
            values = np.array(getattr(self.manifest, name), dtype=np.float64)
            values.setflags(write=False)
            object.__setattr__(self, name, values)

    @property
    def bundle_id(self) -> str:
        """Recorded with every score: the version plus the first 12 hex digits of the sha256."""
        return f"{self.manifest.version}-{self.manifest.model_sha256[:12]}"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_bundle(path: Path) -> ModelBundle:
    """Read and verify the bundle directory at `path`; raise BundleError saying what is wrong."""
    if not path.is_dir():
        raise BundleError(f"{path}: not a bundle directory (missing or not a directory)")
    manifest_path = path / MANIFEST_FILE
    manifest = Manifest.from_json(_read_text(manifest_path, MAX_MANIFEST_BYTES), str(manifest_path))
    model_path = path / manifest.model_file
    model_bytes = _read_bytes(model_path)
    actual = sha256_hex(model_bytes)
    if actual != manifest.model_sha256:
        raise BundleError(
            f"{model_path}: sha256 {actual} does not match model_sha256 "
            f"{manifest.model_sha256} in {manifest_path}"
        )
    _check_tflite_header(model_bytes, str(model_path))
    return ModelBundle(path=path, manifest=manifest, model_bytes=model_bytes)


def write_bundle(path: Path, manifest: Manifest, model_bytes: bytes) -> ModelBundle:
    """Write a bundle directory (created if needed) and return it as `load_bundle` reads it.

    The manifest is validated and its `model_sha256` checked against `model_bytes` before anything
    is written; the manifest is written last, so a crash leaves no manifest that names a
    half-written model.
    """
    manifest_path = path / MANIFEST_FILE
    manifest_from_dict(manifest.to_dict(), str(manifest_path))
    try:
        manifest_text = manifest.to_json()
    except (TypeError, ValueError) as exc:  # free-form training info that JSON cannot hold
        raise BundleError(f"{manifest_path}: cannot write as JSON: {exc}") from exc
    actual = sha256_hex(model_bytes)
    if actual != manifest.model_sha256:
        raise BundleError(
            f"{manifest_path}: model_sha256 {manifest.model_sha256} does not match the model "
            f"bytes being written (sha256 {actual})"
        )
    _check_tflite_header(model_bytes, str(path / manifest.model_file))
    path.mkdir(parents=True, exist_ok=True)
    _write_atomically(path / manifest.model_file, model_bytes)
    _write_atomically(manifest_path, manifest_text.encode("utf-8"))
    return load_bundle(path)


def manifest_from_dict(raw: object, source: str) -> Manifest:
    """Validate a decoded manifest.json; errors read `<source>: <field>: <problem>`."""
    _check_plain_json(raw, source)
    top = _Fields(raw, source, "")
    manifest_format = top.integer("format")
    if manifest_format != MANIFEST_FORMAT:
        top.fail("format", f"unsupported format {manifest_format} (this build reads format 1)")
    feature_names = top.string_list("feature_names")
    n = len(feature_names)
    manifest = Manifest(
        format=manifest_format,
        asset=top.optional_name("asset"),
        version=top.version("version"),
        created_utc=top.utc_time("created_utc"),
        feature_names=feature_names,
        scaler_mean=top.number_list("scaler_mean", length=n),
        scaler_scale=top.number_list("scaler_scale", length=n, positive=True),
        input_quant=_quantization(top.child("input_quant")),
        output_quant=_quantization(top.child("output_quant")),
        threshold=_threshold_defaults(top.child("threshold")),
        data_span=_data_span(top.child("data_span")),
        model_file=top.file_name("model_file"),
        model_sha256=top.sha256("model_sha256"),
        training=top.mapping("training"),
    )
    top.reject_unknown()
    return manifest


def _quantization(fields: _Fields) -> Quantization:
    quant = Quantization(
        scale=fields.number("scale", positive=True),
        zero_point=fields.integer("zero_point", low=-128, high=127),
    )
    fields.reject_unknown()
    return quant


def _threshold_defaults(fields: _Fields) -> ThresholdDefaults:
    rule = fields.string("rule")
    if rule not in get_args(ThresholdRule):
        fields.fail("rule", f"must be one of {list(get_args(ThresholdRule))}, got {rule!r}")
    window = fields.integer("window", low=2)
    defaults = ThresholdDefaults(
        rule="fixed" if rule == "fixed" else "adaptive",
        fixed_threshold=fields.number("fixed_threshold", positive=True),
        k=fields.number("k", positive=True),
        window=window,
        warmup=fields.integer("warmup", low=1, high=window),
        clear_ratio=fields.number("clear_ratio", positive=True, high=1.0),
        critical_factor=fields.number("critical_factor", low=1.0),
    )
    fields.reject_unknown()
    return defaults


def _data_span(fields: _Fields) -> DataSpan:
    span = DataSpan(
        start_utc=fields.optional_utc_time("start_utc"),
        end_utc=fields.optional_utc_time("end_utc"),
        rows=fields.integer("rows", low=1),
    )
    fields.reject_unknown()
    return span


class _Fields:
    """Reads the fields of one JSON object; every error names the file and the field path."""

    def __init__(self, raw: object, source: str, prefix: str) -> None:
        self.source = source
        self.prefix = prefix
        if not isinstance(raw, dict):
            where = prefix.rstrip(".") or "manifest"
            raise BundleError(f"{source}: {where}: must be a JSON object, got {_kind(raw)}")
        self.raw: dict[str, object] = raw
        self.seen: set[str] = set()

    def fail(self, key: str, problem: str) -> NoReturn:
        raise BundleError(f"{self.source}: {self.prefix}{key}: {problem}")

    def take(self, key: str) -> object:
        self.seen.add(key)
        if key not in self.raw:
            self.fail(key, "missing field")
        return self.raw[key]

    def reject_unknown(self) -> None:
        unknown = sorted(set(self.raw) - self.seen)
        if unknown:
            shown = ", ".join(_shown_key(key) for key in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            self.fail(_shown_key(unknown[0]), f"unknown field (unknown: {shown}{more})")

    def child(self, key: str) -> _Fields:
        return _Fields(self.take(key), self.source, f"{self.prefix}{key}.")

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.take(key)
        if not isinstance(value, dict):
            self.fail(key, f"must be a JSON object, got {_kind(value)}")
        return dict(value)

    def string(self, key: str) -> str:
        value = self.take(key)
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"must be a non-empty string, got {_shown(value)}")
        return str(value)

    def optional_name(self, key: str) -> str | None:
        if self.take(key) is None:
            return None
        value = self.string(key)
        if not NAME_PATTERN.fullmatch(value):
            self.fail(key, f"must be an asset name (1-64 letters, digits, '.', '_' or '-'), "
                           f"got {_shown(value)}")  # fmt: skip
        return value

    def version(self, key: str) -> str:
        """A strict pattern: the version is shown, compared and part of the bundle id."""
        value = self.string(key)
        if not VERSION_PATTERN.fullmatch(value):
            self.fail(key, f"must be {VERSION_RULE}, got {_shown(value)}")
        return value

    def utc_time(self, key: str) -> str:
        value = self.string(key)
        if len(value) > MAX_TEXT_CHARS or not _is_utc_iso_time(value):
            self.fail(key, f"must be an ISO 8601 UTC time like 2026-01-31T12:00:00Z, got {value!r}")
        return value

    def optional_utc_time(self, key: str) -> str | None:
        return None if self.take(key) is None else self.utc_time(key)

    def file_name(self, key: str) -> str:
        value = self.string(key)
        if not FILE_NAME_PATTERN.fullmatch(value) or value in (MANIFEST_FILE, SIGNATURE_FILE):
            rule = f"1-100 letters, digits, '.', '_' or '-'; not {MANIFEST_FILE}"
            self.fail(key, f"must be a plain file name inside the bundle ({rule}), got "
                           f"{_shown(value)}")  # fmt: skip
        return value

    def sha256(self, key: str) -> str:
        value = self.string(key)
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            self.fail(key, f"must be 64 lowercase hex digits, got {_shown(value)}")
        return value

    def integer(self, key: str, low: int | None = None, high: int | None = None) -> int:
        value = self.take(key)
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(key, f"must be an integer, got {_kind(value)} {_shown(value)}")
        number = value
        if low is not None and high is not None and not low <= number <= high:
            self.fail(key, f"must be in [{low}, {high}], got {_shown(number)}")
        if low is not None and number < low:
            self.fail(key, f"must be >= {low}, got {_shown(number)}")
        if high is not None and number > high:
            self.fail(key, f"must be <= {high}, got {_shown(number)}")
        return number

    def number(
        self,
        key: str,
        *,
        positive: bool = False,
        low: float | None = None,
        high: float | None = None,
    ) -> float:
        return _checked_number(self.take(key), positive, low, high, partial(self.fail, key))

    def number_list(self, key: str, *, length: int, positive: bool = False) -> tuple[float, ...]:
        values = self._list(key)
        if len(values) != length:
            self.fail(key, f"has {len(values)} values but feature_names has {length}")
        return tuple(
            _checked_number(value, positive, None, None, partial(self.fail, f"{key}[{i}]"))
            for i, value in enumerate(values)
        )

    def string_list(self, key: str) -> tuple[str, ...]:
        values = self._list(key)
        if not values:
            self.fail(key, "must name at least one feature")
        if len(values) > MAX_FEATURES:
            self.fail(key, f"{len(values)} names, more than {MAX_FEATURES}")
        names: list[str] = []
        for i, value in enumerate(values):
            if not isinstance(value, str) or not value.strip():
                self.fail(f"{key}[{i}]", f"must be a non-empty string, got {_shown(value)}")
            if len(value) > MAX_FEATURE_NAME_CHARS or not value.isprintable():
                self.fail(f"{key}[{i}]", f"must be at most {MAX_FEATURE_NAME_CHARS} printable "
                                         f"characters, got {_shown(value)}")  # fmt: skip
            names.append(value)
        duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
        if duplicates:
            shown = ", ".join(duplicates[:5]) + (" ..." if len(duplicates) > 5 else "")
            self.fail(key, f"names must be unique, repeated: {shown}")
        return tuple(names)

    def _list(self, key: str) -> list[object]:
        value = self.take(key)
        if not isinstance(value, list):
            self.fail(key, f"must be a JSON list, got {_kind(value)}")
        return list(value)


def _checked_number(
    value: object,
    positive: bool,
    low: float | None,
    high: float | None,
    fail: Callable[[str], NoReturn],
) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        fail(f"must be a number, got {_kind(value)} {_shown(value)}")
    try:
        number = float(value)
    except OverflowError:  # an integer literal beyond float range
        fail(f"must be finite, got an integer of {len(str(value))} digits")
    if not math.isfinite(number):
        fail(f"must be finite, got {number}")
    if positive and number <= 0:
        fail(f"must be > 0, got {number}")
    if low is not None and number < low:
        fail(f"must be >= {low}, got {number}")
    if high is not None and number > high:
        fail(f"must be <= {high}, got {number}")
    return number


def _is_utc_iso_time(text: str) -> bool:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return False
    offset = parsed.utcoffset()
    return offset is not None and offset.total_seconds() == 0


def _shown(value: object) -> str:
    """The value as an error repeats it: repr (escapes control characters and lone
    surrogates), cut to SHOWN_CHARS."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**SHOWN_CHARS:
        return f"an integer of {len(str(abs(value)))} digits"
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def _shown_key(key: str) -> str:
    text = repr(key)[1:-1]
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def _kind(value: object) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _parse_json(text: str, source: str) -> object:
    if len(text) > MAX_MANIFEST_BYTES:
        raise BundleError(f"{source}: {len(text)} characters, more than {MAX_MANIFEST_BYTES}")
    try:
        value = json.loads(
            text, parse_constant=_refuse_constant, object_pairs_hook=_refuse_duplicate_keys
        )
    except json.JSONDecodeError as exc:
        raise BundleError(f"{source}: not valid JSON: {exc}") from exc
    except ValueError as exc:  # also integers of more than 4300 digits
        raise BundleError(f"{source}: {exc}") from exc
    except RecursionError:
        raise BundleError(f"{source}: nested deeper than {MAX_JSON_DEPTH} levels") from None
    return value


def _check_plain_json(value: object, source: str) -> None:
    """At most MAX_JSON_DEPTH levels (so nothing that walks it later recurses too deep), and
    no lone surrogate in any string (it could not be written out as UTF-8 again). Errors name
    the field where it happens."""
    pending: list[tuple[object, str, int]] = [(value, "", 1)]
    while pending:
        item, where, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            raise BundleError(f"{source}: {where}: nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, dict):
            for key, child in item.items():
                name = f"{where}.{_shown_key(str(key))}" if where else _shown_key(str(key))
                pending.extend(((key, name, depth), (child, name, depth + 1)))
        elif isinstance(item, list):
            pending.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                where = where or "manifest"
                raise BundleError(
                    f"{source}: {where}: holds a lone surrogate ({_shown(item)}), not text"
                ) from None


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not allowed (numbers must be finite)")


def _refuse_duplicate_keys(pairs: Sequence[tuple[str, object]]) -> dict[str, object]:
    repeated = sorted(key for key, count in Counter(key for key, _ in pairs).items() if count > 1)
    if repeated:
        raise ValueError(f"{repeated[0]}: field appears more than once")
    return dict(pairs)


def _check_tflite_header(model_bytes: bytes, source: str) -> None:
    if len(model_bytes) < 8 or model_bytes[4:8] != TFLITE_IDENTIFIER:
        raise BundleError(f"{source}: not a TFLite model (no TFL3 file identifier)")


def _read_text(path: Path, limit: int) -> str:
    try:
        return _read_bytes(path, limit).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(f"{path}: not UTF-8 text: {exc}") from exc


def _read_bytes(path: Path, limit: int | None = None) -> bytes:
    try:
        if limit is not None and path.stat().st_size > limit:
            raise BundleError(f"{path}: {path.stat().st_size} bytes, more than {limit}")
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise BundleError(f"{path}: missing file") from exc
    except OSError as exc:
        raise BundleError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
