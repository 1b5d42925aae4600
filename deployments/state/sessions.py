"""Chat sessions for multi-turn revision ("make it shorter"): the turns of one conversation in
Redis, with a TTL that restarts at every turn and a bounded number of turns."""

from __future__ import annotations

import json

from contracts.config import SessionConfig
from deployments.state.store import RedisStore


class SessionStore:
    def __init__(self, store: RedisStore, config: SessionConfig):
        self.store, self.config = store, config

    def _key(self, session_id: str) -> str:
        return self.store.key("session", session_id)

    async def load(self, session_id: str) -> dict | None:
        """``{"meta": {...}, "messages": [...]}`` or None for a new (or expired) session."""
        raw = await self.store.call(lambda r: r.get(self._key(session_id)))
        return json.loads(raw) if raw else None

    async def save(self, session_id: str, meta: dict, messages: list[dict]) -> bool:
        # Keep the system prompt and the last max_turns user/assistant pairs.
        system = [m for m in messages[:1] if m["role"] == "system"]
        turns = [m for m in messages if m["role"] != "system"][-2 * self.config.max_turns:]
        data = json.dumps({"meta": meta, "messages": system + turns}, ensure_ascii=False)
        return bool(await self.store.call(lambda r: r.set(self._key(session_id), data, ex=self.config.ttl_s)))
