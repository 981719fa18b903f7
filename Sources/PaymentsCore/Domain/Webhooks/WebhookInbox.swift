import Foundation
import Postgres
import Stripe

/// A stored event whose raw bytes the retention policy dropped: it cannot be applied again.
struct WebhookPayloadExpired: Error {
    let eventID: String
}

/// The answer to one delivery.
enum DeliveryOutcome: Hashable {
    case applied(EffectOutcome)
    case duplicate
}

/// The transactional inbox: an event is stored, applied and marked in ONE transaction, keyed by
/// Stripe's event id, so concurrent and repeated deliveries have exactly one effect.
///
/// States (`webhook_events.status`): `processed`, `ignored`, `parked` (object unknown yet;
/// retried), `failed` (the effect threw; retried with backoff), `dead` (gave up; replay by hand).
struct WebhookInbox {
    /// Attempts before a failing event is `dead`.
    static let maximumFailedAttempts = 8
    /// Attempts before a parked event is `dead` (about two days of backoff).
    static let maximumParkedAttempts = 14

    let connection: any SQLExecutor
    let audit: AuditContext
    /// Makes the Stripe calls an event shows are needed — cancelling authorisations we no longer
    /// want, setting a payout delay again (nil: only recorded, e.g. in tests).
    var followUps: (any StripeFollowUpSink)?
    /// The configured payout delay, which `account.updated` is checked against (nil: not checked).
    var payoutDelayDays: Int? = nil

    /// Stores and applies a verified delivery. Transient database errors propagate (503, nothing
    /// written); an effect error is recorded as `failed` and rethrown (500).
    /// `intent`: `data.object` already decoded as a PaymentIntent, when the caller has it.
    func receive(
        _ event: Event, payload: [UInt8], endpoint: WebhookEndpoint, intent decoded: PaymentIntent? = nil
    ) throws -> DeliveryOutcome {
        if PaymentIntentEvents.types.contains(event.type), WebhookEffects.isHandled(event.type, on: endpoint),
            let intent = decoded ?? (try? Event.object(PaymentIntent.self, from: payload))
        {
            return try receivePaymentIntent(event, intent: intent, payload: payload, endpoint: endpoint)
        }
        let (outcome, followUps) = try receiveInTransaction(event, payload: payload, endpoint: endpoint)
        send(followUps)
        return outcome
    }

    /// A `payment_intent.*` delivery in one round trip: one prepared statement stores, applies
    /// and marks it in its own transaction (sql/0018); the same outcomes and failure handling as
    /// `receiveInTransaction`.
    private func receivePaymentIntent(
        _ event: Event, intent: PaymentIntent, payload: [UInt8], endpoint: WebhookEndpoint
    ) throws -> DeliveryOutcome {
        let statement: SQLQuery = """
            SELECT outcome, cancel_payment::text AS cancel_payment, parked_waiting FROM webhook_receive_payment_intent(
                \(event.id), \(endpoint.rawValue), \(event.type), \(event.created), \(event.account), \(ByteA(payload)),
                \(sql: PaymentIntentEvents.effectArguments(intent, type: event.type, audit: audit)),
                \(Self.maximumParkedAttempts))
            """
        let row: Row
        do {
            guard let first = try connection.query(statement.prepared(as: "webhook_receive_payment_intent")).first
            else {
                throw WebhookEffectError(description: "webhook_receive_payment_intent returned no row")
            }
            row = first
        } catch let error as DatabaseError where error.isTransient {
            throw error
        } catch {
            try recordFailure(event, payload: payload, endpoint: endpoint, error: error)
            throw error
        }
        if try row.decode("outcome", as: String.self) == "duplicate" { return .duplicate }
        let (outcome, cancellation) = try PaymentIntentEvents.decode(
            row, intentID: intent.id, account: event.account)
        send(cancellation.map { [.cancel($0)] } ?? [])
        // A succeeded intent makes its charge known: transfers paid from it may be waiting.
        if try row.decode("parked_waiting", as: Bool.self), let charge = intent.latestCharge?.id {
            applyParked(objectID: charge)
        }
        return .applied(outcome)
    }

