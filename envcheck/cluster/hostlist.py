"""Expand Slurm's compressed host lists (``node[01-03,07]``) without calling ``scontrol``.

Pure: a string in, a list of names out. Slurm writes ``SLURM_JOB_NODELIST`` in this form
(e.g. ``gnode[10,20,25,37]``, Slurm sbatch(1), OUTPUT ENVIRONMENT VARIABLES); the usual shell idiom is
``scontrol show hostnames "$SLURM_JOB_NODELIST"``, which is not available inside a
container or a test, hence this re-implementation of the syntax:

* top-level items are separated by commas outside brackets: ``a1,b[2-3]``;
* a bracket holds comma-separated numbers or ``lo-hi`` ranges; zero padding is kept
  (``[08-10]`` -> 08, 09, 10) and taken from the lower bound, as Slurm does;
* several bracket groups in one item expand as a product, leftmost varying slowest:
  ``r[1-2]n[1-2]`` -> r1n1, r1n2, r2n1, r2n2.
"""

from __future__ import annotations

import re

# Slurm refuses host lists past a few tens of thousands of names; a typo such as
# node[1-99999999] must fail fast here rather than allocate a huge list.
MAX_HOSTS = 65536


class HostlistError(ValueError):
    """The string is not a Slurm host list; the message says where it breaks."""


_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def _split_top(text: str) -> list[str]:
    items, depth, cur = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
            if depth > 1:
                raise HostlistError(f"nested '[' in host list {text!r}")
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise HostlistError(f"unbalanced ']' in host list {text!r}")
        if ch == "," and depth == 0:
            items.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise HostlistError(f"unbalanced '[' in host list {text!r}")
    items.append("".join(cur))
    return [i.strip() for i in items if i.strip()]


def _expand_bracket(body: str, whole: str) -> list[str]:
    out: list[str] = []
    for part in body.split(","):
        part = part.strip()
        m = _RANGE.match(part)
        if not m:
            raise HostlistError(f"bad range {part!r} in host list {whole!r} (expected N or N-M)")
        lo_s, hi_s = m.group(1), m.group(2)
        if hi_s is None:
            out.append(lo_s)
            continue
        lo, hi = int(lo_s), int(hi_s)
        if hi < lo:
            raise HostlistError(f"range {part!r} in host list {whole!r} goes backwards")
        if hi - lo + 1 > MAX_HOSTS:
            raise HostlistError(f"range {part!r} in host list {whole!r} is too large")
        width = len(lo_s) if lo_s.startswith("0") else 0
        out.extend(str(n).zfill(width) for n in range(lo, hi + 1))
    return out


def _expand_item(item: str) -> list[str]:
    names = [""]
    pos = 0
    for m in re.finditer(r"\[([^\[\]]*)\]", item):
        prefix = item[pos:m.start()]
        choices = _expand_bracket(m.group(1), item)
        names = [n + prefix + c for n in names for c in choices]
        if len(names) > MAX_HOSTS:
            raise HostlistError(f"host list item {item!r} expands to more than {MAX_HOSTS} names")
        pos = m.end()
    tail = item[pos:]
    if "[" in tail or "]" in tail:
        raise HostlistError(f"unbalanced bracket in host list item {item!r}")
    return [n + tail for n in names]


def expand(text: str) -> list[str]:
    """Every host name in ``text``, in order, duplicates kept as written (Slurm keeps them too)."""
    if text is None:
        return []
    out: list[str] = []
    for item in _split_top(text.strip()):
        out.extend(_expand_item(item))
        if len(out) > MAX_HOSTS:
            raise HostlistError(f"host list expands to more than {MAX_HOSTS} names")
    return out


def first(text: str) -> str | None:
    """The first host of a host list (where rank 0 runs under srun's block distribution), or None."""
    hosts = expand(text)
    return hosts[0] if hosts else None


_COUNT = re.compile(r"^(\d+)(?:\(x(\d+)\))?$")


def expand_counts(text: str) -> list[int]:
    """Expand Slurm's per-node task counts: ``"2(x3),1"`` -> [2, 2, 2, 1] (SLURM_TASKS_PER_NODE)."""
    out: list[int] = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        m = _COUNT.match(part)
        if not m:
            raise HostlistError(f"bad task count {part!r} in {text!r} (expected N or N(xM))")
        repeat = int(m.group(2) or 1)
        if repeat > MAX_HOSTS:
            raise HostlistError(f"task count {part!r} in {text!r} repeats too often")
        out.extend([int(m.group(1))] * repeat)
    return out
