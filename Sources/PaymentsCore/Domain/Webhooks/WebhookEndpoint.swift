import Postgres

/// Which Stripe endpoint delivered an event (each has its own secrets), where the app serves it,
/// and the event types it acts on. `payments stripe endpoints setup` subscribes each endpoint at
/// Stripe to exactly `handledEventTypes` and the webhook family applies exactly those: one list.
public enum WebhookEndpoint: String, Sendable, CaseIterable, SQLDecodable {
    case platform, connect

    /// The route the webhook family serves for this endpoint (below `PUBLIC_BASE_URL`).
    public var path: String {
        switch self {
        case .platform: return "/api/payments/webhook"
        case .connect: return "/api/payments/webhook/connect"
        }
    }

    /// Whether Stripe sends connected accounts' events here (`connect=true` at creation).
    public var isConnect: Bool { self == .connect }

    /// The event types the app applies on this endpoint, sorted; others are stored
    /// as `ignored`, so subscribing to them would only fill the inbox.
    public var handledEventTypes: [String] {
        switch self {
        case .platform:
            return [
                "charge.dispute.closed", "charge.dispute.created", "charge.dispute.funds_reinstated",
                "charge.dispute.funds_withdrawn", "charge.dispute.updated", "charge.refund.updated",
                "charge.refunded", "charge.succeeded", "payment_intent.amount_capturable_updated",
                "payment_intent.canceled",
                "payment_intent.payment_failed", "payment_intent.succeeded", "transfer.created",
                "transfer.reversed",
            ]
        case .connect:
            return
                (["account.application.deauthorized", "account.updated", "payout.failed", "payout.paid"]
                + Self.directChargeEventTypes).sorted()
        }
    }

    /// A direct charge's intent, charge, refunds and disputes live on the seller's account, so
    /// their events come to the Connect endpoint, with `account`; they are applied only when it is
    /// the account of the payment they concern.
    public static let directChargeEventTypes = [
        "charge.dispute.closed", "charge.dispute.created", "charge.dispute.funds_reinstated",
        "charge.dispute.funds_withdrawn", "charge.dispute.updated", "charge.refund.updated", "charge.refunded",
        "charge.succeeded", "payment_intent.amount_capturable_updated", "payment_intent.canceled",
        "payment_intent.payment_failed", "payment_intent.succeeded",
    ]
}
