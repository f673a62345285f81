"""Model bundle: manifest round trip, bundle id, and every refusal naming the file and the field.

These tests need no TensorFlow: the bundle layer checks the TFLite file identifier and the sha256,
not the model's contents (the runtime tests load real models).
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.detect.bundle import (
    FILE_NAME_PATTERN,
    MANIFEST_FILE,
    MAX_FEATURES,
    MAX_JSON_DEPTH,
    MAX_MANIFEST_BYTES,
    MODEL_FILE,
    NAME_PATTERN,
    VERSION_PATTERN,
    DataSpan,
    Manifest,
    ModelBundle,
    Quantization,
    ThresholdDefaults,
    load_bundle,
    manifest_from_dict,
    sha256_hex,
    write_bundle,
)
from appliance.errors import BundleError

# Not a runnable model: just the 8-byte FlatBuffer header of one, which is all this layer reads.
MODEL_BYTES = b"\x1c\x00\x00\x00TFL3" + bytes(range(256)) * 4
NAMES = ("rms", "kurtosis", "band_1", "temperature")


def make_manifest(model_bytes: bytes = MODEL_BYTES, **changes: Any) -> Manifest:
    manifest = Manifest(
        format=1,
        asset="pump-1",
        version="2026.11.22-1",
        created_utc="2026-11-22T10:00:00Z",
        feature_names=NAMES,
        scaler_mean=(0.5, 3.0, -1.25, 40.0),
        scaler_scale=(0.1, 0.5, 2.0, 1.0),
        input_quant=Quantization(scale=0.031, zero_point=-3),
        output_quant=Quantization(scale=0.029, zero_point=5),
        threshold=ThresholdDefaults(
            rule="fixed",
            fixed_threshold=0.12,
            k=4.0,
            window=1000,
            warmup=100,
            clear_ratio=0.8,
            critical_factor=2.0,
        ),
        data_span=DataSpan(
            start_utc="2026-11-01T00:00:00Z", end_utc="2026-11-21T23:59:59.500Z", rows=12345
        ),
        model_file=MODEL_FILE,
        model_sha256=sha256_hex(model_bytes),
        training={"epochs": 60, "layers": [4, 8, 4, 2, 4, 8, 4], "loss": "mse"},
    )
    return replace(manifest, **changes)


def write_raw(directory: Path, manifest: object, model_bytes: bytes = MODEL_BYTES) -> Path:
    """A bundle directory with exactly these contents, bypassing write_bundle's checks."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MODEL_FILE).write_bytes(model_bytes)
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    (directory / MANIFEST_FILE).write_text(text)
    return directory


def refusal(directory: Path) -> str:
    with pytest.raises(BundleError) as caught:
        load_bundle(directory)
    return str(caught.value)


# --- round trip -------------------------------------------------------------------------------


def test_write_then_load_gives_the_same_manifest_and_model(tmp_path: Path) -> None:
    manifest = make_manifest()
    written = write_bundle(tmp_path / "bundle", manifest, MODEL_BYTES)
    loaded = load_bundle(tmp_path / "bundle")
    assert loaded.manifest == manifest == written.manifest
    assert loaded.model_bytes == MODEL_BYTES
    assert loaded.path == tmp_path / "bundle"
    assert sorted(p.name for p in (tmp_path / "bundle").iterdir()) == [MANIFEST_FILE, MODEL_FILE]


def test_json_round_trip_keeps_every_field() -> None:
    manifest = make_manifest(asset=None, data_span=DataSpan(None, None, rows=10))
    assert Manifest.from_json(manifest.to_json(), "memory") == manifest
    assert json.loads(manifest.to_json())["feature_names"] == list(NAMES)


def test_bundle_id_is_version_and_sha256_prefix() -> None:
    bundle = ModelBundle(Path("b"), make_manifest(), MODEL_BYTES)
    assert bundle.bundle_id == f"2026.11.22-1-{sha256_hex(MODEL_BYTES)[:12]}"