    private func receiveInTransaction(
        _ event: Event, payload: [UInt8],
        endpoint: WebhookEndpoint
    ) throws -> (DeliveryOutcome, [StripeFollowUp]) {
        do {
            return try connection.withTransaction { connection in
                let inserted =
                    try connection.query(
                        """
                        INSERT INTO webhook_events (id, endpoint, type, created, account, object_id, payload, status)
                        VALUES (\(event.id), \(endpoint.rawValue), \(event.type), \(event.created), \(event.account),
                                \(Self.awaitedObjectID(payload, event: event)), \(ByteA(payload)), 'received')
                        ON CONFLICT (id) DO NOTHING
                        """
                    ).affectedRows == 1
                if !inserted {
                    let status = try connection.query(
                        "SELECT status FROM webhook_events WHERE id = \(event.id) FOR UPDATE"
                    )
                    .first?.decode("status", as: String.self)
                    // Only events still waiting (parked, failed) are worth another attempt.
                    guard status == "parked" || status == "failed" else { return (.duplicate, []) }
                }
                let (outcome, followUps) = try apply(event, payload: payload, endpoint: endpoint, on: connection)
                return (.applied(outcome), followUps)
            }
        } catch let error as DatabaseError where error.isTransient {
            throw error
        } catch {
            try recordFailure(event, payload: payload, endpoint: endpoint, error: error)
            throw error
        }
    }

    /// Re-applies a stored event (sweeper, `events replay`); effects are idempotent.
    func reprocess(eventID: String) throws -> EffectOutcome? {
        do {
            let applied = try connection.withTransaction { connection -> (EffectOutcome, [StripeFollowUp])? in
                guard
                    let row = try connection.query(
                        """
                        SELECT endpoint, payload FROM webhook_events WHERE id = \(eventID) FOR UPDATE
                        """
                    ).first
                else { return nil }
                // Dropped by the retention policy (sql/0019): nothing left to apply.
                guard let payload: [UInt8] = try row.decodeIfPresent("payload") else {
                    throw WebhookPayloadExpired(eventID: eventID)
                }
                let endpoint: WebhookEndpoint = try row.decode("endpoint")
                let event = try Event.decode(payload)
                return try apply(event, payload: payload, endpoint: endpoint, on: connection)
            }
            send(applied?.1 ?? [])
            return applied?.0
        } catch let error as DatabaseError where error.isTransient {
            throw error
        } catch let error as WebhookPayloadExpired {
            throw error  // the event stays as it is: it was applied long ago
        } catch {
            try connection.query(
                """
                UPDATE webhook_events SET status = CASE WHEN attempts + 1 >= \(Self.maximumFailedAttempts) THEN 'dead' ELSE 'failed' END,
                       attempts = attempts + 1, last_error = \(Self.describe(error)),
                       next_attempt_at = now() + \(sql: Self.backoff)
                WHERE id = \(eventID)
                """)
            throw error
        }
    }

    /// Applies the effect and marks the row, in the caller's transaction.
    private func apply(
        _ event: Event, payload: [UInt8], endpoint: WebhookEndpoint,
        on connection: Connection
    ) throws -> (EffectOutcome, [StripeFollowUp]) {
        var effects = WebhookEffects(
            event: event, payload: payload, endpoint: endpoint, connection: connection, audit: audit,
            payoutDelayDays: payoutDelayDays)
        let outcome = try effects.apply()
        switch outcome {
        case .processed, .ignored, .refused:
            try connection.query(
                """
                UPDATE webhook_events SET status = \(outcome == .refused ? "ignored" : outcome.rawValue), attempts = attempts + 1,
                       processed_at = now(), next_attempt_at = NULL,
                       last_error = \(outcome == .refused ? Self.accountMismatch : nil)
                WHERE id = \(event.id)
                """)
        case .parked:
            try connection.query(
                """
                UPDATE webhook_events SET status = CASE WHEN attempts + 1 >= \(Self.maximumParkedAttempts) THEN 'dead' ELSE 'parked' END,
                       attempts = attempts + 1, next_attempt_at = now() + \(sql: Self.backoff), last_error = NULL
                WHERE id = \(event.id)
                """)
        }
        return (outcome, effects.followUps)
    }

