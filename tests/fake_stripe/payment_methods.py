"""Payment methods: Stripe's test payment methods (`pm_card_visa`, `pm_card_chargeDeclined`,
...) and the `pm_` objects made from them."""
from __future__ import annotations

import time
from typing import Any, Dict, Tuple

from .errors import StripeError
from .state import Ctx, State
from .util import new_id, rand

# ---- test payment methods ------------------------------------------------------------
# name -> (brand, last4, funding, outcome); outcome: "ok", "decline:<decline_code>",
# "3ds" (requires_action), "dispute" (succeeds, then a fraudulent dispute is opened)
TEST_PAYMENT_METHODS: Dict[str, Tuple[str, str, str, str]] = {
    "pm_card_visa": ("visa", "4242", "credit", "ok"),
    "pm_card_visa_debit": ("visa", "5556", "debit", "ok"),
    "pm_card_mastercard": ("mastercard", "4444", "credit", "ok"),
    "pm_card_mastercard_debit": ("mastercard", "8210", "debit", "ok"),
    "pm_card_amex": ("amex", "8431", "credit", "ok"),
    "pm_card_discover": ("discover", "1117", "credit", "ok"),
    "pm_card_us": ("visa", "4242", "credit", "ok"),
    "pm_card_bypassPending": ("visa", "0077", "credit", "ok"),
    "pm_card_chargeDeclined": ("visa", "0002", "credit", "decline:generic_decline"),
    "pm_card_visa_chargeDeclined": ("visa", "0002", "credit", "decline:generic_decline"),
    "pm_card_chargeDeclinedInsufficientFunds": ("visa", "9995", "credit",
                                                "decline:insufficient_funds"),
    "pm_card_visa_chargeDeclinedInsufficientFunds": ("visa", "9995", "credit",
                                                     "decline:insufficient_funds"),
    "pm_card_chargeDeclinedLostCard": ("visa", "9987", "credit", "decline:lost_card"),
    "pm_card_visa_chargeDeclinedLostCard": ("visa", "9987", "credit", "decline:lost_card"),
    "pm_card_chargeDeclinedStolenCard": ("visa", "9979", "credit", "decline:stolen_card"),
    "pm_card_visa_chargeDeclinedStolenCard": ("visa", "9979", "credit", "decline:stolen_card"),
    "pm_card_chargeDeclinedExpiredCard": ("visa", "0069", "credit", "decline:expired_card"),
    "pm_card_chargeDeclinedIncorrectCvc": ("visa", "0127", "credit", "decline:incorrect_cvc"),
    "pm_card_chargeDeclinedProcessingError": ("visa", "0119", "credit",
                                              "decline:processing_error"),
    "pm_card_chargeDeclinedFraudulent": ("visa", "0019", "credit", "decline:fraudulent"),
    "pm_card_chargeDeclinedVelocityLimitExceeded": ("visa", "6975", "credit",
                                                    "decline:card_velocity_exceeded"),
    "pm_card_authenticationRequired": ("visa", "3184", "credit", "3ds"),
    "pm_card_threeDSecure2Required": ("visa", "3220", "credit", "3ds"),
    "pm_card_authenticationRequiredOnSetup": ("visa", "3155", "credit", "3ds"),
    "pm_card_createDispute": ("visa", "0259", "credit", "dispute"),
    "pm_card_createDisputeInquiry": ("visa", "2685", "credit", "dispute_inquiry"),
}


def resolve(st: State, name: str, ctx: Ctx) -> Dict[str, Any]:
    """The payment method a request names: a fresh `pm_` for a test payment method's name,
    else one made earlier."""
    if name in TEST_PAYMENT_METHODS:
        brand, last4, funding, outcome = TEST_PAYMENT_METHODS[name]
        pm = {
            "id": new_id("pm"), "object": "payment_method", "allow_redisplay": "unspecified",
            "billing_details": {"address": {"city": None, "country": None, "line1": None,
                                            "line2": None, "postal_code": None,
                                            "state": None},
                                "email": None, "name": None, "phone": None},
            "card": {"brand": brand, "checks": {"address_line1_check": None,
                                                "address_postal_code_check": None,
                                                "cvc_check": "pass"},
                     "country": "US", "display_brand": brand, "exp_month": 12,
                     "exp_year": time.gmtime().tm_year + 3,
                     "fingerprint": rand(16), "funding": funding,
                     "generated_from": None, "last4": last4,
                     "networks": {"available": [brand], "preferred": None},
                     "three_d_secure_usage": {"supported": True}, "wallet": None},
            "created": st.now(), "customer": None, "livemode": False, "metadata": {},
            "type": "card",
        }
        st.put(pm, ctx.account)
        st.objects[pm["id"]]["_test_outcome"] = outcome  # internal, stripped on render
        return pm
    obj = st.objects.get(name)
    if obj is None or obj.get("object") != "payment_method":
        raise StripeError(400, "invalid_request_error", f"No such PaymentMethod: '{name}'",
                          code="resource_missing", param="payment_method", store=False)
    return obj


def catalogue() -> Dict[str, Dict[str, str]]:
    """Control: the test payment methods and what each does."""
    return {k: {"brand": v[0], "last4": v[1], "outcome": v[3]}
            for k, v in TEST_PAYMENT_METHODS.items()}
