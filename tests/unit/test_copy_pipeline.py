"""CopyPipeline with fake deployment handles: the quality gate, retries with new seeds, postprocess off,
the response it answers, and the streamed events."""

from __future__ import annotations

import time

from contracts.config import PolishConfig, QualityConfig
from deployments.generation import Completion, Delta, GenerationRequest
from deployments.polish import Polish
from deployments.router import CopyPlan, RoutePlan
from deployments.text.draft import Draft
from serve_app.channel_copy import FieldProgress
from serve_app.copy_pipeline import RETRY_MIN_TEMPERATURE, Attempt, CopyPipeline
from serve_app.protocol import CopyRequest, CopyResponse
from tests.fakes import FakeMethod

MESSAGES = [{"role": "user", "content": "x"}]




class FakeModel:
    """Answers attempt k with texts[k-1] (the last one repeats); each text is one of `n` sequences."""

    def __init__(self, texts: list[str], finish_reason: str = "stop"):
        self.texts, self.finish_reason = texts, finish_reason
        self.generate = FakeMethod(self._complete)

    def _complete(self, request: GenerationRequest) -> Completion:
        text = self.texts[min(len(self.generate.calls), len(self.texts)) - 1]
        n = request.sampling.n
        return Completion(model="m", texts=[f"{text} {i}" if n > 1 else text for i in range(n)],
                          finish_reasons=[self.finish_reason] * n, prompt_tokens=5, completion_tokens=7 * n,
                          first_token_s=0.01, total_s=0.05)

    @property
    def requests(self) -> list[GenerationRequest]:
        return [args[0] for args in self.generate.calls]


class FakeSentiment:
    """Scores a draft by its text: `scores` maps a substring to a score (first match wins), else `default`."""

    def __init__(self, scores: dict[str, float] | None = None, default: float = 0.5):
        self.scores, self.default = scores or {}, default
        self.process = FakeMethod(self._process)

    def _process(self, draft):
        score = next((s for key, s in self.scores.items() if key in draft.text), self.default)
        draft.sentiment = {"label": "neutral", "score": score, "language": draft.language}
        draft.timings["sentiment_ms"] = 1.5
        return draft


class FakeRouter:
    def __init__(self, plan: CopyPlan):
        self.plan_copy = FakeMethod(lambda *args: plan)


class FakePolish:
    """The real rules-mode Polish behind a handle-like `.process.remote`."""

    def __init__(self):
        self.polish = Polish(PolishConfig())
        self.process = FakeMethod(self.polish.process)


def make_plan(floor: float | None = None, retries: int = 0, language: str = "en") -> CopyPlan:
    return CopyPlan(RoutePlan(model="m", industry="ecommerce"), language, MESSAGES, 64,
                    QualityConfig(sentiment_floor=floor, max_retries=retries))


def make_pipeline(model: FakeModel, sentiment: FakeSentiment, plan: CopyPlan | None = None):
    polish = FakePolish()
    pipeline = CopyPipeline(FakeRouter(plan or make_plan()), {"m": model}, {}, polish, sentiment, None)
    return pipeline, polish


def copy_request(**fields) -> CopyRequest:
    return CopyRequest(**{"industry": "ecommerce", "product": "running shoes", **fields})


async def run(pipeline: CopyPipeline, body: CopyRequest, plan: CopyPlan, request_id: str = "rid") -> dict:
    return await pipeline.run(body, plan, CopyPipeline.sampling(body, plan), request_id, time.monotonic())


# --- quality gate ------------------------------------------------------------------------------

async def test_plan_comes_from_the_router():
    plan = make_plan(floor=0.9, retries=2)
    pipeline, _ = make_pipeline(FakeModel(["a"]), FakeSentiment(), plan)
    body = copy_request(keywords=["light"], tone="fun", length="short", language="en")
    assert await pipeline.plan(body) is plan
    assert pipeline.router.plan_copy.calls == [("ecommerce", "running shoes", ["light"], "fun", "short", "en")]


