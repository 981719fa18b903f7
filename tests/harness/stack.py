"""The whole stack the integration suite talks to: PostgreSQL, the app and nginx."""

import atexit
import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import requests

from .app import App
from .nginx import Nginx
from .paths import BINARY, SQL_DIR
from .postgres import Postgres
from .processes import free_port, wait_until

# The fake Stripe lives in tests/fake_stripe (a sibling package of this harness).
import sys
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.fake_stripe import FakeStripe  # noqa: E402

APP_ROLE = "payments_app"
NGINX_WORKER_GROUP = "nogroup"
PLATFORM_SECRET = "whsec_test_harness_platform"
CONNECT_SECRET = "whsec_test_harness_connect"
PUBLISHABLE_KEY = "pk_test_harness_000000000000"

# The suite is not a rate-limit test (test_foundation_nginx renders its own tight limits).
GENEROUS_LIMITS = {"API_RATE": "2000r/s", "API_BURST": 4000,
                   "WEBHOOK_RATE": "2000r/s", "WEBHOOK_BURST": 4000}

# The suite drives the app's test-only /api/_diag/ routes, which nginx denies unless rendered
# with this switch (`make run` never sets it). Every nginx of the harness gets it unless a test
# says otherwise (tests/test_edge_nginx.py renders one without it).
TEST_SWITCHES = {"NGINX_ALLOW_DIAGNOSTICS": "1"}


class TestKeys:
    """An RSA-2048 and a P-256 key pair made for this run; the public halves are written as the
    app's AUTH_JWKS_FILE (kids `test-rsa`, `test-ec`). Nothing is stored after the run."""

    def __init__(self, path: Path):
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        import base64
        import json

        def b64(number: int, length: int) -> str:
            return base64.urlsafe_b64encode(number.to_bytes(length, "big")).rstrip(b"=").decode()

        self.path = Path(path)
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        rn = self.rsa.public_key().public_numbers()
        en = self.ec.public_key().public_numbers()
        self.path.write_text(json.dumps({"keys": [
            {"kty": "RSA", "kid": "test-rsa", "alg": "RS256", "n": b64(rn.n, 256), "e": b64(rn.e, 3)},
            {"kty": "EC", "kid": "test-ec", "crv": "P-256", "alg": "ES256", "x": b64(en.x, 32), "y": b64(en.y, 32)},
        ]}))


