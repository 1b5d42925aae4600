"""One error hierarchy for the whole service, and the one place that turns exceptions into HTTP.

Deployments raise these; they cross Ray handles (picklable by their args) and the ingress maps
them to OpenAI-style JSON ``{"error": {"message", "type", "param", "code"}}`` with the request id.
"""

from __future__ import annotations

import logging
import math

from ray.exceptions import RayError, RayTaskError
from ray.serve.exceptions import BackPressureError

logger = logging.getLogger("copyserve")


class CopyServeError(Exception):
    """Base class: an error a client can act on. ``status_code`` and ``type`` reach the client."""

    status_code = 500
    type = "internal_error"

    headers: dict[str, str] = {}

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param

    def __reduce__(self):
        return (type(self), (self.message, self.param))


class InvalidRequestError(CopyServeError):
    status_code = 400
    type = "invalid_request_error"


class AuthenticationError(CopyServeError):
    status_code = 401
    type = "authentication_error"


class PermissionDeniedError(CopyServeError):
    status_code = 403
    type = "permission_error"


class NotFoundError(CopyServeError):
    status_code = 404
    type = "not_found_error"


class MethodNotAllowedError(CopyServeError):
    status_code = 405
    type = "invalid_request_error"


class ConflictError(CopyServeError):
    status_code = 409
    type = "conflict_error"


class PayloadTooLargeError(CopyServeError):
    status_code = 413
    type = "invalid_request_error"


class RateLimitError(CopyServeError):
    status_code = 429
    type = "rate_limit_error"

    def __init__(self, message: str, retry_after_s: int = 1):
        super().__init__(message, None)
        self.retry_after_s = retry_after_s
        self.headers = {"Retry-After": str(retry_after_s)}

    def __reduce__(self):
        return (type(self), (self.message, self.retry_after_s))


class ServiceUnavailableError(CopyServeError):
    status_code = 503
    type = "service_unavailable"
    headers = {"Retry-After": "1"}


class EngineStoppedError(ServiceUnavailableError):
    """A model replica's engine died. The replica stops itself, so the request can go to a live one."""


class OverloadedError(ServiceUnavailableError):
    """A deployment's queue is full (its ``max_queued_requests``): come back after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: int = 1):
        super().__init__(message, None)
        self.retry_after_s = retry_after_s
        self.headers = {"Retry-After": str(retry_after_s)}

    def __reduce__(self):
        return (type(self), (self.message, self.retry_after_s))

    @classmethod
    def from_backpressure(cls, exc: BackPressureError) -> OverloadedError:
        retry_after_s = max(1, math.ceil(exc.retry_after_s or 1))  # Retry-After takes whole seconds
        queued, limit = exc.args[:2]  # BackPressureError keeps its constructor arguments in args
        return cls(f"the service is at capacity: {queued} requests already queued (max_queued_requests {limit}); "
                   f"retry in {retry_after_s}s", retry_after_s)


def unwrap(exc: BaseException) -> BaseException:
    """Ray wraps a deployment's exception in RayTaskError; the client needs the original."""
    while isinstance(exc, RayTaskError) and isinstance(getattr(exc, "cause", None), BaseException):
        exc = exc.cause
    return exc


def to_error_body(exc: BaseException, request_id: str) -> tuple[int, dict, dict[str, str]]:
    """Map any exception to (status, body, headers). Unknown errors are 500 with internals hidden."""
    exc = unwrap(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, CopyServeError):
        status, etype, message, param, headers = exc.status_code, exc.type, exc.message, exc.param, exc.headers
    elif isinstance(exc, BackPressureError):
        # Serve's max_queued_requests reached: tell the client to come back, do not hang.
        refusal = OverloadedError.from_backpressure(exc)
        status, etype, message, param, headers = 503, refusal.type, refusal.message, None, refusal.headers
    elif isinstance(exc, RayError):
        # Replica died, actor unavailable, back-pressure: the service, not the request, is at fault.
        logger.warning("request %s failed in Ray: %r", request_id, exc)
        status, etype, param = 503, "service_unavailable", None
        message = "the model server is unavailable right now; retry shortly"
    else:
        logger.exception("request %s failed", request_id, exc_info=exc)
        status, etype, message, param = 500, "internal_error", "internal server error", None
    body = {"error": {"message": f"{message} (request id: {request_id})", "type": etype, "param": param,
                      "code": status}}
    return status, body, dict(headers)


class _ClientErrorFilter(logging.Filter):
    """Serve logs every exception a replica method raises as an ERROR with a traceback. A client's
    mistake (4xx) is not the service's error: keep it as one INFO line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, CopyServeError) and exc.status_code < 500:
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = f"request refused ({exc.status_code}): {exc.message}", None
            record.exc_info, record.exc_text = None, None
        return True


def quiet_client_errors(logger_name: str = "ray.serve") -> None:
    """Install the filter once per process (called by replicas that raise CopyServeErrors)."""
    target = logging.getLogger(logger_name)
    if not any(isinstance(f, _ClientErrorFilter) for f in target.filters):
        target.addFilter(_ClientErrorFilter())
