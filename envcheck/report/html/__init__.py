"""Self-contained HTML reports: one file, inline SVG and CSS, no script, no network.

:func:`render_html` is a pure function of a report's JSON (the JSON stays the source of truth),
dispatching on its ``schema``:

- ``envcheck.snapshot`` with ``findings`` (``envcheck doctor --format json``): html/doctor.py
- ``envcheck.validate`` (``envcheck validate --format json``): html/validate.py
- ``envcheck.cluster`` (rank 0's report of a torchrun/srun run): html/cluster.py
- ``envcheck.compare`` (``envcheck compare --format json``): html/compare.py

A new report kind (the fleet drift table) is one module with
``render(doc) -> (title, body)`` and one line in ``RENDERERS``. The report passes through
envcheck.redact's scrubber first, so a secret never reaches the page; every string is then
escaped where it is placed (html/base.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from envcheck.report.html import cluster, compare, doctor, validate
from envcheck.report.html.base import page

try:  # the secret scrubber; identity if it is ever missing, the page still renders
    from envcheck.redact import scrub as _scrub
except ImportError:  # pragma: no cover - redact ships with envcheck
    def _scrub(obj: Any) -> Any:
        return obj

RENDERERS: dict[str, Callable[[Mapping], tuple[str, str]]] = {
    "envcheck.snapshot": doctor.render,
    "envcheck.validate": validate.render,
    "envcheck.cluster": cluster.render,
    "envcheck.compare": compare.render,
}


class ReportError(ValueError):
    """A document this renderer cannot draw (not an object, unknown schema)."""


def render_html(report: Mapping) -> str:
    """The whole HTML document for ``report`` (a doctor, validate or cluster JSON dict)."""
    if not isinstance(report, Mapping):
        raise ReportError("the report is not a JSON object")
    schema = report.get("schema")
    fn = RENDERERS.get(schema) if isinstance(schema, str) else None
    if fn is None:
        known = ", ".join(sorted(RENDERERS))
        raise ReportError(f"no HTML view for schema {str(schema)[:60]!r} (known: {known})")
    from envcheck import __version__

    title, body = fn(_scrub(dict(report)))
    return page(title, body, generator=f"envcheck {__version__}")


def doctor_document(snapshot: dict, findings: list, strict: bool = False) -> dict:
    """The doctor JSON (snapshot + findings + summary), as ``doctor --format json`` prints it."""
    from envcheck.report import doctor as doctor_text

    return json.loads(doctor_text.to_json(snapshot, findings, strict=strict))


def complete(doc: dict) -> dict:
    """A saved snapshot (``doctor --save``) has no findings: evaluate the rules (pure) for it."""
    if doc.get("schema") == "envcheck.snapshot" and "findings" not in doc:
        from envcheck import rules
        from envcheck import snapshot as snap

        snap.validate(doc)
        return doctor_document(doc, rules.evaluate(doc))
    return doc


def write_html(path: str, report: Mapping) -> None:
    """Render ``report`` and write it to ``path`` atomically (raises OSError, ReportError)."""
    from envcheck.report.html import files

    files.write(path, render_html(report))
