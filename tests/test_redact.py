"""envcheck.redact: the one scrubber (issue 10, class 5). Every recognised form, the
non-secrets that must survive, objects (keys and values), JSON staying JSON, idempotence."""

from __future__ import annotations

import json
import random
import time

import pytest

from envcheck import redact
from envcheck.redact import REDACTED, scrub, scrub_text

HF = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz12"
GHP = "ghp_" + "a1B2" * 9
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"


@pytest.mark.parametrize("text,expected", [
    # NAME=value and NAME: value
    ("HF_TOKEN=abc123 rest", "HF_TOKEN=<redacted> rest"),
    ("HF_TOKEN = abc123", "HF_TOKEN = <redacted>"),
    ("HF_TOKEN: abc123", "HF_TOKEN: <redacted>"),
    ("db_password: hunter2", "db_password: <redacted>"),
    ("PGPASSWORD=hunter2", "PGPASSWORD=<redacted>"),
    ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG", "AWS_SECRET_ACCESS_KEY=<redacted>"),
    ("OPENAI_API_KEY=abcdefgh12", "OPENAI_API_KEY=<redacted>"),
    ("accessToken: abc", "accessToken: <redacted>"),
    ("--password=hunter2", "--password=<redacted>"),
    ('password = "my secret pass"', 'password = "<redacted>"'),
    # dict / JSON / repr pairs
    ('{"password": "hunter2", "user": "bob"}', '{"password": "<redacted>", "user": "bob"}'),
    ("{'token': 'abc', 'n': 1}", "{'token': '<redacted>', 'n': 1}"),
    ('{"client_secret": "a\\"b"}', '{"client_secret": "<redacted>"}'),
    ('{"token": 12345}', '{"token": "<redacted>"}'),
    # Authorization headers, bare bearer tokens
    ("Authorization: Bearer abc.def.ghi", "Authorization: Bearer <redacted>"),
    ("authorization: Basic dXNlcjpwYXNz", "authorization: Basic <redacted>"),
    ("curl -H 'Authorization: token gh123456'", "curl -H 'Authorization: token <redacted>'"),
    ("{'Authorization': 'Bearer abcdefgh'}", "{'Authorization': 'Bearer <redacted>'}"),
    ("Proxy-Authorization: Basic dXNlcjpwYXNz", "Proxy-Authorization: Basic <redacted>"),
    ("got Bearer abcdefgh1234 back", "got Bearer <redacted> back"),
    # credentials in URLs and query parameters
    ("https://user:pass@host/simple", "https://***@host/simple"),
    ("git+https://ghtoken@github.com/x.git", "git+https://***@github.com/x.git"),
    ("https://h/x?password=p1&a=1", "https://h/x?password=<redacted>&a=1"),
    ("/x?api_key=K&access_token=T&secret=S&token=Z",
     "/x?api_key=<redacted>&access_token=<redacted>&secret=<redacted>&token=<redacted>"),
    ("s3.amazonaws.com/b/k?X-Amz-Date=20260101&X-Amz-Signature=abcdef&sig=zz",
     "s3.amazonaws.com/b/k?X-Amz-Date=20260101&X-Amz-Signature=<redacted>&sig=<redacted>"),
    # well-known token shapes, anywhere
    (f"using {HF} now", "using <redacted> now"),
    (f"[{GHP}]", "[<redacted>]"),
    ("gho_" + "x1" * 18, REDACTED),
    ("github_pat_11ABCDEFG0abcdefghijklmnopqrstuvwxyz", REDACTED),
    ("key AKIAIOSFODNN7EXAMPLE!", "key <redacted>!"),
    ("xoxb-1234567890-abcdefghij", REDACTED),
    (JWT, REDACTED),
    # private key blocks: the whole block, also when its END line was cut off
    ("a\n-----BEGIN RSA PRIVATE KEY-----\nMIIEab+/=\nQQ==\n-----END RSA PRIVATE KEY-----\nb", "a\n<redacted>\nb"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nb3BlbnNz\nAAAA\nTraceback (most recent)",
     "<redacted>\nTraceback (most recent)"),
])
def test_each_form_is_scrubbed(text, expected):
    assert scrub_text(text) == expected
    assert scrub_text(expected) == expected  # idempotent


@pytest.mark.parametrize("text", [
    "TORCH_CUDA_ARCH_LIST=8.0", "TORCH_CUDA_ARCH_LIST=8.0;8.6;9.0+PTX", "max_tokens=5", "max_new_tokens: 5",
    "TOKENIZERS_PARALLELISM=false", "token_count: 3", "/data/token/checkpoint.pt",
    "ls /srv/token: No such file or directory", "FileNotFoundError: [Errno 2] No such file: '/home/u/secret'",
    "KeyError: 'cuda'", "PermissionError: [Errno 13] Permission denied: '/home/me/.cache/token'",
    "PWD=/home/u", "NCCL_IB_PKEY=0x10", "https://download.pytorch.org/whl/cu126",
    "the key: value pair", "Error: token expired", "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True",
    "passthrough=1", "signal: 11", '"password": null', '{"password": ""}', "CUDA_VISIBLE_DEVICES=GPU-5f3f0e0c",
    "sha256=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "tokenizer.json: 2 MB",
    "host: gpu-node-1", "author: Jane", "nvidia-smi: command not found", "sort_key=3", '{"spec_key": "fp32"}',
    "cache_key: 1234567890",
])
def test_non_secrets_are_left_alone(text):
    assert scrub_text(text) == text


