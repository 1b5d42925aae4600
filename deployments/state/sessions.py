"""Chat sessions for multi-turn revision ("make it shorter"): the turns of one conversation in
Redis, with a TTL that restarts at every turn and a bounded number of turns.

Session ids are chosen by clients, so a session is found by (kind, owner, id): the owner is the API
key that started it, and copy sessions (``/v1/copy`` + ``/revise``) and chat sessions
(``/v1/chat/completions``) live apart. Another key naming the same id reaches its own session, never
this one; a chat turn cannot overwrite a copy session.
"""

from __future__ import annotations

import json
from typing import Literal

from contracts.config import SessionConfig
from deployments.state.store import RedisStore

SessionKind = Literal["copy", "chat"]
ANONYMOUS = "-"  # the owner when auth is off: one tenant


class SessionStore:
    def __init__(self, store: RedisStore, config: SessionConfig):
        self.store, self.config = store, config

    def _key(self, kind: SessionKind, owner: str | None, session_id: str) -> str:
        return self.store.key("session", kind, owner or ANONYMOUS, session_id)

    async def load(self, kind: SessionKind, owner: str | None, session_id: str) -> dict | None:
        """``{"meta": {...}, "messages": [...]}`` or None for a new (or expired) session."""
        raw = await self.store.call(lambda r: r.get(self._key(kind, owner, session_id)))
        return json.loads(raw) if raw else None

    async def save(self, kind: SessionKind, owner: str | None, session_id: str, meta: dict,
                   messages: list[dict]) -> bool:
        # Keep the system prompt and the last max_turns user/assistant pairs.
        system = [m for m in messages[:1] if m["role"] == "system"]
        turns = [m for m in messages if m["role"] != "system"][-2 * self.config.max_turns:]
        data = json.dumps({"meta": meta, "messages": system + turns}, ensure_ascii=False)
        key = self._key(kind, owner, session_id)
        return bool(await self.store.call(lambda r: r.set(key, data, ex=self.config.ttl_s)))
