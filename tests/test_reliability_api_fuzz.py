"""Property-based fuzzing of the online endpoint (hypothesis), checked against its own OpenAPI.

Generated requests, valid and invalid, go to POST /predict of the real app (in process, with
its lifespan): well-formed records, records with features missing, extra, mistyped or
non-finite, bodies of the wrong shape, broken JSON, random bytes, odd content types, and
other methods and paths. Every answer must be below 500; every 4xx a JSON object whose
`detail` is a non-empty message; every 200 valid against the PredictResponse schema that
/openapi.json publishes, one result per record, in order.

Sizes: RELIABILITY_FUZZ_EXAMPLES (total requests, default 1200), RELIABILITY_SEED.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter

import jsonschema
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

import reliability_figures as figures
from app_score_api import create_app

TOTAL = figures.count("RELIABILITY_FUZZ_EXAMPLES", 1200)
SEED = int(os.environ.get("RELIABILITY_SEED", "7"))
# The share of the requests each generator gets.
SHARES = {"valid": 0.25, "invalid records": 0.25, "extreme values": 0.15, "bad bodies": 0.25,
          "methods and paths": 0.1}


def _settings(share: str):
    # No shrinking: a failure is reported as generated, so a failing CI run stays short.
    return settings(max_examples=max(1, int(TOTAL * SHARES[share])), deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])


class Fuzz:
    """One app and its published schema; checks every answer and counts them."""

    def __init__(self, client: TestClient):
        self.client = client
        openapi = client.get("/openapi.json").json()
        self.response_schema = {"$ref": "#/components/schemas/PredictResponse",
                                "components": openapi["components"]}
        jsonschema.Draft202012Validator.check_schema(self.response_schema)
        self.validator = jsonschema.Draft202012Validator(self.response_schema)
        self.features = client.get("/model").json()["metadata"]["features"]
        self.counts: Counter = Counter()
        self.problems: list[str] = []

    def send(self, method: str, path: str, content: bytes | None = None,
             headers: dict[str, str] | None = None, records: list | None = None):
        response = self.client.request(method, path, content=content, headers=headers)
        self.check(response, records)
        return response

    def check(self, response, records: list | None) -> None:
        status = response.status_code
        self.counts["requests"] += 1
        self.counts[f"status_{status // 100}xx"] += 1
        if status >= 500:
            self.problems.append(f"{status} for {response.request.method} {response.request.url}")
        elif status >= 400 and response.request.method == "HEAD":
            if response.content:  # HEAD answers carry headers only
                self.problems.append(f"HEAD answered with a body: {response.content[:100]!r}")
        elif status >= 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            if not (isinstance(body, dict) and isinstance(body.get("detail"), str) and body["detail"].strip()):
                self.counts["bad_4xx"] += 1
                self.problems.append(f"{status} without a JSON message: {response.text[:200]!r}")
        elif status == 200 and response.request.url.path == "/predict":
            self.counts["status_200"] += 1
            body = response.json()
            errors = [e.message for e in self.validator.iter_errors(body)]
            if records is not None and len(body.get("results", [])) != len(records):
                errors.append(f"{len(body.get('results', []))} results for {len(records)} records")
            if errors:
                self.counts["off_schema_200"] += 1
                self.problems.append(f"200 off-schema: {errors[:3]}")

    def record(self) -> None:
        """The totals so far (the counts run across the whole module)."""
        figures.record("endpoint_fuzz", requests=self.counts["requests"], status_5xx=self.counts["status_5xx"],
                    status_4xx=self.counts["status_4xx"], status_200=self.counts["status_200"],
                    bad_4xx=self.counts["bad_4xx"], off_schema_200=self.counts["off_schema_200"])


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory, trained_registry):
    root = tmp_path_factory.mktemp("fuzz") / "registry"
    shutil.copytree(trained_registry, root)
    with TestClient(create_app(registry_dir=root, max_records=50, reload_seconds=60)) as client:
        yield Fuzz(client)


@pytest.fixture()
def fuzz(fuzz_app):
    fuzz_app.problems = []  # each property reports its own
    return fuzz_app


# ----- strategies --------------------------------------------------------------------------------
# Numbers a real caller sends (wide, but far from overflowing the model's arithmetic).
finite = st.one_of(
    st.floats(min_value=-1e12, max_value=1e12, allow_nan=False),
    st.integers(min_value=-(10**12), max_value=10**12),
)
# Finite, but big enough to overflow inside the model: 200 or a 422 naming the record.
extreme = st.one_of(
    st.floats(min_value=1e150, max_value=1.7e308), st.floats(min_value=-1.7e308, max_value=-1e150),
    st.integers(min_value=10**200, max_value=10**308),
)
# Anything JSON can carry that is not a finite number.
not_a_number = st.one_of(
    st.none(), st.booleans(), st.text(max_size=20), st.lists(finite, max_size=3),
    st.dictionaries(st.text(max_size=5), finite, max_size=2),
    st.integers(min_value=10**309, max_value=10**320),
)
scalars = st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10)
json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | st.integers() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def _dumps(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


# ----- the properties ----------------------------------------------------------------------------
def test_valid_requests_score_and_match_the_schema(fuzz):
    @_settings("valid")
    @seed(SEED)
    @given(data=st.data())
    def run(data):
        width = len(fuzz.features)
        rows = data.draw(st.lists(st.lists(finite, min_size=width, max_size=width), min_size=1, max_size=8),
                         label="rows")
        records = []
        for row in rows:
            extras = data.draw(st.dictionaries(st.text(max_size=12).filter(lambda k: k not in fuzz.features),
                                               scalars, max_size=2))
            records.append({**dict(zip(fuzz.features, row)), **extras})
        key = data.draw(st.sampled_from(["records", "data"]))
        if key == "data" and data.draw(st.booleans()):
            # Azure's form: rows of values in the model's feature order.
            records = [[r[name] for name in fuzz.features] for r in records]
        response = fuzz.send("POST", "/predict", _dumps({key: records}),
                             {"content-type": "application/json"}, records)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model_version"] == response.headers["x-model-version"] == "v002"
        for result in body["results"]:
            assert result["prediction"] in (0, 1) and 0.0 <= result["probability"] <= 1.0

    try:
        run()
    finally:
        fuzz.record()
    assert not fuzz.problems, fuzz.problems[:10]


def test_invalid_records_are_422_naming_record_and_feature(fuzz):
    @_settings("invalid records")
    @seed(SEED)
    @given(data=st.data())
    def run(data):
        width = len(fuzz.features)
        rows = data.draw(st.lists(st.lists(finite, min_size=width, max_size=width), min_size=1, max_size=5),
                         label="rows")
        n = len(rows)
        records = [dict(zip(fuzz.features, row)) for row in rows]
        bad = data.draw(st.integers(min_value=0, max_value=n - 1), label="bad record")
        feature = data.draw(st.sampled_from(fuzz.features), label="feature")
        how = data.draw(st.sampled_from(["missing", "not a number", "NaN", "Infinity", "-Infinity", "1e999",
                                         "not an object", "renamed"]))
        if how == "missing":
            del records[bad][feature]
        elif how == "renamed":
            records[bad][feature.upper() + " "] = records[bad].pop(feature)
        elif how == "not a number":
            records[bad][feature] = data.draw(not_a_number)
        elif how == "not an object":
            records[bad] = data.draw(st.one_of(st.none(), st.text(max_size=10), finite, st.booleans()))
        else:
            records[bad][feature] = "__MARK__"
        body = _dumps({"records": records})
        if how in ("NaN", "Infinity", "-Infinity", "1e999"):
            body = body.replace(b'"__MARK__"', how.encode())  # JSON extensions Python accepts
        response = fuzz.send("POST", "/predict", body, {"content-type": "application/json"})
        assert response.status_code == 422, response.text
        detail = response.json()
        assert detail["record"] == bad and f"record {bad}" in detail["detail"]
        if how != "not an object":
            assert detail["feature"] == feature

    try:
        run()
    finally:
        fuzz.record()
    assert not fuzz.problems, fuzz.problems[:10]


def test_extreme_values_score_or_are_422(fuzz):
    @_settings("extreme values")
    @seed(SEED)
    @given(data=st.data())
    def run(data):
        width = len(fuzz.features)
        rows = data.draw(st.lists(st.lists(finite, min_size=width, max_size=width), min_size=1, max_size=4),
                         label="rows")
        n = len(rows)
        records = [dict(zip(fuzz.features, row)) for row in rows]
        for name in data.draw(st.lists(st.sampled_from(fuzz.features), min_size=1, max_size=6, unique=True)):
            records[data.draw(st.integers(min_value=0, max_value=n - 1))][name] = data.draw(extreme)
        response = fuzz.send("POST", "/predict", _dumps({"records": records}),
                             {"content-type": "application/json"}, records)
        assert response.status_code in (200, 422), response.text
        if response.status_code == 422:
            detail = response.json()
            assert 0 <= detail["record"] < n and "too large" in detail["detail"]

    try:
        run()
    finally:
        fuzz.record()
    assert not fuzz.problems, fuzz.problems[:10]


def test_bad_bodies_are_4xx_with_a_message(fuzz):
    @_settings("bad bodies")
    @seed(SEED)
    @given(data=st.data())
    def run(data):
        kind = data.draw(st.sampled_from(["json value", "bytes", "truncated", "nested", "too many", "headers"]))
        headers = {"content-type": "application/json"}
        if kind == "json value":
            body = _dumps(data.draw(json_values))
        elif kind == "bytes":
            body = data.draw(st.binary(max_size=200))
        elif kind == "truncated":
            full = _dumps({"records": [{name: 1.0 for name in fuzz.features}]})
            body = full[: data.draw(st.integers(min_value=0, max_value=len(full) - 1))]
        elif kind == "nested":
            depth = data.draw(st.integers(min_value=100, max_value=100_000))
            body = b'{"records": ' + b"[" * depth + b"]" * depth + b"}"
        elif kind == "too many":
            body = _dumps({"records": [{name: 1.0 for name in fuzz.features}] * data.draw(
                st.integers(min_value=51, max_value=200))})
        else:
            body = _dumps({"records": [{name: 1.0 for name in fuzz.features}]})
            headers = data.draw(st.dictionaries(
                st.sampled_from(["content-type", "content-encoding", "content-length-x", "accept"]),
                st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=30), max_size=3))
        response = fuzz.send("POST", "/predict", body, headers)
        assert response.status_code < 500

    try:
        run()
    finally:
        fuzz.record()
    assert not fuzz.problems, fuzz.problems[:10]


def test_other_methods_and_paths_never_fail(fuzz):
    @_settings("methods and paths")
    @seed(SEED)
    @given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
           path=st.one_of(
               st.sampled_from(["/predict", "/health", "/ready", "/model", "/score", "/", "/openapi.json",
                                "/predict/", "//predict", "/predict/../model", "/docs-assets/../app_score_api.py",
                                "/docs-assets/%2e%2e/%2e%2e/settings.py", "/docs-assets/../../etc/passwd"]),
               st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/._-%", max_size=30).map(lambda s: "/" + s)),
           body=st.binary(max_size=64))
    def run(method, path, body):
        response = fuzz.send(method, path, body or None)
        if response.status_code == 200 and path.startswith("/docs-assets"):
            assert b"import " not in response.content and b"SCORING_API_KEY" not in response.content

    try:
        run()
    finally:
        fuzz.record()
    assert not fuzz.problems, fuzz.problems[:10]


def test_the_fuzzing_reached_the_required_volume(fuzz):
    """Runs last in this file: the total requests sent by the properties above."""
    assert fuzz.counts["requests"] >= min(TOTAL, 1000), fuzz.counts
    assert fuzz.counts["status_200"] > 0 and fuzz.counts["status_4xx"] > 0


# ----- the categorical contract: category enums, nulls, wrong types, huge and unicode strings ----
CATEGORICAL_EXAMPLES = max(20, TOTAL // 6)


@pytest.fixture(scope="module", params=["credit", "gappy"])
def table_fuzz(request, tmp_path_factory):
    """An app serving a table model (German credit, or the small table with nullable features)."""
    source = request.getfixturevalue(f"{request.param}_registry")
    root = tmp_path_factory.mktemp(f"fuzz-{request.param}") / "registry"
    shutil.copytree(source, root)
    with TestClient(create_app(registry_dir=root, max_records=50, reload_seconds=60)) as client:
        fuzz = Fuzz(client)
        openapi = client.get("/openapi.json").json()
        fuzz.properties = openapi["components"]["schemas"]["PredictRequest"]["properties"]["records"]["items"]["properties"]
        yield fuzz


def _add_figures(fuzz: Fuzz, before: Counter) -> None:
    """This test's requests, into the categorical fuzzing's figures (summed over both models)."""
    done = fuzz.counts - before
    figures.add("endpoint_fuzz_categorical", requests=done["requests"], status_5xx=done["status_5xx"],
                status_4xx=done["status_4xx"], status_200=done["status_200"], bad_4xx=done["bad_4xx"])


def _allowed(prop: dict):
    """Every value the published schema of one feature allows (numbers: a caller's range)."""
    if "enum" in prop:
        return st.sampled_from(prop["enum"])
    nullable = isinstance(prop["type"], list) and "null" in prop["type"]
    return finite | st.none() if nullable else finite


huge_or_odd_text = st.one_of(
    st.text(max_size=30), st.text(alphabet=st.characters(min_codepoint=0x80, max_codepoint=0x10FFFF), max_size=20),
    # at most 150,000: json.dumps escapes each as 6 bytes, 900 kB, under the 1 MiB body limit (413 beyond)
    st.integers(min_value=1000, max_value=150_000).map(lambda n: "ü" * n), st.just(""), st.just(" own"),
    st.just("\x00"), st.just("\ud800x"),
)


def test_table_model_records_the_schema_allows_are_scored(table_fuzz):
    fuzz = table_fuzz

    @settings(max_examples=CATEGORICAL_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate])
    @seed(SEED)
    @given(data=st.data())
    def run(data):
        strategy = st.fixed_dictionaries({name: _allowed(prop) for name, prop in fuzz.properties.items()})
        records = data.draw(st.lists(strategy, min_size=1, max_size=6), label="records")
        response = fuzz.send("POST", "/predict", _dumps({"records": records}),
                             {"content-type": "application/json"}, records)
        assert response.status_code == 200, response.text
        assert [r["input"] for r in response.json()["results"]] == records

    before = Counter(fuzz.counts)
    try:
        run()
    finally:
        _add_figures(fuzz, before)
    assert not fuzz.problems, fuzz.problems[:10]


