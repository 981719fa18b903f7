import Postgres
import Stripe

/// Until when an authorised payment can be captured (`payments.capture_before`).
enum AuthorisationHold {
    /// The card's own `capture_before` once a `charge.succeeded` has told us (it is kept,
    /// whatever the order of the events), else the intent's creation + 7 days, Stripe's usual
    /// hold for cards. An SQL expression, for `payment_capturable_atomic`.
    static func end(of intent: PaymentIntent) -> SQLQuery {
        """
        (SELECT COALESCE(p.capture_before, to_timestamp(\(intent.created + 7 * 86_400)))
         FROM payments p WHERE p.stripe_payment_intent_id = \(intent.id))
        """
    }
}
