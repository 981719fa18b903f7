"""nginx running the project's own config (rendered by scripts/render-nginx.sh)."""

import os
import signal
from pathlib import Path

from .paths import NGINX, SCRIPTS
from .processes import accepts, end, free_port, run, spawn, wait_until


class Nginx:
    """nginx in prefix `directory`, in front of the app socket `fcgi_socket` (the core-lane
    socket of one app process, or a list of them: one upstream server per process; each
    process's Stripe-lane socket sits beside it). `settings` are render-nginx.sh settings
    (API_RATE, API_BURST, FASTCGI_READ_TIMEOUT, STRIPE_DEADLINE_SECONDS, …)."""

    def __init__(self, directory: Path, fcgi_socket, cert_dir: Path, **settings):
        sockets = [fcgi_socket] if isinstance(fcgi_socket, (str, Path)) else list(fcgi_socket)
        self.directory = Path(directory)
        self.https_port = free_port()
        self.http_port = free_port()
        self.process = None
        env = {**os.environ, **{k: str(v) for k, v in settings.items()},
               "APP_SOCKETS": " ".join(str(socket) for socket in sockets),
               "CERT_FILE": str(Path(cert_dir) / "cert.pem"),
               "KEY_FILE": str(Path(cert_dir) / "key.pem"),
               "HTTPS_PORT": str(self.https_port), "HTTP_PORT": str(self.http_port)}
        for script, arg in (("make-cert.sh", cert_dir), ("render-nginx.sh", self.directory)):
            result = run([str(SCRIPTS / script), str(arg)], env=env)
            if result.returncode != 0:
                raise RuntimeError(f"{script} failed:\n{result.stdout}{result.stderr}")

    @property
    def config_file(self):
        return self.directory / "nginx.conf"

    def _args(self):
        return [NGINX, "-p", str(self.directory), "-c", str(self.config_file),
                "-e", str(self.directory / "logs" / "error.log")]

    def check_config(self):
        """`nginx -t` on the rendered config."""
        return run([*self._args(), "-t"])

    def start(self, timeout=15):
        self.process = spawn([*self._args(), "-g", "daemon off;"],
                             log_path=self.directory / "logs" / "stdout.log")

        def ready():
            if self.process.poll() is not None:
                log = (self.directory / "logs" / "error.log").read_text(errors="replace")
                raise RuntimeError(f"nginx exited with {self.process.returncode}:\n{log[-2000:]}")
            return accepts(("127.0.0.1", self.https_port)) and accepts(("127.0.0.1", self.http_port))

        wait_until(ready, timeout, what="nginx's ports")
        return self

    def stop(self):
        end(self.process, signal.SIGTERM, timeout=10)

    def url(self, path, scheme="https"):
        port = self.https_port if scheme == "https" else self.http_port
        return f"{scheme}://127.0.0.1:{port}{path}"
