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
from deployments.adapters import AdapterRef
from deployments.merged_weights import weights_env
from deployments.model_server import deployment_name
from serve_app import serve_control

logger = logging.getLogger("copyserve.weights_roll")
SURGE_SETTLE_TIMEOUT_S = 3600  # a surge replica waiting for a free GPU may take the cluster autoscaler a while
SETTLE_GRACE_S = 30            # longer than the controller takes to pick up a deploy
SETTLE_POLL_S = 1.0

_rolls: set[asyncio.Task] = set()  # held so running rolls are not garbage-collected


async def start(config: AppConfig, model: str, ref: AdapterRef | None) -> None:
    """Deploy the new weights; returns once the controller took the config (raising what the deploy
    raised). Roll and settle run as one task: a caller that goes away must not leave the deployment
    at its surged count."""
    rolled = asyncio.get_running_loop().create_future()
    task = asyncio.get_running_loop().create_task(_roll_and_settle(config, model, ref, rolled))
    _rolls.add(task)
    task.add_done_callback(_rolls.discard)
    await asyncio.shield(rolled)


async def _roll_and_settle(config: AppConfig, model: str, ref: AdapterRef | None, rolled: asyncio.Future) -> None:
    try:
        count = await asyncio.to_thread(roll, config, model, ref)
    except Exception as err:
        rolled.set_exception(err)
        return
    rolled.set_result(count)
    if count is not None:
        await settle(config, model, count)


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


async def settle(config: AppConfig, model: str, count: int) -> None:
    """When the roll is done (count + 1 replicas, all on the new weights), drain the extra one.

    The controller applies a deploy a moment later, so a HEALTHY status counts only after the roll
    has been seen under way (or after a grace period, for a deploy that changed nothing)."""
    app_name, name = config.server.app_name, deployment_name(model)
    started = time.monotonic()
    seen_rolling = False
    while time.monotonic() - started < SURGE_SETTLE_TIMEOUT_S:
        try:
            status = (await asyncio.to_thread(serve_control.deployment_status, app_name)).get(name, {})
            seen_rolling |= status.get("status") != "HEALTHY"
            done = status.get("status") == "HEALTHY" and status.get("replicas") == {"RUNNING": count + 1}
            if done and (seen_rolling or time.monotonic() - started > SETTLE_GRACE_S):
                serve_config = await asyncio.to_thread(serve_control.deployed_config)
                await asyncio.to_thread(serve_control.deploy,
                                        serve_control.with_num_replicas(serve_config, app_name, name, count))
                logger.info("%s: new weights on every replica; back to %d replica(s)", model, count)
                return
        except Exception as err:  # a controller hiccup must not strand the extra replica
            logger.warning("%s: settling the roll: %r; trying again", model, err)
        await asyncio.sleep(SETTLE_POLL_S)
    logger.warning("%s: the roll did not finish in %ds; it keeps %d replicas", model, SURGE_SETTLE_TIMEOUT_S,
                   count + 1)