def test_scaler_arrays_follow_the_manifest() -> None:
    bundle = ModelBundle(Path("b"), make_manifest(), MODEL_BYTES)
    assert bundle.scaler_mean.tolist() == [0.5, 3.0, -1.25, 40.0]
    assert bundle.scaler_scale.tolist() == [0.1, 0.5, 2.0, 1.0]


# --- refusals: files --------------------------------------------------------------------------


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    assert "not a bundle directory" in refusal(tmp_path / "nowhere")


def test_missing_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / MODEL_FILE).write_bytes(MODEL_BYTES)
    message = refusal(tmp_path)
    assert MANIFEST_FILE in message and "missing file" in message


def test_missing_model_is_refused(tmp_path: Path) -> None:
    write_raw(tmp_path, make_manifest().to_dict())
    (tmp_path / MODEL_FILE).unlink()
    message = refusal(tmp_path)
    assert MODEL_FILE in message and "missing file" in message


def test_wrong_sha256_is_refused(tmp_path: Path) -> None:
    write_raw(tmp_path, make_manifest().to_dict(), MODEL_BYTES[:-1] + b"\x00")
    message = refusal(tmp_path)
    assert MODEL_FILE in message and "does not match model_sha256" in message


def test_truncated_model_is_refused_by_its_hash(tmp_path: Path) -> None:
    write_raw(tmp_path, make_manifest().to_dict(), MODEL_BYTES[:100])
    assert "does not match model_sha256" in refusal(tmp_path)


def test_a_file_that_is_not_tflite_is_refused(tmp_path: Path) -> None:
    junk = b"PK\x03\x04 this is a zip file"
    write_raw(tmp_path, make_manifest(junk).to_dict(), junk)
    message = refusal(tmp_path)
    assert MODEL_FILE in message and "not a TFLite model" in message


# --- refusals: JSON ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"format": 1,', "not valid JSON"),
        ("[1, 2]", "manifest: must be a JSON object"),
        (b"\xff\xfe".decode("latin-1"), "not valid JSON"),
    ],
)
def test_unparsable_manifest_is_refused(tmp_path: Path, text: str, expected: str) -> None:
    write_raw(tmp_path, text)
    message = refusal(tmp_path)
    assert MANIFEST_FILE in message and expected in message


def test_manifest_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    write_raw(tmp_path, "{}")
    (tmp_path / MANIFEST_FILE).write_bytes(b'{"version": "\xff"}')
    assert "not UTF-8" in refusal(tmp_path)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_json_constants_are_refused(tmp_path: Path, constant: str) -> None:
    text = json.dumps(make_manifest().to_dict()).replace(
        '"scaler_mean": [0.5', f'"scaler_mean": [{constant}'
    )
    assert constant in text
    write_raw(tmp_path, text)
    message = refusal(tmp_path)
    assert MANIFEST_FILE in message and f"{constant} is not allowed" in message


def test_numbers_too_large_for_a_float_are_refused(tmp_path: Path) -> None:
    text = json.dumps(make_manifest().to_dict()).replace(
        '"scaler_mean": [0.5', '"scaler_mean": [1e999'
    )
    write_raw(tmp_path, text)
    assert refusal(tmp_path).endswith("scaler_mean[0]: must be finite, got inf")


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    text = json.dumps(make_manifest().to_dict()).replace('"version":', '"version": "x", "version":')
    write_raw(tmp_path, text)
    assert "version: field appears more than once" in refusal(tmp_path)


# --- refusals: fields -------------------------------------------------------------------------

FIELD_PATHS = [
    *(name for name in make_manifest().to_dict()),
    "input_quant.scale",
    "input_quant.zero_point",
    "output_quant.scale",
    "output_quant.zero_point",
    *(f"threshold.{name}" for name in make_manifest().to_dict()["threshold"]),
    *(f"data_span.{name}" for name in make_manifest().to_dict()["data_span"]),
]


def edited(path: str, edit: Any) -> dict[str, Any]:
    """The valid manifest as a dict with `edit(parent, key)` applied at the dotted `path`."""
    raw = copy.deepcopy(make_manifest().to_dict())
    *parents, key = path.split(".")
    parent = raw
    for name in parents:
        parent = parent[name]
    edit(parent, key)
    return raw


