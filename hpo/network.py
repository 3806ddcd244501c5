"""Who can reach a server that hpo starts: a warning when it is more than this machine.

``hpo dashboard`` and ``hpo proxy`` have no authentication of their own (neither has
optuna-dashboard nor Optuna's gRPC proxy). On a loopback address only this machine reaches
them; on any other address, anyone who reaches the port reads the study (dashboard) or reads
and writes the whole storage (proxy), so hpo says so, once, when it starts.
"""

from __future__ import annotations

import ipaddress
import socket

# What a person should do instead, for both servers.
RESTRICT = ("to restrict it, keep --host 127.0.0.1 and reach it through an SSH tunnel "
            "(ssh -L PORT:127.0.0.1:PORT host) or a reverse proxy with authentication")


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def exposure_warning(host: str, port: int, server: str, access: str) -> str | None:
    """One warning line when ``host`` is not loopback; None otherwise.

    Args:
        host, port: where the server listens.
        server: what it is, e.g. ``optuna-dashboard``.
        access: what a visitor can do, e.g. ``read every study in the storage``.
    """
    if is_loopback(host):
        return None
    return (f"[hpo] warning: {server} on {host}:{port} has no authentication: anyone who can "
            f"reach this port can {access}; {RESTRICT.replace('PORT', str(port))}")