def test_table_model_bad_values_are_422_naming_record_and_feature(table_fuzz):
    fuzz = table_fuzz
    categories = [n for n, p in fuzz.properties.items() if "enum" in p]
    numbers = [n for n, p in fuzz.properties.items() if "enum" not in p]
    not_null = [n for n, p in fuzz.properties.items()
                if not (isinstance(p["type"], list) and "null" in p["type"])]

    @settings(max_examples=CATEGORICAL_EXAMPLES * 2, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @seed(SEED)
    @given(data=st.data())
    def run(data):
        strategy = st.fixed_dictionaries({name: _allowed(prop) for name, prop in fuzz.properties.items()})
        records = data.draw(st.lists(strategy, min_size=1, max_size=4), label="records")
        bad = data.draw(st.integers(min_value=0, max_value=len(records) - 1), label="bad record")
        how = data.draw(st.sampled_from(["unknown category", "wrong type for a category", "text for a number",
                                         "null where not nullable"]))
        if how == "unknown category":
            feature = data.draw(st.sampled_from(categories))
            value = data.draw(huge_or_odd_text.filter(lambda t: t not in fuzz.properties[feature]["enum"]))
        elif how == "wrong type for a category":
            feature = data.draw(st.sampled_from(categories))
            value = data.draw(st.one_of(finite, st.booleans(), st.lists(st.text(max_size=3), max_size=2),
                                        st.dictionaries(st.text(max_size=3), finite, max_size=2)))
        elif how == "text for a number":
            feature = data.draw(st.sampled_from(numbers))
            value = data.draw(huge_or_odd_text)
        else:
            feature = data.draw(st.sampled_from(not_null))
            value = None
        records[bad][feature] = value
        response = fuzz.send("POST", "/predict", _dumps({"records": records}), {"content-type": "application/json"})
        assert response.status_code == 422, response.text
        detail = response.json()
        assert detail["record"] == bad and detail["feature"] == feature
        assert detail["detail"].startswith(f"record {bad}, feature {feature!r}: ") and len(detail["detail"]) < 2000

    before = Counter(fuzz.counts)
    try:
        run()
    finally:
        _add_figures(fuzz, before)
    assert not fuzz.problems, fuzz.problems[:10]
