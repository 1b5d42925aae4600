"""Adapter registration checks that need no engine: the allowed folders, the rank field, what users see."""

from __future__ import annotations

import json

import pytest

from contracts.errors import InvalidRequestError
from deployments.releases.adapters import Adapter, AdapterRef, _rank, inside_roots


def test_paths_inside_a_root_resolve(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert inside_roots(str(tmp_path / "a" / "b"), [str(tmp_path)]) == (tmp_path / "a" / "b").resolve()


@pytest.mark.parametrize("path", ["/etc", "{root}/../etc", "{root}/link-out"])
def test_paths_outside_the_roots_are_refused_alike(tmp_path, path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "link-out").symlink_to("/etc")  # a link inside a root that points out of it
    with pytest.raises(InvalidRequestError) as err:
        inside_roots(path.format(root=root), [str(root)])
    assert "server.adapter_roots" in err.value.message and err.value.param == "path"
    assert "exist" not in err.value.message and "folder on" not in err.value.message


def test_relative_paths_are_refused(tmp_path):
    with pytest.raises(InvalidRequestError, match="must be absolute"):
        inside_roots("adapters/x", [str(tmp_path)])


def test_rank_must_be_an_integer(tmp_path):
    assert _rank({"r": 8}, tmp_path) == 8
    with pytest.raises(InvalidRequestError, match="must be an integer"):
        _rank({"r": "eight"}, tmp_path)


def test_users_see_no_paths_or_manifests():
    adapter = Adapter(name="a", base_model="m", path="/srv/adapters/a", version=2, rank=8, created=1.0,
                      manifest={"dataset_sha256": "x"}, lora_id=7)
    assert {"path", "manifest", "lora_id"} <= set(adapter.public())
    user_view = adapter.public(admin=False)
    assert not {"path", "manifest", "lora_id"} & set(user_view) and user_view["version"] == 2
    json.dumps(user_view)


def test_engine_ids_come_from_the_registry_counter():
    assert AdapterRef("a", 1, "/p", lora_id=41).engine_id == 41
    assert AdapterRef("a", 1, "/p").engine_id > 0  # records from before the counter keep a hash-based id