@pytest.mark.parametrize("path", FIELD_PATHS)
def test_every_missing_field_is_named(tmp_path: Path, path: str) -> None:
    write_raw(tmp_path, edited(path, lambda parent, key: parent.pop(key)))
    assert refusal(tmp_path) == f"{tmp_path / MANIFEST_FILE}: {path}: missing field"


@pytest.mark.parametrize("where", ["", "input_quant.", "threshold.", "data_span."])
def test_unknown_fields_are_named(tmp_path: Path, where: str) -> None:
    def add(parent: dict[str, Any], key: str) -> None:
        parent[key] = 1

    write_raw(tmp_path, edited(f"{where}colour", add))
    message = refusal(tmp_path)
    assert message.startswith(f"{tmp_path / MANIFEST_FILE}: {where}colour: unknown field")


def set_to(value: object) -> Any:
    def edit(parent: dict[str, Any], key: str) -> None:
        parent[key] = value

    return edit


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("format", 2, "format: unsupported format 2"),
        ("format", "1", "format: must be an integer"),
        ("format", True, "format: must be an integer"),
        ("asset", "", "asset: must be a non-empty string"),
        ("version", 3, "version: must be a non-empty string"),
        ("created_utc", "yesterday", "created_utc: must be an ISO 8601 UTC time"),
        ("created_utc", "2026-11-22T10:00:00+01:00", "created_utc: must be an ISO 8601 UTC time"),
        ("created_utc", "2026-11-22T10:00:00", "created_utc: must be an ISO 8601 UTC time"),
        ("feature_names", [], "feature_names: must name at least one feature"),
        ("feature_names", "rms", "feature_names: must be a JSON list"),
        (
            "feature_names",
            ["rms", "rms", "a", "b"],
            "feature_names: names must be unique, repeated: rms",
        ),
        ("feature_names", ["rms", 7, "a", "b"], "feature_names[1]: must be a non-empty string"),
        ("feature_names", ["a", "b", "c"], "scaler_mean: has 4 values but feature_names has 3"),
        ("scaler_mean", [0.0, 1.0, 2.0], "scaler_mean: has 3 values but feature_names has 4"),
        ("scaler_scale", [1.0] * 5, "scaler_scale: has 5 values but feature_names has 4"),
        ("scaler_scale", [1.0, 0.0, 1.0, 1.0], "scaler_scale[1]: must be > 0, got 0.0"),
        ("scaler_scale", [1.0, 1.0, -2.0, 1.0], "scaler_scale[2]: must be > 0, got -2.0"),
        ("scaler_mean", [0.0, "1", 0.0, 0.0], "scaler_mean[1]: must be a number, got string"),
        ("input_quant", [0.1, 0], "input_quant: must be a JSON object, got list"),
        ("input_quant.scale", 0, "input_quant.scale: must be > 0"),
        (
            "output_quant.zero_point",
            128,
            "output_quant.zero_point: must be in [-128, 127], got 128",
        ),
        ("output_quant.zero_point", 1.5, "output_quant.zero_point: must be an integer"),
        ("threshold.rule", "dynamic", "threshold.rule: must be one of ['fixed', 'adaptive']"),
        ("threshold.fixed_threshold", -0.1, "threshold.fixed_threshold: must be > 0"),
        ("threshold.k", 0, "threshold.k: must be > 0"),
        ("threshold.window", 1, "threshold.window: must be >= 2, got 1"),
        ("threshold.warmup", 1001, "threshold.warmup: must be in [1, 1000], got 1001"),
        ("threshold.clear_ratio", 1.5, "threshold.clear_ratio: must be <= 1.0"),
        ("threshold.critical_factor", 0.5, "threshold.critical_factor: must be >= 1.0"),
        ("data_span.rows", 0, "data_span.rows: must be >= 1, got 0"),
        ("data_span.end_utc", "soon", "data_span.end_utc: must be an ISO 8601 UTC time"),
        (
            "model_file",
            "../model.tflite",
            "model_file: must be a plain file name inside the bundle",
        ),
        ("model_file", "..", "model_file: must be a plain file name inside the bundle"),
        ("model_sha256", "ABC", "model_sha256: must be 64 lowercase hex digits"),
        ("training", [], "training: must be a JSON object, got list"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, path: str, value: object, expected: str) -> None:
    write_raw(tmp_path, edited(path, set_to(value)))
    assert refusal(tmp_path).startswith(f"{tmp_path / MANIFEST_FILE}: {expected}")


