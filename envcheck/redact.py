"""Secret detection: pure string functions, no machine access.

The env probe uses them to decide what it may record; renderers and the torch probe reuse
:func:`scrub_text` / :func:`scrub` as a last line of defence on free text (error messages,
stderr tails), because reports get pasted into public issues. Reviewers of similar env dumps
asked for exactly this: an allowlist of names plus redaction of anything that looks like a
credential (vllm-project/vllm#9293, flashinfer-ai/flashinfer#4007).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

REDACTED = "<redacted>"

# A variable whose *name* says it carries a credential is never recorded, whatever its value.
_SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|AUTH|COOKIE|PRIVATE",
                          re.IGNORECASE)

# Well-known credential formats, searched anywhere in a value or a text.
_TOKEN_PATTERNS = [
    r"hf_[A-Za-z0-9]{20,}",                      # Hugging Face access token
    r"gh[pousr]_[A-Za-z0-9]{20,}",               # GitHub classic tokens
    r"github_pat_[A-Za-z0-9_]{20,}",             # GitHub fine-grained token
    r"(?:AKIA|ASIA)[0-9A-Z]{16}",                # AWS access key id
    r"sk-[A-Za-z0-9_\-]{20,}",                   # OpenAI / Anthropic style API keys
    r"xox[abposr]-[A-Za-z0-9\-]{10,}",           # Slack tokens
    r"glpat-[A-Za-z0-9_\-]{20,}",                # GitLab personal access token
    r"npm_[A-Za-z0-9]{30,}",                     # npm token
    r"pypi-[A-Za-z0-9_\-]{40,}",                 # PyPI upload token
    r"AIza[0-9A-Za-z_\-]{35}",                   # Google API key
    r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",  # JWT
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
]
_TOKEN = re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(_TOKEN_PATTERNS) + ")")

# scheme://user:password@host or scheme://token@host (pip index URLs, git remotes, proxies).
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s]+)@")

# NAME=value inside free text (a traceback that echoes "HF_TOKEN=...", a "?token=" query), for
# scrub_text. Only "=": "KeyError: 'cuda'" must survive.
_ASSIGNMENT = re.compile(
    r"(?P<name>\b[A-Za-z_][A-Za-z0-9_]*)(?P<sep>\s*=\s*)(?P<quote>['\"]?)(?P<value>[^\s'\",;&]+)"
)

# GPU / MIG UUIDs (CUDA_VISIBLE_DEVICES=GPU-5f3f...): random-looking but not secret.
_UUID = re.compile(r"(?:MIG-)?(?:GPU-)?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

# A long run of token alphabet characters: candidates for the entropy test.
_CANDIDATE = re.compile(r"[A-Za-z0-9_\-+/=]{32,}")


def is_secret_name(name: str) -> bool:
    """True when the variable's name says it holds a credential (HF_TOKEN, NCCL_IB_KEY, ...)."""
    return bool(_SECRET_NAME.search(name))


def _entropy(s: str) -> float:
    counts = Counter(s)
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _high_entropy(segment: str) -> bool:
    """A random-looking credential rather than a word-like name, path or UUID.

    Either a run of 20+ letters and digits with no separator (hex or alnum tokens; 32 random
    hex characters score about 3.6 bits per character, word-like runs are short), or a
    base64-like mix of upper case, lower case and digits scoring 4.3+ bits per character
    (``expandable_segments_True_max_split_size_mb_512`` has no upper case, an arch list no
    lower case). Calibrated on secrets.token_hex / token_urlsafe against the values of the
    allowlisted variables; a git SHA in an allowlisted variable is dropped too, by design.
    """
    if segment.startswith(("/", "~", ".")) or segment.count("/") > 2:
        return False
    if _UUID.fullmatch(segment):
        return False
    for run in re.findall(r"[A-Za-z0-9]{20,}", segment):
        if re.search(r"[A-Za-z]", run) and re.search(r"[0-9]", run) and _entropy(run) >= 3.0:
            return True
    mixed = all(re.search(c, segment) for c in ("[A-Z]", "[a-z]", "[0-9]"))
    return mixed and _entropy(segment) >= 4.3


def has_url_credentials(value: str) -> bool:
    """True when a URL in ``value`` carries user info (``https://user:pass@host``), other than
    the ``***`` that :func:`strip_url_credentials` leaves."""
    return any(m.group("userinfo") != "***" for m in _URL_USERINFO.finditer(value))


def strip_url_credentials(value: str) -> str:
    """Replace the user info of every URL in ``value`` with ``***`` (keeps scheme and host)."""
    return _URL_USERINFO.sub(lambda m: m.group("scheme") + "***@", value)


def looks_secret(value: str) -> bool:
    """True when ``value`` holds something that looks like a credential.

    Known token formats anywhere, URLs with user info, or a long high-entropy segment
    (segments are split on whitespace and the list separators ``: ; ,``).
    """
    if not value:
        return False
    if _TOKEN.search(value) or has_url_credentials(value):
        return True
    for segment in re.split(r"[\s:;,]+", value):
        for cand in _CANDIDATE.findall(_UUID.sub("", segment)):
            if _high_entropy(cand):
                return True
    return False


def scrub_text(text: str) -> str:
    """Free text with every recognisable credential replaced by ``<redacted>``.

    Known token formats, URL user info, and the value of ``NAME=value`` / ``NAME: value``
    where NAME is secret-like. Deliberately no entropy test here: it would mangle hashes in
    paths of tracebacks, which are useful and not secret.
    """
    if not text:
        return text
    out = _TOKEN.sub(REDACTED, text)
    out = strip_url_credentials(out)

    def _assignment(m: re.Match) -> str:
        if not is_secret_name(m.group("name")) or m.group("value") == REDACTED:
            return m.group(0)
        return m.group("name") + m.group("sep") + m.group("quote") + REDACTED

    return _ASSIGNMENT.sub(_assignment, out)


def scrub(obj: Any) -> Any:
    """:func:`scrub_text` applied to every string (keys excluded) of a JSON-like structure."""
    if isinstance(obj, str):
        return scrub_text(obj)
    if isinstance(obj, dict):
        return {k: scrub(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub(v) for v in obj]
    return obj
