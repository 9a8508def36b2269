"""The all-reduce's checked pattern stays exact at any world size (issue 10, class 11).

Element i of rank r is ``1 + (r + i) % K`` with ``n * K < 2^24``: every partial sum is an
integer below 2^24, so float32 adds it exactly in any order. The old pattern
``(r + 1) * (i % M + 1)`` summed to n(n+1)/2, past 2^24 from n = 5793.
"""

from __future__ import annotations

import pytest
import torch

from envcheck.validate.checks.allreduce import expected_sum, pattern_modulus, pattern_value

EXACT = 1 << 24
SIZES = [2, 3, 8, 5793, 100_000, 1_000_000]


def _brute(n: int, i: int, k: int) -> int:
    return sum(pattern_value(r, i, k) for r in range(n))


@pytest.mark.parametrize("n", SIZES)
def test_expected_sum_is_the_exact_integer_sum(n):
    k = pattern_modulus(n)
    for i in (0, 1, k - 1, k, 7 * k + 3, 12345):
        assert expected_sum(n, i, k) == _brute(n, i, k) < EXACT


@pytest.mark.parametrize("n", SIZES)
def test_float32_sums_match_in_any_order(n):
    """Simulate the reduction in float32 with torch on the CPU: sequential (cumsum) and
    torch's own blocked sum, over a few elements, give exactly the expected integers."""
    k = pattern_modulus(n)
    idx = torch.tensor([0, 1, k - 1, 12345], dtype=torch.int64)
    ranks = torch.arange(n, dtype=torch.int64).unsqueeze(1)
    values = ((ranks + idx).remainder(k) + 1).to(torch.float32)  # n x 4, one row per rank
    want = expected_sum(n, idx, k)
    assert torch.equal(values.sum(dim=0), want.to(torch.float32))
    assert torch.equal(values.cumsum(dim=0)[-1], want.to(torch.float32))
    assert torch.equal(values.flip(0).cumsum(dim=0)[-1], want.to(torch.float32))
    assert int(want.max()) < EXACT
    # a missing rank or a doubled one changes every element, and float32 still tells it apart
    missing = values[1:].sum(dim=0)
    doubled = values.sum(dim=0) + values[n // 2]
    assert bool((missing != want.to(torch.float32)).all())
    assert bool((doubled != want.to(torch.float32)).all())


def test_old_pattern_was_not_exact_from_5793():
    n = 5793
    assert n * (n + 1) // 2 > EXACT  # why the pattern changed
    assert (n - 1) * n // 2 < EXACT


def test_expected_sum_tensor_matches_int():
    n, k = 37, pattern_modulus(37)
    i = torch.arange(0, 600, dtype=torch.int64)
    assert expected_sum(n, i, k).tolist() == [expected_sum(n, int(x), k) for x in i]
