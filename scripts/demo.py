#!/usr/bin/env python3
"""`make demo`: the whole story against the stack `make run` started, printing each request and
its answer — the seller onboarded, a purchase confirmed with a test card and captured on
delivery, a second one disputed and partly refunded by the admin, a milestone funded and
released, a declined card and a 3-D Secure card. Ends with a summary; exits 1 if any step did
not end as expected. It needs the fake Stripe (`make run` without STRIPE_SECRET_KEY): the cards
are confirmed through the fake's browser step.

Settings: RUN_DIR (.run), the same as `make run`."""

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests
import urllib3

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

REPO = Path(__file__).resolve().parents[1]
RUN_DIR = Path(os.environ.get("RUN_DIR", REPO / ".run")).resolve()


class StepFailed(Exception):
    pass


def load_env(path: Path) -> dict:
    """The `KEY='value'` lines run.sh writes."""
    env = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip().strip("'")
    return env


class Demo:
    def __init__(self):
        info = json.loads((RUN_DIR / "demo.json").read_text())
        self.base, self.fake, self.binary = info["base_url"], info["fake_url"], info["payments_bin"]
        if not self.fake:
            raise SystemExit("make demo needs the fake Stripe: run `make run` without STRIPE_SECRET_KEY")
        self.env = {**os.environ, **load_env(RUN_DIR / "env")}
        self.tokens = {user: self.payments("token", "--user", f"demo-{user}", "--ttl", "3600").strip()
                       for user in ("buyer", "seller", "admin")}
        self.results = []

    def payments(self, *args):
        result = subprocess.run([self.binary, *args], env=self.env, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise StepFailed(f"payments {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    # --- HTTP, printed ---------------------------------------------------------------------
    def call(self, who, method, path, body=None, expect=(200, 201)):
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        if method == "POST":
            headers["Idempotency-Key"] = f"demo-{uuid.uuid4()}"
        print(f"  {who:6} {method} {path}" + (f"  {json.dumps(body)}" if body is not None else ""))
        response = requests.request(method, self.base + path, json=body, headers=headers, verify=False, timeout=60)
        text = response.text if len(response.text) < 400 else response.text[:400] + "…"
        print(f"         → {response.status_code} {text}")
        if response.status_code not in expect:
            raise StepFailed(f"{method} {path} answered {response.status_code}")
        return response.json()

    def card(self, intent, payment_method):
        """The buyer's browser confirming the card (Stripe.js), at the fake."""
        print(f"  card   confirm {intent} with {payment_method} (the fake's browser step)")
        response = requests.post(f"{self.fake}/_control/payment_intents/{intent}/confirm",
                                 json={"payment_method": payment_method}, verify=False, timeout=30)
        print(f"         → {response.status_code} status {response.json().get('status', response.text[:200])}")
        return response.json()

    def wait_status(self, who, payment_id, wanted, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            status = requests.get(f"{self.base}/api/payments/{payment_id}", verify=False, timeout=30,
                                  headers={"Authorization": f"Bearer {self.tokens[who]}"}).json().get("status")
            if status == wanted:
                print(f"         payment {payment_id} is {status} (the webhook arrived)")
                return
            time.sleep(0.2)
        raise StepFailed(f"payment {payment_id} did not become {wanted} (it is {status})")

    def step(self, title, run):
        print(f"\n== {title}")
        try:
            run()
            self.results.append((title, True, ""))
        except (StepFailed, requests.RequestException, KeyError, ValueError) as error:
            print(f"  !! {error}")
            self.results.append((title, False, str(error)))

    def buy(self, listing, payment_method="pm_card_visa"):
        created = self.call("buyer", "POST", "/api/payments/create-intent", {"listing_id": listing})
        self.card(created["payment_intent_id"], payment_method)
        return created

    # --- the story -------------------------------------------------------------------------
    def run(self):
        story = json.loads(self.payments("seed-demo", "--fresh-listings"))
        lamp, chair, vase, clock = story["items"]

        def onboarded():
            status = self.call("seller", "GET", "/api/connect/status")
            if not status["charges_enabled"]:
                raise StepFailed("the demo seller has not finished onboarding")

        def purchase():
            created = self.buy(lamp)
            self.wait_status("buyer", created["payment_id"], "requires_capture")
            captured = self.call("buyer", "POST", "/api/payments/capture", {"payment_id": created["payment_id"]})
            if captured["status"] != "succeeded":
                raise StepFailed(f"the capture ended {captured['status']}")

        def dispute():
            created = self.buy(chair)
            self.wait_status("buyer", created["payment_id"], "requires_capture")
            self.call("buyer", "POST", "/api/payments/capture", {"payment_id": created["payment_id"]})
            opened = self.call("buyer", "POST", f"/api/payments/{created['payment_id']}/disputes",
                               {"reason": "damaged", "details": "The chair arrived with a broken leg."})
            refund = self.call("admin", "POST", f"/api/admin/disputes/{opened['id']}/refund",
                               {"amount": 2000, "reason": "Partial refund for the damage"})
            if refund["amount"] != 2000:
                raise StepFailed("the refund is not the amount asked for")
            self.call("admin", "POST", f"/api/admin/disputes/{opened['id']}/resolve",
                      {"outcome": "dismiss", "note": "Settled with a partial refund."})

        def milestone():
            first = story["milestones"][0]
            funded = self.call("buyer", "POST", "/api/payments/milestones/create-intent",
                               {"listing_id": story["job"], "milestone_id": first})
            self.card(funded["payment_intent_id"], "pm_card_visa")
            self.wait_status("buyer", funded["payment_id"], "succeeded")
            released = self.call("buyer", "POST", f"/api/payments/milestones/{first}/release", {})
            print(f"         milestone released: {json.dumps(released)[:200]}")

        def declined():
            created = self.buy(vase, "pm_card_chargeDeclined")
            self.wait_status("buyer", created["payment_id"], "failed")

        def three_d_secure():
            created = self.call("buyer", "POST", "/api/payments/create-intent", {"listing_id": clock})
            confirmed = self.card(created["payment_intent_id"], "pm_card_threeDSecure2Required")
            if confirmed.get("status") != "requires_action":
                raise StepFailed(f"the card asked for no authentication ({confirmed.get('status')})")
            print("  card   the buyer completes 3-D Secure (the fake's browser step)")
            requests.post(f"{self.fake}/_control/payment_intents/{created['payment_intent_id']}/authenticate",
                          json={}, verify=False, timeout=30)
            self.wait_status("buyer", created["payment_id"], "requires_capture")

        self.step("1. The seller is onboarded (Stripe Connect Express, at the fake)", onboarded)
        self.step("2. A purchase: intent, test card, webhook, delivery confirmed, captured", purchase)
        self.step("3. A second purchase is disputed and the admin refunds part of it", dispute)
        self.step("4. A milestone of a job is funded and released to the seller", milestone)
        self.step("5. A declined card", declined)
        self.step("6. A 3-D Secure card", three_d_secure)

        print("\n== Summary")
        for title, ok, error in self.results:
            print(f"  {'ok  ' if ok else 'FAIL'}  {title}{'  — ' + error if error else ''}")
        return all(ok for _, ok, _ in self.results)


if __name__ == "__main__":
    sys.exit(0 if Demo().run() else 1)
