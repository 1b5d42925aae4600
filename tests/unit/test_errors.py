"""Error hierarchy: HTTP mapping, pickling across Ray handles, unwrapping Ray's task errors."""

from __future__ import annotations

import pickle

import pytest
from ray.exceptions import RayActorError, RayTaskError

from contracts.errors import (
    AuthenticationError,
    CopyServeError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    to_error_body,
    unwrap,
)


def ray_task_error(cause: BaseException) -> RayTaskError:
    return RayTaskError("generate", "Traceback (most recent call last): ...", cause, proctitle="t", pid=1, ip="1.2.3.4")


@pytest.mark.parametrize(("exc", "status", "etype"), [
    (InvalidRequestError("bad n", "n"), 400, "invalid_request_error"),
    (AuthenticationError("no key"), 401, "authentication_error"),
    (NotFoundError("no such model", "model"), 404, "not_found_error"),
    (PayloadTooLargeError("too big"), 413, "invalid_request_error"),
    (ServiceUnavailableError("busy"), 503, "service_unavailable"),
])
def test_known_errors_map_to_status(exc, status, etype):
    got_status, body, _ = to_error_body(exc, "req-1")
    assert got_status == status
    assert body == {"error": {"message": f"{exc.message} (request id: req-1)", "type": etype, "param": exc.param,
                              "code": status}}


def test_unknown_exception_hides_internals():
    status, body, _ = to_error_body(KeyError("secret_table_name"), "req-42")
    assert status == 500
    err = body["error"]
    assert err["message"] == "internal server error (request id: req-42)"
    assert "secret_table_name" not in str(body)
    assert (err["type"], err["param"], err["code"]) == ("internal_error", None, 500)


def test_ray_error_is_503():
    status, body, _ = to_error_body(RayActorError(), "req-7")
    assert status == 503 and body["error"]["type"] == "service_unavailable"
    assert "req-7" in body["error"]["message"]


@pytest.mark.parametrize("exc", [InvalidRequestError("bad temperature", "temperature"), NotFoundError("gone"),
                                 PayloadTooLargeError("big", None)])
def test_pickle_round_trip(exc):
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc)
    assert (back.message, back.param, str(back)) == (exc.message, exc.param, str(exc))
    assert back.status_code == exc.status_code


def test_unwrap_ray_task_error():
    original = InvalidRequestError("n must be <= 8", "n")
    wrapped = ray_task_error(original)
    assert unwrap(wrapped) is original
    assert unwrap(ray_task_error(wrapped)) is original
    status, body, _ = to_error_body(wrapped, "req-9")
    assert status == 400 and body["error"]["param"] == "n"
    assert body["error"]["message"] == "n must be <= 8 (request id: req-9)"


def test_unwrap_dual_exception_instance():
    """What a Ray caller really catches: a class deriving from both RayTaskError and the cause's type."""
    original = NotFoundError("no such model", "model")
    dual = ray_task_error(original).as_instanceof_cause()
    assert isinstance(dual, RayTaskError) and isinstance(dual, CopyServeError)
    assert unwrap(dual) is original
    assert to_error_body(dual, "r")[0] == 404


def test_unwrap_leaves_other_exceptions():
    exc = ValueError("x")
    assert unwrap(exc) is exc
    assert to_error_body(ray_task_error(exc), "r")[0] == 500
