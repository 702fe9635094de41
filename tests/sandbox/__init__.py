"""Throwaway Debian 12 and 13 servers on this machine: systemd-nspawn containers reached over real SSH.

`image` builds (once per suite, cached outside the repo) the root filesystem and a local apt repository;
`lab` starts, reboots, resets and tears down sandboxes; `latency` delays SSH in user space.
"""
