"""Client addresses behind trusted proxies, failed-authentication budgets, and JWT expiry rules."""

from __future__ import annotations

import pytest

from modelpilot.inference.auth import sign_hs256, verify_hs256
from modelpilot.inference.clients import ClientAddresses, parse_networks
from modelpilot.inference.errors import RateLimitedError, UnauthorizedError
from modelpilot.inference.ratelimit import RateLimiter

GATEWAY = ClientAddresses(parse_networks("10.0.0.0/8, fd00::/8"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("10.1.2.3", "203.0.113.7", "203.0.113.7"),  # the Gateway names the client
        ("10.1.2.3", "198.51.100.1, 203.0.113.7", "203.0.113.7"),  # what a client wrote itself is ignored
        ("10.1.2.3", "203.0.113.7, 10.9.9.9", "203.0.113.7"),  # a chain of trusted proxies is skipped
        ("10.1.2.3", "not-an-address", "10.1.2.3"),
        ("10.1.2.3", None, "10.1.2.3"),
        ("192.0.2.5", "203.0.113.7", "192.0.2.5"),  # not a trusted peer: its header means nothing
        ("fd00::1", "2001:db8::2", "2001:db8::2"),
        ("testclient", "203.0.113.7", "testclient"),
    ],
)
def test_the_forwarded_header_is_believed_only_from_trusted_proxies(
    peer: str, forwarded: str | None, client: str
) -> None:
    assert GATEWAY.address(peer, forwarded) == client
    assert ClientAddresses().address(peer, forwarded) == peer


def test_bad_cidrs_are_refused() -> None:
    with pytest.raises(ValueError, match=r"10\.0\.0\.300"):
        parse_networks("10.0.0.300/8")


def test_a_spent_failure_budget_refuses_before_looking_and_refills() -> None:
    now = [0.0]
    failures = RateLimiter(0.5, 2, clock=lambda: now[0])
    for _ in range(2):
        failures.check_left("a")
        failures.spend("a")
    with pytest.raises(RateLimitedError) as caught:
        failures.check_left("a")
    assert caught.value.retry_after == pytest.approx(2.0)
    failures.check_left("b")
    now[0] = 2.0
    failures.check_left("a")


def test_tokens_without_exp_are_refused_unless_allowed() -> None:
    secret = b"s"
    forever = sign_hs256({"sub": "svc"}, secret)
    with pytest.raises(UnauthorizedError, match="no exp"):
        verify_hs256(forever, secret)
    assert verify_hs256(forever, secret, require_exp=False) == "svc"
    for bad in ("tomorrow", True, [1]):
        with pytest.raises(UnauthorizedError, match="not a number"):
            verify_hs256(sign_hs256({"sub": "svc", "exp": bad}, secret), secret)
    assert verify_hs256(sign_hs256({"sub": "svc", "exp": 100}, secret), secret, now=50) == "svc"
