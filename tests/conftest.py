"""Markers follow the folder (tests/unit → unit, tests/integration → integration), and the run order
follows the cost: unit tests first (they fail in seconds), then integration, then the slow chaos tests
(rolls, kills, the two-node cluster), which are marked ``slow`` in their modules."""

import gc
import warnings

import pytest

ORDER = {"unit": 0, "integration": 1}


def pytest_collection_modifyitems(items):
    for item in items:
        folder = item.path.parent.name
        if folder in ORDER:
            item.add_marker(getattr(pytest.mark, folder))

    def cost(item) -> int:
        return 2 if item.get_closest_marker("slow") else ORDER.get(item.path.parent.name, 1)

    items.sort(key=cost)  # stable: the order inside each group stays the collection order


def pytest_sessionfinish():
    # ModelServer freezes the heap it started with, as a replica does; left frozen, vLLM's native modules
    # (imported by the tool-parser tests) find their objects alive at exit and print pages of "leaked".
    # Collected here, quietly: the test servers' async __del__ is never awaited outside Serve.
    gc.unfreeze()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        gc.collect()