@pytest.mark.parametrize("path", ["created_utc", "data_span.start_utc", "threshold.rule"])
def test_a_long_refused_text_is_repeated_cut_short(tmp_path: Path, path: str) -> None:
    """A time or a rule that is not one is shown like every refused value: its first characters
    (a 5000-character one made a message of 5000 characters)."""
    write_raw(tmp_path, edited(path, set_to("x" * 5000)))
    message = refusal(tmp_path)
    assert f"{path}: must be " in message and "got 'xxx" in message
    assert message.endswith("xxx...") and len(message) < len(str(tmp_path)) + 200


def test_optional_fields_accept_null(tmp_path: Path) -> None:
    raw = make_manifest().to_dict()
    raw["asset"] = None
    raw["data_span"]["start_utc"] = None
    raw["data_span"]["end_utc"] = None
    bundle = load_bundle(write_raw(tmp_path, raw))
    assert bundle.manifest.asset is None
    assert bundle.manifest.data_span == DataSpan(None, None, rows=12345)


# --- write_bundle refusals --------------------------------------------------------------------


def test_write_refuses_a_manifest_whose_hash_does_not_match(tmp_path: Path) -> None:
    manifest = make_manifest(model_sha256="0" * 64)
    with pytest.raises(BundleError, match=r"model_sha256 0{64} does not match the model bytes"):
        write_bundle(tmp_path / "b", manifest, MODEL_BYTES)
    assert not (tmp_path / "b").exists()


def test_write_refuses_a_nan_scaler_before_writing_anything(tmp_path: Path) -> None:
    manifest = make_manifest(scaler_scale=(0.1, float("nan"), 2.0, 1.0))
    with pytest.raises(BundleError, match=r"manifest.json: scaler_scale\[1\]: must be finite"):
        write_bundle(tmp_path / "b", manifest, MODEL_BYTES)
    assert not (tmp_path / "b").exists()


def test_write_refuses_training_info_that_is_not_json(tmp_path: Path) -> None:
    manifest = make_manifest(training={"when": object()})
    with pytest.raises(BundleError, match=r"manifest\.json: cannot write as JSON"):
        write_bundle(tmp_path / "b", manifest, MODEL_BYTES)


def test_write_overwrites_an_older_bundle_in_place(tmp_path: Path) -> None:
    write_bundle(tmp_path, make_manifest(), MODEL_BYTES)
    newer_model = MODEL_BYTES + b"\x01"
    newer = make_manifest(newer_model, version="2026.12.01-1")
    assert write_bundle(tmp_path, newer, newer_model).manifest.version == "2026.12.01-1"
    assert load_bundle(tmp_path).model_bytes == newer_model


# --- hostile manifests (issue 12): signed or not, they must be refused with a reason -----------


@pytest.mark.parametrize(
    "version", ["../../../../tmp/X", "/tmp/X", "sub/dir", "v" * 300, ".hidden", "a b", "é"]
)
def test_a_version_that_is_not_a_plain_name_is_refused(tmp_path: Path, version: str) -> None:
    """The version is part of the bundle id, which names things on disk and on the page."""
    write_raw(tmp_path, edited("version", set_to(version)))
    message = refusal(tmp_path)
    assert message.startswith(f"{tmp_path / MANIFEST_FILE}: version: must be 1-40 letters")
    assert len(message) < 300


def test_200000_feature_names_are_refused_at_once() -> None:
    """Issue 12: the duplicate check was quadratic: minutes on the event loop."""
    raw = make_manifest().to_dict()
    raw["feature_names"] = [f"f{i}" for i in range(200_000)]
    raw["scaler_mean"] = [0.0] * 200_000
    raw["scaler_scale"] = [1.0] * 200_000
    with pytest.raises(BundleError, match="feature_names: 200000 names, more than 10000"):
        manifest_from_dict(raw, "memory")
    with pytest.raises(BundleError, match=r"memory: \d+ characters, more than 2097152"):
        Manifest.from_json(json.dumps(raw), "memory")


