"""Child processes of the bench: start, wait until ready, read their CPU time and memory, stop.

Every process is started by the bench, tracked by PID and stopped by that PID only. Output goes
to a log file in the run's temporary directory, where the bench reads the ``port N`` line its
own servers print (or tfgate's "listening on" line).
"""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command name, which is in parentheses and may hold spaces.
    rest = stat[stat.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / _TICK


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A resident-memory line of /proc/PID/status in MiB: VmRSS (all), RssAnon (the process's
    own memory) or RssFile (mapped files, shared libraries above all: how many of their pages
    count depends on what the page cache holds, so it moves between machines and runs)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {field} for {pid}")


def busy_cpu_seconds() -> float:
    """CPU time the whole machine has spent busy (all CPUs, all processes) since boot."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / _TICK


def children_cpu_seconds() -> float:
    """CPU time of this process's waited-for children (h2load runs, here)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Proc:
    """One started process (or a group of workers sharing one port)."""

    name: str
    popens: list[subprocess.Popen[bytes]]
    log: Path
    port: int = 0
    extra: dict[str, object] = field(default_factory=dict)
    # Started for this one and stopped after it (a trace collector), their CPU not counted in it.
    companions: list[Proc] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.popens]

    def cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def check_alive(self) -> None:
        for p in self.popens:
            if p.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({p.returncode}); see {self.log}")

    def stop(self) -> None:
        for p in self.popens:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
        for p in self.popens:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
        for companion in self.companions:
            companion.stop()


def fresh_log(workdir: Path, name: str) -> Path:
    """A log file name not used yet in ``workdir`` (a port line must come from this process)."""
    log = workdir / f"{name}.log"
    count = 1
    while log.exists():
        count += 1
        log = workdir / f"{name}-{count}.log"
    log.touch()
    return log


def pinned(args: Sequence[str], cpu: str | None) -> list[str]:
    """``args`` run on CPU(s) ``cpu`` through taskset (which execs: the PID stays the same)."""
    return ["taskset", "-c", cpu, *args] if cpu is not None else list(args)


def spawn(
    args: Sequence[str],
    log: Path,
    cpu: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            pinned(args, cpu),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=None if env is None else dict(env),
            cwd=cwd,
        )


def wait_for_line(
    popen: subprocess.Popen[bytes], log: Path, pattern: str, timeout: float = 30.0
) -> re.Match[str]:
    """Waits until ``log`` has a line matching ``pattern``; fails if the process exits first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = re.search(pattern, log.read_text(errors="replace"), re.MULTILINE)
        if found is not None:
            return found
        if popen.poll() is not None:
            raise RuntimeError(f"{popen.args!r} exited ({popen.returncode}):\n{log.read_text()}")
        time.sleep(0.005)
    raise TimeoutError(f"{popen.args!r}: no line matching {pattern!r} within {timeout} s")


def start_server(
    name: str,
    args: Sequence[str],
    workdir: Path,
    cpu: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    pattern: str = r"^port (\d+)$",
    timeout: float = 30.0,
) -> Proc:
    """Starts a server that prints its port; returns once it has (within ``timeout`` s)."""
    log = fresh_log(workdir, name)
    popen = spawn(args, log, cpu, env)
    try:
        port = int(wait_for_line(popen, log, pattern, timeout).group(1))
    except BaseException:
        Proc(name, [popen], log).stop()
        raise
    return Proc(name, [popen], log, port)


def clean_env() -> dict[str, str]:
    """This environment without TFGATE_* settings, so no stray setting changes what is measured."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TFGATE_")}


def wait_for_port(popen: subprocess.Popen[bytes], port: int, timeout: float = 30.0) -> None:
    """Waits until something accepts connections on 127.0.0.1:``port``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if popen.poll() is not None:
            raise RuntimeError(f"{popen.args!r} exited ({popen.returncode})")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.01)
    raise TimeoutError(f"{popen.args!r}: port {port} not open within {timeout} s")


def free_port() -> int:
    """A port nobody listens on now (for servers that cannot report the port they bound)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
