"""The engine contract a ModelServer relies on; vLLM implements it, tests may fake it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass

from contracts.config import ModelConfig
from deployments.generation import Delta, GenerationRequest


@dataclass
class EngineStep:
    """One engine step for one request: new text per sequence and token counts so far."""

    deltas: list[Delta]
    prompt_tokens: int
    completion_tokens: int


class LLMEngine(ABC):
    """Start once, then stream steps per request. Bad parameters raise InvalidRequestError."""

    def __init__(self, model: ModelConfig):
        self.model = model

    @abstractmethod
    async def start(self) -> None:
        """Load weights and be ready to generate."""

    @abstractmethod
    def generate(self, request: GenerationRequest) -> AsyncIterator[EngineStep]:
        """Stream steps until every sequence finished. Cancelling the iterator aborts the request."""

    @abstractmethod
    async def abort(self, request_id: str) -> None:
        """Stop decoding a request and free its KV cache."""

    @abstractmethod
    async def check_health(self) -> None:
        """Raise if the engine cannot serve any more."""

    @abstractmethod
    def num_unfinished_requests(self) -> int:
        """Requests the engine is still working on (queued or decoding)."""

    async def shutdown(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release processes and memory; the default does nothing."""
