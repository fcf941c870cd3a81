"""The operator's settings from the environment."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from modelpilot.operator.settings import OperatorSettings


def test_router_proxies_are_cidrs_and_a_bad_one_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPILOT_ROUTER_PROXIES", "10.42.0.0/16, fd00::/8")
    assert OperatorSettings().router_proxies == "10.42.0.0/16, fd00::/8"
    monkeypatch.setenv("MODELPILOT_ROUTER_PROXIES", "10.42.0.0/16,gateway")
    with pytest.raises(ValidationError, match="gateway"):
        OperatorSettings()
