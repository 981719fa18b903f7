import Foundation
import Postgres
import Stripe

/// One disagreement, with both sides as text.
public struct Drift: Encodable, Sendable {
    public let kind: DriftKind
    /// `payment_intent`, `refund`, `transfer`, `dispute`, `account` or `payout`.
    public let object: String
    public let stripe_id: String
    public let ours: String?
    public let stripe: String?
    /// True when `--apply` repaired it (a transition Stripe already made, applied here).
    public var repaired = false
}

/// `payments reconcile`: walks Stripe's list endpoints for objects created in a window and
/// compares them with our rows. It changes nothing unless asked to apply; then it repairs only
/// what is safe — a payment transition Stripe already made, or refund totals Stripe already
/// holds — through the same guarded SQL functions the webhooks use, each with an audit row.
/// It never moves money.
public struct Reconciliation {
    let connection: any SQLExecutor
    let stripe: StripeClient
    /// Unix seconds: objects created in [since, until].
    let since: Int64
    let until: Int64

    public init(connection: any SQLExecutor, stripe: StripeClient, since: Int64, until: Int64) {
        self.connection = connection
        self.stripe = stripe
        self.since = since
        self.until = until
    }

    /// Every drift found; with `apply`, the safe ones are repaired (and marked so). The run and
    /// its counts by kind are recorded in `reconcile_runs` for `/metrics`.
    public func run(apply: Bool) throws -> [Drift] {
        var drifts: [Drift] = []
        // A direct charge's intent, refunds and disputes live on the seller's connected account
        // (issue 16): each such account is read with `Stripe-Account`, beside the platform.
        for account in [nil] + (try directChargeAccounts()) {
            guard let listed = try list(on: account, { () throws(StripeError) in try paymentIntents(on: account) })
            else { continue }
            drifts += try compare(listed, on: account, apply: apply)
            let disputes: [Dispute]? = try list(on: account) { () throws(StripeError) in
                try stripe.listAll("/v1/disputes", query: window, account: account)
            }
            drifts += try compare(disputes ?? [])
        }
        drifts += try transfers()
        drifts += try accountsAndPayouts()
        // The drift left after this run, by kind (what /metrics shows and alerts on).
        let counts = Dictionary(grouping: drifts.filter { !$0.repaired }, by: \.kind.rawValue).mapValues {
            JSONValue.int(Int64($0.count))
        }
        try connection.query(
            """
            INSERT INTO reconcile_runs (since, until, drift_counts, drift_total, repaired)
            VALUES (to_timestamp(\(since)), to_timestamp(\(until)), \(String(decoding: JSONCoding.encode(JSONValue.object(counts)), as: UTF8.self))::jsonb,
                    \(drifts.count), \(drifts.filter(\.repaired).count))
            """)
        return drifts
    }

    private var window: [(String, StripeParameter)] {
        [("created", .object([("gte", .integer(since)), ("lte", .integer(until))]))]
    }

    // MARK: Payment intents and their refunds, disputes: the platform's and direct charges' accounts

    /// The connected accounts that own direct charges made in the window.
    private func directChargeAccounts() throws -> [String] {
        try connection.query(
            """
            SELECT DISTINCT stripe_account FROM payments
            WHERE stripe_account IS NOT NULL AND created_at BETWEEN to_timestamp(\(since)) AND to_timestamp(\(until))
            ORDER BY stripe_account
            """
        ).rows.map { try $0.decode("stripe_account", as: String.self) }
    }

    /// `read` on `account` (nil: the platform); nil when Stripe refuses the account (access
    /// revoked, or deleted): it is named on standard error and the run goes on.
    private func list<T>(on account: String?, _ read: () throws(StripeError) -> T) throws -> T? {
        switch Result(catching: read) {
        case .success(let listed): return listed
        case .failure(let error) where error.kind == .permission && account != nil:
            printError("reconcile: \(account ?? "") skipped: \(OperatorMessage.line(for: error))")
            return nil
        case .failure(let error): throw error
        }
    }

    /// One account's intents of the window, and what its refunds (since the window's start) add
    /// up to per intent.
    private struct ListedIntents {
        let intents: [PaymentIntent]
        let refunded: [String: Int64]
    }

    private func paymentIntents(on account: String?) throws(StripeError) -> ListedIntents {
        let intents: [PaymentIntent] = try stripe.listAll("/v1/payment_intents", query: window, account: account)
        let refunds: [Refund] = try stripe.listAll(
            "/v1/refunds", query: [("created", .object([("gte", .integer(since))]))], account: account)
        var refunded: [String: Int64] = [:]
        for refund in refunds where refund.status != "failed" && refund.status != "canceled" {
            if let intent = refund.paymentIntent { refunded[intent, default: 0] += refund.amount }
        }
        return ListedIntents(intents: intents, refunded: refunded)
    }

