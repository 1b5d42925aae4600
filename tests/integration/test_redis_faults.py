"""Redis failing under steady load: stopped and restarted, then full (maxmemory, every write refused).
Copy keeps being served through both (keys known from before, cache and limits failing open), nothing
wrong is cached, and the cache works again afterwards."""

import time
import uuid

import pytest
import redis

from tests.integration.helpers import SteadyLoad, wait_for

pytestmark = pytest.mark.slow  # chaos: runs after the rest of the suite
RUN = uuid.uuid4().hex[:6]


def rotating(tag: str, products: int = 5):
    """Bodies that come back to the same few products: cacheable (greedy), so hits and misses mix."""
    def body(n: int) -> dict:
        return {"industry": "finance", "product": f"{tag} kettle {n % products} {RUN}", "max_tokens": 6,
                "temperature": 0}
    return body


def assert_nothing_cached_wrong(load: SteadyLoad) -> None:
    """Every hit replays a complete answer that the service wrote for that very request body."""
    written: dict[str, set[str]] = {}
    for a in load.answers:
        if a["x_cache"] != "hit":
            written.setdefault(a["body"]["product"], set()).add(a["answer"]["text"])
    hits = [a for a in load.answers if a["x_cache"] == "hit"]
    for a in hits:
        assert set(a["answer"]["finish_reasons"]) <= {"stop", "length"}, a["answer"]
        # A product whose miss was a stream has no whole answer on record to compare with.
        if a["body"]["product"] in written:
            assert a["answer"]["text"] in written[a["body"]["product"]], a


def test_redis_restart_under_load_fails_no_request(client, redis_server):
    with SteadyLoad(client, rotating("restart")) as load:
        assert load.grows_by(10, 180)
        redis_server.stop()
        try:
            assert load.grows_by(10, 180), "copy should be served while Redis is down"
            assert client.get("/healthz").json()["redis"].startswith("down")
        finally:
            redis_server.start()
        assert wait_for(lambda: client.get("/healthz").json()["redis"] == "ok", 60, every_s=0.5)
        hits_before = sum(a["x_cache"] == "hit" for a in load.answers)
        assert load.grows_by(10, 180)
    hits_after = sum(a["x_cache"] == "hit" for a in load.answers) - hits_before
    print(f"\n[redis restart] {load.total} requests, {load.failed('whole')} whole and {load.failed('stream')} "
          f"streamed failed; {hits_after} hits after the restart; failures: {load.failures[:2]}")
    assert load.failed("whole") == 0, load.failures[:3]
    assert load.failed("stream") <= load.total * 0.01, load.failures[:3]
    assert hits_after > 0, "the cache should serve hits again once Redis is back"
    assert_nothing_cached_wrong(load)


def test_full_redis_under_load_fails_no_request(client, redis_server):
    r = redis.Redis(port=redis_server.port)
    with SteadyLoad(client, rotating("full", products=50)) as load:
        assert load.grows_by(6, 180)
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("maxmemory", max(1, r.info("memory")["used_memory"] // 2))  # every write is refused now
        try:
            with pytest.raises(redis.exceptions.ResponseError, match="maxmemory"):
                r.set(f"probe-{RUN}", "x")
            assert load.grows_by(12, 180), "copy should be served while Redis refuses writes"
            # Redis is up and answering reads: not an outage, keys are still checked in Redis.
            assert client.get("/healthz").json()["redis"] == "ok"
        finally:
            r.config_set("maxmemory", 0)
        assert load.grows_by(6, 180)
    print(f"\n[redis full] {load.total} requests, {load.failed('whole')} whole and {load.failed('stream')} "
          f"streamed failed; failures: {load.failures[:2]}")
    assert load.failed("whole") == 0, load.failures[:3]
    assert load.failed("stream") <= load.total * 0.01, load.failures[:3]
    assert_nothing_cached_wrong(load)
    # Writes work again: a new answer is cached.
    body = {"industry": "finance", "product": f"after full {RUN} {time.time()}", "max_tokens": 4, "temperature": 0}
    assert client.post("/v1/copy", json=body).headers["x-cache"] == "miss"
    assert client.post("/v1/copy", json=body).headers["x-cache"] == "hit"
