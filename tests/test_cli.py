"""fer_jax/cli.py's shared error handling: the exit status and the one line a CLI prints."""

from __future__ import annotations

import pytest

from fer_jax.cli import EXIT_FAILURE, EXIT_USAGE, input_error


@pytest.mark.parametrize(
    "exc,status,words",
    [
        (ValueError("bad value\nsecond line"), EXIT_USAGE, "error: bad value"),
        (FileNotFoundError(2, "No such file", "/x/run"), EXIT_USAGE, "No such file"),
        (PermissionError(13, "Permission denied", "/x/out"), EXIT_FAILURE, "PermissionError"),
    ],
)
def test_input_error_prints_one_line_and_returns_the_status(exc, status, words, capsys):
    assert input_error(exc) == status
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and err.startswith("error: ")
