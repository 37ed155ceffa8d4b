"""Which address a request comes from, behind trusted reverse proxies.

X-Forwarded-For is written by whoever sends the request, so it is believed
only when the request comes from a configured proxy, and then only up to the
first hop that is not itself a trusted proxy: a client cannot buy a fresh
rate-limit budget by forging the header.
"""

import ipaddress

__all__ = ["ClientAddress"]


class ClientAddress:
    """Callable: ``client_address(req) -> str``."""

    def __init__(self, trusted_proxies=()):
        self.networks = [ipaddress.ip_network(proxy, strict=False) for proxy in trusted_proxies]

    def _trusted(self, address):
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def __call__(self, req):
        peer = req.remote_addr or "unknown"
        if not self.networks or not self._trusted(peer):
            return peer
        forwarded = req.get_header("X-Forwarded-For")
        if not forwarded:
            return peer
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        # Walk back from the hop nearest to us; the first one we do not trust
        # is the client as far as anyone we trust can vouch.
        for hop in reversed(hops):
            if not self._trusted(hop):
                return hop if _is_address(hop) else peer
        return hops[0] if hops and _is_address(hops[0]) else peer


def _is_address(text):
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