    /// Our payments whose objects live on `account` against its intents. On a connected account
    /// only intents that name a payment of ours count: the seller's own are none of our business.
    private func compare(_ listed: ListedIntents, on account: String?, apply: Bool) throws -> [Drift] {
        let intents = account == nil ? listed.intents : listed.intents.filter { $0.metadata?["payment_id"] != nil }
        let rows = try connection.query(
            """
            SELECT stripe_payment_intent_id AS intent, id::text AS id, kind, status, amount_cents, application_fee_cents,
                   amount_received, amount_refunded
            FROM payments
            WHERE stripe_payment_intent_id IS NOT NULL AND stripe_account IS NOT DISTINCT FROM \(account)
              AND (stripe_payment_intent_id = ANY(\("{" + intents.map(\.id).joined(separator: ",") + "}")::text[])
                   OR created_at BETWEEN to_timestamp(\(since)) AND to_timestamp(\(until)))
            """
        ).rows
        var ours: [String: Row] = [:]
        for row in rows { ours[try row.decode("intent")] = row }

        var drifts: [Drift] = []
        let atStripe = Set(intents.map(\.id))
        for (intentID, row) in ours where !atStripe.contains(intentID) {
            drifts.append(
                Drift(
                    kind: .missingAtStripe, object: "payment_intent", stripe_id: intentID,
                    ours: "payment \(try row.decode("id", as: String.self))", stripe: nil))
        }
        for intent in intents {
            guard let row = ours[intent.id] else {
                let ourID = intent.metadata?["payment_id"]
                drifts.append(
                    Drift(
                        kind: ourID == nil ? .orphanAtStripe : .missingHere, object: "payment_intent",
                        stripe_id: intent.id, ours: nil, stripe: ourID.map { "metadata payment_id \($0)" }))
                continue
            }
            drifts += try compare(intent, with: row, refunded: listed.refunded[intent.id] ?? 0, apply: apply)
        }
        return drifts
    }

    private func compare(_ intent: PaymentIntent, with row: Row, refunded: Int64, apply: Bool) throws -> [Drift] {
        var drifts: [Drift] = []
        let status: PaymentStatus = try row.decode("status")
        let kind: PaymentKind = try row.decode("kind")
        func drift(_ kind: DriftKind, _ ours: String, _ theirs: String) -> Drift {
            Drift(kind: kind, object: "payment_intent", stripe_id: intent.id, ours: ours, stripe: theirs)
        }
        if let repair = Self.transition(from: status, toStripe: intent.status) {
            var found = drift(.statusDiffers, status.rawValue, intent.status)
            if apply, let call = repair.call(intent) {
                found.repaired = try self.repair(intent.id, call: call, from: status, to: repair.name)
            }
            drifts.append(found)
        } else if !Self.agrees(status, intent.status) {
            drifts.append(drift(.statusDiffers, status.rawValue, intent.status))
        }
        let amount: Int64 = try row.decode("amount_cents")
        if amount != intent.amount {
            drifts.append(drift(.amountDiffers, "amount \(amount)", "amount \(intent.amount)"))
        }
        let received: Int64 = try row.decode("amount_received")
        if intent.status == "succeeded", [.succeeded, .refunded].contains(status), let theirs = intent.amountReceived,
            theirs != received
        {
            drifts.append(drift(.amountDiffers, "amount_received \(received)", "amount_received \(theirs)"))
        }
        // A purchase's fee rides on its intent; a milestone's is kept back from its transfer.
        let fee: Int64 = try row.decode("application_fee_cents")
        if kind == .purchase, let theirs = intent.applicationFeeAmount, theirs != fee {
            drifts.append(drift(.feeDiffers, "fee \(fee)", "fee \(theirs)"))
        }
        let ourRefunds: Int64 = try row.decode("amount_refunded")
        if refunded != ourRefunds, intent.status == "succeeded" {
            var found = drift(.refundSumDiffers, "refunded \(ourRefunds)", "refunded \(refunded)")
            if apply, refunded > ourRefunds, let received = intent.amountReceived {
                found.repaired = try self.repair(
                    intent.id,
                    call: "payment_refund_atomic(\(intent.id), 0::bigint, \(received)::bigint, \(refunded)::bigint)",
                    from: status, to: "refund totals")
            }
            drifts.append(found)
        }
        return drifts
    }

    /// A transition Stripe has made that our row has not: safe to apply with the webhooks' function.
    private struct Repair {
        let name: String
        let call: (PaymentIntent) -> SQLQuery?
    }

