"""HTTP plumbing shared by every endpoint: request ids, the body-size limit, error responses, SSE."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from ray.exceptions import RayError
from starlette.exceptions import HTTPException

from contracts.errors import (
    CopyServeError,
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    to_error_body,
)

REQUEST_ID_HEADER = "x-request-id"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", None) or "unknown"


def internal_request(path: str, request_id: str, caller) -> Request:
    """A request made inside the service (a batch line), for the endpoint handlers: no headers, the given
    request id, and ``caller``, the key already checked when the batch was created (``AccessControl``)."""
    return Request({"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b"",
                    "state": {"request_id": request_id, "internal_caller": caller}})


class FastJSONResponse(JSONResponse):
    """A JSON body encoded by orjson (C): the encoding is on the path of every answer we build ourselves."""

    def render(self, content) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def error_response(exc: BaseException, request_id: str) -> JSONResponse:
    status, body, headers = to_error_body(exc, request_id)
    return FastJSONResponse(body, status_code=status, headers={REQUEST_ID_HEADER: request_id, **headers})


def validation_error(errors: list[dict]) -> InvalidRequestError:
    """pydantic's errors as the 400 every endpoint answers (batch lines get the same message)."""
    return InvalidRequestError(*_validation_message(RequestValidationError(errors)))


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    parts, param = [], None
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        if err.get("type") == "json_invalid":
            return f"request body is not valid JSON ({err.get('ctx', {}).get('error', 'parse error')})", None
        message = err["msg"].removeprefix("Value error, ")
        if err.get("type") == "model_attributes_type":
            parts.append("request body must be a JSON object")
        elif not loc:  # a check across fields of the body
            parts.append(message)
        else:
            param = param or ".".join(loc)
            parts.append(f"{'.'.join(loc)}: {message}")
    return "; ".join(parts), param


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as ``{"error": {...}}`` JSON carrying the request id."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return error_response(validation_error(exc.errors()), request_id_of(request))

    @app.exception_handler(HTTPException)
    async def _routing(request: Request, exc: HTTPException):
        # FastAPI's own answers (no such path, wrong method) in our error shape, with what to do instead.
        if exc.status_code == 404:
            error = NotFoundError(f"no endpoint at {request.url.path}; the API is under /v1 (see /openapi.json)")
        elif exc.status_code == 405:
            allowed = {k.lower(): v for k, v in (exc.headers or {}).items()}.get("allow", "see /openapi.json")
            error = MethodNotAllowedError(f"{request.method} is not allowed on {request.url.path}; allowed: {allowed}")
        else:
            error = InvalidRequestError(str(exc.detail))
        return error_response(error, request_id_of(request))

    @app.exception_handler(CopyServeError)
    async def _known(request: Request, exc: CopyServeError):
        return error_response(exc, request_id_of(request))

    @app.exception_handler(RayError)
    async def _ray(request: Request, exc: RayError):
        return error_response(exc, request_id_of(request))

    @app.exception_handler(Exception)
    async def _unknown(request: Request, exc: Exception):
        return error_response(exc, request_id_of(request))


def host_allowed(host_header: str, allowed: frozenset[str]) -> bool:
    """An IP address (a DNS-rebinding page can only name a host), localhost, or a name in ``allowed``."""
    host = host_header.strip().lower()
    if host.startswith("["):  # [v6]:port
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return host in ("localhost", *allowed)


@dataclass
class EdgeSettings:
    """What the middleware enforces, from the config. The ingress sets it in its replica's process
    (``configure_edge``); Serve serves a copy of the FastAPI app, so ``app.state`` is not the place."""

    max_body_bytes: int = 1_000_000
    allowed_hosts: frozenset[str] | None = None  # None: any Host (API keys are on)
    upload_bytes: int = 50_000_000  # POST /v1/files (batch input files) only


EDGE = EdgeSettings()


UPLOAD_PATH = "/v1/files"


