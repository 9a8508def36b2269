"""Secret detection: pure string functions, no machine access.

The env probe uses them to decide what it may record; renderers and the torch probe reuse
:func:`scrub_text` / :func:`scrub` as a last line of defence on free text (error messages,
stderr tails), because reports get pasted into public issues. Reviewers of similar env dumps
asked for exactly this: an allowlist of names plus redaction of anything that looks like a
credential (vllm-project/vllm#9293, flashinfer-ai/flashinfer#4007).
"""

from __future__ import annotations

import functools
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
    r"xox[abposre]-[A-Za-z0-9\-]{10,}",          # Slack tokens
    r"xapp-[0-9]-[A-Za-z0-9\-]{10,}",             # Slack app-level token
    r"glpat-[A-Za-z0-9_\-]{20,}",                # GitLab personal access token
    r"npm_[A-Za-z0-9]{30,}",                     # npm token
    r"pypi-[A-Za-z0-9_\-]{40,}",                 # PyPI upload token
    r"AIza[0-9A-Za-z_\-]{35}",                   # Google API key
    r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",  # JWT
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
]
_TOKEN = re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(_TOKEN_PATTERNS) + ")")

# scheme://user:password@host or scheme://token@host (pip index URLs, git remotes, proxies).
# The look-behind keeps a long run of letters linear (each start would rescan the run otherwise).
_URL_USERINFO = re.compile(r"(?<![A-Za-z0-9+.\-])(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s'\"]+)@")

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


# --------------------------------------------------------------------------- free-text scrubber
#
# One scrubber for everything that leaves the process (stdout in every format, stderr, the
# --save snapshot, reports): :func:`scrub_text` for a string, :func:`scrub` for a JSON-like
# object. The forms it recognises, each tested in tests/test_redact.py:
#   NAME=value, NAME: value, "name": "value" / 'name': 'value' (JSON, Python reprs, YAML),
#   Authorization: Bearer|Basic|Token ... headers and a bare "Bearer <token>",
#   user info in URLs (https://user:pass@host), secret query parameters (?password=, &sig=),
#   the token shapes of _TOKEN_PATTERNS and whole PEM private key blocks.
# A name counts as a credential by its *last* word (HF_TOKEN, db_password, accessToken,
# AWS_SECRET_ACCESS_KEY), so counts and settings that merely mention one (max_tokens=5,
# TOKENIZERS_PARALLELISM=false, token_count: 3) and paths with such a word (/data/token/x) stay.

# The last word of a name that says its value is a credential. Compound words are matched by
# suffix for the unambiguous ones (PGPASSWORD, hftoken); "key", "pass", "pwd" and "auth" only as a
# separate last word after another word (OPENAI_API_KEY, DB_PASS; not PWD, the working directory).
_CRED_SUFFIX = ("token", "password", "passwd", "passphrase", "secret", "apikey", "credential",
                "credentials", "cookie", "signature")
_CRED_LAST_WORD = ("key", "pass", "pwd", "auth", "sig")
# Query parameters that carry a credential on their own (presigned S3 / Azure SAS URLs, ?key=).
_CRED_QUERY = {"key", "sig", "pwd", "pass", "auth", "code_challenge_secret"}

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def _words(name: str) -> list[str]:
    """``AWS_SECRET_ACCESS_KEY`` -> aws secret access key; ``accessToken`` -> access token."""
    return [w.lower() for w in _WORD.findall(name)]


@functools.lru_cache(maxsize=4096)  # the same few key names, once per dict of a big report
def is_credential_key(name: str) -> bool:
    """True when a key or variable *name* says its value is a credential (see the block above).

    Stricter than :func:`is_secret_name`, which decides what the env probe may record: that one
    drops any name mentioning KEY or TOKEN; this one must not mangle ``max_tokens=5`` or
    ``KeyError: 'cuda'`` in free text.
    """
    words = _words(name)
    if not words:
        return False
    last = words[-1]
    if last.endswith(_CRED_SUFFIX):
        return True
    return len(words) > 1 and last in _CRED_LAST_WORD


def _secret_pair(name: str, value: str) -> bool:
    """A credential name with a value worth hiding. A name ending in "key" is also a lookup key
    (``"spec_key": "fp32"``, ``sort_key=3``): there, short values and numbers are kept (API keys
    are long)."""
    if not is_credential_key(name):
        return False
    if _words(name)[-1] == "key":
        plain = value.strip("'\"")
        return len(plain) >= 8 and not plain.replace(".", "", 1).isdigit()
    return True


_PEM_BLOCK = re.compile(
    r"-----BEGIN (?P<kind>[A-Z0-9 ]*)PRIVATE KEY-----"
    # without its END line (a truncated stderr tail): the base64 and header lines that follow
    r"(?:.*?-----END (?P=kind)PRIVATE KEY-----|(?:\r?\n(?:[A-Za-z0-9+/=]*|[A-Za-z\-]+: [^\r\n]*)(?=\r?\n|\Z))*)",
    re.DOTALL,
)

# Authorization / Proxy-Authorization header (HTTP, curl -H, a requests repr): the scheme word is
# kept, the credential goes.
_AUTH_HEADER = re.compile(
    r"(?P<head>\b(?:proxy-)?authorization(?P<q>['\"]?)[ \t]*[:=][ \t]*(?P<vq>['\"]?)[ \t]*"
    r"(?:(?P<scheme>bearer|basic|token|digest|negotiate|ntlm|aws4-hmac-sha256)[ \t]+)?)"
    r"(?!(?:bearer|basic|token|digest|negotiate|ntlm|aws4-hmac-sha256)[ \t])"  # a scheme is never the value
    r"(?P<value>[^\s'\",;{}\[\]()<>\\]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<head>\bBearer[ \t]+)(?P<value>[A-Za-z0-9\-._~+/]{8,}=*)")