async def test_below_floor_retries_until_budget_spent():
    plan = make_plan(floor=0.9, retries=2)
    model, sentiment = FakeModel(["First try.", "Second try.", "Third try."]), FakeSentiment(default=0.5)
    pipeline, polish = make_pipeline(model, sentiment, plan)
    out = await run(pipeline, copy_request(), plan)
    assert len(model.generate.calls) == 3
    assert out["attempts"] == 3
    assert out["attempt_scores"] == [0.5, 0.5, 0.5]
    assert len(polish.process.calls) == 3 and len(sentiment.process.calls) == 3
    assert out["text"] == "First try."  # all tie: the first best attempt is answered
    assert out["usage"] == {"prompt_tokens": 15, "completion_tokens": 21, "total_tokens": 36}
    CopyResponse.model_validate(out)


async def test_floor_met_on_second_attempt_stops_there():
    plan = make_plan(floor=0.6, retries=2)
    model = FakeModel(["Meh shoes.", "Great shoes.", "Best shoes."])
    pipeline, _ = make_pipeline(model, FakeSentiment({"Meh": 0.3, "Great": 0.7, "Best": 0.95}), plan)
    out = await run(pipeline, copy_request(), plan)
    assert len(model.generate.calls) == 2
    assert out["attempts"] == 2 and out["attempt_scores"] == [0.3, 0.7]
    assert out["text"] == "Great shoes." and out["sentiment"]["score"] == 0.7


async def test_floor_exactly_met_is_accepted():
    plan = make_plan(floor=0.7, retries=2)
    model = FakeModel(["Great shoes."])
    pipeline, _ = make_pipeline(model, FakeSentiment(default=0.7), plan)
    out = await run(pipeline, copy_request(), plan)
    assert len(model.generate.calls) == 1 and out["attempts"] == 1


async def test_best_attempt_is_answered_when_none_meets_the_floor():
    plan = make_plan(floor=0.9, retries=2)
    model = FakeModel(["Okay shoes.", "Good shoes.", "Fine shoes."])
    pipeline, _ = make_pipeline(model, FakeSentiment({"Okay": 0.3, "Good": 0.8, "Fine": 0.5}), plan)
    out = await run(pipeline, copy_request(), plan)
    assert out["attempts"] == 3 and out["attempt_scores"] == [0.3, 0.8, 0.5]
    assert out["text"] == out["texts"][0] == "Good shoes."
    assert out["sentiment"]["score"] == 0.8
    assert out["usage"]["total_tokens"] == 3 * (5 + 7)  # usage counts every attempt


async def test_no_floor_means_one_attempt_whatever_the_score():
    plan = make_plan(floor=None, retries=3)
    model = FakeModel(["Bad shoes."])
    pipeline, _ = make_pipeline(model, FakeSentiment(default=0.01), plan)
    out = await run(pipeline, copy_request(), plan)
    assert len(model.generate.calls) == 1 and out["attempts"] == 1 and out["attempt_scores"] == [0.01]


async def test_n_texts_best_draft_first_and_attempt_score_is_the_best():
    plan = make_plan(floor=0.6, retries=1)
    model = FakeModel(["Shoes"])  # texts "Shoes 0", "Shoes 1"
    pipeline, _ = make_pipeline(model, FakeSentiment({"Shoes 1": 0.8, "Shoes 0": 0.2}), plan)
    out = await run(pipeline, copy_request(n=2), plan)
    assert len(model.generate.calls) == 1
    assert out["text"] == "Shoes 1" and out["texts"] == ["Shoes 0", "Shoes 1"]
    assert out["attempt_scores"] == [0.8]


# --- postprocess off ---------------------------------------------------------------------------

