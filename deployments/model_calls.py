"""Calls to model deployments that survive losing a replica.

A full queue (``max_queued_requests``) becomes our JSON 503 here, at the call: once a handle's
BackPressureError escapes a route, Serve's own handler answers it in plain text.

When a model replica dies, Serve starts a new one and stops routing to the dead one. A request that
has not produced a token yet is sent again (it lands on a live replica); a stream that already sent
tokens cannot be replayed without repeating text, so it ends with a clear error event instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace

from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from contracts import metrics
from contracts.errors import EngineStoppedError, OverloadedError, ServiceUnavailableError, unwrap
from deployments.generation import Completion, GenerationRequest

logger = logging.getLogger("copyserve.model_calls")
ATTEMPTS = 3          # first try + retries on a lost replica
BATCH_PRIORITY = 1    # engines with priority scheduling run live requests (0) first
# The priority of every model call made in this context (a batch line sets it around its endpoint's handler,
# so the calls that handler makes, a Polish rewrite included, wait behind live traffic).
_priority: ContextVar[int] = ContextVar("copyserve_priority", default=0)


@contextmanager
def priority(value: int) -> Iterator[None]:
    token = _priority.set(value)
    try:
        yield
    finally:
        _priority.reset(token)


def _prioritised(generation: GenerationRequest) -> GenerationRequest:
    wanted = _priority.get()
    return generation if generation.priority == wanted else replace(generation, priority=wanted)
RETRY_BACKOFF_S = 0.2  # Serve needs a moment to drop the dead replica from its routing table


class ReplicaLostError(ServiceUnavailableError):
    """The replica serving a stream died after the stream began."""


def replica_lost(exc: BaseException) -> bool:
    # ActorDiedError, ActorUnavailableError; or the replica's engine died (the replica then stops itself).
    return isinstance(unwrap(exc), RayActorError | EngineStoppedError)


def _deployment(handle: DeploymentHandle) -> dict[str, str]:
    return {"deployment": getattr(handle, "deployment_name", "unknown")}


def _raise_if_refused(handle: DeploymentHandle, exc: BaseException) -> None:
    cause = unwrap(exc)
    if isinstance(cause, BackPressureError):
        metrics.QUEUE_FULL.inc(tags=_deployment(handle))
        raise OverloadedError.from_backpressure(cause) from None


async def generate(handle: DeploymentHandle, generation: GenerationRequest) -> Completion:
    """A whole answer; retried on another replica when the one working on it dies."""
    generation = _prioritised(generation)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await handle.generate.remote(generation)
        except Exception as exc:
            _raise_if_refused(handle, exc)
            if not replica_lost(exc) or attempt == ATTEMPTS:
                raise
            metrics.MODEL_CALL_RETRIES.inc(tags=_deployment(handle))
            logger.warning("request %s: model replica lost (%s), retrying on another replica",
                           generation.request_id, type(unwrap(exc)).__name__)
            await asyncio.sleep(RETRY_BACKOFF_S * attempt)
    raise AssertionError("unreachable")


async def stream(handle: DeploymentHandle, generation: GenerationRequest) -> AsyncIterator:
    """A model server's stream. Retried while nothing was received; closing it early cancels the call,
    which aborts the engine request."""
    generation = _prioritised(generation)
    received = False
    for attempt in range(1, ATTEMPTS + 1):
        response = handle.generate_stream.remote(generation)
        done = False
        try:
            async for item in response:
                received = True
                yield item
            done = True
            return
        except Exception as exc:
            _raise_if_refused(handle, exc)
            if not replica_lost(exc):
                raise
            if received:
                raise ReplicaLostError("the model replica writing this answer stopped mid-stream; the text so far "
                                       "is incomplete: send the request again") from None
            if attempt == ATTEMPTS:
                raise ServiceUnavailableError("no model replica could take the request; retry shortly") from None
            metrics.MODEL_CALL_RETRIES.inc(tags=_deployment(handle))
            logger.warning("request %s: model replica lost before the first token, retrying",
                           generation.request_id)
            await asyncio.sleep(RETRY_BACKOFF_S * attempt)
        finally:
            if not done:
                response.cancel()
