"""Shadow copies through the real /v1/copy handler on fakes: after the answer (never changing it), the shadow
version writes the same request at batch priority, post-processed the same way, and its answer is recorded for
its version with a pair against the version that answered; the replica's bound skips and counts."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from types import SimpleNamespace

import pytest

from contracts import metrics
from contracts.errors import OverloadedError
from deployments.generation import Completion
from deployments.model_calls import BATCH_PRIORITY
from deployments.releases.adapters import Adapter, AdapterRef
from deployments.state.adapter_eval import AdapterEvaluation
from deployments.state.routes import Shadow
from serve_app.shadow import ShadowRunner
from tests.fakes import MemoryStore
from tests.unit.test_adapter_evaluation import CopyEndpoint, body, http_request, sse_finish

STABLE = AdapterRef("mugs", 1, "/adapters/mugs-1", 6, "aa" * 32)
CANARY = Adapter("mugs", "qwen-small", "/adapters/mugs-2", 2, 4, 0.0, {}, lora_id=7, digest="ab" * 32)
SERVED, SHADOWED = "test:adapter:mugs:eval:v1", "test:adapter:mugs:eval:v2"


def writes(request) -> Completion:
    """The served version writes clean copy; the canary a word compliance flags."""
    text = "The best mug." if request.adapter and request.adapter.version == 2 else "Warm mug."
    return Completion(model="qwen-small", texts=[text], finish_reasons=["stop"], prompt_tokens=5,
                      completion_tokens=3, first_token_s=0.04, total_s=0.2)


def flagging(draft):
    draft.edits = [{"rule": "compliance", "flagged": True}] if "best" in draft.text else []
    return draft


class Registry:
    def __init__(self, adapter: Adapter = CANARY):
        self.adapter = adapter

    async def resolve(self, spec: str, field: str = "adapter") -> Adapter:
        return self.adapter


class Counted:
    def __init__(self):
        self.seen: list[dict] = []

    def inc(self, value=1, tags=None):
        self.seen.append(tags)


class Draws:
    """random.Random's draw, given per test."""

    def __init__(self, *values: float):
        self.values = list(values)

    def random(self) -> float:
        return self.values.pop(0)


class Shadowed(CopyEndpoint):
    """The copy handler on a route that shadows ``share`` of its answers with mugs@canary; served by mugs@v1."""

    def __init__(self, share: float = 1.0, reply=writes, max_in_flight: int = 4, draws=None, registry=None,
                 **over):
        super().__init__(reply=reply, **over)
        self.pipeline.polish = SimpleNamespace(process=SimpleNamespace(remote=_resolved(flagging)))
        self.evaluation = AdapterEvaluation(self.store)
        self.shadows = ShadowRunner(self.pipeline, registry or Registry(), self.evaluation, max_in_flight,
                                    draws or Draws(*[0.0] * 10))
        plan = self.pipeline.plan

        async def shadowed(request):
            found = await plan(request)
            return replace(found, route=replace(found.route, shadow=Shadow("mugs@canary", share)))

        self.pipeline.plan = shadowed

    async def _adapter(self, spec: str, model: str) -> AdapterRef:
        return STABLE

    async def drain(self) -> None:
        await self.shadows.drain()
        await self.evaluation.drain()


def _resolved(fn):
    def remote(draft):
        async def answer():
            return fn(await draft if hasattr(draft, "__await__") else draft)
        return answer()
    return remote


@pytest.fixture
def counted(monkeypatch) -> Counted:
    recorder = Counted()
    monkeypatch.setattr(metrics, "SHADOWS", recorder)
    return recorder


