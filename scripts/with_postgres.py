#!/usr/bin/env python3
"""Run a command against a throwaway PostgreSQL server on loopback.

    python scripts/with_postgres.py pytest -m "not browser"

initdb's a cluster in a temporary directory, starts it on 127.0.0.1 at a free
port (as the `postgres` user when run as root: PostgreSQL refuses to run as
root), runs the command with DATABASE_URL pointing at it, then stops the
server and deletes the cluster, whatever the command's outcome.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    if not candidates:
        sys.exit(f"{name} not found: install PostgreSQL (Debian: apt-get install postgresql)")
    return candidates[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


def main() -> int:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    workdir = tempfile.mkdtemp(prefix="tracer-pg-")
    datadir = os.path.join(workdir, "data")
    port = free_port()
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres", "postgres")
    init = [pg_bin("initdb"), "-D", datadir, "-U", "tracer", "-A", "trust", "-E", "UTF8"]
    subprocess.run(as_server_user([*init, "--no-sync"]), check=True, stdout=subprocess.DEVNULL)
    options = f"-h 127.0.0.1 -p {port} -k {workdir} -F -c fsync=off -c full_page_writes=off"
    start = [pg_bin("pg_ctl"), "-D", datadir, "-o", options, "-l", f"{workdir}/log", "-w", "start"]
    subprocess.run(as_server_user(start), check=True, stdout=subprocess.DEVNULL)
    try:
        wait_ready(port)
        env = dict(os.environ, DATABASE_URL=f"postgres://tracer@127.0.0.1:{port}/postgres")
        print(f"PostgreSQL throwaway server on 127.0.0.1:{port}", flush=True)
        return subprocess.run(sys.argv[1:], env=env).returncode
    finally:
        stop = [pg_bin("pg_ctl"), "-D", datadir, "-m", "immediate", "stop"]
        subprocess.run(as_server_user(stop), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(workdir, ignore_errors=True)


def wait_ready(port: int) -> None:
    for _ in range(100):
        ready = subprocess.run(
            [pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
        )
        if ready.returncode == 0:
            return
        time.sleep(0.1)
    sys.exit("PostgreSQL did not start")


if __name__ == "__main__":
    sys.exit(main())