def test_the_env_probe_test_text_is_unchanged():
    """The example the env probe's tests have always used still scrubs the same way."""
    text = f"KeyError: 'cuda'\nHF_TOKEN=abc123 fetching https://u:p@host/x?token=zz&a=1 with {HF}"
    assert scrub_text(text) == ("KeyError: 'cuda'\nHF_TOKEN=<redacted> fetching "
                                "https://***@host/x?token=<redacted>&a=1 with <redacted>")


@pytest.mark.parametrize("name,credential", [
    ("HF_TOKEN", True), ("token", True), ("x-amz-security-token", True), ("client_secret", True),
    ("DB_PASS", True), ("OPENAI_API_KEY", True), ("NCCL_IB_KEY", True), ("GOOGLE_APPLICATION_CREDENTIALS", True),
    ("max_tokens", False), ("TOKENIZERS_PARALLELISM", False), ("token_count", False), ("KeyError", False),
    ("PWD", False), ("key", False), ("NCCL_IB_PKEY", False), ("signal", False), ("author", False),
])
def test_credential_names(name, credential):
    assert redact.is_credential_key(name) is credential


def test_scrub_walks_keys_and_values():
    doc = {
        "env": {"vars": {"HF_TOKEN": "abc", "PIP_INDEX_URL": "https://u:p@h/simple?password=x",
                         "TORCH_CUDA_ARCH_LIST": "8.0", "max_tokens": 5}},
        "https://u:p@h": [HF, ("t", {"password": 123, "token": True})],
        "headers": "Authorization: Bearer abcdefgh",
    }
    out = scrub(doc)
    assert out == {
        "env": {"vars": {"HF_TOKEN": REDACTED, "PIP_INDEX_URL": "https://***@h/simple?password=<redacted>",
                         "TORCH_CUDA_ARCH_LIST": "8.0", "max_tokens": 5}},
        "https://***@h": [REDACTED, ["t", {"password": REDACTED, "token": True}]],
        "headers": "Authorization: Bearer <redacted>",
    }
    assert doc["env"]["vars"]["HF_TOKEN"] == "abc"  # the input is not changed


def test_scrubbed_json_text_stays_json():
    doc = {"token": 5, "a": {"password": 'x"y', "url": "https://u:p@h/?api_key=k"}, "b": [HF, JWT],
           "auth": "Authorization: Basic dXNlcjpwYXNz", "ok": "TORCH_CUDA_ARCH_LIST=8.0"}
    for text in (json.dumps(doc), json.dumps(doc, indent=2), json.dumps(doc, ensure_ascii=False)):
        back = json.loads(scrub_text(text))
        assert back["token"] == REDACTED and back["a"]["password"] == REDACTED
        assert back["a"]["url"] == "https://***@h/?api_key=<redacted>"
        assert back["b"] == [REDACTED, REDACTED] and back["ok"] == doc["ok"]


def test_too_deep_structures_do_not_recurse_forever():
    deep: list = []
    node = deep
    for _ in range(5000):
        node.append([])
        node = node[0]
    assert "<too deeply nested>" in json.dumps(scrub(deep))


@pytest.mark.parametrize("unit", ["ab-cd.ef_", "a-", "--a", "a: ", "'a'", '"a":', "https://", "?a=b&", "hf_a", "x"])
def test_hostile_input_is_scrubbed_in_linear_time(unit):
    """A regex that rescans a run from every start is quadratic: 100 kB of ``ab-cd.ef_`` took
    minutes before the look-behinds. The bound is ~100x what a linear scan needs here."""
    text = unit * (100_000 // len(unit))
    started = time.perf_counter()
    scrub_text(text)
    assert time.perf_counter() - started < 5



_PIECES = ["token", "password", "=", ": ", "'", '"', "{", "}", "Bearer ", "Authorization: ", "https://", "u:p@",
           "?", "&", "key", "_", "-", "/", "\n", " ", "hf_", "a1" * 12, "-----BEGIN PRIVATE KEY-----", "\\",
           "<redacted>", "\x1b", "é", "12345678", '\\"', "\\", "x@y", "sig", ",", "secret"]


def test_scrub_text_never_raises_and_is_idempotent_on_random_text():
    """A seeded fuzz over the scrubber's own syntax (deterministic; no extra test dependency)."""
    rng = random.Random(10)
    for _ in range(3000):
        text = "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 30)))
        once = scrub_text(text)
        assert scrub_text(once) == once, repr(text)


def test_scrubbed_json_documents_stay_json_on_random_documents():
    rng = random.Random(11)
    keys = ["token", "HF_TOKEN", "max_tokens", "password", "url", "spec_key", "api_key", "Authorization"]
    for _ in range(3000):
        doc = {rng.choice(keys): rng.choice(["".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 6))),
                                              rng.randint(-10**12, 10**12), None, True])
               for _ in range(rng.randint(0, 5))}
        if rng.random() < 0.3:
            doc = {"outer": doc, "list": [doc, str(doc)]}
        text = json.dumps(doc, ensure_ascii=rng.random() < 0.5,
                          separators=rng.choice([(",", ":"), (", ", ": ")]), indent=rng.choice([None, 2]))
        back = json.loads(scrub_text(text))
        assert set(back) == set(doc), text
