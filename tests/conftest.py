"""Markers follow the folder (tests/unit → unit, tests/integration → integration), and the run order
follows the cost: unit tests first (they fail in seconds), then integration, then the slow chaos tests
(rolls, kills, the two-node cluster), which are marked ``slow`` in their modules."""

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
