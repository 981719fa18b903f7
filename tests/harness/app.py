"""The real `payments serve` process."""

import json
import signal
from pathlib import Path

from .paths import BINARY
from .processes import accepts, end, run, spawn, wait_until


class App:
    """One `payments serve` process with a fixed environment; its output goes to `log_path`."""

    def __init__(self, env: dict, log_path: Path, migration_env: dict | None = None):
        self.env = dict(env)
        self.log_path = Path(log_path)
        self.migration_env = dict(migration_env or {})
        self.process = None

    @property
    def socket_path(self):
        return self.env["FCGI_SOCKET"]

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def is_running(self):
        return self.process is not None and self.process.poll() is None

    def start(self, timeout=20):
        """Start the server and wait until its socket accepts connections."""
        self.process = spawn([str(BINARY), "serve"], env=self.env, log_path=self.log_path)

        def ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"payments serve exited with {self.process.returncode}:\n{self.log_tail()}")
            return accepts(self.socket_path)

        wait_until(ready, timeout, what="the app's socket")
        return self

    def signal(self, sig):
        self.process.send_signal(sig)

    def wait(self, timeout):
        """Wait for the process to exit and return its exit code."""
        return self.process.wait(timeout)

    def kill(self):
        """SIGKILL: the process gets no chance to clean up (its socket file stays behind)."""
        end(self.process, signal.SIGKILL, timeout=5)

    def stop(self, timeout=15):
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        return end(self.process, signal.SIGTERM, timeout)

    def migrate(self, **overrides):
        """Run `payments migrate` with this app's environment, the migration settings (the
        owner's DATABASE_URL, DATABASE_APP_ROLE) and `overrides`."""
        return run([str(BINARY), "migrate"], env={**self.env, **self.migration_env, **overrides})

    def log_text(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines=30):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def log_records(self):
        """Every JSON line the app logged (other lines are skipped)."""
        records = []
        for line in self.log_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def request_log(self, request_id, timeout=5):
        """The per-request log line for `request_id`, waiting briefly for it to be written."""
        def find():
            return next((r for r in self.log_records()
                         if r.get("request_id") == request_id and "status" in r), None)
        return wait_until(find, timeout, what=f"a log line for request {request_id}")
