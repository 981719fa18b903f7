"""A throwaway PostgreSQL cluster, driven through scripts/pg-cluster.sh (as `make run` is)."""

import os
import signal
from pathlib import Path

from .paths import SCRIPTS
from .processes import run


class Postgres:
    """A cluster in `directory`, reachable only through its unix socket."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def _cluster(self, *args):
        result = run([str(SCRIPTS / "pg-cluster.sh"), args[0], str(self.directory), *args[1:]])
        if result.returncode != 0:
            raise RuntimeError(f"pg-cluster.sh {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result.stdout.strip()

    def init(self):
        self._cluster("init")

    def start(self):
        self._cluster("start")

    def stop(self):
        self._cluster("stop")

    def create_database(self, name):
        """Create database `name`, owned by the `payments` role (and the app's `payments_app` role)."""
        self._cluster("createdb", name)

    def url(self, name, role="payments"):
        """DATABASE_URL of database `name` for `role`: `payments` owns the schema and runs the
        migrations; `payments_app` is the restricted role the app serves as."""
        return self._cluster("url", name, role)

    @property
    def admin_url(self):
        return f"postgresql:///postgres?host={self.directory / 'sock'}&user=postgres"

    def kill(self):
        """Last resort for teardown: kill the postmaster if `stop` could not."""
        pid_file = self.directory / "data" / "postmaster.pid"
        try:
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass
