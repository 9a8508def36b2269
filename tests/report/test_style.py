"""report/style.py: when colour is used (TERM=dumb included) and the width text wraps at;
the doctor text at a narrow width never breaks a word."""

from __future__ import annotations

import io
import re

import doctor_scenarios
import pytest

from envcheck import rules
from envcheck.report import doctor as render
from envcheck.report import style

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("NO_COLOR", "FORCE_COLOR", "TERM", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("env,flag,stream,expected", [
    ({}, None, Tty(), True),
    ({}, None, io.StringIO(), False),
    ({"TERM": "dumb"}, None, Tty(), False),                       # a dumb terminal: no escapes
    ({"TERM": "xterm-256color"}, None, Tty(), True),
    ({"TERM": "dumb", "FORCE_COLOR": "1"}, None, io.StringIO(), True),  # asked for explicitly
    ({"TERM": "dumb"}, True, Tty(), True),                        # --color wins
    ({"NO_COLOR": "1"}, None, Tty(), False),
])
def test_use_color(monkeypatch, env, flag, stream, expected):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert style.use_color(flag, stream) is expected


def test_text_width(monkeypatch):
    assert style.text_width(io.StringIO()) == 100  # a file or a pipe: the stable layout
    monkeypatch.setenv("COLUMNS", "80")
    assert style.text_width(io.StringIO()) == 100
    assert style.text_width(Tty()) == 80
    monkeypatch.setenv("COLUMNS", "12")
    assert style.text_width(Tty()) == style.MIN_WIDTH


@pytest.mark.parametrize("name", ["torch_import_error_ld_path", "docker_small_shm", "ecc_errors",
                                  "cpu_only_laptop", "driver_too_old_cu130"])
@pytest.mark.parametrize("width", [60, 80])
def test_narrow_text_wraps_at_spaces_only(name, width):
    snap = doctor_scenarios.build(name)
    findings = rules.evaluate(snap)
    wide = render.to_text(snap, findings, width=1000)
    narrow = render.to_text(snap, findings, width=width, color=True)
    # Same words in the same order: no word was cut (colour changes nothing either).
    assert ANSI.sub("", narrow).split() == wide.split()
    for line in ANSI.sub("", narrow).splitlines():
        if len(line) <= width:
            continue
        words = line.split()
        # only a fix (kept whole to be copied), the GPU table (not wrapped), or a word longer
        # than the room
        assert line.lstrip().startswith("fix ") or re.match(r"    (#|\d+) ", line) or \
            any(len(w) > width // 2 for w in words), line
