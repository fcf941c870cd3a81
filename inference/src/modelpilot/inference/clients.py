"""Who a request comes from: the peer address, or the client a trusted proxy names in a forwarded header."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

_MAX_CACHED_PEERS = 4096
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: str) -> tuple[IPNetwork, ...]:
    """Comma-separated CIDRs (or single addresses) as networks; raises ValueError on a bad one."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in cidrs.split(",") if part.strip())


class ClientAddresses:
    """The address a request is counted against for rate limits and failed authentication.

    Behind a Gateway the peer is the Gateway, the same for every client. Only when the peer is one of the
    `trusted` proxies is the forwarded header believed: its addresses are read from the right (the one
    the trusted proxy appended) and the first one that is not itself a trusted proxy is the client.
    Anything that does not parse as an address leaves the peer as the client.
    """

    def __init__(self, trusted: Iterable[IPNetwork] = ()) -> None:
        self.trusted = tuple(trusted)
        self._peer_trusted: dict[str, bool] = {}

    def address(self, peer: str, forwarded: str | None) -> str:
        """The client's address for this request."""
        if not self.trusted or forwarded is None or not self._is_trusted_peer(peer):
            return peer
        hops = [hop.strip() for hop in forwarded.split(",")]
        for hop in reversed(hops):
            try:
                address = ipaddress.ip_address(hop)
            except ValueError:
                return peer
            if not any(address in network for network in self.trusted):
                return str(address)
        return hops[0] if hops and hops[0] else peer

    def _is_trusted_peer(self, peer: str) -> bool:
        known = self._peer_trusted.get(peer)
        if known is None:
            try:
                address = ipaddress.ip_address(peer)
            except ValueError:
                return False
            known = any(address in network for network in self.trusted)
            if len(self._peer_trusted) >= _MAX_CACHED_PEERS:
                self._peer_trusted.clear()
            self._peer_trusted[peer] = known
        return known
