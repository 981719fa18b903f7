"""Signed webhook delivery with retries, pause/resume and redelivery.

Each endpoint ("platform", "connect") has its own dispatcher thread, so a slow or failing
endpoint never blocks the other. Deliveries to one endpoint are attempted in event order;
a failed attempt is rescheduled with exponential backoff (base * 2**(attempt-1)) and the
next due delivery goes ahead meanwhile, so ordering after failures is not guaranteed
(like Stripe).
"""
from __future__ import annotations

import hashlib
import hmac
import ssl
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional

from .util import new_id

USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


def sign(body: bytes, secrets: List[str], timestamp: int) -> str:
    """`Stripe-Signature` value: t=<ts>,v1=<hmac> (one v1 per secret, for rotation)."""
    signed = str(timestamp).encode("ascii") + b"." + body
    parts = [f"t={timestamp}"]
    for s in secrets:
        parts.append("v1=" + hmac.new(s.encode("utf-8"), signed, hashlib.sha256).hexdigest())
    return ",".join(parts)


class Endpoint:
    def __init__(self, name: str, url: Optional[str], secrets: List[str]):
        self.name = name
        self.url = url
        self.secrets = list(secrets)
        self.paused = False


class Dispatcher:
    def __init__(self, endpoints: Dict[str, Endpoint], max_attempts: int = 5,
                 backoff: float = 1.0, timeout: float = 10.0, log=None):
        self.endpoints = endpoints
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.timeout = timeout
        self.log = log or (lambda msg: None)
        self.cv = threading.Condition()
        self.deliveries: List[Dict[str, Any]] = []
        self.bodies: Dict[str, bytes] = {}
        self.stopping = False
        self.inflight = 0
        self.threads: List[threading.Thread] = []
        self.ssl_ctx = ssl.create_default_context()
        self.ssl_ctx.check_hostname = False
        self.ssl_ctx.verify_mode = ssl.CERT_NONE

    def start(self) -> None:
        for name in self.endpoints:
            t = threading.Thread(target=self._run, args=(name,), daemon=True,
                                 name=f"fake-stripe-webhooks-{name}")
            t.start()
            self.threads.append(t)

    def stop(self) -> None:
        with self.cv:
            self.stopping = True
            self.cv.notify_all()
        for t in self.threads:
            t.join(timeout=5)

    def reset(self) -> None:
        with self.cv:
            self.deliveries.clear()
            self.bodies.clear()
            for ep in self.endpoints.values():
                ep.paused = False
            self.cv.notify_all()

    # ---- enqueue -----------------------------------------------------------------------
    def endpoint_for(self, event: Dict[str, Any]) -> str:
        return "connect" if event.get("account") else "platform"

    def enqueue(self, event: Dict[str, Any], body: bytes, endpoint: Optional[str] = None,
                delay: float = 0.0) -> Optional[Dict[str, Any]]:
        name = endpoint or self.endpoint_for(event)
        with self.cv:
            self.bodies[event["id"]] = body
            ep = self.endpoints[name]
            if not ep.url:
                return None
            d = {"id": new_id("whdel", 16), "event_id": event["id"], "event_type": event["type"],
                 "account": event.get("account"), "endpoint": name, "url": ep.url,
                 "state": "pending", "attempts": [], "next_attempt_at": time.time() + delay,
                 "created": time.time()}
            self.deliveries.append(d)
            self.cv.notify_all()
            return d

    def pending_count(self, event_id: str) -> int:
        with self.cv:
            return sum(1 for d in self.deliveries
                       if d["event_id"] == event_id and d["state"] == "pending")

    # ---- control -------------------------------------------------------------------------
    def list(self, event_id: Optional[str] = None, endpoint: Optional[str] = None,
             state: Optional[str] = None, event_type: Optional[str] = None
             ) -> List[Dict[str, Any]]:
        with self.cv:
            out = []
            for d in self.deliveries:
                if event_id and d["event_id"] != event_id:
                    continue
                if endpoint and d["endpoint"] != endpoint:
                    continue
                if state and d["state"] != state:
                    continue
                if event_type and d["event_type"] != event_type:
                    continue
                out.append({k: (list(v) if isinstance(v, list) else v) for k, v in d.items()})
            return out

    def pause(self, endpoint: Optional[str] = None) -> None:
        with self.cv:
            for name, ep in self.endpoints.items():
                if endpoint in (None, name):
                    ep.paused = True

    def resume(self, endpoint: Optional[str] = None) -> None:
        with self.cv:
            for name, ep in self.endpoints.items():
                if endpoint in (None, name):
                    ep.paused = False
            self.cv.notify_all()

    def discard_pending(self, endpoint: Optional[str] = None) -> int:
        n = 0
        with self.cv:
            for d in self.deliveries:
                if d["state"] == "pending" and endpoint in (None, d["endpoint"]):
                    d["state"] = "discarded"
                    n += 1
        return n

    def idle(self) -> bool:
        """No pending deliveries on unpaused endpoints and nothing in flight."""
        with self.cv:
            if self.inflight:
                return False
            for d in self.deliveries:
                if d["state"] == "pending" and not self.endpoints[d["endpoint"]].paused:
                    return False
            return True

    def wait_idle(self, timeout: float = 10.0) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.idle():
                return True
            time.sleep(0.02)
        return self.idle()

    def deliver_now(self, event: Dict[str, Any], body: bytes, endpoint: Optional[str] = None
                    ) -> Dict[str, Any]:
        """Send one attempt synchronously (ignores pause); recorded as its own delivery."""
        name = endpoint or self.endpoint_for(event)
        ep = self.endpoints[name]
        with self.cv:
            self.bodies[event["id"]] = body
        d = {"id": new_id("whdel", 16), "event_id": event["id"], "event_type": event["type"],
             "account": event.get("account"), "endpoint": name, "url": ep.url,
             "state": "pending", "attempts": [], "next_attempt_at": None,
             "created": time.time(), "manual": True}
        if not ep.url:
            d["state"] = "failed"
            d["attempts"].append({"attempt": 1, "at": time.time(), "status": None,
                                  "error": "no URL configured for endpoint", "duration_ms": 0})
            return d
        with self.cv:
            self.deliveries.append(d)
        ok = self._attempt(d, body, ep)
        with self.cv:
            d["state"] = "succeeded" if ok else "failed"
        return d

    # ---- worker ------------------------------------------------------------------------
    def _run(self, name: str) -> None:
        while True:
            with self.cv:
                while True:
                    if self.stopping:
                        return
                    ep = self.endpoints[name]
                    due = None
                    wait = 0.5
                    if not ep.paused:
                        now = time.time()
                        for d in self.deliveries:
                            if d["endpoint"] != name or d["state"] != "pending":
                                continue
                            if d["next_attempt_at"] <= now:
                                due = d
                                break
                            wait = min(wait, d["next_attempt_at"] - now)
                    if due is not None:
                        due["state"] = "sending"
                        self.inflight += 1
                        body = self.bodies[due["event_id"]]
                        break
                    self.cv.wait(timeout=max(wait, 0.01))
            try:
                ok = self._attempt(due, body, ep)
            finally:
                with self.cv:
                    self.inflight -= 1
                    if ok:
                        due["state"] = "succeeded"
                    elif len(due["attempts"]) >= self.max_attempts:
                        due["state"] = "failed"
                        due["next_attempt_at"] = None
                    else:
                        due["state"] = "pending"
                        due["next_attempt_at"] = time.time() + self.backoff * (
                            2 ** (len(due["attempts"]) - 1))
                    self.cv.notify_all()

    def _attempt(self, d: Dict[str, Any], body: bytes, ep: Endpoint) -> bool:
        ts = int(time.time())
        header = sign(body, ep.secrets, ts)
        req = urllib.request.Request(ep.url, data=body, method="POST", headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Stripe-Signature": header,
            "Cache-Control": "no-cache",
            "Accept": "*/*; q=0.5, application/xml",
        })
        started = time.time()
        status = None
        err = None
        resp_body = b""
        try:
            with urllib.request.urlopen(req, timeout=self.timeout,
                                        context=self.ssl_ctx if ep.url.startswith("https")
                                        else None) as r:
                status = r.status
                resp_body = r.read(2048)
        except urllib.error.HTTPError as e:
            status = e.code
            try:
                resp_body = e.read(2048)
            except Exception:  # noqa: BLE001
                resp_body = b""
        except Exception as e:  # noqa: BLE001 - connection refused, timeout, TLS...
            err = f"{type(e).__name__}: {e}"
        ok = status is not None and 200 <= status < 300
        with self.cv:
            d["attempts"].append({
                "attempt": len(d["attempts"]) + 1, "at": started, "status": status,
                "error": err, "duration_ms": int((time.time() - started) * 1000),
                "signature_timestamp": ts,
                "response_body": resp_body.decode("utf-8", "replace")[:500]})
        self.log(f"webhook {d['event_type']} {d['event_id']} -> {ep.name} "
                 f"{status if status is not None else err}")
        return ok
