import Cryptography
import Foundation
import Postgres
import Stripe

/// An action that moves a payment's money at Stripe.
enum PaymentAction: String {
    case capture, cancel, release
}

/// One request's claim on a payment for a money-moving action (see `PaymentClaims`).
struct PaymentClaim {
    /// The payment's id.
    let paymentID: String
    /// This request's claim token; the claim is settled only by its owner.
    let owner: String
    /// The payment row (`payments.*`) as the claim left it.
    let payment: PaymentRow

    /// False when this request joined a live claim of the same action (a double click): it
    /// then leaves the claim to the request that owns it.
    var isOwner: Bool { payment.actionClaimOwner == owner }
}

/// Claims a payment for a money-moving action before its Stripe call: one guarded UPDATE
/// (`payment_claim_action`) that checks the status and that no dispute is open, under the
/// payment's row lock, which opening a dispute and reserving a refund take too. So a dispute
/// opened while the call runs is refused until the action is settled, an action never starts on
/// a disputed payment (unless it is an admin's resolution of the payment's platform dispute — a
/// chargeback still blocks it), and a refund and a release never run at once. The same action
/// may join a live claim (double clicks send the same Stripe key); another waits for the claim
/// to end.
struct PaymentClaims {
    let lease: Duration

    /// The claim, or nil when the payment's status does not allow `action`. Throws `409
    /// payment_disputed`, `409 payment_action_in_progress` or `409 refund_in_progress`.
    func claim(
        _ paymentID: String, for action: PaymentAction, from statuses: [String], resolvingDispute: Bool = false,
        on database: some SQLExecutor
    ) throws -> PaymentClaim? {
        let owner = Hex.encode(Digest.randomBytes(12))
        let leaseSeconds = Int(lease.components.seconds) + 1
        guard
            let row = try database.query(
                """
                SELECT * FROM payment_claim_action(\(paymentID)::uuid, \(action.rawValue), \(owner),
                                                   \("{" + statuses.joined(separator: ",") + "}")::text[], \(resolvingDispute),
                                                   \(leaseSeconds))
                """
            ).first
        else {
            return try refusal(paymentID, statuses: statuses, resolvingDispute: resolvingDispute, on: database)
        }
        let claim = PaymentClaim(paymentID: paymentID, owner: owner, payment: try PaymentRow(row: row))
        // A refund reserved before a release (its reservation locks this row and looks for a
        // live claim, so none can start after it) must be settled first. Capture and cancel act
        // before anything is captured: there is no refund to wait for.
        if action == .release,
            try database.query(
                """
                SELECT 1 FROM refunds WHERE payment_id = \(paymentID)::uuid AND status = 'creating' LIMIT 1
                """
            ).first != nil
        {
            try Self.settle(claim, on: database)
            throw APIError(
                .refundInProgress, message: "A refund of this payment is still being made; retry once it is settled.",
                headers: [("Retry-After", "5")])
        }
        return claim
    }

    /// Why the claim was refused: nil for the status, else a dispute or another action's claim.
    private func refusal(
        _ paymentID: String, statuses: [String], resolvingDispute: Bool,
        on database: some SQLExecutor
    ) throws -> PaymentClaim? {
        guard
            let current = try database.query(
                """
                SELECT status, (\(!resolvingDispute) AND is_disputed) OR payment_has_open_dispute(id, \(resolvingDispute))
                           AS is_disputed
                FROM payments WHERE id = \(paymentID)::uuid
                """
            ).first, statuses.contains(try current.decode("status", as: String.self))
        else { return nil }
        if try current.decode("is_disputed", as: Bool.self) {
            throw APIError(.paymentDisputed)
        }
        throw Self.inProgress
    }

    /// Ends the claim (its owner only): after its outcome is recorded, or when Stripe refused it.
    static func settle(_ claim: PaymentClaim, on connection: some SQLExecutor) throws {
        try connection.query("SELECT payment_settle_action(\(claim.paymentID)::uuid, \(claim.owner))")
    }

    /// Ends the claim after a failure that certainly moved no money; after a Stripe call whose
    /// outcome is unknown the claim stays until its lease ends, so that no dispute slips in.
    static func settle(_ claim: PaymentClaim, after error: any Error, on database: some SQLExecutor) {
        guard !error.mayHaveMovedMoney else { return }
        try? settle(claim, on: database)
    }

    /// True for a payment row (`payments` columns) whose claim is live: a money move is under way.
    static let isLive = SQLQuery(unsafeSQL: "(action_claim IS NOT NULL AND action_claim_expires_at > now())")

    /// Another money-moving action on this payment is under way.
    static let inProgress = APIError(
        .paymentActionInProgress,
        headers: [("Retry-After", "5")])
}

extension WorkerContext {
    /// Claims with the configured request lease.
    var claims: PaymentClaims { PaymentClaims(lease: shared.configuration.requestLease) }
}
