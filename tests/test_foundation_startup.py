"""Start-up refusals: a socket held by a live instance, missing or malformed settings."""

import os
import re

from harness.paths import BINARY
from harness.processes import run


def serve(env, timeout=15):
    return run([str(BINARY), "serve"], env=env, timeout=timeout)


def test_second_instance_on_the_same_socket_refuses_to_start(stack):
    socket_path = stack.app.socket_path
    inode = os.stat(socket_path).st_ino
    result = serve(stack.app.env)
    assert result.returncode == 1, result
    output = result.stdout + result.stderr
    assert socket_path in output or re.search(r"in use|already|another", output, re.I), output
    assert os.stat(socket_path).st_ino == inode, "the second instance replaced the socket"
    assert stack.app.is_running()
    assert stack.get("/api/health").status_code == 200


def test_missing_required_settings_are_named(stack, tmp_path):
    for name in ("DATABASE_URL", "FCGI_SOCKET"):
        env = {**stack.app.env, "FCGI_SOCKET": str(tmp_path / "other.sock")}
        del env[name]
        result = serve(env)
        assert result.returncode == 1, result
        assert name in result.stderr, result.stderr


def test_malformed_settings_are_named(stack, tmp_path):
    for name, value in (("WORKERS", "many"), ("FCGI_SOCKET_MODE", "rw-rw-rw-"), ("MAX_BODY_BYTES", "-1")):
        env = {**stack.app.env, "FCGI_SOCKET": str(tmp_path / "other.sock"), name: value}
        result = serve(env)
        assert result.returncode == 1, result
        assert name in result.stderr, result.stderr


def test_diagnostics_with_a_live_stripe_key_refuse_to_start(stack, tmp_path):
    """`/api/_diag/stripe` proxies the platform key without authentication: with a live key
    (secret or restricted) the app does not start at all, and says why in one line."""
    for key in ("sk_live_startup_check_0000", "rk_live_startup_check_0000"):
        socket_path = tmp_path / "live.sock"
        env = {**stack.app.env, "FCGI_SOCKET": str(socket_path), "DIAGNOSTICS_ENABLED": "1", "STRIPE_SECRET_KEY": key}
        result = serve(env)
        assert result.returncode == 1, result
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, result.stderr
        assert "DIAGNOSTICS_ENABLED" in lines[0] and "live" in lines[0], lines
        assert key not in result.stdout + result.stderr, "the refusal printed the key"
        assert not socket_path.exists(), "the refused instance opened its socket"
