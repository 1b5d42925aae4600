"""Coalescing deltas between a model replica and the ingress: the first token goes at once, later ones
wait for the interval, and the joined text is exactly what the engine wrote, per sequence, in order."""

import random

from deployments.coalesce import Coalescer, merge
from deployments.generation import Delta, TokenLogprob


def test_first_delta_is_never_held():
    c = Coalescer(interval_s=10)
    assert c.add([Delta(0, "Hello")], now=0.0) == [Delta(0, "Hello")]


def test_deltas_within_the_interval_wait_then_leave_together():
    c = Coalescer(interval_s=0.05)
    c.add([Delta(0, "A")], now=0.0)
    assert c.add([Delta(0, " b")], now=0.01) is None
    assert c.add([Delta(0, " c")], now=0.04) is None
    assert c.add([Delta(0, " d")], now=0.06) == [Delta(0, " b c d")]
    assert c.add([Delta(0, " e", "stop")], now=0.07) is None
    assert c.flush(now=0.08) == [Delta(0, " e", "stop")]  # the end of the stream sends what is held
    assert c.flush(now=0.09) is None


def test_a_slow_engine_is_never_held():
    c = Coalescer(interval_s=0.05)
    sent = [c.add([Delta(0, f"t{i}")], now=i * 0.1) for i in range(5)]
    assert sent == [[Delta(0, f"t{i}")] for i in range(5)]


def test_merge_keeps_each_sequence_in_order_and_its_finish_reason():
    merged = merge([Delta(0, "a"), Delta(1, "x"), Delta(0, "b", "length"), Delta(1, "y"), Delta(1, "z", "stop")])
    assert merged == [Delta(0, "ab", "length"), Delta(1, "xyz", "stop")]


def test_coalescing_never_reorders_or_drops_text():
    rng = random.Random(7)
    for _ in range(200):
        c, now = Coalescer(interval_s=rng.choice([0, 0.01, 0.05])), 0.0
        written, received = {0: "", 1: ""}, {0: "", 1: ""}
        chunks = []
        for step in range(rng.randint(1, 60)):
            now += rng.choice([0.001, 0.004, 0.02, 0.1])
            deltas = [Delta(i, f"<{i}.{step}>") for i in (0, 1) if rng.random() < 0.8]
            for d in deltas:
                written[d.index] += d.text
            chunks.append(c.add(deltas, now=now))
        chunks.append(c.flush(now=now))
        for chunk in filter(None, chunks):
            assert len({d.index for d in chunk}) == len(chunk)  # one delta per sequence per chunk
            for d in chunk:
                received[d.index] += d.text
        assert received == written


def test_logprobs_are_joined_with_their_text():
    a, b = TokenLogprob("Hel", -0.5), TokenLogprob("lo", -0.2)
    assert merge([Delta(0, "Hel", None, (a,)), Delta(0, "lo", "stop", (b,))]) == [Delta(0, "Hello", "stop", (a, b))]
