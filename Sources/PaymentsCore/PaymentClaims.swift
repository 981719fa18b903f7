import Foundation
import Postgres
import Stripe

/// An action that moves a payment's money at Stripe.
enum PaymentAction: String {
    case capture, cancel, release
}

/// Claims a payment for a money-moving action before its Stripe call: one guarded UPDATE
/// (`payment_claim_action`) that checks the status and that no dispute is open, under the
/// payment's row lock, which opening a dispute takes too. So a dispute opened while the call
/// runs is refused until the action is settled, and an action never starts on a disputed
/// payment (unless an admin's dispute resolution is the action). The same action may claim
/// again (double clicks send the same Stripe key); another waits for the claim's lease.
struct PaymentClaims {
    let lease: Duration

    /// The claimed payment row (`payments.*`), or nil when its status does not allow `action`.
    /// Throws `409 payment_disputed` or `409 payment_action_in_progress`.
    func claim(_ paymentID: String, for action: PaymentAction, from statuses: [String], allowDisputed: Bool = false,
               on connection: some SQLExecutor) throws -> Row? {
        let leaseSeconds = Int(lease.components.seconds) + 1
        if let row = try connection.query("""
            SELECT * FROM payment_claim_action(\(paymentID)::uuid, \(action.rawValue),
                                               \("{" + statuses.joined(separator: ",") + "}")::text[], \(allowDisputed),
                                               \(leaseSeconds))
            """).first {
            return row
        }
        // Refused: say why — the status, a dispute, or another action's live claim.
        guard let current = try connection.query("""
            SELECT status, is_disputed OR payment_has_open_dispute(id) AS is_disputed FROM payments WHERE id = \(paymentID)::uuid
            """).first, let status = current["status"], statuses.contains(status) else { return nil }
        if !allowDisputed, current.bool("is_disputed") == true {
            throw APIError(status: 409, code: "payment_disputed", message: "A dispute is open on this payment.")
        }
        throw Self.inProgress
    }

    /// Ends `action`'s claim: after its outcome is recorded, or when Stripe refused it.
    static func settle(_ paymentID: String, _ action: PaymentAction, on connection: some SQLExecutor) throws {
        try connection.query("SELECT payment_settle_action(\(paymentID)::uuid, \(action.rawValue))")
    }

    /// Ends the claim after a Stripe call that certainly did nothing; after one whose outcome is
    /// unknown the claim stays until its lease ends, so that no dispute slips in meanwhile.
    static func settle(_ paymentID: String, _ action: PaymentAction, after error: any Error, on database: Database) {
        guard !((error as? StripeError)?.mayHaveSucceeded ?? false) else { return }
        try? settle(paymentID, action, on: database)
    }

    /// Another money-moving action on this payment is under way.
    static let inProgress = APIError(status: 409, code: "payment_action_in_progress",
                                     message: "Another action on this payment is in progress; retry shortly.",
                                     headers: [("Retry-After", "5")])
}

extension WorkerContext {
    /// Claims with the configured request lease.
    var claims: PaymentClaims { PaymentClaims(lease: shared.configuration.requestLease) }
}