# ?name=value or &name=value in a URL or a query string.
_QUERY = re.compile(r"(?P<head>[?&;](?P<name>[A-Za-z0-9_.\-]+)=)(?P<value>[^&#\s'\"<>\\]+)")

# NAME=value, NAME: value, "name": "value", 'name': 'value'. The name must not continue a path
# (/srv/token: ...) or another word (which also keeps the scan linear); the value is a quoted string (escapes allowed) or a run
# without blanks, quotes and list separators.
_PAIR = re.compile(
    r"(?<![\w/.\\\-])(?P<q>['\"]?)(?P<name>-{0,2}[A-Za-z_][A-Za-z0-9_.\-]*)(?P=q)"
    r"(?P<sep>[ \t]*(?:=|:(?![/\\]))[ \t]*)"
    r"(?P<value>\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'|[^\s'\",;&{\[\]}\\][^\s'\",;&\]}\\]*)"
)


def _redact_value(value: str) -> str:
    """The credential gone, its quotes kept (so JSON and reprs stay well-formed)."""
    if value[:1] in ("'", '"') and len(value) >= 2 and value[-1] == value[0]:
        return value[0] + REDACTED + value[0]
    return REDACTED


_NOT_A_VALUE = {REDACTED, "", "***", "null", "None", "true", "false", "True", "False"}


def _pair(m: re.Match) -> str:
    value = m.group("value")
    if value.strip("'\"") in _NOT_A_VALUE or not _secret_pair(m.group("name"), value):
        return m.group(0)
    quote = m.group("q")
    # "token": 12345 in JSON: the replacement is a quoted string, so the document stays JSON.
    new = _redact_value(value) if value[:1] in ("'", '"') or not quote else quote + REDACTED + quote
    return m.group(0)[: m.start("value") - m.start()] + new


def _query(m: re.Match) -> str:
    name = m.group("name")
    if m.group("value") == REDACTED or not (is_credential_key(name) or name.lower() in _CRED_QUERY
                                             or name.lower().startswith("x-amz-")
                                             and name.lower() != "x-amz-date"):
        return m.group(0)
    return m.group("head") + REDACTED


def _keep_head(m: re.Match) -> str:
    return m.group("head") + REDACTED


def _auth(m: re.Match) -> str:
    if m.group("value") in _NOT_A_VALUE:
        return m.group(0)
    if m.group("q") and not m.group("vq"):  # "Authorization": 12345 in JSON stays JSON
        return m.group("head") + m.group("q") + REDACTED + m.group("q")
    return _keep_head(m)


def scrub_text(text: str) -> str:
    """``text`` with every recognised credential replaced by ``<redacted>`` (the forms above).

    Idempotent, and leaves JSON text valid JSON. Deliberately no entropy test here: it would
    mangle hashes in the paths of tracebacks, which are useful and not secret.
    """
    if not text or not isinstance(text, str):
        return text
    out = _PEM_BLOCK.sub(REDACTED, text)
    out = _TOKEN.sub(REDACTED, out)
    out = _AUTH_HEADER.sub(_auth, out)
    out = _BEARER.sub(lambda m: m.group(0) if m.group("value") == REDACTED else _keep_head(m), out)
    out = strip_url_credentials(out)
    out = _QUERY.sub(_query, out)
    return _PAIR.sub(_pair, out)


# scrub_text is pure: a report repeats the same keys and values (a cluster report, once per
# rank), so they are scrubbed once (issue 10, class 11).
_scrub_cached = functools.lru_cache(maxsize=1 << 16)(scrub_text)

_PLAIN = frozenset({int, float, bool, type(None)})
MAX_DEPTH = 100  # deeper than any report envcheck makes; a deeper subtree is replaced, not walked


def scrub(obj: Any, _depth: int = 0) -> Any:
    """:func:`scrub_text` on every string of a JSON-like structure, keys included; a value under
    a credential key (``{"password": "x"}``, ``env.vars.HF_TOKEN``) is redacted whole.

    Returns new containers (tuples become lists, as in JSON); the input is not changed.
    """
    kind = type(obj)
    if kind is str:
        return _scrub_cached(obj)
    if kind in _PLAIN:  # numbers, booleans, None: nothing to scrub (most leaves of a report)
        return obj
    if isinstance(obj, str):
        return _scrub_cached(obj)
    if _depth > MAX_DEPTH and isinstance(obj, (dict, list, tuple)):
        return "<too deeply nested>"
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if isinstance(k, str):
                key = _scrub_cached(k)
                # is_credential_key first (cached): _secret_pair's own first test, before str(v)
                if (is_credential_key(k) and isinstance(v, (str, int, float)) and not isinstance(v, bool)
                        and v not in ("", REDACTED) and _secret_pair(k, str(v))):
                    out[key] = REDACTED
                    continue
            else:
                key = k
            out[key] = v if type(v) in _PLAIN else scrub(v, _depth + 1)  # no call per number
        return out
    if isinstance(obj, (list, tuple)):
        return [v if type(v) in _PLAIN else scrub(v, _depth + 1) for v in obj]
    return obj
