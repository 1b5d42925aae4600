"""`copyserve batch run` on Ray Data against the running service: every catalogue row written once; a
second run skips what is written and adds only the new rows."""

import json
from argparse import Namespace

from serve_app import batch_cli


def summary_of(capsys) -> dict:
    """The run's JSON summary: the last thing it printed (Ray may print its own lines before it)."""
    out = capsys.readouterr().out
    return json.loads(out[out.rindex('{\n  "rows"'):])


def args_for(source, out, base_url, user_key) -> Namespace:
    return Namespace(input=str(source), out=str(out), industry="finance", channel=None, language=None, max_tokens=4,
                     url=base_url, api_key=user_key, address=None, concurrency=2, batch_size=2, timeout=120)


def test_a_catalogue_is_written_once_and_a_rerun_only_adds_new_rows(tmp_path, base_url, user_key, capsys):
    source, out = tmp_path / "catalogue.csv", tmp_path / "copy.jsonl"
    source.write_text("sku,product_name,keywords\nA-1,steel bottle,cold|light\nA-2,wool socks,warm\n"
                      "A-3,desk lamp,bright\n")
    assert batch_cli.run(args_for(source, out, base_url, user_key)) == 0
    summary = summary_of(capsys)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == ["A-1", "A-2", "A-3"]
    assert summary["written"] == 3 and summary["failed"] == 0 and summary["tokens"] > 0
    by_id = {r["id"]: r for r in rows}
    assert by_id["A-1"]["request"]["keywords"] == ["cold", "light"] and by_id["A-1"]["copy"]["industry"] == "finance"

    source.write_text(source.read_text() + "A-4,tea set,calm\n")
    assert batch_cli.run(args_for(source, out, base_url, user_key)) == 0
    summary = summary_of(capsys)
    assert summary["skipped_as_done"] == 3 and summary["written"] == 1
    assert sorted(json.loads(line)["id"] for line in out.read_text().splitlines()) == ["A-1", "A-2", "A-3", "A-4"]


def test_rows_the_service_refuses_are_reported_not_written(tmp_path, base_url, user_key, capsys):
    source, out = tmp_path / "bad.jsonl", tmp_path / "copy.jsonl"
    source.write_text(json.dumps({"sku": "B-1", "product_name": "x", "industry": "astrology"}) + "\n")
    assert batch_cli.run(args_for(source, out, base_url, user_key)) == 1
    summary = summary_of(capsys)
    assert summary["failed"] == 1 and "unknown industry" in summary["failures"][0]["reason"]
    assert out.read_text() == ""
