"""The embedded Ray instance a search or an evaluation starts without --address: every
server of it listens on the loopback only, and it refuses a client without its token."""
from __future__ import annotations

import ipaddress
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

EMBEDDED = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {repo!r})
    import ray
    from search.runs.cluster import init_ray
    from search.runs.config import DispatchConfig

    line = init_ray(DispatchConfig(num_cpus=1))

    @ray.remote
    def pid():
        return os.getpid()

    ray.get(pid.remote())  # a worker is up (and listening) too
    print(line, flush=True)
    sys.stdin.read()  # until the test is done
""")
CLIENT = textwrap.dedent("""
    import sys, ray
    try:
        ray.init(address=sys.argv[1], log_to_driver=False)
    except Exception as err:
        print("refused:", type(err).__name__, err)
        raise SystemExit(1)
    print("connected", ray.cluster_resources().get("CPU"))
""")


def children(pid: int) -> set[int]:
    """``pid`` and every process below it."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, grew = {pid}, True
    while grew:
        more = {p for p, parent in parents.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return found


def listening(pids: set[int]) -> list[tuple[str, int, int]]:
    """(address, port, pid) of the TCP sockets in LISTEN state that ``pids`` hold."""
    owner = {}
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    owner[target[8:-1]] = pid
        except OSError:
            continue
    out = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in owner:
                continue
            host, port = address.split(":")
            raw = bytes.fromhex(host)
            # /proc prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            out.append((str(ipaddress.ip_address(raw)), int(port, 16), owner[inode]))
    return out


def outward_address() -> str | None:
    """This machine's address on its network (the one Ray would advertise), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent for a UDP connect
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if ipaddress.ip_address(address).is_loopback else address


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None and ip.ipv4_mapped.is_loopback)


def test_embedded_instance_is_loopback_only_and_needs_its_token(tmp_path):
    script = tmp_path / "embedded.py"
    script.write_text(EMBEDDED.format(repo=str(ROOT)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        line = proc.stdout.readline()
        match = re.search(r"embedded local instance at (127\.0\.0\.1:\d+) \(loopback only, "
                          r"token authentication on, no dashboard\)", line)
        assert match, line
        address = match.group(1)
        sockets = listening(children(proc.pid))
        names = {Path(f"/proc/{pid}/comm").read_text().strip() for _, _, pid in sockets}
        assert {"gcs_server", "raylet"} <= names, sockets
        assert sockets and all(is_loopback(a) for a, _, _ in sockets), sockets
        port = int(address.split(":")[1])
        assert any(p == port for _, p, _ in sockets)
        external = outward_address()
        if external is not None:  # from the machine's own network address: nobody listens
            with pytest.raises(OSError):
                socket.create_connection((external, port), timeout=5).close()

        client = tmp_path / "client.py"
        client.write_text(CLIENT)
        # A client on this machine keeps the loopback address as given (Ray would otherwise
        # rewrite 127.0.0.1 into the machine's network address, where nothing listens).
        env = {**env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        home = tmp_path / "home"  # a user without ~/.ray/auth_token
        home.mkdir()
        without = subprocess.run([sys.executable, str(client), address], cwd=tmp_path,
                                 env={**env, "HOME": str(home), "RAY_NUM_REDIS_GET_RETRIES": "2"},
                                 capture_output=True, text=True, timeout=120)
        assert without.returncode == 1 and "refused: ConnectionError" in without.stdout
        assert "InvalidAuthToken" in without.stderr  # the instance's answer, not a timeout
        disabled = subprocess.run([sys.executable, str(client), address], cwd=tmp_path,
                                  env={**env, "RAY_AUTH_MODE": "disabled",
                                       "RAY_NUM_REDIS_GET_RETRIES": "2"},
                                  capture_output=True, text=True, timeout=120)
        assert disabled.returncode == 1 and "InvalidAuthToken" in disabled.stderr
        with_token = subprocess.run([sys.executable, str(client), address], cwd=tmp_path,
                                    env={**env, "RAY_AUTH_MODE": "token"},
                                    capture_output=True, text=True, timeout=120)
        assert with_token.returncode == 0 and "connected 1.0" in with_token.stdout, with_token.stderr
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)


def test_sigterm_stops_the_driver_as_ctrl_c_does():
    """A batch scheduler's SIGTERM reaches the command as Ctrl-C (Tune stops its trials,
    the command says how to resume) instead of Ray's stack dump; shutdown puts the
    handler before it back (here without shutting down a Ray instance of this process)."""
    import signal
    import time

    from search.runs import cluster

    saved, sigint = list(cluster._SIGTERM_BEFORE), signal.getsignal(signal.SIGINT)
    cluster._SIGTERM_BEFORE.clear()           # as in a process that has not started Ray
    signal.signal(signal.SIGINT, signal.default_int_handler)
    before = signal.getsignal(signal.SIGTERM)
    cluster._sigterm_as_sigint()
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    finally:
        cluster._restore_sigterm()
        after = signal.getsignal(signal.SIGTERM)
        cluster._SIGTERM_BEFORE[:] = saved
        signal.signal(signal.SIGINT, sigint)
    assert after == before
