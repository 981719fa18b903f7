/// Every kind of notification the code writes (`notifications.kind`, the outbound webhook's
/// `type`). One enum, so that `Notifier` cannot be given a kind that has no email template: the
/// templates are an exhaustive `switch` over it (Operations/NotificationTemplates.swift).
enum NotificationKind: String, CaseIterable, Sendable {
    // A purchase or a milestone funding, from the webhooks and the capture and cancel routes.
    case paymentAuthorized = "payment_authorized"
    case paymentSucceeded = "payment_succeeded"
    case paymentFailed = "payment_failed"
    case paymentCanceled = "payment_canceled"
    case paymentRefunded = "payment_refunded"
    case refundIssued = "refund_issued"
    case milestoneReleased = "milestone_released"
    // The sweeper: reservations, fundings and authorisations nobody finished.
    case reservationExpired = "reservation_expired"
    case fundingAbandoned = "funding_abandoned"
    case fundingExpired = "funding_expired"
    case authorizationExpiring = "authorization_expiring"
    case authorizationCancelled = "authorization_cancelled"
    case holdExpiryBlocked = "hold_expiry_blocked"
    // Disputes and chargebacks.
    case disputeOpened = "dispute_opened"
    case disputeResolved = "dispute_resolved"
    case chargebackOpened = "chargeback_opened"
    case chargebackRecovered = "chargeback_recovered"
    case chargebackRecoveryReturned = "chargeback_recovery_returned"
    case sellerDebt = "seller_debt"
    // The seller's Connect account and payouts.
    case accountEnabled = "account_enabled"
    case accountRestricted = "account_restricted"
    case accountDeauthorized = "account_deauthorized"
    case payoutPaid = "payout_paid"
    case payoutFailed = "payout_failed"
}

/// A way a notification reaches people (`notification_deliveries.channel`).
enum NotificationChannel: String, CaseIterable, Sendable {
    case webhook
    case email
}
