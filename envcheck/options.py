"""Click parameter types shared by the commands: wiring helpers, no logic (issue 10, class 6).

Click's ``FloatRange`` accepts ``nan`` and ``inf`` (every comparison with nan is false, and inf
passes a lower bound), so ``--timeout nan`` reached the probes and ``--duration inf`` never
ended. Every numeric option takes one of these instead: a finite number within bounds, refused
otherwise as a usage error (one line, exit 2).
"""

from __future__ import annotations

import math

import click

# Upper bounds: far beyond any sensible run, low enough that no deadline overflows
# (threading.TIMEOUT_MAX is about 292 years on Linux) and that a typo is caught.
DAY_S = 24 * 3600.0
WEEK_S = 7 * DAY_S


class FiniteFloat(click.FloatRange):
    """A float within [min, max] (open ends as asked) that is never nan, inf or -inf."""

    name = "float"

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None  # not a number at all: FloatRange says so in its own words
        if number is not None and not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(value, param, ctx)


def seconds(minimum: float = 1.0, maximum: float = DAY_S) -> FiniteFloat:
    """A duration option in seconds (--timeout, --budget, --duration)."""
    return FiniteFloat(min=minimum, max=maximum)


def fraction(min_open: bool = True) -> FiniteFloat:
    """A fraction in (0, 1] (--straggler-threshold)."""
    return FiniteFloat(min=0.0, max=1.0, min_open=min_open)


def count(minimum: int = 1, maximum: int = 1024) -> click.IntRange:
    """A bounded count (--procs, --gpus, --allreduce-max-mib): absurd sizes are usage errors,
    not machine failures found after a long start-up."""
    return click.IntRange(min=minimum, max=maximum)


def non_empty(ctx: click.Context, param: click.Parameter, value):
    """Callback: a list option given as '' (or only commas and blanks) names nothing; running
    everything instead would hide the mistake."""
    if value is not None and not str(value).replace(",", "").strip():
        raise click.BadParameter(f"{value!r} names nothing: give a comma-separated list", ctx=ctx, param=param)
    return value


_INTERPRETER_NAMES = ("python", "pypy", "graalpy")


