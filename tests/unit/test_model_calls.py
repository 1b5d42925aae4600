"""Losing a model replica: requests without tokens yet are retried, a broken stream ends with a
clear error, other errors pass through untouched."""

from __future__ import annotations

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError
from ray.serve.exceptions import BackPressureError

from contracts.errors import (
    EngineStoppedError,
    InvalidRequestError,
    OverloadedError,
    ServiceUnavailableError,
    to_error_body,
)
from deployments import model_calls
from deployments.generation import Completion, Delta, GenerationRequest, SamplingOptions
from tests.fakes import FakeMethod

GEN = GenerationRequest(request_id="r1", sampling=SamplingOptions(temperature=1.0, top_p=1.0, max_tokens=8),
                         prompt="hi")
DONE = Completion(model="m", texts=["ab"], finish_reasons=["stop"], prompt_tokens=1, completion_tokens=2)


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(model_calls, "RETRY_BACKOFF_S", 0.0)


def failing(*errors, then=DONE):
    """A reply that raises each error once, in order, then answers."""
    pending = list(errors)

    def reply(*_):
        if pending:
            raise pending.pop(0)
        return then

    return reply


class Handle:
    def __init__(self, generate=None, stream=None):
        self.generate = FakeMethod(generate)
        self.generate_stream = StreamMethod(stream or [])


class StreamMethod:
    """`handle.generate_stream.remote(...)`: each call plays the next script (items; an exception raises)."""

    def __init__(self, scripts):
        self.scripts, self.calls, self.cancelled = list(scripts), 0, 0

    def remote(self, _generation):
        self.calls += 1
        script, method = self.scripts.pop(0), self

        class Response:
            def __aiter__(self):
                return self.items()

            async def items(self):
                for item in script:
                    if isinstance(item, BaseException):
                        raise item
                    yield item

            def cancel(self):
                method.cancelled += 1

        return Response()


async def test_whole_answer_is_retried_when_the_replica_dies():
    handle = Handle(generate=failing(ActorDiedError(), ActorUnavailableError("gone", b"1" * 16)))
    assert await model_calls.generate(handle, GEN) is DONE
    assert len(handle.generate.calls) == 3


async def test_whole_answer_gives_up_after_the_last_attempt():
    handle = Handle(generate=failing(*[ActorDiedError()] * model_calls.ATTEMPTS))
    with pytest.raises(ActorDiedError):
        await model_calls.generate(handle, GEN)
    assert len(handle.generate.calls) == model_calls.ATTEMPTS


async def test_an_answer_from_a_replica_whose_engine_died_is_retried_elsewhere():
    """A dead engine fails fast: without the retry its replica would win most requests until replaced."""
    handle = Handle(generate=failing(EngineStoppedError("engine stopped")))
    assert await model_calls.generate(handle, GEN) is DONE
    assert len(handle.generate.calls) == 2
    stream = Handle(stream=[[EngineStoppedError("engine stopped")], [[Delta(0, "ab")], DONE]])
    assert [item async for item in model_calls.stream(stream, GEN)] == [[Delta(0, "ab")], DONE]


async def test_request_errors_are_not_retried():
    handle = Handle(generate=failing(InvalidRequestError("bad max_tokens")))
    with pytest.raises(InvalidRequestError):
        await model_calls.generate(handle, GEN)
    assert len(handle.generate.calls) == 1


async def test_stream_is_retried_before_its_first_token():
    deltas = [Delta(0, "ab")]
    handle = Handle(stream=[[ActorDiedError()], [deltas, DONE]])
    assert [item async for item in model_calls.stream(handle, GEN)] == [deltas, DONE]
    assert handle.generate_stream.calls == 2


async def test_stream_that_broke_after_tokens_ends_with_a_clear_error():
    handle = Handle(stream=[[[Delta(0, "a")], ActorDiedError()], [[Delta(0, "a")], DONE]])
    received = []
    with pytest.raises(model_calls.ReplicaLostError, match="stopped mid-stream") as info:
        async for item in model_calls.stream(handle, GEN):
            received.append(item)
    assert received == [[Delta(0, "a")]] and handle.generate_stream.calls == 1  # no replay: text would repeat
    assert info.value.status_code == 503


async def test_stream_with_no_live_replica_is_a_503():
    handle = Handle(stream=[[ActorDiedError()]] * model_calls.ATTEMPTS)
    with pytest.raises(ServiceUnavailableError, match="no model replica"):
        async for _ in model_calls.stream(handle, GEN):
            pass


async def test_closing_a_stream_early_cancels_the_call():
    handle = Handle(stream=[[[Delta(0, "a")], [Delta(0, "b")], DONE]])
    stream = model_calls.stream(handle, GEN)
    assert await stream.__anext__() == [Delta(0, "a")]
    await stream.aclose()
    assert handle.generate_stream.cancelled == 1


async def test_a_full_queue_is_our_json_503_with_the_deployments_retry_after():
    full = BackPressureError(num_queued_requests=2, max_queued_requests=2, retry_after_s=2.5)
    handle = Handle(generate=failing(full))
    with pytest.raises(OverloadedError) as info:
        await model_calls.generate(handle, GEN)
    assert len(handle.generate.calls) == 1  # not retried: the queue decides, not a dead replica
    status, body, headers = to_error_body(info.value, "req-1")
    assert status == 503 and headers == {"Retry-After": "3"}
    assert body["error"]["type"] == "service_unavailable"
    assert "at capacity: 2 requests already queued (max_queued_requests 2); retry in 3s" in \
        body["error"]["message"]


async def test_a_full_queue_refuses_a_stream_before_it_starts():
    handle = Handle(stream=[[BackPressureError(num_queued_requests=4, max_queued_requests=4)]])
    with pytest.raises(OverloadedError) as info:
        [item async for item in model_calls.stream(handle, GEN)]
    assert info.value.headers == {"Retry-After": "1"} and handle.generate_stream.calls == 1


async def test_calls_made_in_a_batch_context_carry_the_batch_priority():
    handle = Handle(generate=lambda _: DONE)
    await model_calls.generate(handle, GEN)
    with model_calls.priority(model_calls.BATCH_PRIORITY):
        await model_calls.generate(handle, GEN)
    await model_calls.generate(handle, GEN)  # the context is left: live priority again
    assert [call[0].priority for call in handle.generate.calls] == [0, model_calls.BATCH_PRIORITY, 0]