    private static func transition(from status: PaymentStatus, toStripe stripeStatus: String) -> Repair? {
        let beforeAuthorisation: Set<PaymentStatus> = [
            .creating, .requiresPaymentMethod, .requiresConfirmation, .requiresAction, .processing,
        ]
        switch stripeStatus {
        case "succeeded" where beforeAuthorisation.contains(status) || status == .requiresCapture:
            return Repair(name: "succeeded") {
                "payment_complete_atomic(\($0.id), 0::bigint, \($0.amountReceived ?? $0.amount)::bigint, \($0.latestCharge?.id))"
            }
        case "canceled" where beforeAuthorisation.contains(status) || status == .requiresCapture:
            return Repair(name: "canceled") { "payment_cancel_atomic(\($0.id), 0::bigint)" }
        case "requires_capture" where beforeAuthorisation.contains(status):
            return Repair(name: "requires_capture") {
                """
                payment_capturable_atomic(\($0.id), 0::bigint, \($0.amountCapturable ?? $0.amount)::bigint,
                                          \(sql: AuthorisationHold.end(of: $0)))
                """
            }
        default:
            return nil
        }
    }

    /// Whether our status and Stripe's tell the same story (no transition is missing on either side).
    private static func agrees(_ status: PaymentStatus, _ stripeStatus: String) -> Bool {
        switch status {
        case .succeeded, .refunded: return stripeStatus == "succeeded"
        case .canceled: return stripeStatus == "canceled"
        case .failed: return ["requires_payment_method", "canceled"].contains(stripeStatus)
        case .requiresCapture: return stripeStatus == "requires_capture"
        case .creating, .requiresPaymentMethod, .requiresConfirmation, .requiresAction, .processing:
            return ["requires_payment_method", "requires_confirmation", "requires_action", "processing"].contains(
                stripeStatus)
        }
    }

    /// Applies one repair in its own transaction, audited; false when the guarded function
    /// changed nothing (a webhook got there first).
    private func repair(_ intentID: String, call: SQLQuery, from status: PaymentStatus, to target: String) throws
        -> Bool
    {
        try connection.withTransaction { connection -> Bool in
            guard let changed = try connection.query("SELECT id::text AS id FROM \(sql: call)").first else {
                return false
            }
            try AuditLog.record(
                AuditEntry(
                    operation: "reconcile.repair", entityType: "payment", entityID: try changed.decode("id"),
                    oldValues: ["status": .string(status.rawValue)], newValues: ["applied": .string(target)],
                    metadata: ["payment_intent": .string(intentID)]),
                context: .system("payments reconcile"), on: connection)
            return true
        }
    }

    // MARK: Transfers, disputes, accounts and payouts (reported, never repaired)

    private func transfers() throws -> [Drift] {
        let transfers: [Transfer] = try stripe.listAll("/v1/transfers", query: window)
        let reversedHere = try ours(
            "amount_reversed", in: "transfers", by: "stripe_transfer_id", for: transfers.map(\.id))
        var drifts: [Drift] = []
        for transfer in transfers {
            guard let reversed = reversedHere[transfer.id] else {
                // Ours carry a payment id, or are paid from one of our charges.
                let ours = try connection.query(
                    """
                    SELECT 1 FROM payments WHERE id::text = \(transfer.metadata?["payment_id"])
                       OR stripe_charge_id = \(transfer.sourceTransaction)
                    """
                ).first
                drifts.append(
                    Drift(
                        kind: ours == nil ? .orphanAtStripe : .missingHere, object: "transfer",
                        stripe_id: transfer.id, ours: nil, stripe: "amount \(transfer.amount)"))
                continue
            }
            if reversed != String(transfer.amountReversed) {
                drifts.append(
                    Drift(
                        kind: .amountDiffers, object: "transfer", stripe_id: transfer.id,
                        ours: "amount_reversed \(reversed)", stripe: "amount_reversed \(transfer.amountReversed)"))
            }
        }
        return drifts
    }

    private func compare(_ disputes: [Dispute]) throws -> [Drift] {
        let statusHere = try ours("status", in: "disputes", by: "stripe_dispute_id", for: disputes.map(\.id))
        var drifts: [Drift] = []
        for dispute in disputes {
            guard let status = statusHere[dispute.id] else {
                drifts.append(
                    Drift(
                        kind: .missingHere, object: "dispute", stripe_id: dispute.id, ours: nil,
                        stripe: "status \(dispute.status)"))
                continue
            }
            if status != dispute.status {
                drifts.append(
                    Drift(
                        kind: .statusDiffers, object: "dispute", stripe_id: dispute.id, ours: status,
                        stripe: dispute.status))
            }
        }
        return drifts
    }

