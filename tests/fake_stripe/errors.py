"""Stripe-shaped API errors."""
from __future__ import annotations

from typing import Any, Dict, Optional

DOC_BASE = "https://stripe.com/docs/error-codes/"


class StripeError(Exception):
    """An error the fake answers with, shaped like Stripe's `{"error": {...}}`.

    `store` says whether the idempotency layer saves this response. Stripe saves the
    result once endpoint execution has begun (declines, state errors, 500s) but not
    when parameters fail validation or the request conflicts with a concurrent one.
    """

    def __init__(self, status: int, type_: str, message: str, code: Optional[str] = None,
                 param: Optional[str] = None, decline_code: Optional[str] = None,
                 store: bool = True, headers: Optional[Dict[str, str]] = None,
                 extra: Optional[Dict[str, Any]] = None):
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.code = code
        self.param = param
        self.decline_code = decline_code
        self.store = store
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self, request_id: Optional[str] = None) -> Dict[str, Any]:
        err: Dict[str, Any] = {}
        if self.code:
            err["code"] = self.code
        if self.decline_code:
            err["decline_code"] = self.decline_code
        if self.code:
            err["doc_url"] = DOC_BASE + self.code.replace("_", "-")
        err["message"] = self.message
        if self.param:
            err["param"] = self.param
        if request_id:
            err["request_log_url"] = (
                f"https://dashboard.stripe.com/test/logs/{request_id}?t=0")
        err["type"] = self.type
        err.update(self.extra)
        return {"error": err}


def invalid(message: str, param: Optional[str] = None, code: Optional[str] = None,
            status: int = 400, store: bool = False) -> StripeError:
    """invalid_request_error; by default a validation failure (not stored for idempotency)."""
    return StripeError(status, "invalid_request_error", message, code=code, param=param,
                       store=store)


def state_error(message: str, code: str, param: Optional[str] = None) -> StripeError:
    """invalid_request_error raised once execution began (stored for idempotency)."""
    return StripeError(400, "invalid_request_error", message, code=code, param=param,
                       store=True)


def missing(kind: str, ident: str, param: str = "id") -> StripeError:
    return StripeError(404, "invalid_request_error", f"No such {kind}: '{ident}'",
                       code="resource_missing", param=param, store=False)


def param_missing(param: str) -> StripeError:
    return invalid(f"Missing required param: {param}.", param=param, code="parameter_missing")


def param_unknown(param: str) -> StripeError:
    return invalid(f"Received unknown parameter: {param}", param=param,
                   code="parameter_unknown")


# Decline table for the test payment methods Stripe documents.
DECLINES = {
    "generic_decline": ("card_declined", "Your card was declined."),
    "insufficient_funds": ("card_declined", "Your card has insufficient funds."),
    "lost_card": ("card_declined", "Your card was declined."),
    "stolen_card": ("card_declined", "Your card was declined."),
    "fraudulent": ("card_declined", "Your card was declined."),
    "expired_card": ("expired_card", "Your card has expired."),
    "incorrect_cvc": ("incorrect_cvc", "Your card's security code is incorrect."),
    "processing_error": ("processing_error",
                         "An error occurred while processing your card. Try again in a little bit."),
    "card_velocity_exceeded": ("card_declined",
                               "Your card was declined for making repeated attempts too frequently or exceeding its amount limit."),
}


def card_error(decline_code: str, extra: Optional[Dict[str, Any]] = None) -> StripeError:
    code, message = DECLINES.get(decline_code, ("card_declined", "Your card was declined."))
    # For expired_card / incorrect_cvc / processing_error Stripe reports the code and
    # also the decline_code equal to it.
    return StripeError(402, "card_error", message, code=code, decline_code=decline_code,
                       store=True, extra=extra)
