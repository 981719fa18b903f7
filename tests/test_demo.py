"""Issue 19, item 1 — `make run` leaves a working marketplace: the demo seller is onboarded at
the fake, every example it prints answers 2xx as printed, and `make demo` walks the whole story
against that stack, passing twice in a row. Runs scripts/run.sh itself, in its own RUN_DIR on
free ports, and stops it afterwards."""

import os
import re
import subprocess
import sys

import pytest

from harness.paths import REPO
from harness.processes import free_port


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("make-run")
    env = {**os.environ, "RUN_DIR": str(run_dir), "HTTPS_PORT": str(free_port()), "HTTP_PORT": str(free_port()),
           "STRIPE_FAKE_PORT": str(free_port()), "STRIPE_FAKE_STATE_FILE": ""}
    env.pop("STRIPE_SECRET_KEY", None)
    started = subprocess.run([str(REPO / "scripts" / "run.sh")], env=env, capture_output=True, text=True,
                             timeout=300, cwd=REPO)
    try:
        assert started.returncode == 0, (started.stdout[-3000:], started.stderr[-3000:])
        yield env, started.stdout, started.stderr
    finally:
        subprocess.run([str(REPO / "scripts" / "stop.sh")], env=env, capture_output=True, text=True, timeout=120,
                       cwd=REPO)


def printed_examples(message: str) -> list[str]:
    """The curl commands under "Try:", continuation lines joined."""
    commands, current = [], ""
    for line in message.split("Try:", 1)[1].splitlines():
        stripped = line.strip()
        if current:
            current += " " + stripped.rstrip("\\").strip()
            if not stripped.endswith("\\"):
                commands.append(current)
                current = ""
        elif stripped.startswith("curl "):
            if stripped.endswith("\\"):
                current = stripped.rstrip("\\").strip()
            else:
                commands.append(stripped)
    return commands


def test_the_demo_seller_is_onboarded_and_every_printed_example_answers_2xx(local_stack):
    env, message, log = local_stack
    assert "the demo seller is onboarded" in log, log[-2000:]
    examples = printed_examples(message)
    assert len(examples) >= 6 and any("create-intent" in c for c in examples), examples
    for command in examples:
        ran = subprocess.run(["bash", "-c", command + " -w '\\n%{http_code}'"], capture_output=True, text=True,
                             timeout=60)
        body, status = ran.stdout.rsplit("\n", 1)
        assert ran.returncode == 0 and re.fullmatch(r"2\d\d", status), (command, status, body[:500])


def test_make_demo_walks_the_whole_story_twice_in_a_row(local_stack):
    env, _, _ = local_stack
    for run in (1, 2):
        demo = subprocess.run([sys.executable, str(REPO / "scripts" / "demo.py")], env=env, capture_output=True,
                              text=True, timeout=300, cwd=REPO)
        assert demo.returncode == 0, (run, demo.stdout[-4000:], demo.stderr[-2000:])
        summary = demo.stdout.split("== Summary", 1)[1]
        assert summary.count("ok  ") == 6 and "FAIL" not in summary, summary
        for shown in ("POST /api/payments/create-intent", "POST /api/payments/capture",
                      "/refund", "/api/payments/milestones/create-intent", "pm_card_chargeDeclined",
                      "pm_card_threeDSecure2Required"):
            assert shown in demo.stdout, shown