    /// `column` of our rows of `table` whose `key` is one of `ids` (Stripe ids), by key: one
    /// query for a whole Stripe list. `table`, `key` and `column` are our own constants.
    private func ours(_ column: String, in table: String, by key: String, for ids: [String]) throws -> [String: String]
    {
        guard !ids.isEmpty else { return [:] }
        let rows = try connection.query(
            """
            SELECT \(sql: SQLQuery(unsafeSQL: key)) AS key, \(sql: SQLQuery(unsafeSQL: column))::text AS value
            FROM \(sql: SQLQuery(unsafeSQL: table))
            WHERE \(sql: SQLQuery(unsafeSQL: key)) = ANY(\("{" + ids.joined(separator: ",") + "}")::text[])
            """
        ).rows
        var values: [String: String] = [:]
        for row in rows { values[try row.decode("key")] = try row.decode("value") }
        return values
    }

    private func accountsAndPayouts() throws -> [Drift] {
        let accounts: [Account] = try stripe.listAll("/v1/accounts", query: window)
        let profiled = try ours("stripe_account_id", in: "profiles", by: "stripe_account_id", for: accounts.map(\.id))
        var drifts: [Drift] = []
        for account in accounts where profiled[account.id] == nil {
            drifts.append(
                Drift(kind: .orphanAtStripe, object: "account", stripe_id: account.id, ours: nil, stripe: account.type))
        }
        for account in try ConnectedAccounts.active(on: connection) {
            // Revoked or deleted meanwhile: its payouts cannot be read (named on stderr).
            guard
                let payouts: [Payout] = try list(
                    on: account,
                    { () throws(StripeError) in try stripe.listAll("/v1/payouts", query: window, account: account) })
            else { continue }
            let statusHere = try ours("status", in: "payouts", by: "stripe_payout_id", for: payouts.map(\.id))
            for payout in payouts {
                // Only the final states are mirrored (payout.paid, payout.failed).
                guard let status = statusHere[payout.id] else {
                    if ["paid", "failed"].contains(payout.status) {
                        drifts.append(
                            Drift(
                                kind: .missingHere, object: "payout", stripe_id: payout.id, ours: nil,
                                stripe: "status \(payout.status)"))
                    }
                    continue
                }
                if status != payout.status {
                    drifts.append(
                        Drift(
                            kind: .statusDiffers, object: "payout", stripe_id: payout.id, ours: status,
                            stripe: payout.status))
                }
            }
        }
        return drifts
    }
}

extension Reconciliation {
    /// The report's output format.
    public enum Format: String, CaseIterable, Sendable {
        case text, json
    }

    /// Runs a reconciliation from the environment and prints the report; true when there is no
    /// drift left unrepaired (exit 0), false otherwise (exit 1).
    public static func run(
        since: Int64, until: Int64, format: Format, apply: Bool, environment: Environment
    ) throws -> Bool {
        let connection = Connection(connectionString: try environment.required("DATABASE_URL"))
        StripeClient.initializeGlobalState()
        let stripe = try StripeClient(configuration: try ServerConfiguration.stripeConfiguration(environment))
        let drifts = try Reconciliation(connection: connection, stripe: stripe, since: since, until: until)
            .run(apply: apply)
        let counts = Dictionary(grouping: drifts, by: \.kind).mapValues(\.count)
        switch format {
        case .json:
            struct Report: Encodable {
                let since, until: Int64
                let applied: Bool
                let drift: [Drift]
                let counts: [String: Int]
            }
            let report = Report(
                since: since, until: until, applied: apply, drift: drifts,
                counts: Dictionary(uniqueKeysWithValues: counts.map { ($0.key.rawValue, $0.value) }))
            print(String(decoding: JSONCoding.encode(report), as: UTF8.self))
        case .text:
            for drift in drifts {
                print(
                    "\(drift.kind.rawValue)\t\(drift.object)\t\(drift.stripe_id)\tours: \(drift.ours ?? "-")\t"
                        + "stripe: \(drift.stripe ?? "-")\(drift.repaired ? "\trepaired" : "")")
            }
            let summary = DriftKind.allCases.compactMap { kind in counts[kind].map { "\(kind.rawValue) \($0)" } }
            print(
                "reconcile: \(drifts.count) drift\(drifts.count == 1 ? "" : "s")"
                    + (summary.isEmpty ? "" : " (\(summary.joined(separator: ", ")))")
                    + (apply ? ", \(drifts.filter(\.repaired).count) repaired" : ""))
        }
        return drifts.allSatisfy(\.repaired)
    }
}
