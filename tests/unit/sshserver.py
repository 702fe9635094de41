"""SSH servers in the test's process, for tests of connecting: paramiko's server side on 127.0.0.1.

One host listens; the others are reached only through it or through each other, as jump hosts
(ProxyJump's direct-tcpip channels): each is served in this process over the forwarded channel, with a
host key of its own, so a chain of jump hosts needs one port and no server but this. Every host lets in
any public key. What each host was asked for is logged, in order: `auth NAME` when a client began to log
in, `forward NAME -> NAME` when it asked for a channel to another host.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import paramiko
from paramiko import ECDSAKey, PKey

Address = tuple[str, int]


class Host(paramiko.ServerInterface):
    """One server's answers: any public key is let in, a channel to another host of the network opened."""

    def __init__(self, network: Network, name: str) -> None:
        self.network, self.name = network, name
        self.destinations: dict[int, Address] = {}
        self.asked_to_log_in = False

    def logging_in(self) -> None:
        if not self.asked_to_log_in:  # paramiko asks several times a login: logged once
            self.asked_to_log_in = True
            self.network.log.append(f"auth {self.name}")

    def get_allowed_auths(self, username: str) -> str:
        self.logging_in()
        return "publickey"

    def check_auth_none(self, username: str) -> int:
        self.logging_in()
        return paramiko.AUTH_FAILED

    def check_auth_password(self, username: str, password: str) -> int:
        self.logging_in()
        return paramiko.AUTH_FAILED

    def check_auth_publickey(self, username: str, key: PKey) -> int:
        self.logging_in()
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_direct_tcpip_request(self, chanid: int, origin: Address, destination: Address) -> int:
        to = self.network.named(tuple(destination))
        if to is None:
            return paramiko.OPEN_FAILED_CONNECT_FAILED
        self.network.log.append(f"forward {self.name} -> {to}")
        self.destinations[chanid] = tuple(destination)
        return paramiko.OPEN_SUCCEEDED


class Network:
    """Named hosts: `entry` listens on 127.0.0.1, the others are addresses on 127.0.0.1 where nothing
    listens (a client going there directly is refused at once), reached only as jump hosts' destinations."""

    def __init__(self, entry: str, *hidden: str) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.reserved = [socket.socket() for _ in hidden]  # bound, never listening: their ports stay closed
        for sock in self.reserved:
            sock.bind(("127.0.0.1", 0))
        self.addresses = {entry: self.listener.getsockname()}
        self.addresses.update(
            (name, sock.getsockname()) for name, sock in zip(hidden, self.reserved, strict=True)
        )
        self.keys = {name: ECDSAKey.generate() for name in self.addresses}
        self.log: list[str] = []
        self.transports: list[paramiko.Transport] = []
        threading.Thread(target=self._accept, args=(entry,), daemon=True).start()

    def named(self, address: Address) -> str | None:
        return next((name for name, at in self.addresses.items() if at == address), None)

    def _accept(self, entry: str) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:  # closed: the test is over
                return
            threading.Thread(target=self._serve, args=(sock, entry), daemon=True).start()

    def _serve(self, sock: socket.socket | paramiko.Channel, name: str) -> None:
        transport = paramiko.Transport(sock)
        self.transports.append(transport)
        transport.add_server_key(self.keys[name])
        host = Host(self, name)
        try:
            transport.start_server(server=host)
        except (paramiko.SSHException, EOFError, OSError):  # the client went away
            return
        while (channel := transport.accept()) is not None:  # None: the transport closed
            to = self.named(host.destinations.pop(channel.get_id()))
            threading.Thread(target=self._serve, args=(channel, to), daemon=True).start()

    def close(self) -> None:
        self.listener.close()
        for sock in self.reserved:
            sock.close()
        for transport in self.transports:
            transport.close()


@contextmanager
def network(entry: str, *hidden: str) -> Iterator[Network]:
    """A Network for the length of a test."""
    hosts = Network(entry, *hidden)
    try:
        yield hosts
    finally:
        hosts.close()
