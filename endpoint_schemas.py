"""The online endpoint's documented shapes: what /docs and /openapi.json show, and what each route declares.

The /predict route parses and validates its body itself (score.ModelService), for speed; these
pydantic models describe the contract, they are not on the request path.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from endpoint_settings import ENV_API_KEY
from feature_schema import openapi_property
from serving import NO_MODEL

# One real row of the training data (row 0 of day1_breast_cancer.csv), for the docs.
EXAMPLE_RECORD: dict[str, float] = {
    "mean radius": 17.99, "mean texture": 10.38, "mean perimeter": 122.8, "mean area": 1001.0,
    "mean smoothness": 0.1184, "mean compactness": 0.2776, "mean concavity": 0.3001,
    "mean concave points": 0.1471, "mean symmetry": 0.2419, "mean fractal dimension": 0.07871,
    "radius error": 1.095, "texture error": 0.9053, "perimeter error": 8.589, "area error": 153.4,
    "smoothness error": 0.006399, "compactness error": 0.04904, "concavity error": 0.05373,
    "concave points error": 0.01587, "symmetry error": 0.03003, "fractal dimension error": 0.006193,
    "worst radius": 25.38, "worst texture": 17.33, "worst perimeter": 184.6, "worst area": 2019.0,
    "worst smoothness": 0.1622, "worst compactness": 0.6656, "worst concavity": 0.7119,
    "worst concave points": 0.2654, "worst symmetry": 0.4601, "worst fractal dimension": 0.1189,
}


class PredictRequest(BaseModel):
    """A batch of records to score; each record maps every model feature to a finite number."""

    records: list[dict[str, float]] = Field(
        min_length=1, description="records to score (at most SCORING_MAX_RECORDS, default 10000)"
    )
    model_config = {"json_schema_extra": {"examples": [{"records": [EXAMPLE_RECORD]}]}}


class PredictResult(BaseModel):
    input: dict[str, Any] = Field(description="the record as sent")
    prediction: int = Field(description="predicted class, 0 or 1")
    probability: float = Field(description="probability of class 1")


class PredictResponse(BaseModel):
    results: list[PredictResult]
    model_version: str = Field(description="the registry version that scored the request, e.g. v002")
    model_config = {"json_schema_extra": {"examples": [{
        "results": [{"input": EXAMPLE_RECORD, "prediction": 0, "probability": 1.4e-11}],
        "model_version": "v002",
    }]}}


class ErrorResponse(BaseModel):
    detail: str = Field(description="what is wrong and what to do")
    record: int | None = Field(default=None, description="index of the offending record")
    feature: str | None = Field(default=None, description="the offending feature")


class HealthResponse(BaseModel):
    status: str = "alive"


class ReadyResponse(BaseModel):
    status: str = Field(description="ready or not ready")
    model_version: str | None = None
    detail: str | None = Field(default=None, description="why the app is not ready")


class ModelResponse(BaseModel):
    model_version: str
    pinned: bool = Field(description="true when a version is pinned rather than following latest")
    positive_class: Any = Field(description="the target value whose probability is the score")
    feature_schema: list[dict[str, Any]] = Field(
        description='the features in order: {"name", "type": "number" | "category", "nullable", "categories"}')
    metadata: dict[str, Any]
    metrics: dict[str, Any]


# ----- what the routes declare -----------------------------------------------------------
UNAUTHORIZED = {"description": "SCORING_API_KEY is set and the Bearer key is missing or wrong", "model": ErrorResponse}
NOT_READY = {"description": "no model is loaded (e.g. " + NO_MODEL + ")", "model": ErrorResponse}
SECURED = {"security": [{"apiKey": []}]}
PREDICT_DOC: dict[str, Any] = dict(
    summary="Score records",
    description='`{"records": [{feature: value, ...}, ...]}`: every feature of the served version, '
                "a finite number or, for a category feature, one of its training categories as a "
                "string; null only where the version allows it (the PredictRequest schema is the "
                "served version's own). Answers one result per record, in order (`probability` is "
                "that of the version's positive class), and the model version (also in the "
                "`x-model-version` header).",
    response_model=PredictResponse,
    responses={
        400: {"description": "the body is not valid JSON", "model": ErrorResponse},
        401: UNAUTHORIZED,
        413: {"description": "more records than SCORING_MAX_RECORDS (default 10000)", "model": ErrorResponse},
        422: {"description": "the body or a record is invalid (names the record and the feature)",
              "model": ErrorResponse},
        503: NOT_READY,
    },
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/PredictRequest"}, "example": {"records": [EXAMPLE_RECORD]},
        }}},
        **SECURED,
    },
)


def openapi(app: FastAPI) -> dict[str, Any]:
    """The app's schema: FastAPI's, plus the bearer key scheme and PredictRequest generated from
    the served version (so it follows a hot swap), with a real example row of its training data."""
    base = _base_openapi(app)
    serving = getattr(app.state, "serving", None)
    service = serving.service_for(None)[1] if serving is not None else None
    if service is None:
        return base
    cached = getattr(app.state, "openapi_for", None)
    if cached is None or cached[0] is not service:
        schema = copy.deepcopy(base)
        example = example_record(service)
        schema["components"]["schemas"]["PredictRequest"] = request_schema(service, example)
        body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
        body["example"] = {"records": [example]}
        app.state.openapi_for = cached = (service, schema)
    return cached[1]


def request_schema(service: Any, example: dict[str, Any]) -> dict[str, Any]:
    """PredictRequest for one served version: every feature required, typed by its schema."""
    features = service.schema.features
    record = {
        "type": "object", "title": f"Record ({service.version})",
        "properties": {f.name: openapi_property(f) for f in features},
        "required": [f.name for f in features],
        "additionalProperties": True,  # other fields are echoed back and ignored
    }
    return {
        "title": "PredictRequest", "type": "object", "required": ["records"],
        "properties": {"records": {"type": "array", "minItems": 1, "items": record, "title": "Records",
                                   "description": "records to score (at most SCORING_MAX_RECORDS, default 10000)"}},
        "examples": [{"records": [example]}],
    }


def example_record(service: Any) -> dict[str, Any]:
    """A real row of the version's training data (as metadata.json keeps it), else the docs' own."""
    example = service.metadata.get("input_example")
    if isinstance(example, dict) and list(example) == service.features:
        return example
    if set(EXAMPLE_RECORD) == set(service.features):
        return {name: EXAMPLE_RECORD[name] for name in service.features}
    return {name: 0.0 for name in service.features}


def _base_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the static PredictRequest and the key scheme (built once)."""
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {})["PredictRequest"] = PredictRequest.model_json_schema()
        components["securitySchemes"] = {"apiKey": {
            "type": "http", "scheme": "bearer", "description": f"needed only when {ENV_API_KEY} is set on the server",
        }}
        app.openapi_schema = schema
    return app.openapi_schema
