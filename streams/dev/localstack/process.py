"""A JVM process the stack started, known by its pid file and a marker on its command line.

The marker lets ``down`` and ``status`` tell our process from an unrelated one that happens to
reuse the pid after a reboot, so ``down`` stops exactly what ``up`` started and nothing else.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from streams.dev.localstack.errors import StackError
from streams.dev.settings import LocalStackSettings


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def java_binary(settings: LocalStackSettings) -> str:
    """The java executable: ``$CIRCULATION_JAVA_HOME/bin/java`` or the one on PATH."""
    if settings.java_home is not None:
        return str(settings.java_home / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise StackError("Java ('java') is not on PATH and CIRCULATION_JAVA_HOME is not set; "
                         "the local stack needs Java 17 or later")
    return java


@dataclass(frozen=True)
class ManagedProcess:
    """One local component's process: where its pid, log and identity marker live."""

    name: str
    run_dir: Path
    environment: Callable[[], Mapping[str, str]] | None = None
    """Variables added to the process's environment when it starts: how a secret reaches it,
    since ``/proc/<pid>/environ`` is readable by its owner alone while the command line is
    readable by everyone. Called at start only, so building the component writes nothing."""

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    @property
    def marker(self) -> str:
        """A JVM system property naming the component and its run folder."""
        return f"-Dcirculation.local={self.name}@{self.run_dir}"

    def pid(self) -> int | None:
        """The pid of our running process, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_file.read_text(encoding="ascii").strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            cmdline = []
        if self.marker.encode() not in cmdline:
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def start(self, command: Sequence[str], cwd: Path | None = None) -> int:
        """Start ``command`` detached from this terminal, logging to the log file."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        env = None if self.environment is None else {**os.environ, **self.environment()}
        with self.log_file.open("ab") as log:
            child = subprocess.Popen(
                list(command), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=cwd, start_new_session=True, env=env,
            )
        self.pid_file.write_text(f"{child.pid}\n", encoding="ascii")
        self._await_exec(child)
        return child.pid

    def _await_exec(self, child: subprocess.Popen[bytes], timeout: float = 2.0) -> None:
        """Wait until the child's command line shows the marker. Popen returns as soon as the
        kernel lets the parent go during ``exec``, before the new program's arguments are in
        place: a :meth:`pid` right then reads an empty command line and takes our own process
        for someone else's."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and child.poll() is None:
            try:
                if self.marker.encode() in Path(f"/proc/{child.pid}/cmdline").read_bytes():
                    return
            except OSError:
                return
            time.sleep(0.01)

    def exited(self) -> bool:
        """True when the process we started is gone (reaping it if it was our child)."""
        pid = self.pid()
        if pid is None:
            return True
        try:
            reaped, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            reaped = 0
        return reaped == pid

    def stop(self, grace: float = 30.0) -> bool:
        """Stop the process: SIGTERM, then SIGKILL after ``grace`` seconds. False if none ran."""
        pid = self.pid()
        if pid is None:
            return False
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if self._gone(pid):
                break
            time.sleep(0.2)
        else:
            os.killpg(pid, signal.SIGKILL)
            while not self._gone(pid):
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True

    @staticmethod
    def _gone(pid: int) -> bool:
        try:
            reaped, _ = os.waitpid(pid, os.WNOHANG)
            if reaped == pid:
                return True
        except ChildProcessError:
            pass
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
        except (OSError, IndexError):
            return True
        return state == "Z"

    def log_tail(self, lines: int = 25) -> str:
        """The last lines of the component's log, for error messages."""
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log written)"
        return "\n".join(text.splitlines()[-lines:])

    def fail(self, reason: str) -> StackError:
        """A StackError carrying ``reason`` and the tail of this component's log."""
        return StackError(f"{self.name}: {reason}\n--- last lines of {self.log_file} ---\n"
                          f"{self.log_tail()}")
