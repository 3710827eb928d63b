#!/usr/bin/env python3
"""Run a command against a local PostgreSQL server on loopback.

    python scripts/with_postgres.py pytest -m "not browser"
    python scripts/with_postgres.py --keep DIR python bench/bench_pages.py --scale 10

initdb's a cluster in a temporary directory, starts it on 127.0.0.1 at a free
port (as the `postgres` user when run as root: PostgreSQL refuses to run as
root), runs the command with DATABASE_URL pointing at it, then stops the
server and deletes the cluster, whatever the command's outcome.

With `--keep DIR` the cluster lives in DIR and is kept: the first run initdb's
it, later runs start the same cluster again (at the port it had, if still free)
so the data built by an earlier run is reused; the server is stopped cleanly
after the command. The command also gets TRACER_PG_KEEP=DIR, where it may keep
notes about the data (bench/bench_pages.py writes what it built there).
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

# fsync off: a benchmark or test server, never one whose data must survive a crash
# of the machine (a kept cluster survives its server's clean stops).
SERVER_OPTIONS = "-F -c fsync=off -c full_page_writes=off"


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


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # As the server binds it: connections of the last run in TIME_WAIT do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


def parse(argv: list[str]) -> tuple[str | None, list[str]]:
    """(the --keep directory or None, the command)."""
    if argv[:1] == ["--keep"]:
        if len(argv) < 3:
            sys.exit(__doc__)
        return os.path.abspath(argv[1]), argv[2:]
    if argv[:1] and argv[0].startswith("--keep="):
        return os.path.abspath(argv[0].split("=", 1)[1]), argv[1:]
    return None, argv


def main() -> int:
    keep, command = parse(sys.argv[1:])
    if not command:
        sys.exit(__doc__)
    workdir = keep or tempfile.mkdtemp(prefix="tracer-pg-")
    os.makedirs(workdir, exist_ok=True)
    datadir = os.path.join(workdir, "data")
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres", "postgres")
    if not os.path.exists(os.path.join(datadir, "PG_VERSION")):
        init = [pg_bin("initdb"), "-D", datadir, "-U", "tracer", "-A", "trust", "-E", "UTF8"]
        subprocess.run(as_server_user([*init, "--no-sync"]), check=True, stdout=subprocess.DEVNULL)
    port = kept_port(workdir) if keep else free_port()
    options = f"-h 127.0.0.1 -p {port} -k {workdir} {SERVER_OPTIONS}"
    start = [pg_bin("pg_ctl"), "-D", datadir, "-o", options, "-l", f"{workdir}/log", "-w", "start"]
    subprocess.run(as_server_user(start), check=True, stdout=subprocess.DEVNULL)
    try:
        wait_ready(port)
        env = dict(os.environ, DATABASE_URL=f"postgres://tracer@127.0.0.1:{port}/postgres")
        if keep:
            env["TRACER_PG_KEEP"] = workdir
        kind = f"kept server ({workdir})" if keep else "throwaway server"
        print(f"PostgreSQL {kind} on 127.0.0.1:{port}", flush=True)
        return subprocess.run(command, env=env).returncode
    finally:
        # A kept cluster is stopped cleanly (its data is reused); a throwaway one at once.
        mode = "fast" if keep else "immediate"
        stop = [pg_bin("pg_ctl"), "-D", datadir, "-m", mode, "-t", "600", "stop"]
        subprocess.run(as_server_user(stop), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def kept_port(workdir: str) -> int:
    """The port the kept cluster had last time if it is still free, else a new one."""
    note = os.path.join(workdir, "port")
    try:
        with open(note) as handle:
            port = int(handle.read().strip())
    except (OSError, ValueError):
        port = 0
    if not port or not port_is_free(port):
        port = free_port()
        with open(note, "w") as handle:
            handle.write(f"{port}\n")
    return port


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
