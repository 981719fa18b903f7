"""CLI: python3 -m tests.fake_stripe --port 12111 [options] (run from the repo root)."""
from __future__ import annotations

import argparse
import signal
import sys
import threading

from .core import DEFAULT_API_VERSION
from .server import FakeStripe


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m tests.fake_stripe",
                                 description="Stateful fake Stripe API for tests.")
    ap.add_argument("--port", type=int, default=12111, help="0 = pick a free port")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--tls-cert", help="PEM certificate: serve HTTPS")
    ap.add_argument("--tls-key", help="PEM private key for --tls-cert")
    ap.add_argument("--platform-webhook-url", help="where platform events are POSTed")
    ap.add_argument("--connect-webhook-url", help="where Connect (account) events are POSTed")
    ap.add_argument("--platform-secret", action="append", default=[],
                    help="whsec_… signing secret; repeat or comma-separate for rotation")
    ap.add_argument("--connect-secret", action="append", default=[],
                    help="whsec_… signing secret for the Connect endpoint")
    ap.add_argument("--state-file", help="JSON snapshot to load state from and keep it in "
                                         "(each write is appended to PATH.journal)")
    ap.add_argument("--public-url", help="base URL used in account/login link URLs "
                                         "(default: this server's URL)")
    ap.add_argument("--api-version", default=DEFAULT_API_VERSION)
    ap.add_argument("--api-key", action="append", default=[],
                    help="accept only these sk_test_ keys (default: any sk_test_… key)")
    ap.add_argument("--webhook-max-attempts", type=int, default=5)
    ap.add_argument("--webhook-backoff", type=float, default=1.0,
                    help="seconds; retry n waits backoff * 2**(n-1)")
    ap.add_argument("--webhook-timeout", type=float, default=10.0)
    ap.add_argument("--account-link-ttl", type=int, default=300)
    ap.add_argument("--quiet", action="store_true", help="no per-request log lines")
    args = ap.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")

    def log(msg: str) -> None:
        if not args.quiet:
            print(f"fake-stripe: {msg}", file=sys.stderr, flush=True)

    def secrets(values, default):
        out = [s.strip() for v in values for s in v.split(",") if s.strip()]
        return out or [default]

    fs = FakeStripe(
        port=args.port, host=args.host, tls_cert=args.tls_cert, tls_key=args.tls_key,
        platform_webhook_url=args.platform_webhook_url,
        connect_webhook_url=args.connect_webhook_url,
        platform_secrets=secrets(args.platform_secret, "whsec_test_platform"),
        connect_secrets=secrets(args.connect_secret, "whsec_test_connect"),
        state_file=args.state_file, public_url=args.public_url, api_version=args.api_version,
        webhook_max_attempts=args.webhook_max_attempts, webhook_backoff=args.webhook_backoff,
        webhook_timeout=args.webhook_timeout, account_link_ttl=args.account_link_ttl,
        api_keys=[k for v in args.api_key for k in v.split(",") if k] or None, log=log)
    # Handlers first: a SIGTERM right after the "listening" line must still stop cleanly.
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    fs.start()
    print(f"fake-stripe listening on {fs.url}", file=sys.stderr, flush=True)
    done.wait()
    fs.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
