"""Where callbacks may go: public addresses only, unless the deployment allows a network.

A ``callback_url`` is chosen by whoever submits a job, and the worker POSTs to it from
inside the deployment: pointed at ``169.254.169.254`` (cloud metadata), ``127.0.0.1:6379``
(the broker) or a private service, it would make the worker an open proxy into the network
(SSRF). As GitHub does for webhooks, callbacks reach only globally routable addresses:
loopback, private (RFC 1918, ULA ``fc00::/7``), link-local, multicast, reserved,
unspecified, shared (CGNAT) and documentation ranges are refused. ``STT_CALLBACK_ALLOW_NETWORKS``
lists networks to allow anyway, for a web app inside the deployment's own network.

Two checks, because the first cannot be the last word:

* ``check_callback_url`` at enqueue time (``tasks.validation``): a URL with control
  characters or spaces, an IP literal in a refused range (any spelling: ``2130706433``,
  ``0``, ``127.1``, ``[::ffff:127.0.0.1]``), or a name that is internal by definition
  (``localhost``, ``*.internal`` such as ``metadata.google.internal``, ``*.local``, a name
  without a dot) is ``InvalidInput`` naming ``callback_url``.
* ``GuardedHTTPConnection`` at send time: the name is resolved once, every address is
  checked, and the socket connects to a checked address (the URL's name still goes in
  ``Host`` and in TLS's SNI and certificate check). A name that resolved to a public
  address when the job was submitted and to ``127.0.0.1`` now (DNS rebinding) is refused
  with ``DestinationRefused``; nothing is sent.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import requests
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from tasks.deadline import (
    DeadlineAdapter,
    DeadlineHTTPConnection,
    DeadlineHTTPSConnection,
    arm,
    mount,
    resolve,
)
from tasks.errors import DestinationRefused, InvalidInput
from tasks.settings import IPNetwork

__all__ = [
    "ALLOW_SETTING",
    "check_address",
    "check_callback_url",
    "guarded_connections",
    "guarded_session",
    "refusal",
]

ALLOW_SETTING = "STT_CALLBACK_ALLOW_NETWORKS"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Names that are internal whatever DNS says: RFC 6761 (localhost), RFC 6762 (.local),
# ICANN's .internal (GCP's metadata.google.internal), RFC 8375 (home.arpa), and common
# resolver search suffixes.
_INTERNAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa", ".lan")
# RFC 6052 NAT64: 64:ff9b::a.b.c.d reaches a.b.c.d through the gateway; judge that address.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)


def _kind(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public address (a word for the error), or None if it is one."""
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            return _kind(mapped)
        if ip in _NAT64:
            return _kind(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    for word, flag in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
    ):
        if flag:
            return word
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "shared (CGNAT)"
    if not ip.is_global:
        return "not globally routable"
    return None


def refusal(ip: IPAddress, allow: Sequence[IPNetwork]) -> str | None:
    """Why a callback may not connect to ``ip`` (None: it may)."""
    if any(ip.version == net.version and ip in net for net in allow):
        return None
    kind = _kind(ip)
    return None if kind is None else f"{ip} ({kind})"


def check_address(ip: str, allow: Sequence[IPNetwork]) -> None:
    """Raise ``DestinationRefused`` unless a callback may connect to ``ip``."""
    why = refusal(ipaddress.ip_address(ip.split("%", 1)[0]), allow)
    if why is not None:
        raise DestinationRefused(f"callback refused: {why} (allow it with {ALLOW_SETTING})")