async def test_postprocess_off_makes_one_call_and_returns_raw_text():
    plan = make_plan(floor=0.9, retries=2)
    model = FakeModel(["great shoes , light and warm. And"], finish_reason="length")
    sentiment = FakeSentiment(default=0.1)
    pipeline, polish = make_pipeline(model, sentiment, plan)
    out = await run(pipeline, copy_request(postprocess=False), plan)
    assert len(model.generate.calls) == 1
    assert out["attempts"] == 1
    assert out["polish"] is None and out["sentiment"] is None and out["attempt_scores"] == []
    assert out["text"] == out["raw_text"] == "great shoes , light and warm. And"
    assert polish.process.calls == [] and sentiment.process.calls == []
    assert out["finish_reasons"] == ["length"]
    assert out["timings"]["polish_ms"] is None and out["timings"]["sentiment_ms"] is None


async def test_postprocess_on_returns_polished_text_with_edits():
    plan = make_plan()
    raw = "  great shoes , light and warm. And"
    pipeline, _ = make_pipeline(FakeModel([raw], finish_reason="length"), FakeSentiment(default=0.8), plan)
    out = await run(pipeline, copy_request(), plan)
    assert out["text"] == "Great shoes, light and warm."
    assert out["raw_text"] == raw.strip()
    assert [e["rule"] for e in out["polish"]["edits"]] == ["trim_incomplete", "punctuation", "capitalize"]
    assert out["sentiment"] == {"label": "neutral", "score": 0.8, "language": "en"}
    # Each deployment's own time, and the wait for both at the ingress.
    assert out["timings"]["polish_ms"] >= 0 and out["timings"]["sentiment_ms"] == 1.5
    assert out["timings"]["postprocess_ms"] >= 0
    assert (out["id"], out["industry"], out["model"], out["language"]) == ("rid", "ecommerce", "m", "en")


# --- retries: new seeds, warm temperature -------------------------------------------------------

async def test_retries_use_new_seeds_and_a_warm_temperature_when_request_is_greedy():
    plan = make_plan(floor=0.9, retries=2)
    model = FakeModel(["Same text."])
    pipeline, _ = make_pipeline(model, FakeSentiment(default=0.5), plan)
    await run(pipeline, copy_request(temperature=0, top_p=0.9, n=1, max_tokens=33), plan)
    first, *retries = model.requests
    assert (first.sampling.temperature, first.sampling.seed) == (0, None)
    assert [r.sampling.temperature for r in retries] == [RETRY_MIN_TEMPERATURE] * 2
    assert all(r.sampling.temperature >= 0.7 for r in retries)
    seeds = [r.sampling.seed for r in model.requests]
    assert all(isinstance(s, int) for s in seeds[1:]) and len(set(seeds)) == 3
    ids = [r.request_id for r in model.requests]
    assert [i.rsplit("-", 1)[0] for i in ids] == ["rid-1", "rid-2", "rid-3"]  # + a random suffix each
    assert all(r.messages == tuple(MESSAGES) and r.sampling.top_p == 0.9 and r.sampling.max_tokens == 33
               for r in model.requests)


async def test_retries_offset_a_given_seed_and_keep_a_higher_temperature():
    plan = make_plan(floor=0.9, retries=2)
    model = FakeModel(["Same text."])
    pipeline, _ = make_pipeline(model, FakeSentiment(default=0.5), plan)
    await run(pipeline, copy_request(temperature=1.2, seed=42), plan)
    assert [r.sampling.seed for r in model.requests] == [42, 44, 45]
    assert [r.sampling.temperature for r in model.requests] == [1.2, 1.2, 1.2]
    assert [r.sampling.max_tokens for r in model.requests] == [64] * 3  # the plan's budget


def test_attempt_without_sentiment_scores_zero():
    completion = Completion(model="m", texts=["a"], finish_reasons=["stop"], prompt_tokens=1, completion_tokens=1)
    attempt = Attempt(completion, [Draft("a", "en")])
    assert attempt.score == 0.0 and attempt.best == 0


# --- streaming ---------------------------------------------------------------------------------

