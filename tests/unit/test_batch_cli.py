"""`copyserve batch run`: how catalogue rows become /v1/copy requests, and how a run resumes."""

import json

from serve_app.batch_cli import copy_body, done_ids, row_id


def test_rows_become_copy_requests_with_their_own_fields_first():
    row = {"product_name": "wool socks", "keywords": "warm|soft", "tone": "playful", "sku": 17}
    assert copy_body(row, {"industry": "ecommerce", "max_tokens": 32}) == {
        "industry": "ecommerce", "max_tokens": 32, "product": "wool socks", "keywords": ["warm", "soft"],
        "tone": "playful"}
    assert copy_body({"product": "lamp", "industry": "finance", "keywords": ["a"]}, {"industry": "ecommerce"})[
        "industry"] == "finance"


def test_a_row_is_known_by_its_sku_else_by_its_content():
    assert row_id({"sku": "A-1", "product_name": "x"}) == "A-1"
    assert row_id({"id": 7}) == "7"
    one, same = {"product_name": "x", "keywords": "a"}, {"keywords": "a", "product_name": "x"}
    other = {"product_name": "y"}
    assert row_id(one) == row_id(same) != row_id(other) and row_id(one).startswith("row-")


def test_resuming_skips_written_rows_and_ignores_a_torn_last_line(tmp_path):
    out = tmp_path / "copy.jsonl"
    assert done_ids(out) == set()
    out.write_text(json.dumps({"id": "A-1", "copy": {}}) + "\n" + json.dumps({"id": "A-2"}) + "\n" + '{"id": "A-')
    assert done_ids(out) == {"A-1", "A-2"}
