"""supervisor_update's part of the probe (runtime/probe.py runs it): supervisor's view of the app's
program, asked over supervisord's socket, with its uptime and its workers.

    asked: {"socket": PATH, "name": PROGRAM}
"""

import _socket
import os

from probe import proc_stat


def gather(asked):
    return {"program": program(asked["socket"], asked["name"])}


# supervisord's XML-RPC, asked over its socket in a few lines: xmlrpc.client (http.client, email) would
# be half the probe's start-up. Only getProcessInfo's answer is read: a struct of strings and ints.
RPC_CALL = (
    '<?xml version="1.0"?><methodCall><methodName>supervisor.getProcessInfo</methodName>'
    "<params><param><value><string>{}</string></value></param></params></methodCall>"
)
RPC_NUMBERS, RPC_TYPES = ("int", "i4", "boolean"), ("string", "int", "i4", "boolean")
XML_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'"), ("&amp;", "&"))


def rpc_process_info(socket_path, name):
    """supervisor.getProcessInfo(name) as a dict, or None (no such program, supervisord down, a fault)."""
    escaped = name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    body = RPC_CALL.format(escaped).encode()
    head = f"POST /RPC2 HTTP/1.0\r\nContent-Type: text/xml\r\nContent-Length: {len(body)}\r\n\r\n"
    answer = b""
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        conn.settimeout(5)
        conn.connect(socket_path)
        conn.sendall(head.encode() + body)
        while chunk := conn.recv(1 << 16):
            answer += chunk
    finally:
        conn.close()
    status, _, rest = answer.decode(errors="replace").partition("\r\n\r\n")
    if " 200 " not in status.split("\r\n", 1)[0] or "<fault>" in rest:
        return None
    return rpc_struct(rest)


def rpc_struct(text):
    """The members of the XML-RPC struct in text whose values are strings or ints (booleans as ints):
    name -> value. Members of other types are left out; getProcessInfo's answer has none."""
    info = {}
    for member in text.split("<member>")[1:]:
        key = member.partition("<name>")[2].partition("</name>")[0]
        value = member.partition("<value>")[2].partition("</value>")[0].strip()
        kind = value[1:].partition(">")[0] if value.startswith("<") else ""
        if kind:  # <int>42</int>: typed; with no type it is a string
            if kind not in RPC_TYPES or not value.endswith(f"</{kind}>"):
                continue
            value = value[len(kind) + 2 : -len(kind) - 3]
        for entity, char in XML_ENTITIES:
            value = value.replace(entity, char)
        info[key] = int(value) if kind in RPC_NUMBERS else value
    return info


def program(socket_path, name):
    """Supervisor's view of the app's program, over supervisord's socket (supervisorctl takes ~0.2 s)."""
    try:
        info = rpc_process_info(socket_path, name)
        running = info["statename"] == "RUNNING" and info["pid"]
    except (OSError, KeyError, TypeError, ValueError):  # supervisord down or will not say: the steps ask
        return None
    return {
        "state": info["statename"],
        "pid": info["pid"],
        "description": info["description"],
        "uptime": info.get("now", 0) - info["start"] if running and info.get("start") else None,
        "workers": len(children(info["pid"])) if running else None,
    }


def children(pid):
    """The processes whose parent is `pid` (a gunicorn master's workers), from /proc."""
    found = []
    for name in os.listdir("/proc"):
        fields = proc_stat(name) if name.isdigit() else None
        if fields and fields[1] == str(pid):
            found.append(int(name))
    return found
