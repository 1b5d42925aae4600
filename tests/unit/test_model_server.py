"""ModelServer with the fake engine: streaming, whole answers, n sequences, abort on cancel, stats."""

from __future__ import annotations

import asyncio
import gc

import pytest

from contracts.config import ModelConfig
from contracts.errors import EngineStoppedError
from deployments.generation import Completion, Delta, GenerationRequest, SamplingOptions
from deployments.model_server import ModelServer, load_engine_class
from tests.fakes import FakeEngine

# ModelServer.__del__ is async (Serve awaits it at replica shutdown); plain garbage collection here only
# creates the coroutine, which Python reports as never awaited.
pytestmark = pytest.mark.filterwarnings("ignore:coroutine 'ModelServer.__del__' was never awaited:RuntimeWarning")

# Every engine step is its own item here; coalescing is tested with its own interval below.
MODEL = ModelConfig(name="fake-model", family="llama", source="org/fake", stream_interval_ms=0)


async def make_server(model: ModelConfig = MODEL) -> ModelServer:
    server = ModelServer.__new__(ModelServer)
    server.stop_replica = lambda: None  # a dead fake engine must not end the test process
    await server.__init__(model, "tests.fakes:FakeEngine")
    return server


def request(request_id: str = "r1", n: int = 1, max_tokens: int = 4) -> GenerationRequest:
    return GenerationRequest(request_id=request_id,
                             sampling=SamplingOptions(n=n, temperature=0.7, top_p=1.0, max_tokens=max_tokens),
                             messages=({"role": "user", "content": "hi"},))