@pytest.mark.parametrize("stream", [False, True])
async def test_the_shadow_runs_after_the_answer_at_batch_priority_and_is_paired(stream, counted):
    api = Shadowed()
    response = await api.copy(body(stream=stream), http_request())
    if stream:
        await sse_finish(response)
    else:
        assert json.loads(response.body)["text"] == "Warm mug."  # the served answer, as without a shadow
        assert len(api.pipeline.models["qwen-small"].generate.calls) == 1  # the shadow had not begun
    await api.drain()
    calls = [c[0] for c in api.pipeline.models["qwen-small"].generate.calls]  # a stream is served by its own handle
    *served, shadow_call = calls
    assert [(c.priority, c.adapter) for c in served] == ([] if stream else [(0, STABLE)])
    assert shadow_call.priority == BATCH_PRIORITY and shadow_call.adapter == CANARY.ref
    assert shadow_call.request_id.startswith("rid-shadow") and "mug" in shadow_call.messages[-1]["content"]
    hashes = await api.store.hashes()
    assert float(hashes[SERVED]["samples"]) == 1 and "shadow_samples" not in hashes[SERVED]
    shadow = hashes[SHADOWED]
    assert (float(shadow["samples"]), float(shadow["shadow_samples"]), float(shadow["vs:mugs@v1:loss"])) == (1, 1, 1)
    assert float(shadow["flagged:sum"]) == 1 and "total_ms:n" not in shadow  # its latency is the batch queue's
    assert counted.seen == [{"adapter": "mugs", "outcome": "loss"}]


async def test_the_share_is_drawn_per_answer_and_cache_hits_are_never_shadowed(counted):
    api = Shadowed(share=0.5, draws=Draws(0.7, 0.2, 0.9))
    await api.copy(body(), http_request())  # 0.7: outside the share
    await api.copy(body(), http_request())  # 0.2: inside
    await api.drain()
    assert len(api.pipeline.models["qwen-small"].generate.calls) == 3 and len(counted.seen) == 1
    cached = json.loads((await api.copy(body(), http_request())).body)
    hit = Shadowed(hit=cached, store=MemoryStore())
    await hit.copy(body(), http_request())
    await hit.drain()
    assert hit.pipeline.models["qwen-small"].generate.calls == [] and (await hit.store.hashes()) == {}


async def test_past_the_bound_a_shadow_is_skipped_and_counted(counted):
    release = asyncio.Event()

    async def slow_canary(request):
        if request.adapter.version == 2:
            await release.wait()
        return writes(request)

    api = Shadowed(reply=slow_canary, max_in_flight=1)
    for _ in range(3):
        await api.copy(body(), http_request())
    await asyncio.sleep(0.01)
    assert counted.seen == [{"adapter": "mugs", "outcome": "busy"}] * 2
    release.set()
    await api.drain()
    assert counted.seen[-1] == {"adapter": "mugs", "outcome": "loss"}
    assert float((await api.store.hashes())[SHADOWED]["shadow_samples"]) == 1


def canary_raises(error: Exception):
    """A model reply that writes stable's copy and raises ``error`` for the canary (version 2)."""
    def reply(request):
        if request.adapter.version == 2:
            raise error
        return writes(request)
    return reply


async def test_a_failed_shadow_is_an_error_and_a_loss_and_the_answer_stands(counted):
    api = Shadowed(reply=canary_raises(RuntimeError("adapter failed to load")))
    response = await api.copy(body(), http_request())
    await api.drain()
    assert response.status_code == 200
    shadow = (await api.store.hashes())[SHADOWED]
    assert (float(shadow["error:sum"]), float(shadow["vs:mugs@v1:loss"])) == (1, 1) and "samples" not in shadow
    assert counted.seen == [{"adapter": "mugs", "outcome": "error"}]


async def test_overload_and_the_same_version_are_skipped_without_evidence(counted):
    api = Shadowed(reply=canary_raises(OverloadedError("queue full")))
    await api.copy(body(), http_request())
    await api.drain()
    assert SHADOWED not in (await api.store.hashes())
    same = Shadowed(registry=Registry(replace(CANARY, version=1, lora_id=6, digest="aa" * 32)))
    await same.copy(body(), http_request())
    await same.drain()
    merged = Shadowed(registry=Registry(replace(CANARY, kind="merged")))
    await merged.copy(body(), http_request())
    await merged.drain()
    assert [t["outcome"] for t in counted.seen] == ["overloaded", "same", "unservable"]
    assert len(same.pipeline.models["qwen-small"].generate.calls) == 1
