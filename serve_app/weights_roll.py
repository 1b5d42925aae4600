"""Rolling a model deployment onto new merged weights without losing capacity.

Serve's rolling update stops an old replica before starting its replacement unless the target is
above what runs, so a fixed replica count is raised by one for the roll (one replica: no downtime)
and brought back once every replica runs the new weights. An autoscaled deployment rolls at its
current count; its min_replicas >= 2 keeps capacity.
"""

from __future__ import annotations

import asyncio
import logging
import time

from contracts.config import AppConfig
from contracts.errors import ConflictError, ServiceUnavailableError
from deployments.model_server import deployment_name
from deployments.releases.adapters import AdapterRef
from deployments.releases.merged_weights import ActiveWeights, PendingRoll, PendingRolls, weights_env
from serve_app import serve_control

logger = logging.getLogger("copyserve.weights_roll")
SURGE_SETTLE_TIMEOUT_S = 3600  # a surge replica waiting for a free GPU may take the cluster autoscaler a while
SETTLE_GRACE_S = 30            # longer than the controller takes to pick up a deploy
SETTLE_POLL_S = 2.0            # each ingress replica's look at pending rolls (one HGETALL while none)

# A roll or scale in progress: a new change waits for it. A failed or unhealthy deployment may change
# (rolling back a bad version is how it gets well again).
BUSY_STATES = frozenset({"UPDATING", "UPSCALING", "DOWNSCALING"})


def may_change(state: str | None) -> bool:
    """Whether a model deployment in ``state`` may start a new weights roll."""
    return state is not None and state not in BUSY_STATES


async def change(config: AppConfig, model: str, ref: AdapterRef | None, follows: str | None,
                 active: ActiveWeights, pending: PendingRolls, unless_moved_from: AdapterRef | None = None) -> bool:
    """Record ``ref`` (following the alias ``follows``, or pinned) as ``model``'s weights and start the roll onto
    it: a ConflictError while another change holds the model or it is rolling or scaling. With
    ``unless_moved_from``, only while the model still serves that version (False: someone else changed it)."""
    # One change at a time per model, across ingress replicas: held past the deploy, until the
    # controller shows the roll (which the status check below then refuses).
    if await active.claim(model, SETTLE_GRACE_S) is None:
        raise ConflictError(f"another change of model {model}'s weights is being applied: watch "
                            f"GET /v1/models/{model}/weights and try again once it is HEALTHY", "model")
    try:
        status = await asyncio.to_thread(serve_control.deployment_status, config.server.app_name)
        state = status.get(deployment_name(model), {}).get("status")
        if not may_change(state):
            raise ConflictError(f"model {model} is {state} (rolling or scaling) now: wait until "
                                f"GET /v1/models/{model}/weights shows it HEALTHY, then activate", "model")
        previous, previous_follows = await active.followed(model)
        if unless_moved_from is not None and previous != unless_moved_from:
            await active.release(model)
            return False
        await active.set(model, ref, follows)
        try:
            await start(config, model, ref, pending)
        except Exception:
            await active.set(model, previous, previous_follows)
            raise
    except Exception as err:
        await active.release(model)
        if isinstance(err, serve_control.DeployError):
            raise ConflictError(f"cannot roll {model}: {err}") from None
        raise
    return True


async def start(config: AppConfig, model: str, ref: AdapterRef | None, pending: PendingRolls) -> None:
    """Deploy the new weights (raising what the deploy raised). A fixed count is raised by one for the
    roll and the roll recorded in Redis, so whichever ingress replica's ``Settler`` looks next drains the
    extra replica once the roll is done, even when the replica that started it is gone."""
    deployed_at = time.time()
    count = await asyncio.to_thread(roll, config, model, ref)
    if count is not None:
        try:
            await pending.add(model, count, deployed_at)
        except ServiceUnavailableError:  # the roll is under way all the same: say what to do about the surge
            logger.error("%s: rolling, but Redis lost the pending roll: it keeps %d replicas until "
                         "redeployed at %d", model, count + 1, count)


def roll(config: AppConfig, model: str, ref: AdapterRef | None) -> int | None:
    """Deploy the new weights, one replica over a fixed count. Returns the count to come back to."""
    app_name, name = config.server.app_name, deployment_name(model)
    serve_config = serve_control.with_replica_env(serve_control.deployed_config(), app_name, name, weights_env(ref))
    options = config.model(model).deployment
    if options.autoscaling is not None:  # the autoscaler owns the count
        serve_control.deploy(serve_config)
        return None
    serve_control.deploy(serve_control.with_num_replicas(serve_config, app_name, name, options.num_replicas + 1))
    return options.num_replicas


class Settler:
    """Drains the extra replica of each pending roll once every replica runs the new weights.

    The controller applies a deploy a moment later, so a HEALTHY status counts only after the roll
    has been seen under way (or after a grace period, for a deploy that changed nothing)."""

    def __init__(self, config: AppConfig, pending: PendingRolls):
        self.config, self.pending = config, pending
        self._seen_rolling: set[tuple[str, float]] = set()  # (model, deployed_at) seen not HEALTHY

    async def run(self) -> None:
        while True:
            try:
                await self.step()
            except Exception as err:  # a controller or Redis hiccup must not strand the extra replica
                logger.warning("settling weights rolls: %r; trying again", err)
            await asyncio.sleep(SETTLE_POLL_S)

    async def step(self) -> None:
        rolls = await self.pending.all()
        if not rolls:
            return
        app_name = self.config.server.app_name
        statuses = await asyncio.to_thread(serve_control.deployment_status, app_name)
        for roll_ in rolls:
            status = statuses.get(deployment_name(roll_.model), {})
            since = (roll_.model, roll_.deployed_at)
            if status.get("status") != "HEALTHY":
                self._seen_rolling.add(since)
            age = time.time() - roll_.deployed_at
            settled = status.get("status") == "HEALTHY" and status.get("replicas") == {"RUNNING": roll_.count + 1}
            if (settled and (since in self._seen_rolling or age > SETTLE_GRACE_S)) or await self._enough_new(roll_):
                await self._drain(roll_)
            elif age > SURGE_SETTLE_TIMEOUT_S and await self.pending.take(roll_):
                logger.warning("%s: the roll did not finish in %ds; it keeps %d replicas", roll_.model,
                               SURGE_SETTLE_TIMEOUT_S, roll_.count + 1)

    async def _enough_new(self, roll_: PendingRoll) -> bool:
        """Serve rolls every replica of the raised count, so the last one it starts would be drained as soon
        as it ran: once ``count`` replicas run the new weights, draining now stops that start (or spares it)."""
        fresh = await asyncio.to_thread(serve_control.running_since, self.config.server.app_name,
                                        deployment_name(roll_.model), roll_.deployed_at)
        return fresh >= roll_.count

    async def _drain(self, roll_: PendingRoll) -> None:
        if not await self.pending.take(roll_):
            return  # another ingress replica did, or a newer roll replaced this one
        app_name, name = self.config.server.app_name, deployment_name(roll_.model)
        try:
            serve_config = await asyncio.to_thread(serve_control.deployed_config)
            await asyncio.to_thread(serve_control.deploy,
                                    serve_control.with_num_replicas(serve_config, app_name, name, roll_.count))
        except Exception:
            await self.pending.add(roll_.model, roll_.count, roll_.deployed_at)  # for the next pass
            raise
        self._seen_rolling.discard((roll_.model, roll_.deployed_at))
        logger.info("%s: new weights on every replica; back to %d replica(s)", roll_.model, roll_.count)
