"""Rollback: point current back at an earlier release (the bench passes its id), reload gracefully."""

from pyinfra import host
from pyinfra.operations import files, server

base = f"/srv/{host.data.app_name}"
current = files.link(
    name="Switch current back", path=f"{base}/current", target=f"{base}/releases/{host.data.release}"
)
server.shell(
    name="Reload app", commands=[f"supervisorctl signal HUP {host.data.app_name}"], _if=current.did_change
)