async def wait_until(predicate, timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


def test_load_engine_class():
    assert load_engine_class("tests.fakes:FakeEngine") is FakeEngine


async def test_init_starts_injected_engine():
    server = await make_server()
    assert isinstance(server.engine, FakeEngine) and server.engine.started
    assert server.engine.model is MODEL and server.model is MODEL


async def test_init_freezes_the_startup_heap():
    # As vLLM's API server does: what start-up built is left out of every later full collection, which
    # would otherwise walk ~700k objects while every stream of the replica waits.
    gc.unfreeze()
    try:
        await make_server()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


async def test_generate_returns_completion():
    server = await make_server()
    c = await server.generate(request(max_tokens=5))
    assert isinstance(c, Completion)
    assert c.model == "fake-model"
    assert c.texts == ["tok0 tok1 tok2 tok3 tok4"] == [FakeEngine.expected_text(5)]
    assert c.finish_reasons == ["length"]
    assert (c.prompt_tokens, c.completion_tokens) == (FakeEngine.prompt_tokens, 5)
    assert c.first_token_s is not None and 0 < c.first_token_s <= c.total_s
    assert c.tokens_per_s > 0
    assert server.engine.running == set() and server.engine.aborted == []


async def test_generate_stream_deltas_then_completion():
    server = await make_server()
    items = [item async for item in server.generate_stream(request(max_tokens=4))]
    *steps, final = items
    assert len(steps) == 4
    assert all(isinstance(step, list) and all(isinstance(d, Delta) for d in step) for step in steps)
    assert isinstance(final, Completion)
    assert final.texts == ["".join(d.text for step in steps for d in step)]
    assert [d.finish_reason for step in steps for d in step] == [None, None, None, "length"]
    assert final.finish_reasons == ["length"]


async def test_coalesced_stream_sends_the_first_token_at_once_and_loses_nothing():
    # Steps every 5 ms, an interval of 40 ms: the later tokens travel several to an item.
    server = await make_server(MODEL.model_copy(update={"stream_interval_ms": 40}))
    started = asyncio.get_running_loop().time()
    stream = server.generate_stream(request(max_tokens=40))
    first = await anext(stream)
    first_after = asyncio.get_running_loop().time() - started
    *steps, final = [first] + [item async for item in stream]
    assert first == [Delta(0, "tok0")] and first_after < 0.04  # not held for the interval
    assert len(steps) < 20  # 40 engine steps, coalesced
    assert final.texts == [FakeEngine.expected_text(40)] == ["".join(d.text for step in steps for d in step)]
    assert [d.finish_reason for step in steps for d in step][-1] == "length" and final.completion_tokens == 40


async def test_n_two_gives_two_texts():
    server = await make_server()
    c = await server.generate(request(n=2, max_tokens=3))
    assert c.texts == [FakeEngine.expected_text(3)] * 2
    assert c.finish_reasons == ["length", "length"]
    assert c.completion_tokens == 6


async def test_cancelled_consumer_aborts_engine_request():
    server = await make_server()
    engine = server.engine
    seen: list = []

    async def consume():
        async for item in server.generate_stream(request("cancel-me", max_tokens=1000)):
            seen.append(item)

    task = asyncio.create_task(consume())
    await wait_until(lambda: len(seen) >= 2)
    assert engine.running == {"cancel-me"}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.aborted == ["cancel-me"]
    assert engine.running == set() and engine.num_unfinished_requests() == 0
    assert not any(isinstance(item, Completion) for item in seen)


async def test_closing_stream_early_aborts_engine_request():
    server = await make_server()
    stream = server.generate_stream(request("close-me", max_tokens=1000))
    first = await anext(stream)
    assert first == [Delta(0, "tok0")]
    await stream.aclose()
    assert server.engine.aborted == ["close-me"] and server.engine.running == set()


async def test_finished_request_is_not_aborted():
    server = await make_server()
    await server.generate(request("done", max_tokens=2))
    assert server.engine.aborted == []


async def test_stats_reports_unfinished_requests():
    server = await make_server()
    stats = await server.stats()
    assert stats["unfinished_requests"] == 0
    assert (stats["model"], stats["family"], stats["healthy"]) == ("fake-model", "llama", True)

    task = asyncio.create_task(server.generate(request("slow", max_tokens=50)))
    await wait_until(lambda: server.engine.running)
    assert (await server.stats())["unfinished_requests"] == 1
    c = await task
    assert c.completion_tokens == 50
    assert (await server.stats())["unfinished_requests"] == 0


async def test_stats_and_health_of_dead_engine():
    server = await make_server()
    server.engine.healthy = False
    assert (await server.stats())["healthy"] is False
    with pytest.raises(RuntimeError, match="dead"):
        await server.check_health()


@pytest.mark.parametrize("found_by", ["request", "health check"])
async def test_a_dead_engine_stops_its_replica_at_once(found_by):
    """Found by a request (EngineStoppedError) or by the health check, not after Serve's 3 failed checks."""
    server = await make_server()
    stopped = []
    server.stop_replica = lambda: stopped.append(True)
    if found_by == "request":
        async def dead(_request):
            raise EngineStoppedError("the engine stopped")
            yield  # an async generator, like an engine's

        server.engine.generate = dead
        with pytest.raises(EngineStoppedError):
            await server.generate(request())
    else:
        server.engine.healthy = False
        with pytest.raises(RuntimeError):
            await server.check_health()
    await wait_until(lambda: stopped, timeout=1.0)


async def test_a_request_error_does_not_stop_the_replica():
    server = await make_server()
    stopped = []
    server.stop_replica = lambda: stopped.append(True)
    assert (await server.generate(request())).completion_tokens == 4
    await asyncio.sleep(0.1)
    assert not stopped


async def test_async_destructor_shuts_engine_down():
    server = await make_server()
    engine = server.engine
    await server.__del__()
    assert engine.shut_down


async def test_replica_serves_the_merged_weights_of_its_environment(monkeypatch):
    from deployments.releases.adapters import AdapterRef
    from deployments.releases.merged_weights import WEIGHTS_ENV, weights_env

    monkeypatch.setenv(WEIGHTS_ENV, weights_env(AdapterRef("tutor", 2, "/w/tutor/merged"))[WEIGHTS_ENV])
    server = await make_server()
    assert server.engine.model.source == "/w/tutor/merged" and server.engine.model.tokenizer == "org/fake"
    completion = await server.generate(request())
    assert completion.weights == "tutor@v2"
    assert (await server.stats())["weights"] == "tutor@v2"
    monkeypatch.delenv(WEIGHTS_ENV)
    assert (await (await make_server()).generate(request())).weights is None
