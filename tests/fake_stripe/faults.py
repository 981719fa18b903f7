"""Injected faults (`/_control/faults`, `FakeStripe.inject_fault`): errors, rate limits, lock
timeouts, delays, dropped connections and forced declines for the next matching requests."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from .errors import StripeError
from .util import rand


class Fault:
    TYPES = ("error", "rate_limit", "lock_timeout", "delay", "drop", "decline")

    def __init__(self, spec: Dict[str, Any]):
        self.id = "flt_" + rand(10)
        self.type = spec.get("type", "error")
        if self.type not in self.TYPES:
            raise ValueError(f"type must be one of {', '.join(self.TYPES)}")
        self.method = str(spec.get("method", "*")).upper()
        self.path_prefix = spec.get("path_prefix") or spec.get("path") or "/v1/"
        self.account = spec.get("account")
        self.remaining = int(spec.get("count", 1))
        self.status = spec.get("status")
        self.delay_ms = int(spec.get("delay_ms", 0))
        self.when = spec.get("when", "before")
        if self.when not in ("before", "after"):
            raise ValueError("when must be before or after")
        self.should_retry = spec.get("should_retry")
        self.decline_code = spec.get("decline_code", "generic_decline")
        self.error = spec.get("error") or {}
        self.store = bool(spec.get("idempotent_store", False))
        self.hits = 0
        if self.type == "delay" and self.delay_ms <= 0:
            raise ValueError("delay faults need delay_ms > 0")

    def matches(self, method: str, path: str, account: Optional[str]) -> bool:
        if self.remaining <= 0:
            return False
        if self.method not in ("*", method):
            return False
        if not path.startswith(self.path_prefix):
            return False
        if self.account is not None and self.account != account:
            return False
        if self.type == "decline" and not (method == "POST" and (
                path.endswith("/confirm") or path == "/v1/payment_intents")):
            return False  # a decline only makes sense where a card is charged
        return True

    def error_response(self) -> StripeError:
        if self.type == "rate_limit":
            e = StripeError(int(self.status or 429), "invalid_request_error",
                            "Request rate limit exceeded. You can learn more about rate limits "
                            "here https://stripe.com/docs/rate-limits.", code="rate_limit",
                            store=self.store)
        elif self.type == "lock_timeout":
            e = StripeError(int(self.status or 409), "invalid_request_error",
                            "This object cannot be accessed right now because another API "
                            "request or Stripe process is currently accessing it. If you see "
                            "this error intermittently, retry the request. If you see this "
                            "error frequently and are making multiple concurrent requests to a "
                            "single object, make your requests serially or at a lower rate.",
                            code="lock_timeout", store=self.store)
            if self.should_retry is None:
                e.headers["Stripe-Should-Retry"] = "true"
        else:
            e = StripeError(int(self.status or 500), "api_error",
                            "An unknown error occurred", store=self.store)
        if self.error:
            e.type = self.error.get("type", e.type)
            e.code = self.error.get("code", e.code)
            e.message = self.error.get("message", e.message)
            e.param = self.error.get("param", e.param)
        if self.should_retry is not None:
            e.headers["Stripe-Should-Retry"] = "true" if self.should_retry in (
                True, "true", "1", 1) else "false"
        return e

    def to_dict(self) -> Dict[str, Any]:
        return {"id": self.id, "type": self.type, "method": self.method,
                "path_prefix": self.path_prefix, "account": self.account,
                "remaining": self.remaining, "hits": self.hits, "status": self.status,
                "delay_ms": self.delay_ms, "when": self.when,
                "should_retry": self.should_retry, "decline_code": self.decline_code,
                "error": self.error, "idempotent_store": self.store}


def take(faults: List[Fault], method: str, path: str, account: Optional[str]
         ) -> Optional[Fault]:
    """The first fault that matches this request, counted as hit (callers hold the lock that
    guards `faults`)."""
    for f in faults:
        if f.matches(method, path, account):
            f.remaining -= 1
            f.hits += 1
            return f
    return None
