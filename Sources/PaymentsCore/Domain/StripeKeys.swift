import Stripe

/// Every deterministic Stripe idempotency key the service sends, spelled once: a key
/// deduplicates at Stripe only when every caller spells it exactly alike, and a key is sent with
/// one set of parameters only (Stripe refuses a key reused with others). Ids are lower-cased.
enum StripeKeys {
    /// Creating a payment's PaymentIntent (also how a lost create is recovered).
    static func create(_ paymentID: String) -> String { "payment:\(paymentID.lowercased()):create" }

    /// Cancelling a payment's PaymentIntent for `reason`.
    static func cancel(_ paymentID: String, reason: CancellationReason) -> String {
        "payment:\(paymentID.lowercased()):cancel:\(reason.rawValue)"
    }

    /// Capturing `amount` of a payment's authorisation.
    static func capture(_ paymentID: String, amount: Int64) -> String {
        "payment:\(paymentID.lowercased()):capture:\(amount)"
    }

    /// Funding a milestone: the first attempt has the documented key, a new attempt after a
    /// failed one its own number.
    static func fundMilestone(_ milestoneID: String, attempt: Int) -> String {
        attempt <= 1
            ? "milestone:\(milestoneID.lowercased()):fund" : "milestone:\(milestoneID.lowercased()):fund:\(attempt)"
    }

    /// Releasing a milestone: its transfer to the seller.
    static func releaseMilestone(_ milestoneID: String) -> String { "milestone:\(milestoneID.lowercased()):release" }

    /// The `number`th refund decided on a dispute.
    static func disputeRefund(_ disputeID: String, number: Int) -> String {
        "dispute:\(disputeID.lowercased()):refund:\(number)"
    }

    /// The transfer reversal that goes with a dispute's `number`th refund.
    static func disputeReversal(_ disputeID: String, number: Int) -> String {
        "dispute:\(disputeID.lowercased()):reversal:\(number)"
    }

    /// Taking a chargeback's amount back from the seller's transfer (one per chargeback).
    static func chargebackRecovery(_ disputeID: String) -> String {
        "dispute:\(disputeID.lowercased()):recovery"
    }

    /// Giving it back when the chargeback was won.
    static func chargebackRecoveryUndo(_ disputeID: String) -> String {
        "dispute:\(disputeID.lowercased()):recovery:undo"
    }

    /// The `number`th goodwill refund of a payment (an admin's, without a dispute).
    static func paymentRefund(_ paymentID: String, number: Int) -> String {
        "payment:\(paymentID.lowercased()):refund:\(number)"
    }

    /// The transfer reversal made before the `number`th goodwill refund of a released milestone.
    static func paymentReversal(_ paymentID: String, number: Int) -> String {
        "payment:\(paymentID.lowercased()):reversal:\(number)"
    }

    /// Staging or submitting chargeback evidence; `digest` names the parameters sent.
    static func disputeEvidence(_ disputeID: String, digest: some StringProtocol) -> String {
        "dispute:\(disputeID.lowercased()):evidence:\(digest)"
    }

    /// Setting a connected account's payout delay to `days` again after the event `event` showed
    /// another (each event its own key: a later drift is corrected again).
    static func payoutDelay(_ account: String, days: Int, event: String) -> String {
        "account:\(account.lowercased()):payout_delay:\(days):\(event.lowercased())"
    }

    /// A seller's one Express account.
    static func connectAccount(_ profileID: String) -> String { "profile:\(profileID.lowercased()):account" }

    /// An onboarding link for one `state` (its last 16 characters).
    static func accountLink(_ profileID: String, state: String) -> String {
        "profile:\(profileID.lowercased()):link:\(state.suffix(16))"
    }

    /// A dashboard login link; `nonce` makes each request its own.
    static func loginLink(_ profileID: String, nonce: String) -> String {
        "profile:\(profileID.lowercased()):login:\(nonce)"
    }

    /// Creating a webhook endpoint in one `payments stripe endpoints setup` run (`run`: random per
    /// run), so that its retries share the key and a later run, after the endpoint was deleted at
    /// Stripe, is not answered with the old creation.
    static func createWebhookEndpoint(_ endpoint: WebhookEndpoint, run: some StringProtocol) -> String {
        "webhook_endpoint:\(endpoint.rawValue):create:\(run)"
    }

    /// Updating a webhook endpoint in one setup run (`run`: random per run, as for creation).
    static func updateWebhookEndpoint(_ endpointID: String, run: some StringProtocol) -> String {
        "webhook_endpoint:\(endpointID.lowercased()):update:\(run)"
    }
}

/// Why we cancel a PaymentIntent (Stripe's `cancellation_reason`).
enum CancellationReason: String {
    /// The buyer or an admin cancelled the payment.
    case requestedByCustomer = "requested_by_customer"
    /// We gave up on it: a failed, expired or lost attempt.
    case abandoned
}

extension StripeClient {
    /// Cancels a payment's intent under the key for `reason`, on the account that owns it (the
    /// payment row's `stripe_account`: a direct charge's seller account, nil for the platform's).
    /// An intent that a call for another reason (or Stripe itself) already cancelled counts as
    /// cancelled.
    @discardableResult
    func cancelIntent(
        _ intentID: String, ofPayment paymentID: String,
        reason: CancellationReason, account: String?
    ) throws(StripeError) -> PaymentIntent {
        do {
            return try cancelPaymentIntent(
                intentID, reason: reason.rawValue,
                idempotencyKey: StripeKeys.cancel(paymentID, reason: reason), account: account)
        } catch let error where error.code == "payment_intent_unexpected_state" {
            let intent = try retrievePaymentIntent(intentID, account: account)
            guard intent.status == "canceled" else { throw error }
            return intent
        }
    }
}

extension Error {
    /// True for a Stripe call that may have done its work (a lost response, a 5xx, a timeout):
    /// its outcome is unknown, so what it reserved or claimed must be kept for a resume under the
    /// same key. Any other failure certainly moved no money.
    var mayHaveMovedMoney: Bool { (self as? StripeError)?.mayHaveSucceeded ?? false }
}