def _literal(host: str) -> IPAddress | None:
    """``host`` as the address a resolver would make of it: dotted quads, but also the
    legacy spellings ``inet_aton`` accepts (``2130706433``, ``0x7f.1``, ``127.1``, ``0``)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def check_callback_url(field: str, url: str, allow: Sequence[IPNetwork]) -> str:
    """``url`` if callbacks may be sent there; ``InvalidInput`` naming ``field`` if not.

    Expects an http(s) URL with a host (``tasks.validation`` checks that first).
    """
    if any(ord(c) < 0x21 or 0x7F <= ord(c) <= 0x9F for c in url):
        raise InvalidInput(field, "must not contain spaces or control characters (CR, LF, ...)")
    host = (urlsplit(url).hostname or "").rstrip(".")
    if "%" in host or not host:
        raise InvalidInput(field, "has an invalid host")
    address = _literal(host)
    if address is not None:
        why = refusal(address, allow)
        if why is not None:
            raise InvalidInput(
                field, f"callbacks may not go to {why}; allow a network with {ALLOW_SETTING}"
            )
        return url
    # A deployment that allows networks calls back inside them, often by internal names
    # (a compose service "web", "app.internal"): the send-time check still applies.
    internal = host == "localhost" or host.endswith(_INTERNAL_SUFFIXES) or "." not in host
    if internal and not allow:
        raise InvalidInput(
            field,
            f"callbacks may not go to {host!r}, an internal name; "
            f"allow your network with {ALLOW_SETTING}",
        )
    return url


def _guarded_new_conn(conn: HTTPConnection, allow: Sequence[IPNetwork]) -> socket.socket:
    """urllib3's ``_new_conn`` for a callback: resolve once, check, connect to that IP."""
    try:
        infos = resolve(conn._dns_host, conn.port, 0, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    except TimeoutError as exc:  # a stalling resolver, cut off at the request's deadline
        raise ConnectTimeoutError(conn, str(exc)) from exc
    allowed: list[tuple[Any, ...]] = []
    refused: list[str] = []
    for family, kind, proto, _, sockaddr in infos:
        why = refusal(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]), allow)
        if why:
            refused.append(why)
        else:
            allowed.append((family, kind, proto, sockaddr))
    if not allowed:
        raise DestinationRefused(
            f"callback refused: {conn.host} resolves to {refused[0]} "
            f"(allow it with {ALLOW_SETTING})"
        )
    last: OSError | None = None
    for family, kind, proto, sockaddr in allowed:
        sock = socket.socket(family, kind, proto)
        try:
            for option in conn.socket_options or ():
                sock.setsockopt(*option)
            if conn.timeout is None or isinstance(conn.timeout, int | float):
                sock.settimeout(conn.timeout)
            sock.connect(sockaddr)
        except TimeoutError as exc:
            sock.close()
            raise ConnectTimeoutError(
                conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})"
            ) from exc
        except OSError as exc:
            sock.close()
            last = exc
            continue
        # The address we are connected to is the one we checked (no resolver in between).
        try:
            check_address(str(sock.getpeername()[0]), allow)
        except (DestinationRefused, OSError):
            sock.close()
            raise
        return sock
    raise NewConnectionError(conn, f"Failed to establish a new connection: {last}")


def guarded_connections(
    allow: Sequence[IPNetwork],
) -> tuple[type[HTTPConnection], type[HTTPSConnection]]:
    """Connection classes (for ``tasks.deadline.DeadlineAdapter``) that connect only to
    addresses ``allow`` or the public internet admit, and obey the request's deadline."""
    networks = tuple(allow)

    class GuardedHTTPConnection(DeadlineHTTPConnection):
        def _new_conn(self) -> socket.socket:
            sock = _guarded_new_conn(self, networks)
            arm(sock)
            return sock

    class GuardedHTTPSConnection(DeadlineHTTPSConnection):
        def _new_conn(self) -> socket.socket:
            sock = _guarded_new_conn(self, networks)
            arm(sock)
            return sock

    return GuardedHTTPConnection, GuardedHTTPSConnection


def guarded_session(allow: Sequence[IPNetwork]) -> requests.Session:
    """A session that connects only where these rules allow, obeys the current
    ``tasks.deadline`` scope, and reads nothing from the environment (no proxies, no
    ``~/.netrc`` credentials): for any URL a job's submitter chose (callbacks, the audio
    probe)."""
    session = requests.Session()
    session.trust_env = False
    http, https = guarded_connections(allow)
    mount(session, DeadlineAdapter(pool_size=1, http=http, https=https))
    return session
