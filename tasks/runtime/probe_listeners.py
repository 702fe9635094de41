"""The guards' part of the probe (runtime/probe.py runs it): who else listens on the app's port.

asked: {"port": PORT, "app": NAME}
"""

import _socket
import os
import pwd
import struct

from probe import name_of, output, read_text


def gather(asked):
    return {"listeners": listeners(asked["port"], asked["app"])}


# Netlink's socket diagnostics (linux/inet_diag.h, linux/sock_diag.h), as `ss` asks them.
NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY, NLMSG_ERROR, NLMSG_DONE = 4, 20, 2, 3
NLM_F_REQUEST_DUMP = 0x301
TCPF_LISTEN = 1 << 10
NLMSG_HEADER = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
# inet_diag_req_v2: family, protocol, extensions, pad, states; the socket id: source port (big-endian),
# destination port, addresses and interface (none: zero), cookie (none: all ones)
DIAG_REQUEST = struct.Struct("=BBBxI2s38x8s")
DIAG_PORT, DIAG_UID = struct.Struct(">H"), struct.Struct("=I")  # in inet_diag_msg, at bytes 4 and 64


def listening_uids(port):
    """The owners (uids) of the TCP sockets listening on port, IPv4 and IPv6, as the kernel's socket
    diagnostics list them (None when they cannot be asked). Asked for listening sockets only, the kernel
    never walks its table of connections: reading /proc/net/tcp does, wherever one stops reading."""
    uids = set()
    try:
        for family in (_socket.AF_INET, _socket.AF_INET6):
            for message in listening_sockets(family, port):
                if DIAG_PORT.unpack_from(message, 4)[0] == port:
                    uids.add(DIAG_UID.unpack_from(message, 64)[0])
    except (OSError, struct.error):
        return None
    return uids


def listening_sockets(family, port):
    """The kernel's inet_diag_msg of each TCP socket of family listening on port (the kernel filters by
    port where it can: check each); OSError when it refuses to answer."""
    request = DIAG_REQUEST.pack(
        family, _socket.IPPROTO_TCP, 0, TCPF_LISTEN, port.to_bytes(2, "big"), b"\xff" * 8
    )
    size = NLMSG_HEADER.size + len(request)
    diag = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW, NETLINK_SOCK_DIAG)
    try:
        diag.settimeout(5)
        diag.sendall(NLMSG_HEADER.pack(size, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST_DUMP, 1, 0) + request)
        while data := diag.recv(1 << 16):
            offset = 0
            while offset < len(data):
                length, kind = NLMSG_HEADER.unpack_from(data, offset)[:2]
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR or length < NLMSG_HEADER.size:
                    raise OSError("the kernel refused the socket diagnostics request")
                yield data[offset + NLMSG_HEADER.size : offset + length]
                offset += (length + 3) & ~3  # messages are aligned to 4 bytes
        raise OSError("the socket diagnostics ended without their last message")
    finally:
        diag.close()


def listeners(port, app):
    """Who else listens on the app's port: [{"pid", "user", "command"}] of the processes of users other
    than the app's. Only when the kernel shows a socket of another owner does `ss` name the processes (none
    when it is missing)."""
    try:
        app_uid = pwd.getpwnam(app).pw_uid
    except KeyError:
        app_uid = None
    uids = listening_uids(port)
    if uids is not None and uids <= {app_uid}:
        return []
    import re  # here: only when another user's socket is there to name

    named = output(["ss", "-Hltnp", f"sport = :{port}"])
    found = []
    for pid in sorted({int(p) for p in re.findall(r"pid=(\d+)", named)}):
        try:
            owner = os.stat(f"/proc/{pid}").st_uid
            command = read_text(f"/proc/{pid}/comm").strip()
        except OSError:
            continue
        if owner != app_uid:
            found.append({"pid": pid, "user": name_of(pwd.getpwuid, owner), "command": command})
    return found
