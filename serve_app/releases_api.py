"""Adapter releases (a mixin of ``Ingress``): register versions, move aliases, promote, roll back, read the
history and the versions' evaluation. Reading the registry and the evaluation needs any key; changing the
registry, and its history, an admin key."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import APIRouter, Depends, Response

from contracts.errors import ConflictError, InvalidRequestError, NotFoundError, ServiceUnavailableError
from deployments.releases.adapters import (
    STABLE,
    Selector,
    check_alias,
    inspect_adapter,
    parse_spec,
    parse_version,
    serves_merged,
)
from deployments.releases.evaluation import report
from deployments.state.adapter_releases import Release, rollback_target
from deployments.state.keys import ApiKey
from serve_app.access import AdminCaller, Caller, admin, caller
from serve_app.protocol import AdapterRegisterRequest, AliasMoveRequest, PromoteRequest, RollbackRequest

# One check per route, never both (that would check, and count, a request twice).
keyed = APIRouter(dependencies=[Depends(caller)])
admin_only = APIRouter(dependencies=[Depends(admin)])


def who(key: ApiKey | None) -> str | None:
    """What the history records as the actor: the key's id (None while API keys are off)."""
    return key.id if key else None


class ReleasesAPI:
    """Uses the ingress's state: adapters (the registry), evaluation (the versions' scores), router (live routes),
    active_weights, models, config."""

    @admin_only.post("/v1/adapters", status_code=201)
    async def register_adapter(self, body: AdapterRegisterRequest, response: Response, key: AdminCaller):
        """A new version (201), or the version that already has this content (200, ``"unchanged": true``)."""
        if body.base_model not in self.models:
            raise NotFoundError(f"no model {body.base_model!r}; models: {', '.join(self.models)}", "base_model")
        if body.alias:
            check_alias(body.alias)
        # Validation reads the weights' headers and the digest every byte: off the event loop.
        adapter = await asyncio.to_thread(inspect_adapter, body.name, self.config.model(body.base_model), body.path,
                                          self.config.server.adapter_roots)
        registered = await self.adapters.register(adapter, body.alias, who(key), body.reason)
        if registered.unchanged:
            response.status_code = 200
        return registered.public()

    @keyed.get("/v1/adapters")
    async def list_adapters(self, key: Caller):
        admin_view = key is None or key.role == "admin"
        return {"object": "list", "data": [r.public(admin_view) for r in await self.adapters.list()]}

    @keyed.get("/v1/adapters/{name}")
    async def get_adapter(self, name: str, key: Caller):
        return (await self.adapters.require(name)).public(key is None or key.role == "admin")

    @keyed.get("/v1/adapters/{name}/evaluation")
    async def adapter_evaluation(self, name: str):
        """Each version's answers scored (means and rates with 95% intervals, errors), and each alias's version
        against stable's. Scores are no secret: any key reads them, as it reads versions and digests."""
        release = await self.adapters.require(name)
        sums = await self.evaluation.read(name, sorted(release.versions))
        if sums is None:
            raise ServiceUnavailableError("the adapter evaluation (redis) is unavailable")
        return report(name, release.aliases, {v: a.digest for v, a in release.versions.items()}, sums)

    @admin_only.get("/v1/adapters/{name}/history")
    async def adapter_history(self, name: str, limit: int = 100):
        """Registrations, alias moves and deletions, newest first (the last 500 are kept)."""
        history = await self.adapters.history(name, max(1, min(limit, 500)))
        if history is None:
            await self.adapters.require(name)
            history = []
        return {"object": "list", "name": name, "data": history}

    @admin_only.delete("/v1/adapters/{name}")
    async def delete_adapter(self, name: str, key: AdminCaller):
        if users := await self._adapter_users(name):
            raise ConflictError(f"adapter {name!r} is in use by {'; '.join(users)}: point those elsewhere first "
                                "(PUT /v1/routes/..., PUT /v1/models/.../weights)", "name")
        if not await self.adapters.delete(name, who(key)):
            raise NotFoundError(f"adapter {name!r} is not registered", "name")
        return {"name": name, "deleted": True}

    @admin_only.delete("/v1/adapters/{name}/versions/{version}")
    async def delete_adapter_version(self, name: str, version: str, key: AdminCaller):
        """One version; 409 while an alias points at it, a live route pins it or a model serves it merged."""
        selector = parse_version(version)
        if selector.kind != "version":
            raise InvalidRequestError(f"{version!r}: name the version as vN", "version")
        number = int(selector.value)
        release = await self.adapters.require(name)
        if number not in release.versions:
            raise NotFoundError(f"adapter {name!r} has no version v{number}", "version")
        if users := await self._adapter_users(name, release, number):
            raise ConflictError(f"{name}@v{number} is in use by {'; '.join(users)}: point those elsewhere first",
                                "version")
        await self.adapters.delete_version(name, number, who(key))
        return {"name": name, "version": number, "deleted": True}

    @admin_only.put("/v1/adapters/{name}/aliases/{alias}")
    async def set_alias(self, name: str, alias: str, body: AliasMoveRequest, key: AdminCaller):
        check_alias(alias)
        version = await self._version(name, body.version)
        return await self._move(name, alias, version=version, who=who(key), reason=body.reason)

    @admin_only.delete("/v1/adapters/{name}/aliases/{alias}")
    async def delete_alias(self, name: str, alias: str, key: AdminCaller):
        if alias == STABLE:
            raise InvalidRequestError(f"the {STABLE} alias is what a bare name serves: move it instead "
                                      f"(PUT /v1/adapters/{name}/aliases/{STABLE})", "alias")
        if routes := await self._routes_naming(lambda spec: spec == f"{name}@{alias}"):
            raise ConflictError(f"{name}@{alias} is named by {'; '.join(routes)}: point those elsewhere first",
                                "alias")
        if not await self.adapters.unalias(name, alias, who(key)):
            await self.adapters.require(name)
            raise NotFoundError(f"adapter {name!r} has no alias {alias!r}", "alias")
        return {"name": name, "aliases": (await self.adapters.require(name)).aliases}

    @admin_only.post("/v1/adapters/{name}/promote")
    async def promote(self, name: str, key: AdminCaller, body: PromoteRequest | None = None):
        """Move alias ``to`` (stable) onto the version alias ``from`` (canary) points at, in one script."""
        body = body or PromoteRequest()
        check_alias(body.to, "to")
        if body.from_ == body.to:
            raise InvalidRequestError("promote moves one alias onto another's version: give two aliases", "to")
        return await self._move(name, body.to, source=body.from_, who=who(key), action="promote",
                                reason=body.reason)

    @admin_only.post("/v1/adapters/{name}/rollback")
    async def rollback(self, name: str, key: AdminCaller, body: RollbackRequest | None = None):
        """Move an alias back to the version it pointed at before its last move (undone moves skipped)."""
        body = body or RollbackRequest()
        release = await self.adapters.require(name)
        current = release.aliases.get(body.alias)
        target = rollback_target(await self.adapters.history(name) or [], body.alias)
        if target is None or target == current:
            raise ConflictError(f"alias {body.alias!r} of {name!r} has no earlier version to go back to", "alias")
        if target not in release.versions:
            raise ConflictError(f"alias {body.alias!r} of {name!r} pointed at v{target} before, and that version was "
                                "deleted: move the alias with PUT instead", "alias")
        # Only if the alias still points where this look saw it: a move in between is not undone blindly.
        return await self._move(name, body.alias, version=target, expected=current, who=who(key), action="rollback",
                                reason=body.reason)

    # --- helpers ---------------------------------------------------------------------------------------

    async def _move(self, name: str, alias: str, **how) -> dict:
        moved = await self.adapters.move(name, alias, **how)
        return {"name": name, "alias": alias, "from": moved.before, "to": moved.version, "aliases": moved.aliases}

    async def _version(self, name: str, version: int | str) -> int:
        """A version number from 3, "v3" or a digest prefix; 404 when the name has no such version."""
        selector = parse_version(version)
        return (await self.adapters.resolve(Selector(name, selector.kind, selector.value), "version")).version

    async def _adapter_users(self, name: str, release: Release | None = None, version: int | None = None) -> list[str]:
        """Live routes and active merged weights that serve ``name`` (any version, or the one ``version`` whose
        record ``release`` holds): deleting it would break them. A route naming an alias is held by the alias."""
        users = await self._routes_naming(lambda spec: self._pins(spec, name, release, version))
        for model in self.config.models:
            active = await self.active_weights.get(model.name) if serves_merged(model) else None
            if active is not None and active.name == name and version in (None, active.version):
                users.append(f"the weights of model {model.name}")
        return users

    async def _routes_naming(self, names: Callable[[str], bool]) -> list[str]:
        """The live routes' variants and shadows whose adapter spec ``names`` accepts, as the 409s list them."""
        return [f"route {industry} ({where})" for industry, route in (await self.router.live_routes()).items()
                for where, spec in route.adapters() if names(spec)]

    @staticmethod
    def _pins(spec: str, name: str, release: Release | None, version: int | None) -> bool:
        try:
            selector = parse_spec(spec)
        except InvalidRequestError:
            return False
        if selector.name != name:
            return False
        if version is None:
            return True
        if selector.kind == "version":
            return int(selector.value) == version
        return selector.kind == "digest" and release.versions[version].digest.startswith(selector.value)
