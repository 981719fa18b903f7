"""Small helpers for processes, ports and waiting, every wait bounded in time."""

import os
import signal
import socket
import subprocess
import time


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    """Poll `predicate` until it returns a truthy value; raise TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


_handed_out = set()


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now, and that this test process has
    not handed out before: two calls in a row can otherwise get the same port back (an nginx
    given it for both HTTP and HTTPS refuses to start)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def accepts(address):
    """True when something accepts connections at `address` (a unix path or (host, port))."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family) as s:
        s.settimeout(1)
        try:
            s.connect(address)
            return True
        except OSError:
            return False


def run(args, env=None, timeout=120, cwd=None):
    """Run a command to completion, capturing its output as text."""
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd=cwd)


def spawn(args, env=None, log_path=None):
    """Start a command in its own session (so it and its children can be killed as a group),
    its output appended to `log_path`."""
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        return subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        if log_path:
            log.close()


def end(process, sig=signal.SIGTERM, timeout=15):
    """Signal a process started by `spawn`, wait for it, then kill its whole group."""
    if process is None:
        return None
    if process.poll() is None:
        try:
            process.send_signal(sig)
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        return process.wait(5)
    except subprocess.TimeoutExpired:
        return None