def configure_edge(max_body_bytes: int, allowed_hosts: frozenset[str] | None, upload_bytes: int = 50_000_000) -> None:
    EDGE.max_body_bytes, EDGE.allowed_hosts, EDGE.upload_bytes = max_body_bytes, allowed_hosts, upload_bytes


class RequestContextMiddleware:
    """Pure ASGI (so streaming and disconnects pass untouched): assigns the request id, echoes it
    in the response headers, refuses bodies over ``max_body_bytes`` with 413, and, on an instance
    without API keys (``allowed_hosts`` set), Host names it does not know with 400 (``EdgeSettings``)."""

    def __init__(self, app, settings: EdgeSettings = EDGE):
        self.app, self.settings = app, settings

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        given = headers.get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")[:128]
        request_id = given or f"req-{uuid.uuid4().hex[:24]}"
        scope.setdefault("state", {})["request_id"] = request_id
        limit, allowed = self.settings.max_body_bytes, self.settings.allowed_hosts
        if scope.get("path") == UPLOAD_PATH and scope.get("method") == "POST":
            limit = self.settings.upload_bytes
        host = headers.get(b"host", b"").decode("latin-1")
        if allowed is not None and not host_allowed(host, allowed):
            refused = InvalidRequestError(f"Host {host!r} is not served: this instance has API keys off and answers "
                                          "only IP addresses, localhost and server.allowed_hosts", None)
            return await error_response(refused, request_id)(scope, receive, send)
        too_large = PayloadTooLargeError(f"request body is larger than the limit of {limit} bytes", None)
        length = headers.get(b"content-length")
        if length and length.isdigit() and int(length) > limit:
            return await error_response(too_large, request_id)(scope, receive, send)
        if length is None and scope.get("method") in ("POST", "PUT", "PATCH"):
            # No declared length (chunked upload): read the body here, up to the limit, then replay it.
            # Raising from inside FastAPI's body parsing would surface as its generic 400 instead.
            buffered, size, more = [], 0, True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                size += len(message.get("body", b""))
                if size > limit:
                    return await error_response(too_large, request_id)(scope, receive, send)
                buffered.append(message)
                more = message.get("more_body", False)
            receive = _replay(buffered, receive)

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message_headers = message.get("headers", [])
                if not any(k.lower() == REQUEST_ID_HEADER.encode() for k, _ in message_headers):
                    message["headers"] = [*message_headers, (REQUEST_ID_HEADER.encode(), request_id.encode())]
            await send(message)

        # Serve's proxy puts its request id in the request headers and echoes it on the response;
        # add ours only when we made one (no proxy in front, e.g. in-process tests).
        await self.app(scope, receive, send if given else send_with_id)


def _replay(messages: list[dict], receive):
    """An ASGI receive that returns already-read body messages, then the real receive (disconnects)."""
    pending = list(messages)

    async def replayed():
        return pending.pop(0) if pending else await receive()

    return replayed


def sse(data: dict | str) -> str:
    """One server-sent event."""
    payload = data if isinstance(data, str) else orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS).decode()
    return f"data: {payload}\n\n"


async def sse_stream(events: AsyncIterator[dict], request_id: str, done_marker: bool) -> AsyncIterator[str]:
    """Encode events as SSE; an error after the stream began becomes a final error event."""
    try:
        async for event in events:
            yield sse(event)
    except (CopyServeError, RayError) as exc:
        yield sse({"type": "error", **to_error_body(exc, request_id)[1]})
    if done_marker:
        yield sse("[DONE]")


async def sse_response(events: AsyncIterator[dict], request_id: str, done_marker: bool,
                       headers: dict | None = None) -> StreamingResponse:
    """Wait for the first event before answering, so a bad request is still a plain 4xx."""
    try:
        first = await events.__anext__()
    except BaseException:
        await events.aclose()
        raise

    async def all_events():
        yield first
        async for event in events:
            yield event

    return StreamingResponse(sse_stream(all_events(), request_id, done_marker), media_type="text/event-stream",
                             headers={**SSE_HEADERS, **(headers or {})})
