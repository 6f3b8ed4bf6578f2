"""What a route may answer besides 200, for ``/openapi.json`` (every refusal has a body model)."""

from __future__ import annotations

from typing import Any

from serving.schemas import ErrorMessage, ValidationErrors

# every POST route: serving/errors.py and the body validation
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorMessage, "description": "Body over FINMATH_SERVING_MAX_BODY_BYTES"},
    415: {"model": ErrorMessage, "description": "Content-Type is not application/json"},
    422: {
        "model": ValidationErrors,
        "description": "Not strict JSON (NaN, Infinity, invalid UTF-8, a lone surrogate, too "
        "deep) or refused by the schema; `loc` names the field",
    },
}
NO_MODEL: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorMessage, "description": "No answer model loaded yet"}
}
