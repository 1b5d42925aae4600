"""`copyserve keys create` takes limits as the HTTP API does: whole numbers of at least 1."""

import pytest

from serve_app.cli import parser


def test_key_limits_are_whole_numbers_of_at_least_one(capsys):
    args = parser().parse_args(["keys", "create", "--requests-per-window", "30", "--tokens-per-window", "9000"])
    assert (args.requests_per_window, args.tokens_per_window) == (30, 9000)
    for bad in ("0", "-5", "ten"):
        with pytest.raises(SystemExit):
            parser().parse_args(["keys", "create", "--requests-per-window", bad])
        assert "is not a whole number of at least 1" in capsys.readouterr().err
