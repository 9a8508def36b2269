"""The one value formatter shared by the doctor report, compare and their HTML pages."""

from envcheck.report.values import na_text, value_text
from envcheck.snapshot import na


def test_scalars():
    assert value_text(None) == "-"
    assert value_text(None, none="unset") == "unset"
    assert value_text(True) == "yes" and value_text(False) == "no"
    assert value_text(0.5) == "0.5" and value_text(1e-9) == "1e-09"
    assert value_text(7) == "7" and value_text("x") == "x"


def test_containers_nest_and_keep_the_none_word():
    assert value_text([]) == "(none)"
    assert value_text([1, None, [True]], none="unset") == "1, unset, yes"
    assert value_text({"a": 1.0, "b": None}) == "a=1, b=-"


def test_not_available_shows_the_reason_to_its_first_colon():
    assert value_text(na("permission denied: /dev/nvidia0")) == "n/a (permission denied)"
    assert na_text(na("")) == "n/a"
    assert na_text(na("x" * 100)) == "n/a (" + "x" * 48 + ")"
