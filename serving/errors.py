"""Malformed requests get a 4xx that names the problem, never a 5xx.

``StrictJSONRoute`` is FastAPI's documented custom ``APIRoute``, the ``route_class`` of every
router in ``serving/routes/``: its request reads the body with the app's size limit (413,
``FINMATH_SERVING_MAX_BODY_BYTES``), refuses a non-JSON ``Content-Type`` (415) and parses RFC 8259
JSON only (422): UTF-8, no ``NaN``/``Infinity`` or numbers that overflow to them, no lone
surrogates, no runaway nesting. ``validation_error_handler`` keeps ``type``, ``loc`` and ``msg``
and echoes ``input`` only when it is small strict JSON (FastAPI's default fails on ``NaN`` or
``"\\ud800"``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from serving.deps import serving_settings

JSON_MEDIA_TYPE = "application/json"
MAX_ECHO_CHARS = 200  # the longest ``input`` or ``ctx`` value echoed back
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # the only way JSON spells a surrogate
_OMIT = object()


def limit_message(limit: int) -> str:
    return f"{limit} bytes (FINMATH_SERVING_MAX_BODY_BYTES)"


def body_error(type_: str, loc: list[str | int], msg: str) -> HTTPException:
    """A 422 shaped like a validation error (``detail: [{type, loc, msg}]``)."""
    return HTTPException(status_code=422, detail=[{"type": type_, "loc": loc, "msg": msg}])


class _NonFinite(ValueError):
    """A ``NaN``/``Infinity`` literal, or a number too large for a double."""


class _Marker:
    """Stands for a non-finite number when locating it."""


def _refuse_constant(name: str) -> float:
    raise _NonFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e400 parses to inf
        raise _NonFinite(text)
    return value


def _walk(
    value: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Every value and object key below ``value`` with its path (iterative: no recursion)."""
    stack = [(path, value)]
    while stack:
        path, value = stack.pop()
        yield path, value
        if isinstance(value, dict):
            for key, item in reversed(value.items()):
                yield (*path, key), key
                stack.append(((*path, key), item))
        elif isinstance(value, list):
            stack.extend(((*path, i), item) for i, item in reversed(list(enumerate(value))))


def _first(value: Any, found: Callable[[Any], bool]) -> list[str | int] | None:
    """The ``loc`` of the first value or key ``found`` (None: there is none)."""
    path = next((p for p, v in _walk(value) if found(v)), None)
    if path is None:
        return None
    return ["body", *(_printable(p) if isinstance(p, str) else p for p in path)]


def _locate_non_finite(text: str) -> list[str | int]:
    try:
        located = json.loads(
            text,
            parse_constant=lambda _: _Marker(),
            parse_float=lambda s: _Marker() if math.isinf(float(s)) else 0.0,
        )
    except (ValueError, RecursionError):  # broken further on: name the body
        return ["body"]
    return _first(located, lambda v: isinstance(v, _Marker)) or ["body"]


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(text: str) -> str:
    """``text`` with lone surrogates spelled ``\\udXXX`` (always encodes as UTF-8)."""
    return text if _encodes(text) else text.encode("utf-8", "backslashreplace").decode("utf-8")


def parse_json(body: bytes) -> Any:
    """RFC 8259 JSON from ``body``, or an ``HTTPException`` (422) naming the problem."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise body_error(
            "json_invalid", ["body"], f"body is not UTF-8: {exc.reason} at byte {exc.start}"
        ) from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _NonFinite as exc:
        literal = str(exc)[:40]
        if literal in ("NaN", "Infinity", "-Infinity"):
            msg = f"{literal} is not valid JSON (RFC 8259 has no NaN or Infinity): send a number"
        else:
            msg = f"{literal} is beyond the range of a double (it would be Infinity)"
        raise body_error("json_invalid", _locate_non_finite(text), msg) from None
    except json.JSONDecodeError as exc:
        raise body_error("json_invalid", ["body", exc.pos], f"invalid JSON: {exc}") from None
    except RecursionError:
        raise body_error("json_invalid", ["body"], "JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer beyond int_max_str_digits
        reason = str(exc).partition(";")[0][:200]
        raise body_error("json_invalid", ["body"], f"invalid JSON: {reason}") from None
    if b"\\u" in body and _SURROGATE_ESCAPE.search(body):
        loc = _first(value, lambda v: isinstance(v, str) and not _encodes(v))
        if loc is not None:
            raise body_error(
                "string_unicode",
                loc,
                "string holds a lone UTF-16 surrogate escape (\\ud800-\\udfff without its pair): "
                "not valid Unicode",
            )
    return value


def _is_json(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == JSON_MEDIA_TYPE or (
        media.startswith("application/") and media.endswith("+json")
    )


class StrictJSONRequest(Request):
    """A request whose body is at most ``max_body_bytes`` and whose JSON is strict."""

    def __init__(self, request: Request, max_body_bytes: int) -> None:
        super().__init__(request.scope, request.receive)
        self.max_body_bytes = max_body_bytes

    async def body(self) -> bytes:
        if not hasattr(self, "_body"):  # Starlette's cache, as in FastAPI's GzipRequest
            chunks, size = [], 0
            async for chunk in self.stream():
                size += len(chunk)
                if size > self.max_body_bytes:  # a chunked body declares no length
                    raise HTTPException(
                        status_code=413,
                        detail=f"body exceeds the limit of {limit_message(self.max_body_bytes)}",
                    )
                chunks.append(chunk)
            self._body = b"".join(chunks)
        return self._body

    async def json(self) -> Any:
        if not hasattr(self, "_json"):  # parsed once: FastAPI, then the limits (serving/deps.py)
            self._json = parse_json(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """Bodies through ``StrictJSONRequest``, with the limit of the app serving the request."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def strict_handler(request: Request) -> Response:
            request = StrictJSONRequest(request, serving_settings(request).max_body_bytes)
            content_type = request.headers.get("content-type", "")
            if not _is_json(content_type) and await request.body():
                raise HTTPException(
                    status_code=415,
                    detail=f"Content-Type must be {JSON_MEDIA_TYPE}, got {content_type[:100]!r}",
                )
            return await handler(request)

        return strict_handler


def _echo(value: Any) -> Any:
    """``value`` when it encodes as small strict UTF-8 JSON, else ``_OMIT``."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")
    except (TypeError, ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        return _OMIT
    return value if len(text) <= MAX_ECHO_CHARS else _OMIT


def _problem(error: Mapping[str, Any]) -> dict[str, Any]:
    problem: dict[str, Any] = {
        "type": _printable(str(error.get("type", "value_error"))),
        "loc": [p if isinstance(p, int) else _printable(str(p)) for p in error.get("loc", ())],
        "msg": _printable(str(error.get("msg", ""))),
    }
    if problem["type"] == "missing" and problem["loc"] == ["body"]:
        problem["msg"] = "a JSON object body is required"
    if (echoed := _echo(error.get("input"))) is not _OMIT:
        problem["input"] = echoed
    if isinstance(ctx := error.get("ctx"), Mapping):
        problem["ctx"] = {
            _printable(str(k)): v if (v := _echo(raw)) is not _OMIT else _printable(str(raw))[:200]
            for k, raw in ctx.items()
        }
    return problem


async def validation_error_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with each error's ``type``, ``loc`` and ``msg`` (``input`` when safe to echo)."""
    return JSONResponse(status_code=422, content={"detail": [_problem(e) for e in exc.errors()]})