class Stack:
    """A throwaway stack in a fresh temporary folder. `close()` always leaves no process."""

    def __init__(self):
        if not BINARY.is_file():
            raise RuntimeError(f"{BINARY} is missing: run `swift build -c release` first")
        self.root = Path(tempfile.mkdtemp(prefix="payments-test-"))
        self.root.chmod(0o711)  # the postgres user and nginx's workers must get through
        self.pg = Postgres(self.root / "pg")
        # The buyer page confirms cards at the fake (as `make run` renders it): its origin is in
        # that page's Content-Security-Policy.
        stripe_port = free_port()
        self.nginx = Nginx(self.root / "nginx", str(self.root / "app.sock"), self.root / "tls",
                           **GENEROUS_LIMITS, **TEST_SWITCHES,
                           PAGES_FAKE_STRIPE_ORIGIN=f"https://127.0.0.1:{stripe_port}")
        # The fake Stripe serves HTTPS with the stack's self-signed certificate, which the app
        # trusts through STRIPE_CA_BUNDLE (TLS verification stays on), and delivers signed
        # webhooks to nginx like Stripe would.
        self.stripe = FakeStripe(
            port=stripe_port, tls_cert=str(self.root / "tls" / "cert.pem"), tls_key=str(self.root / "tls" / "key.pem"),
            platform_webhook_url=self.nginx.url("/api/payments/webhook"),
            connect_webhook_url=self.nginx.url("/api/payments/webhook/connect"),
            platform_secrets=(PLATFORM_SECRET,), connect_secrets=(CONNECT_SECRET,),
            webhook_backoff=0.2, webhook_max_attempts=6)
        self.jwks = TestKeys(self.root / "jwks.json")
        self.app = App(self.app_env(), self.root / "app.log", migration_env=self.migration_env())
        self._extra_nginx = []
        self._closed = False
        atexit.register(self.close)

    def app_env(self):
        """The app's environment: the harness enables the diagnostics routes and keeps the
        body limit (32 KiB) below nginx's /api/ limit (64 KiB) so both 413s can be seen."""
        base_url = self.nginx.url("")
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            # The app serves as the restricted role; migrations run as the owner (migration_env).
            "DATABASE_URL": self.pg.url("payments", APP_ROLE),
            "FCGI_SOCKET": str(self.root / "app.sock"),
            # Only the group of nginx's workers may connect (nginx.conf: `user nobody nogroup`
            # when its master runs as root; otherwise they run as us and own nothing less).
            "FCGI_SOCKET_MODE": "0660",
            **({"FCGI_SOCKET_GROUP": NGINX_WORKER_GROUP} if os.geteuid() == 0 else {}),
            "WORKERS": "4",
            "STRIPE_WORKERS": "4",
            "DATABASE_POOL_SIZE": "10",
            "MAX_BODY_BYTES": "32768",
            "SHUTDOWN_TIMEOUT_SECONDS": "10",
            "MIGRATIONS_DIR": str(SQL_DIR),
            "DIAGNOSTICS_ENABLED": "1",
            "AUTH_JWT_SECRET": "test-only-jwt-secret-0123456789abcdef",
            "STRIPE_SECRET_KEY": "sk_test_harness_000000000000",
            "STRIPE_PUBLISHABLE_KEY": PUBLISHABLE_KEY,
            "STRIPE_API_BASE": self.stripe.url,
            "STRIPE_CA_BUNDLE": str(self.root / "tls" / "cert.pem"),
            "STRIPE_TIMEOUT_SECONDS": "3",
            "STRIPE_DEADLINE_SECONDS": "6",
            "STRIPE_WEBHOOK_SECRETS": PLATFORM_SECRET,
            "STRIPE_CONNECT_WEBHOOK_SECRETS": CONNECT_SECRET,
            "AUTH_JWKS_FILE": str(self.jwks.path),
            # A tight limit on one cheap route, for the rate-limiter tests (keyed per profile);
            # every test comes from 127.0.0.1, so the per-IP limits are opened up for the suite.
            "RATE_LIMITS": "notifications=10/60,intent-ip=5000/60,capture=5000/60,admin-refund=5000/60,"
                           "admin-resolve=5000/60,admin-evidence=5000/60,admin-replay=5000/60,onboarding-ip=5000/60",
            "PUBLIC_BASE_URL": base_url,
            "APP_RETURN_URL": base_url + "/marketplace/",
        }

    def migration_env(self):
        """What `payments migrate` adds to the app's environment: the owner's DATABASE_URL and
        the role to grant the app's privileges to."""
        return {"DATABASE_URL": self.pg.url("payments"), "DATABASE_APP_ROLE": APP_ROLE}

    @property
    def database_url(self):
        """The owner's DATABASE_URL: what tests use to set up and inspect rows."""
        return self.app.migration_env["DATABASE_URL"]

    @property
    def app_database_url(self):
        """The DATABASE_URL the app serves with (the restricted role)."""
        return self.app.env["DATABASE_URL"]

    def start(self):
        self.stripe.start()
        self.pg.init()
        self.pg.start()
        self.pg.create_database("payments")
        migrated = self.app.migrate()
        if migrated.returncode != 0:
            raise RuntimeError(f"payments migrate failed:\n{migrated.stdout}{migrated.stderr}")
        self.app.start()
        self.nginx.start()
        wait_until(lambda: self.get("/api/health").status_code == 200, 15, what="/api/health")
        return self

    def close(self):
        """Stop everything this stack started; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        for nginx in [*self._extra_nginx, self.nginx]:
            nginx.stop()
        self.app.stop()
        self.stripe.stop()
        try:
            self.pg.stop()
        except Exception:
            self.pg.kill()
        if self.root.exists() and not os.environ.get("KEEP_TEST_STACK"):
            shutil.rmtree(self.root, ignore_errors=True)

    # HTTP through nginx -------------------------------------------------------------------

    def url(self, path, scheme="https"):
        return self.nginx.url(path, scheme)

    def request(self, method, path, *, scheme="https", **kwargs):
        """One request through nginx; TLS verification off (self-signed), no redirects."""
        kwargs.setdefault("verify", False)
        kwargs.setdefault("timeout", 30)
        kwargs.setdefault("allow_redirects", False)
        return requests.request(method, self.url(path, scheme), **kwargs)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs)

    # The fake Stripe ------------------------------------------------------------------------

    def stripe_api(self, method, path, params=None):
        """A call to the fake's Stripe API as a Stripe library would make it (form-encoded)."""
        response = requests.request(method, self.stripe.url + path, data=params, verify=False, timeout=30,
                                    headers={"Authorization": "Bearer " + self.app.env["STRIPE_SECRET_KEY"]})
        response.raise_for_status()
        return response.json()

    def stripe_control(self, method, path, json_body=None):
        """A call to the fake's control API (`/_control/…`)."""
        response = requests.request(method, self.stripe.url + path, json=json_body, verify=False, timeout=30)
        response.raise_for_status()
        return response.json()

    def sign_webhook(self, body: bytes, endpoint="platform", timestamp=None):
        """A Stripe-Signature header for `body` with the endpoint's secret."""
        return self.stripe.sign(body, endpoint=endpoint, timestamp=timestamp)

    # Disruptions, each with its way back ----------------------------------------------------

    def stop_database(self):
        self.pg.stop()

    def start_database(self):
        self.pg.start()

    def restart_app(self):
        """Kill the app if it runs, start it again and wait until nginx reaches it."""
        if self.app.is_running():
            self.app.kill()
        self.app.start()
        wait_until(lambda: self.get("/api/health").status_code == 200, 15, what="/api/health")

    @contextlib.contextmanager
    def other_apps(self, count=1, nginx_settings=None, **env):
        """`count` more `payments serve` processes (same database, same fake Stripe) with
        `env` overriding this stack's environment, behind an nginx of their own (one upstream
        server per process). Yields a namespace with `apps`, `nginx`, `get`, `post`; all
        stopped afterwards."""
        from types import SimpleNamespace
        root = self.root / f"apps-{uuid.uuid4().hex[:6]}"
        root.mkdir()
        apps = [App({**self.app.env, **{k: str(v) for k, v in env.items()},
                     "FCGI_SOCKET": str(root / f"app-{n}.sock"), "INSTANCE_NAME": f"test/app-{n}"},
                    root / f"app-{n}.log", migration_env=self.app.migration_env) for n in range(1, count + 1)]
        settings = {**GENEROUS_LIMITS, **TEST_SWITCHES, **(nginx_settings or {})}
        if "STRIPE_DEADLINE_SECONDS" in env:
            settings.setdefault("STRIPE_DEADLINE_SECONDS", env["STRIPE_DEADLINE_SECONDS"])
        nginx = Nginx(root / "nginx", [app.socket_path for app in apps], self.root / "tls", **settings)
        try:
            for app in apps:
                app.start()
            nginx.start()

            def request(method, path, **kwargs):
                kwargs.setdefault("verify", False)
                kwargs.setdefault("timeout", 30)
                kwargs.setdefault("allow_redirects", False)
                return requests.request(method, nginx.url(path), **kwargs)

            yield SimpleNamespace(apps=apps, nginx=nginx, url=nginx.url, request=request,
                                  get=lambda path, **kw: request("GET", path, **kw),
                                  post=lambda path, **kw: request("POST", path, **kw))
        finally:
            nginx.stop()
            for app in apps:
                app.stop()

    @contextlib.contextmanager
    def other_nginx(self, **settings):
        """A second nginx from the same template with other render settings, in front of
        the same app (e.g. a tight rate limit or a short read timeout)."""
        nginx = Nginx(self.root / f"nginx-{len(self._extra_nginx) + 1}", self.app.socket_path,
                      self.root / "tls", **{**TEST_SWITCHES, **settings})
        self._extra_nginx.append(nginx)
        try:
            yield nginx.start()
        finally:
            nginx.stop()