def test_duplicate_feature_names_are_found_in_linear_time() -> None:
    raw = make_manifest().to_dict()
    names = [f"f{i}" for i in range(MAX_FEATURES - 1)] + ["f7"]
    raw.update(feature_names=names, scaler_mean=[0.0] * len(names), scaler_scale=[1.0] * len(names))
    with pytest.raises(BundleError, match=r"feature_names: names must be unique, repeated: f7$"):
        manifest_from_dict(raw, "memory")


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, 5000, 100_000])
def test_a_deeply_nested_manifest_is_refused(tmp_path: Path, depth: int) -> None:
    """Issue 12: a deeply nested manifest raised RecursionError."""
    text = json.dumps(make_manifest().to_dict()).replace(
        '"training": {', '"training": {"deep": ' + "[" * depth + "]" * depth + ", "
    )
    write_raw(tmp_path, text)
    message = refusal(tmp_path)
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in message
    if depth < 1000:  # deeper, the JSON decoder itself gives up, before any field is known
        assert f"{MANIFEST_FILE}: training.deep" in message


def test_a_huge_integer_is_refused_as_not_finite(tmp_path: Path) -> None:
    text = json.dumps(make_manifest().to_dict()).replace(
        '"scaler_mean": [0.5', '"scaler_mean": [' + "9" * 400
    )
    write_raw(tmp_path, text)
    assert refusal(tmp_path).endswith(
        "scaler_mean[0]: must be finite, got an integer of 400 digits"
    )


def test_a_lone_surrogate_is_refused_naming_the_field(tmp_path: Path) -> None:
    text = json.dumps(make_manifest().to_dict()).replace('"band_1"', '"band_\\ud800"')
    write_raw(tmp_path, text)
    assert "feature_names[2]: holds a lone surrogate ('band_\\ud800')" in refusal(tmp_path)


def test_a_manifest_file_bigger_than_the_limit_is_not_read(tmp_path: Path) -> None:
    write_raw(tmp_path, " " * (MAX_MANIFEST_BYTES + 1))
    assert refusal(tmp_path).endswith(f"bytes, more than {MAX_MANIFEST_BYTES}")


DEEP = "__deep__"
HOSTILE_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**500), max_value=10**500)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.text(st.characters(codec="utf-8"), min_size=100, max_size=400)
    | st.sampled_from(["../../../../tmp/X", "/tmp/X", "sub/dir", "\ud800", "a\0b", "", " "])
    | st.just(DEEP)
)
HOSTILE_JSON = st.recursive(
    HOSTILE_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(path=st.sampled_from(FIELD_PATHS), value=HOSTILE_JSON, depth=st.integers(1, 3000))
def test_any_value_in_any_field_is_refused_naming_it_or_is_valid(
    path: str, value: object, depth: int
) -> None:
    """Property: whatever JSON sits in a field, parsing either gives a manifest that survives
    its own round trip with the strict fields in their patterns, or refuses with a BundleError
    that names the field (or, nested beyond the decoder's own limit, the nesting), in a
    message of bounded length."""
    text = json.dumps(edited(path, set_to(value))).replace(
        json.dumps(DEEP), "[" * depth + "]" * depth
    )
    try:
        manifest = Manifest.from_json(text, "memory")
    except BundleError as exc:
        message = str(exc)
        assert message.startswith("memory: ")
        names_it = f"memory: {path}" in message or f" {path.split('.')[-1]}" in message
        assert names_it or "nested deeper than" in message, (path, message)
        assert len(message) < 1200
        return
    assert Manifest.from_json(manifest.to_json(), "again") == manifest
    assert VERSION_PATTERN.fullmatch(manifest.version)
    assert manifest.asset is None or NAME_PATTERN.fullmatch(manifest.asset)
    assert FILE_NAME_PATTERN.fullmatch(manifest.model_file)