    /// After the commit: the Stripe calls the event showed are needed. Best effort: the key
    /// makes a repeat harmless, and an authorisation nobody captures lapses at Stripe.
    private func send(_ items: [StripeFollowUp]) {
        followUps?.perform(items)
    }

    /// Outside the rolled-back transaction: keep the event, as `failed`, for the sweeper.
    private func recordFailure(_ event: Event, payload: [UInt8], endpoint: WebhookEndpoint, error: any Error) throws {
        try connection.query(
            """
            INSERT INTO webhook_events AS w (id, endpoint, type, created, account, object_id, payload, status, attempts,
                                             last_error, next_attempt_at)
            VALUES (\(event.id), \(endpoint.rawValue), \(event.type), \(event.created), \(event.account),
                    \(Self.awaitedObjectID(payload, event: event)),
                    \(ByteA(payload)), 'failed', 1, \(Self.describe(error)), now() + interval '1 minute')
            ON CONFLICT (id) DO UPDATE SET
                status = CASE WHEN w.attempts + 1 >= \(Self.maximumFailedAttempts) THEN 'dead' ELSE 'failed' END,
                attempts = w.attempts + 1, last_error = EXCLUDED.last_error,
                next_attempt_at = now() + least(interval '1 minute' * power(2, w.attempts), interval '6 hours')
            WHERE w.status IN ('received', 'failed', 'parked')
            """)
    }

    /// Why a refused event was stored `ignored` (the same words as sql/0020's for payment_intent events).
    static let accountMismatch = "account_mismatch: event.account is not the account of the object it concerns"

    /// Next retry: 1, 2, 4 … minutes by attempts so far, at most 6 hours (SQL, over the row's `attempts`).
    private static let backoff = SQLQuery(
        unsafeSQL: "least(interval '1 minute' * power(2, attempts), interval '6 hours')")

    private static func describe(_ error: any Error) -> String {
        switch error {
        case let error as WebhookEffectError: return error.description
        case let error as DatabaseError: return "\(error.description): \(error.serverMessage)".prefix(500).description
        default: return String(describing: type(of: error))
        }
    }

    /// Applies the parked events waiting for `objectID`, each in its own transaction; called
    /// (outside any transaction) once the object is stored. Failures stay on the events' rows.
    @discardableResult
    func applyParked(objectID: String) -> Int {
        let ids =
            (try? connection.query(
                """
                SELECT id FROM webhook_events WHERE object_id = \(objectID) AND status = 'parked' ORDER BY created, id
                """
            ).rows.map { try $0.decode("id", as: String.self) }) ?? []
        return ids.filter { (try? reprocess(eventID: $0)) == .processed }.count
    }

    /// The id of the object an event needs us to know, which is what a parked event waits for:
    /// the payment intent for payment, charge, refund and dispute events; the charge a transfer
    /// was paid from; otherwise the object itself.
    static func awaitedObjectID(_ payload: [UInt8], event: Event) -> String? {
        struct Links: Decodable {
            let id: String?
            let paymentIntent: String?
            let sourceTransaction: String?
        }
        let links = try? Event.object(Links.self, from: payload)
        if event.type.hasPrefix("transfer.") { return links?.sourceTransaction ?? links?.id }
        return links?.paymentIntent ?? links?.id
    }
}
