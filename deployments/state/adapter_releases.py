"""The adapter registry in Redis: every version of each name, its movable aliases and an audit log.

Keys (under the store's prefix; the layout and the scripts are in ``adapter_scripts.py``):
``adapter:<name>:versions``, ``adapter:<name>:digests``, ``adapter:<name>:aliases``, ``adapter:<name>:history``,
``adapter-names``, and from before versions were kept ``adapters`` (name -> latest record, moved into the
versioned keys on first touch), ``adapter-versions`` (the per-name counter) and ``adapter-lora-ids``. Deletes
also remove the versions' scores, ``adapter:<name>:eval:v<N>`` (``adapter_eval.py``), and a name's delete its
release policy, ``adapter:<name>:policy`` (``adapter_policy.py``).

Requests resolve their adapter here on every request (one script call, no cache in the ingress), so an alias
moved by any replica is what every replica serves from its next request on.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from contracts.errors import ConflictError, InvalidRequestError, NotFoundError, ServiceUnavailableError
from deployments.releases.adapters import STABLE, Adapter, Selector, parse_spec
from deployments.state import adapter_scripts as lua
from deployments.state.adapter_eval import evaluation_key
from deployments.state.adapter_policy import policy_key
from deployments.state.store import RedisStore

_DOWN = object()


@dataclass(frozen=True)
class Release:
    """One adapter name: its versions and where its aliases point."""

    name: str
    versions: dict[int, Adapter]
    aliases: dict[str, int]

    @property
    def current(self) -> Adapter:
        """The version a bare name serves: the stable alias's, else the newest."""
        return self.versions.get(self.aliases.get(STABLE), self.versions[max(self.versions)])

    def aliases_of(self, version: int) -> list[str]:
        return sorted(a for a, v in self.aliases.items() if v == version)

    def public(self, admin: bool = True) -> dict:
        """The current version's record (as before versions were kept), the alias table and every version."""
        versions = []
        for number in sorted(self.versions):
            record = self.versions[number].public(admin)
            versions.append({k: record[k] for k in ("version", "digest", "created", "kind", "rank", "path",
                                                    "lora_id") if k in record} | {"aliases": self.aliases_of(number)})
        return {**self.current.public(admin), "aliases": dict(sorted(self.aliases.items())), "versions": versions}


@dataclass(frozen=True)
class Registered:
    adapter: Adapter
    unchanged: bool  # the content was already this version: nothing was written
    aliases: list[str]

    def public(self) -> dict:
        return {**self.adapter.public(), "aliases": self.aliases, "unchanged": self.unchanged}


@dataclass(frozen=True)
class Moved:
    before: int | None  # where the alias pointed (None: it was unset)
    version: int
    aliases: dict[str, int]  # the table after the move


def entry(action: str, alias: str | None, who: str | None, reason: str | None) -> str:
    """A history entry as the scripts take it: ``from`` and ``to`` are added inside them."""
    return json.dumps({"at": round(time.time(), 3), "who": who, "action": action, "alias": alias, "reason": reason})


def rollback_target(history: list[dict], alias: str) -> int | None:
    """The version ``alias`` pointed at before its last move that was not itself rolled back (history newest
    first): rollbacks walk back one move at a time, as an undo would."""
    earlier: list[int] = []
    for e in reversed(history):
        if e.get("action") == "delete" or (e.get("alias") == alias and e.get("action") == "unalias"):
            earlier.clear()
        elif e.get("alias") != alias:
            continue
        elif e.get("action") == "rollback":
            if earlier:
                earlier.pop()
        elif e.get("from") is not None and e.get("from") != e.get("to"):
            earlier.append(int(e["from"]))
    return earlier[-1] if earlier else None


