"""manifest.json: what a model bundle says about its model (feature names and order, scaler,
quantisation, threshold defaults, training data span, version, the model's sha256), and
`manifest_from_dict`, which refuses anything it cannot fully trust with a BundleError naming
the file and the field (the field rules: manifest_fields.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from appliance.detect.manifest_fields import Fields, check_plain_json, parse_json

MANIFEST_FORMAT = 1
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.tflite"
"""The model's usual name; the manifest's `model_file` may name another."""
SIGNATURE_FILE = "signature.ed25519"

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
        return manifest_from_dict(parse_json(text, source), source)


def manifest_from_dict(raw: object, source: str) -> Manifest:
    """Validate a decoded manifest.json; errors read `<source>: <field>: <problem>`."""
    check_plain_json(raw, source)
    top = Fields(raw, source, "")
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
        model_file=top.file_name("model_file", (MANIFEST_FILE, SIGNATURE_FILE)),
        model_sha256=top.sha256("model_sha256"),
        training=top.mapping("training"),
    )
    top.reject_unknown()
    return manifest


def _quantization(fields: Fields) -> Quantization:
    quant = Quantization(
        scale=fields.number("scale", positive=True),
        zero_point=fields.integer("zero_point", low=-128, high=127),
    )
    fields.reject_unknown()
    return quant


def _threshold_defaults(fields: Fields) -> ThresholdDefaults:
    rule = fields.choice("rule", get_args(ThresholdRule))
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


def _data_span(fields: Fields) -> DataSpan:
    span = DataSpan(
        start_utc=fields.optional_utc_time("start_utc"),
        end_utc=fields.optional_utc_time("end_utc"),
        rows=fields.integer("rows", low=1),
    )
    fields.reject_unknown()
    return span
