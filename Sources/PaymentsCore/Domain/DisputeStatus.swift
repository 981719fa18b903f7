import Postgres

/// Who a dispute is with (`disputes.kind`): the marketplace (a buyer's platform dispute, settled
/// by an admin) or the card network (a Stripe chargeback, answered with evidence).
enum DisputeKind: String, CaseIterable, SQLDecodable, Encodable {
    case platform
    case chargeback
}

/// A dispute's status (`disputes.status`): a platform dispute goes `open` → `resolved` or
/// `dismissed`; a chargeback has Stripe's dispute statuses.
enum DisputeStatus: String, CaseIterable, SQLDecodable, Encodable {
    case open
    case resolved
    case dismissed
    case warningNeedsResponse = "warning_needs_response"
    case warningUnderReview = "warning_under_review"
    case warningClosed = "warning_closed"
    case needsResponse = "needs_response"
    case underReview = "under_review"
    case won
    case lost

    /// A platform dispute still waiting for an admin's resolution.
    var isOpen: Bool { self == .open }

    /// Settled for good: an admin resolved or dismissed it, or the card network decided it.
    var isClosed: Bool { [.resolved, .dismissed, .warningClosed, .won, .lost].contains(self) }
}