def _pairs(flat: list) -> dict:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class AdapterRegistry:
    """Reads fail open where a request can do without (listings); a request that names an adapter, and every
    change, gets a 503 while Redis is down."""

    def __init__(self, store: RedisStore):
        self.store = store
        client = store.client
        self._scripts = {name: client.register_script(getattr(lua, name)) if client is not None else None
                         for name in ("SNAPSHOT", "RESOLVE", "REGISTER", "MOVE", "UNALIAS", "DELETE_VERSION",
                                      "DELETE")}

    def _keys(self, name: str) -> list[str]:
        k = self.store.key
        return [k("adapter", name, "versions"), k("adapter", name, "digests"), k("adapter", name, "aliases"),
                k("adapter", name, "history"), k("adapters"), k("adapter-names"), k("adapter-versions"),
                k("adapter-lora-ids")]

    async def _run(self, script: str, name: str, *args, client=None):
        """One script on ``name``'s keys; 503 when Redis is unavailable (or answered with an error)."""
        run = self._scripts[script]
        if client is not None:
            return await run(keys=self._keys(name), args=[name, *args], client=client)
        result = await self.store.call(lambda r: run(keys=self._keys(name), args=[name, *args], client=r),
                                       default=_DOWN) if run is not None else _DOWN
        if result is _DOWN:
            changing = script not in ("SNAPSHOT", "RESOLVE")
            raise ServiceUnavailableError("the adapter registry (redis) is unavailable"
                                          + ("; nothing was changed" if changing else ""))
        return result

    # --- reading -------------------------------------------------------------------------------------------

    async def get(self, name: str, client=None) -> Release | None:
        versions, aliases = await self._run("SNAPSHOT", name, client=client)
        if not versions:
            return None
        return Release(name, {int(v): Adapter(**json.loads(r)) for v, r in _pairs(versions).items()},
                       {a: int(v) for a, v in _pairs(aliases).items()})

    async def require(self, name: str, field: str = "name") -> Release:
        release = await self.get(name)
        if release is None:
            raise NotFoundError(f"adapter {name!r} is not registered (see GET /v1/adapters)", field)
        return release

    async def list(self) -> list[Release]:
        """Every name with its versions; empty while Redis is down (listings fail open)."""
        async def read(r):
            named, legacy = await asyncio.gather(r.smembers(self.store.key("adapter-names")),
                                                 r.hkeys(self.store.key("adapters")))  # one wait, not two
            return await asyncio.gather(*(self.get(n, client=r) for n in sorted(set(named) | set(legacy))))

        if self._scripts["SNAPSHOT"] is None:
            return []
        return [r for r in await self.store.call(read, default=[]) if r is not None]

    async def resolve(self, spec: str | Selector, field: str = "adapter") -> Adapter:
        """The version a request names (``name``, ``name@alias``, ``name@vN``, ``name@<digest prefix>``): 404
        for an unknown name, alias or version, 400 for a digest prefix two versions share."""
        selector = parse_spec(spec, field) if isinstance(spec, str) else spec
        status, found = await self._run("RESOLVE", selector.name, selector.kind, selector.value)
        if status == "ok":
            return Adapter(**json.loads(found))
        if not found:
            raise NotFoundError(f"adapter {selector.name!r} is not registered (see GET /v1/adapters)", field)
        if status == "ambiguous":
            raise InvalidRequestError(f"{selector}: more than one version's digest starts with {selector.value}; "
                                      "give more digits", field)
        release = await self.get(selector.name)
        known = ", ".join(f"{a} -> v{v}" for a, v in sorted(release.aliases.items())) if release else ""
        what = f"alias {selector.value!r}" if status == "no-alias" else f"version {selector}"
        raise NotFoundError(f"adapter {selector.name!r} has no {what} (versions: "
                            f"{', '.join(f'v{v}' for v in sorted(release.versions)) if release else 'none'}; "
                            f"aliases: {known or 'none'})", field)

    async def history(self, name: str, limit: int = lua.HISTORY_CAP) -> list[dict] | None:
        """Newest first; None when the name has none."""
        key = self._keys(name)[3]
        rows = await self.store.call(lambda r: r.lrange(key, 0, limit - 1), default=_DOWN)
        if rows is _DOWN:
            raise ServiceUnavailableError("the adapter registry (redis) is unavailable")
        return [json.loads(row) for row in rows] or None

    # --- changing ------------------------------------------------------------------------------------------

    async def register(self, adapter: Adapter, alias: str | None, who: str | None,
                       reason: str | None = None) -> Registered:
        """A new version of ``adapter.name`` (and ``alias`` moved onto it), or the version with the same content
        if there is one (nothing written, no alias moved): one script, so the check and the bump are atomic."""
        fields = {k: v for k, v in adapter.public().items() if k not in ("version", "lora_id")}
        created, record = await self._run("REGISTER", adapter.name, json.dumps(fields), adapter.digest, alias or "",
                                          entry("register", alias, who, reason))
        registered = Adapter(**json.loads(record))
        if not created and registered.base_model != adapter.base_model:
            raise ConflictError(f"this content is already {registered.ref.tag}, registered for model "
                                f"{registered.base_model}, not {adapter.base_model}", "base_model")
        release = await self.get(adapter.name)
        return Registered(registered, not created, release.aliases_of(registered.version) if release else [])

    async def move(self, name: str, alias: str, version: int | None = None, source: str | None = None,
                   expected: int | None | str = "*", who: str | None = None, action: str = "move",
                   reason: str | None = None, source_at: int | None = None) -> Moved:
        """Point ``alias`` at ``version`` (or at the version alias ``source`` points at, if that is still
        ``source_at`` when given), if the alias still points at ``expected`` ('*': anywhere; None: unset)."""
        target = ("alias", source) if source else ("version", str(version))
        current = "" if expected is None else str(expected)
        checked = [str(source_at)] if source and source_at is not None else []
        status, before, version_seen = await self._run("MOVE", name, alias, *target, current,
                                                       entry(action, alias, who, reason), *checked)
        if status == "no-source":
            await self.require(name)
            raise ConflictError(f"adapter {name!r} has no alias {source!r} to {action} from", "from")
        if status == "source-changed":
            raise ConflictError(f"alias {source!r} of {name!r} moved meanwhile (now v{version_seen}): look again "
                                "and retry", "from")
        if status == "no-version":
            await self.require(name)
            raise NotFoundError(f"adapter {name!r} has no version v{version_seen}", "version")
        if status == "changed":
            raise ConflictError(f"alias {alias!r} of {name!r} moved meanwhile (now "
                                f"{'v' + before if before else 'unset'}): look again and retry", "alias")
        return Moved(int(before) if before else None, int(version_seen), (await self.require(name)).aliases)

    async def unalias(self, name: str, alias: str, who: str | None, reason: str | None = None) -> bool:
        return bool(await self._run("UNALIAS", name, alias, entry("unalias", alias, who, reason)))

    async def delete_version(self, name: str, version: int, who: str | None, reason: str | None = None) -> None:
        status, held = await self._run("DELETE_VERSION", name, str(version),
                                       entry("delete-version", None, who, reason))
        if status == "no-version":
            await self.require(name)
            raise NotFoundError(f"adapter {name!r} has no version v{version}", "version")
        if status == "aliased":
            raise ConflictError(f"{name}@v{version} is what alias {held.replace(',', ', ')} points at: move "
                                f"{'them' if ',' in held else 'it'} first (PUT /v1/adapters/{name}/aliases/...)",
                                "version")
        await self._forget(name, [version])

    async def delete(self, name: str, who: str | None = None, reason: str | None = None) -> bool:
        deleted = bool(await self._run("DELETE", name, entry("delete", None, who, reason)))
        if deleted:
            await self._forget(name)
        return deleted

    async def _forget(self, name: str, versions: list[int] | None = None) -> None:
        """The scores of ``versions`` (every number the name was ever given: none is given twice), after the
        script: best effort, as a key left behind by an outage belongs to a number no content gets again."""
        async def drop(r):
            numbers = versions or range(1, int(await r.hget(self.store.key("adapter-versions"), name) or 0) + 1)
            keys = [evaluation_key(self.store, name, v) for v in numbers]
            if versions is None:
                keys.append(policy_key(self.store, name))  # a policy goes with its name
            if keys:
                await r.delete(*keys)

        await self.store.call(drop)