class FakeStream:
    """What `handle.generate_stream.remote(...)` returns: an async iterator with cancel()."""

    def __init__(self, text: str):
        self.text, self.cancelled = text, False

    async def _items(self):
        words = self.text.split(" ")
        for i, word in enumerate(words):
            yield [Delta(index=0, text=word if i == 0 else f" {word}",
                         finish_reason="stop" if i == len(words) - 1 else None)]
        yield Completion(model="m", texts=[self.text], finish_reasons=["stop"], prompt_tokens=5,
                         completion_tokens=len(words), first_token_s=0.01, total_s=0.02)

    def __aiter__(self):
        return self._items()

    def cancel(self):
        self.cancelled = True


class FakeStreamingHandle:
    """`handle.generate_stream.remote(request)` returns the stream itself (no await), as Serve's does."""

    def __init__(self, texts: list[str]):
        self.texts, self.requests, self.streams = iter(texts), [], []
        self.generate_stream = self

    def remote(self, request: GenerationRequest) -> FakeStream:
        self.requests.append(request)
        self.streams.append(FakeStream(next(self.texts)))
        return self.streams[-1]


async def test_stream_sends_deltas_retry_events_and_final():
    plan = make_plan(floor=0.6, retries=2)
    streaming = FakeStreamingHandle(["Meh shoes.", "Great shoes."])
    model = FakeModel(["unused"])
    pipeline, _ = make_pipeline(model, FakeSentiment({"Meh": 0.3, "Great": 0.7}), plan)
    pipeline.streaming = {"m": streaming}
    body = copy_request(temperature=0)
    events = [e async for e in pipeline.stream(body, plan, CopyPipeline.sampling(body, plan), "rid", time.monotonic())]
    assert [e["type"] for e in events] == ["delta", "delta", "retry", "delta", "delta", "final"]
    assert "".join(e["text"] for e in events[:2]) == "Meh shoes."
    assert events[2] == {"type": "retry", "attempt": 1, "sentiment_score": 0.3, "sentiment_floor": 0.6,
                         "reason": "below the sentiment floor"}
    assert events[3]["attempt"] == 2
    final = events[-1]
    assert final["attempts"] == 2 and final["text"] == "Great shoes." and final["attempt_scores"] == [0.3, 0.7]
    assert [r.sampling.temperature for r in streaming.requests] == [0, RETRY_MIN_TEMPERATURE]
    assert model.generate.calls == [] and not any(s.cancelled for s in streaming.streams)


# --- cache material ----------------------------------------------------------------------------

def test_cache_material_only_for_reproducible_requests():
    plan = make_plan(floor=0.5, retries=1)

    def material(**fields):
        body = copy_request(**fields)
        return CopyPipeline.cache_material(body, plan, CopyPipeline.sampling(body, plan))

    greedy = material(temperature=0)
    assert greedy is not None and '"max_tokens":64' in greedy and '"sentiment_floor":0.5' in greedy
    assert material(seed=7) is not None
    assert material() is None  # temperature 0.7, no seed
    assert material(temperature=0, session_id="s1") is None
    assert material(cache=True) is not None
    assert material(temperature=0, postprocess=False) != greedy


def test_field_progress_reads_the_fields_as_far_as_written_per_answer():
    progress = FieldProgress()
    pieces = ['{"head', 'lines": ["Run ', 'far', '"], "desc', 'riptions": ["Light \\u00', 'e9tui"]}']
    seen = [progress.add(0, piece) for piece in pieces]
    assert seen == [None, {"headlines": ["Run "]}, {"headlines": ["Run far"]}, None,
                    {"headlines": ["Run far"], "descriptions": ["Light "]}, {"headlines": ["Run far"],
                                                                            "descriptions": ["Light étui"]}]
    assert progress.add(1, '{"headlines": ["Other"') == {"headlines": ["Other"]}  # each answer its own
    assert progress.add(0, " ") is None  # nothing new to read

