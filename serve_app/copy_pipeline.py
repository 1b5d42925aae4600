"""/v1/copy end to end: plan (Router) → write (ModelServer) → Polish → Sentiment → quality gate.

Below the route's sentiment floor the copy is written again with another seed, up to the route's
retry budget, and the best attempt is answered. Streaming sends each attempt's tokens as they
come, a ``retry`` event between attempts, and the post-processed answer as the ``final`` event.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field, replace

from ray.serve.handle import DeploymentHandle

from contracts.config import QualityConfig
from contracts.errors import InvalidRequestError, NotFoundError
from deployments import model_calls
from deployments.generation import Completion, GenerationRequest, SamplingOptions, engine_request_id
from deployments.releases.adapters import AdapterRef
from deployments.router import CopyPlan, RoutePlan, Router
from deployments.state.cache import cache_key_material
from deployments.state.sessions import SessionStore
from deployments.text.channels import fit_text, parse_answer
from deployments.text.draft import Draft
from serve_app.channel_copy import FieldProgress, with_channel
from serve_app.protocol import CopyRequest, CopyResponse, CopySampling, RevisionRequest, Timings, Usage

RETRY_MIN_TEMPERATURE = 0.7  # at temperature 0 another seed would give the same text
CHANNEL_RETRIES = 2  # a small model leaves a channel field empty ("The", bare punctuation) in ~2% of answers


@dataclass
class Attempt:
    completion: Completion
    drafts: list[Draft]
    timings: dict = field(default_factory=dict)
    fields: list[dict] | None = None  # with a channel: each draft's fields

    @property
    def score(self) -> float:
        scores = [d.sentiment["score"] for d in self.drafts if d.sentiment]
        return max(scores) if scores else 0.0

    @property
    def complete(self) -> bool:
        """Every field of the chosen draft has text (a field the model wrote as bare punctuation fits to "")."""
        return self.fields is None or all(all(v) if isinstance(v, list) else bool(v)
                                          for v in self.fields[self.best].values())

    @property
    def best(self) -> int:
        scores = [d.sentiment["score"] if d.sentiment else 0.0 for d in self.drafts]
        return scores.index(max(scores))


class CopyPipeline:
    def __init__(self, router: Router, models: dict[str, DeploymentHandle],
                 streaming: dict[str, DeploymentHandle], polish: DeploymentHandle, sentiment: DeploymentHandle,
                 sessions: SessionStore):
        self.router, self.models, self.streaming = router, models, streaming
        self.polish, self.sentiment = polish, sentiment
        self.sessions = sessions

    async def plan(self, body: CopyRequest) -> CopyPlan:
        plan = await self.router.plan_copy(body.industry, body.product, body.keywords, body.tone,
                                           body.length, body.language)
        return with_channel(plan, body.channel, self.router.context_tokens(plan.route.model)) if body.channel else plan

    async def plan_revision(self, body: RevisionRequest, owner: str | None) -> CopyPlan:
        """The session's conversation plus the new instruction, on the model that wrote the copy."""
        session = await self.sessions.load("copy", owner, body.session_id)
        if session is None:
            raise NotFoundError(f"session {body.session_id!r} not found: it expired, never started (send "
                                "session_id with /v1/copy first), or the session store is unavailable", "session_id")
        meta = session["meta"]
        messages = [*session["messages"], {"role": "user", "content": body.instruction}]
        adapter = AdapterRef(**meta["adapter"]) if meta.get("adapter") else None
        return CopyPlan(RoutePlan(model=meta["model"], industry=meta["industry"]), meta["language"], messages,
                        meta["max_tokens"], QualityConfig(), adapter)

    async def remember(self, owner: str | None, session_id: str, plan: CopyPlan, payload: dict) -> None:
        meta = {"model": plan.route.model, "industry": plan.route.industry, "language": plan.language,
                "max_tokens": plan.max_tokens, "adapter": asdict(plan.adapter) if plan.adapter else None}
        messages = [*plan.messages, {"role": "assistant", "content": payload["text"]}]
        await self.sessions.save("copy", owner, session_id, meta, messages)

    @staticmethod
    def sampling(body: CopySampling, plan: CopyPlan) -> SamplingOptions:
        """The request's sampling, resolved once per request against the plan's budget; with a channel the
        engine writes its fields as JSON, and the budget is a ceiling to fit in the context."""
        sampling = body.to_sampling(plan.max_tokens)
        if plan.channel:
            sampling = replace(sampling, json_schema=json.dumps(plan.channel.json_schema(plan.language)),
                               fit_max_tokens=True)
        return sampling

    @staticmethod
    def cache_material(body: CopyRequest, plan: CopyPlan, sampling: SamplingOptions,
                       weights: AdapterRef | None = None) -> str | None:
        """What the cache key is made of, or None when this answer must not be cached. ``sampling`` is the
        request's resolved one (``sampling()``), the one the engine gets."""
        cacheable = body.cache if body.cache is not None else (sampling.temperature == 0 or sampling.seed is not None)
        if not cacheable or body.session_id:
            return None
        # The knobs a copy request sets; a channel's JSON shape is in `quality` (its id) and the messages.
        chosen = {name: getattr(sampling, name) for name in ("n", "temperature", "top_p", "seed", "max_tokens")}
        # name@vN-<digest> of the LoRA or merged adapter: a new version never hits old copy
        adapter = (plan.adapter or weights).engine_name if plan.adapter or weights else None
        quality = {**plan.quality.model_dump(), "channel": plan.channel.id if plan.channel else None}
        return cache_key_material(plan.route.industry, plan.route.model, adapter, plan.messages, chosen,
                                  body.postprocess, quality)

    @staticmethod
    def generation(sampling: SamplingOptions, plan: CopyPlan, request_id: str, attempt: int) -> GenerationRequest:
        """An attempt of the request: the first as resolved; a retry with another seed, and warm enough
        that the seed matters."""
        if attempt > 1:
            seed = (sampling.seed if sampling.seed is not None else random.randrange(2**31)) + attempt
            sampling = replace(sampling, seed=seed, temperature=max(sampling.temperature, RETRY_MIN_TEMPERATURE))
        return GenerationRequest(request_id=engine_request_id(request_id, attempt), messages=tuple(plan.messages),
                                 adapter=plan.adapter, sampling=sampling)

    async def postprocess(self, completion: Completion, plan: CopyPlan, enabled: bool) -> Attempt:
        if plan.channel:
            return await self._postprocess_fields(completion, plan, enabled)
        drafts = [Draft(t.strip(), plan.language, plan.route.industry, r)
                  for t, r in zip(completion.texts, completion.finish_reasons, strict=True)]
        attempt = Attempt(completion, drafts)
        if not enabled:
            return attempt
        started = time.perf_counter()
        # Polish's answer goes straight to Sentiment (a DeploymentResponse as the argument): Ray hands the
        # object over without this replica's event loop taking it in and sending it out again.
        attempt.drafts = await asyncio.gather(*(self.sentiment.process.remote(self.polish.process.remote(d))
                                                for d in drafts))
        attempt.timings = {"postprocess_ms": round((time.perf_counter() - started) * 1000, 2)}
        return attempt

    async def _postprocess_fields(self, completion: Completion, plan: CopyPlan, enabled: bool) -> Attempt:
        """A channel's copy: each answer's fields fitted to their limits and polished one by one (an edit
        that would break a limit is left out), then scored as one text."""
        channel, language = plan.channel, plan.language
        shaped = []
        for text in completion.texts:
            answer = parse_answer(text)
            if answer is None:
                raise InvalidRequestError(
                    f"the answer ended before the {channel.id} fields were complete (max_tokens, or this model's "
                    f"context); leave max_tokens out (the channel needs up to {channel.max_tokens(language)} "
                    "tokens) or use a model with a longer context", "max_tokens")
            shaped.append(channel.fit(answer, language))
        raw = [channel.display(fields) for fields in shaped]
        edits: list[list[dict]] = [[] for _ in shaped]
        polish_ms = [0.0 for _ in shaped]  # an answer's fields, summed: the work Polish did on it
        started = time.perf_counter()
        if enabled:
            spots = [(i, f, j) for i, fields in enumerate(shaped) for f in channel.fields
                     for j in range(f.count)]
            texts = [f.value_in(shaped[i], j) for i, f, j in spots]
            polished = await asyncio.gather(*(self.polish.process.remote(
                Draft(t, language, plan.route.industry)) for t in texts))
            for (i, f, j), before, after in zip(spots, texts, polished, strict=True):
                if after.text != before and fit_text(after.text, f, language) == after.text:
                    f.put(shaped[i], j, after.text)
                    edits[i] += [{**e, "field": f.name} for e in after.edits]
                polish_ms[i] += after.timings.get("polish_ms", 0.0)
        drafts = [Draft(channel.display(fields), language, plan.route.industry, reason, raw_text=raw_text,
                        edits=field_edits)
                  for fields, reason, raw_text, field_edits in zip(shaped, completion.finish_reasons, raw, edits,
                                                                   strict=True)]
        if enabled:
            drafts = await asyncio.gather(*(self.sentiment.process.remote(d) for d in drafts))
        attempt = Attempt(completion, list(drafts), fields=shaped)
        if enabled:
            attempt.timings = {"postprocess_ms": round((time.perf_counter() - started) * 1000, 2)}
            for draft, field_ms in zip(attempt.drafts, polish_ms, strict=True):
                draft.timings["polish_ms"] = round(field_ms, 2)
        return attempt

    @staticmethod
    def accepted(attempt: Attempt, plan: CopyPlan, enabled: bool) -> bool:
        floor = plan.quality.sentiment_floor
        return attempt.complete and (not enabled or floor is None or attempt.score >= floor)

    @staticmethod
    def retries(plan: CopyPlan) -> int:
        """The route's retry budget; channel copy may always write twice more, for a field left empty."""
        return max(plan.quality.max_retries, CHANNEL_RETRIES) if plan.channel else plan.quality.max_retries

    async def run(self, body: CopySampling, plan: CopyPlan, sampling: SamplingOptions, request_id: str,
                  received: float) -> dict:
        attempts: list[Attempt] = []
        for number in range(1, self.retries(plan) + 2):
            completion = await model_calls.generate(self.models[plan.route.model],
                                                    self.generation(sampling, plan, request_id, number))
            attempts.append(await self.postprocess(completion, plan, body.postprocess))
            if self.accepted(attempts[-1], plan, body.postprocess):
                break
        return self.response(body, plan, attempts, request_id, received)

    async def stream(self, body: CopySampling, plan: CopyPlan, sampling: SamplingOptions, request_id: str,
                     received: float) -> AsyncIterator[dict]:
        attempts: list[Attempt] = []
        for number in range(1, self.retries(plan) + 2):
            completion, progress = None, FieldProgress() if plan.channel else None
            async for item in model_calls.stream(self.streaming[plan.route.model],
                                                 self.generation(sampling, plan, request_id, number)):
                if isinstance(item, Completion):
                    completion = item
                else:
                    for d in item:
                        yield {"type": "delta", "attempt": number, "index": d.index, "text": d.text}
                        if progress and (fields := progress.add(d.index, d.text)) is not None:
                            yield {"type": "fields", "attempt": number, "index": d.index, "fields": fields}
            attempts.append(await self.postprocess(completion, plan, body.postprocess))
            if self.accepted(attempts[-1], plan, body.postprocess):
                break
            if number <= self.retries(plan):
                yield {"type": "retry", "attempt": number, "sentiment_score": attempts[-1].score,
                       "sentiment_floor": plan.quality.sentiment_floor,
                       "reason": "below the sentiment floor" if attempts[-1].complete else "a field was empty"}
        yield {"type": "final", **self.response(body, plan, attempts, request_id, received)}

    @staticmethod
    def response(body: CopySampling, plan: CopyPlan, attempts: list[Attempt], request_id: str,
                 received: float) -> dict:
        complete = [a for a in attempts if a.complete] or attempts
        chosen = max(complete, key=lambda a: a.score) if body.postprocess else complete[-1]
        c, best = chosen.completion, chosen.drafts[chosen.best]
        fields, text = (chosen.fields[chosen.best] if chosen.fields else None), best.text
        if fields is not None and not chosen.complete:  # every attempt left a slot empty: another one may fill it
            fields = plan.channel.fill(fields, [a.fields[a.best] for a in attempts if a is not chosen])
            text = plan.channel.display(fields)
        prompt_tokens = sum(a.completion.prompt_tokens for a in attempts)
        completion_tokens = sum(a.completion.completion_tokens for a in attempts)
        return CopyResponse(
            id=request_id, created=int(time.time()), industry=plan.route.industry, model=c.model,
            language=plan.language, adapter=plan.adapter.tag if plan.adapter else c.weights, variant=plan.route.variant,
            channel=plan.channel.id if plan.channel else None,
            fields=fields, text=text,
            texts=[d.text for d in chosen.drafts], raw_text=best.raw_text,
            finish_reasons=c.finish_reasons, attempts=len(attempts),
            polish={"edits": best.edits} if body.postprocess else None,
            sentiment=best.sentiment,
            attempt_scores=[a.score for a in attempts] if body.postprocess else [],
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                        total_tokens=prompt_tokens + completion_tokens),
            timings=Timings(first_token_ms=c.first_token_s and round(c.first_token_s * 1000, 1),
                            generation_ms=round(c.total_s * 1000, 1),
                            total_ms=round((time.monotonic() - received) * 1000, 1),
                            tokens_per_s=round(c.tokens_per_s, 2), **chosen.timings, **best.timings),
        ).model_dump()
