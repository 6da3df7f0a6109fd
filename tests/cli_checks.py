"""Assertions shared by the CLI refusal tests."""

from __future__ import annotations

import subprocess


def one_line_error(res: subprocess.CompletedProcess, *names: str) -> str:
    """The refusal: exit 2, one line on stderr starting ``error:`` and naming each of ``names``."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for n in names:
        assert n in lines[0], (n, lines[0])
    return lines[0]
