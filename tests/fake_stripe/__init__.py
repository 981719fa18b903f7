"""Fake Stripe server used as test support (see docs/stripe-fake.md).

    from tests.fake_stripe import FakeStripe
    fs = FakeStripe(platform_webhook_url=..., connect_webhook_url=...).start()
    fs.url   # STRIPE_API_BASE
    fs.stop()
"""
from .core import DEFAULT_API_VERSION, TEST_PAYMENT_METHODS
from .server import FakeStripe
from .webhooks import sign

__all__ = ["FakeStripe", "DEFAULT_API_VERSION", "TEST_PAYMENT_METHODS", "sign"]
