"""A strict HTML checker for the tests: balanced tags, nothing external, no script.

html.parser is lenient (it accepts any tag soup), so this subclass keeps a stack and fails on
an end tag that does not close the innermost open element, on an element left open, and on
anything that could load or run something: <script>, on* handlers, an http(s) or protocol-
relative URL in src/href, url(...) to anything but a local #fragment, @import.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
_URL_FN = re.compile(r"url\(\s*['\"]?\s*([^)'\"]*)", re.IGNORECASE)


class StrictHTML(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: dict[str, int] = {}
        self.classes: dict[str, int] = {}
        self.text: list[str] = []
        self.in_style = False
        self.styles: list[str] = []

    def _attrs(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        for name, value in attrs:
            value = value or ""
            if name.startswith("on"):
                self.errors.append(f"event handler {name} on <{tag}>")
            if name in ("src", "href", "xlink:href", "action", "formaction", "srcset", "data", "poster") \
                    and not value.startswith("#"):
                self.errors.append(f"<{tag} {name}={value!r}>: not a local fragment")
            if name == "style":
                self.styles.append(value)
            if name == "class":
                for cls in value.split():
                    self.classes[cls] = self.classes.get(cls, 0) + 1
            for m in _URL_FN.finditer(value):
                if not m.group(1).startswith("#"):
                    self.errors.append(f"url({m.group(1)}) in <{tag} {name}>")

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.errors.append("<script> element")
        self._attrs(tag, attrs)
        if tag == "style":
            self.in_style = True
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):  # <rect/>, <circle/>: SVG's self-closing elements
        self._attrs(tag, attrs)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else 'nothing'}>")
            if tag in self.stack:
                while self.stack and self.stack.pop() != tag:
                    pass
            return
        self.stack.pop()
        if tag == "style":
            self.in_style = False

    def handle_data(self, data):
        if self.in_style:
            self.styles.append(data)
        else:
            self.text.append(data)

    def close(self):
        super().close()
        if self.stack:
            self.errors.append(f"left open: {self.stack}")
        for css in self.styles:
            if "@import" in css:
                self.errors.append("@import in CSS")
            for m in _URL_FN.finditer(css):
                if not m.group(1).startswith("#"):
                    self.errors.append(f"url({m.group(1)}) in CSS")


def check(page: str) -> StrictHTML:
    """Parse ``page``; raise AssertionError listing every problem found."""
    assert page.startswith("<!DOCTYPE html>"), page[:40]
    p = StrictHTML()
    p.feed(page)
    p.close()
    assert not p.errors, p.errors[:10]
    assert not re.search(r"(?:src|href)\s*=\s*['\"]?\s*(?:https?:)?//", page, re.IGNORECASE)
    assert "@import" not in page
    return p
