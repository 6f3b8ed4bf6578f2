"""The size limits of one app's request bodies, from the ``ServingSettings`` of ``create_app``.

The request models in ``schemas.py`` hold the rules that never change; the routes declare those.
``RequestLimits`` builds, per app, a subclass of each with its limits added (question and table
length, number of tables, batch items, tickers, horizon) and uses it twice:

- ``check``: the body dependencies of ``deps.py`` validate the parsed JSON against the limited
  model *before* FastAPI validates it against the route's model. A refused body is the 422 FastAPI
  gives for a model with those limits (pydantic's errors, ``loc`` from ``body``), all of them in one
  pass, and a list over its limit is refused before its items are looked at.
- ``document``: the app's ``/openapi.json`` shows the limited models' schemas, so the document
  states the limits that app enforces (``maxLength``, ``maxItems``, ``maximum``).
"""

from __future__ import annotations

from types import GenericAlias
from typing import Annotated, Any, TypeVar

from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.models import Schema
from pydantic import BaseModel, Field, StringConstraints, ValidationError, create_model

from serving.schemas import (
    AskRequest,
    BatchRequest,
    ForecastRequest,
    Horizon,
    PredictRequest,
    Question,
    Tickers,
)
from serving.settings import ServingSettings

Model = TypeVar("Model", bound=BaseModel)
REF_TEMPLATE = "#/components/schemas/{model}"  # where FastAPI puts a model's schema


def _with_limits(model: type[Model], **fields: Any) -> type[Model]:
    """A subclass of ``model`` with ``fields`` restated; same name, so same title and component."""
    return create_model(model.__name__, __base__=model, **fields)


class RequestLimits:
    def __init__(self, serving: ServingSettings) -> None:
        table = Annotated[str, StringConstraints(max_length=serving.max_table_chars)]
        text = {
            "question": (Question, Field(max_length=serving.max_question_chars)),
            "tables": (list[table], Field(default_factory=list, max_length=serving.max_tables)),
        }
        predict = _with_limits(PredictRequest, **text)
        # list[predict], which mypy refuses with a variable
        items = GenericAlias(list, predict)
        self._limited: dict[type[BaseModel], type[BaseModel]] = {
            PredictRequest: predict,
            BatchRequest: _with_limits(
                BatchRequest,
                items=(items, Field(min_length=1, max_length=serving.max_batch_items)),
            ),
            ForecastRequest: _with_limits(
                ForecastRequest,
                tickers=(Tickers, Field(max_length=serving.forecast_max_tickers)),
                horizon=(Horizon, Field(le=serving.forecast_max_horizon)),
            ),
            AskRequest: _with_limits(AskRequest, **text),
        }

    def check(self, model: type[BaseModel], body: Any) -> None:
        """Refuse the JSON ``body`` of a ``model`` request if the limited model refuses it
        (``RequestValidationError``: a 422). A body that is not an object is left to FastAPI's
        validation, which refuses it whatever the limits."""
        if not isinstance(body, dict):
            return
        try:
            # from_attributes as FastAPI validates, so that the errors are the ones it gives
            self._limited[model].model_validate(body, from_attributes=True)
        except ValidationError as exc:
            errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
            raise RequestValidationError(errors, body=body) from None

    def document(self, openapi: dict[str, Any]) -> None:
        """Replace the request schemas of ``openapi`` (FastAPI's document, built from the models
        without limits) with the limited ones."""
        components = openapi.get("components", {}).get("schemas", {})
        for model in self._limited.values():
            schema = model.model_json_schema(ref_template=REF_TEMPLATE)
            schema.pop("$defs", None)  # the nested PredictRequest is documented on its own
            if model.__name__ in components:  # rendered as FastAPI renders the others
                components[model.__name__] = jsonable_encoder(
                    Schema.model_validate(schema), by_alias=True, exclude_none=True
                )
