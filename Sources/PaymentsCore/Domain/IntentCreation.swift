import Postgres
import Stripe

/// A payment's PaymentIntent — a purchase's destination or direct charge, or a milestone's
/// platform charge — created at Stripe under the payment's deterministic key (`stripe_create_key`).
/// The key is also how an attempt whose outcome is unknown (a lost response, a timeout, a
/// process killed mid-call) is recovered: the same call with the same parameters returns the
/// intent the first attempt created, or creates it if it never arrived. So every intent the
/// app causes to exist ends attached to its payment, or cancelled.
enum IntentCreation {
    /// What `Payment(row:)` reads: the payment, its charge model and its seller's account (`destination`).
    static func load(_ paymentID: String, on connection: some SQLExecutor) throws -> Row? {
        try connection.query(
            """
            SELECT p.id, p.kind, p.amount_cents, p.application_fee_cents, p.currency, p.listing_id, p.milestone_id,
                   p.buyer_id, p.seller_id, p.transfer_group, p.stripe_create_key, p.description, p.receipt_email,
                   p.charge_model, p.stripe_account, p.on_behalf_of, s.stripe_account_id AS destination
            FROM payments p JOIN profiles s ON s.id = p.seller_id
            WHERE p.id = \(paymentID)::uuid
            """
        ).first
    }

    /// A payment whose intent is to be created: a `load(_:on:)` row, decoded.
    struct Payment {
        /// What is charged, and where the money goes.
        enum Charge {
            /// A destination charge to the seller's connected account, made on its behalf
            /// (`on_behalf_of`) when the row says so.
            case purchase(destination: String, onBehalfOf: Bool)
            /// A direct charge on the seller's connected account (`Stripe-Account`).
            case direct(account: String)
            /// A platform charge that funds one milestone.
            case milestone(id: String)
        }

        let id: String
        let charge: Charge
        let amount: Int64
        let applicationFee: Int64
        let currency: String
        let listingID: String
        let buyerID: String
        let sellerID: String
        let transferGroup: String
        /// The Stripe key of the create call; payments made before keys were stored use the derived one.
        let createKey: String
        /// What the buyer's statement and receipt call it, and where Stripe sends the receipt;
        /// fixed on the row when the payment was made (nil on older payments).
        let description: String?
        let receiptEmail: String?

        /// Reads a `load(_:on:)` row: a purchase needs its seller's account, a milestone payment
        /// its milestone; a missing, NULL or mistyped value is a `RowDecodingError`.
        init(row: Row) throws(RowDecodingError) {
            id = try row.decode("id")
            switch (try row.decode("kind", as: PaymentKind.self), try row.decode("charge_model", as: ChargeModel.self))
            {
            case (.purchase, .direct): charge = .direct(account: try row.decode("stripe_account"))
            case (.purchase, .destination):
                charge = .purchase(
                    destination: try row.decode("destination"), onBehalfOf: try row.decode("on_behalf_of"))
            case (.milestone, _): charge = .milestone(id: try row.decode("milestone_id"))
            }
            amount = try row.decode("amount_cents")
            applicationFee = try row.decode("application_fee_cents")
            currency = try row.decode("currency")
            listingID = try row.decode("listing_id")
            buyerID = try row.decode("buyer_id")
            sellerID = try row.decode("seller_id")
            transferGroup = try row.decode("transfer_group")
            createKey = try row.decodeIfPresent("stripe_create_key") ?? StripeKeys.create(id)
            description = try row.decodeIfPresent("description")
            receiptEmail = try row.decodeIfPresent("receipt_email")
        }

        /// The connected account that owns the intent (a direct charge), or nil for the platform.
        var stripeAccount: String? {
            if case .direct(let account) = charge { account } else { nil }
        }
    }

    /// Creates (or recovers) the intent for a payment, on the account that is to own it.
    static func create(_ payment: Payment, stripe: StripeClient) throws(StripeError) -> PaymentIntent {
        try stripe.createPaymentIntent(
            parameters(payment), idempotencyKey: payment.createKey, account: payment.stripeAccount)
    }

    /// The same parameters on every attempt, derived from the row alone: Stripe answers a key
    /// reused with other parameters with an idempotency error. A purchase is a destination or a
    /// direct charge captured by hand; a milestone, a platform charge captured at once.
    static func parameters(_ payment: Payment) -> [(String, StripeParameter)] {
        let common: [(String, StripeParameter)] =
            [
                ("amount", .integer(payment.amount)),
                ("currency", .string(payment.currency)),
            ]
            + [("description", payment.description), ("receipt_email", payment.receiptEmail)].compactMap {
                name, value in value.map { (name, .string($0)) }
            }
        switch payment.charge {
        case .milestone(let milestoneID):
            return common + [
                ("capture_method", "automatic"),
                ("payment_method_types", ["card"]),
                ("transfer_group", .string(payment.transferGroup)),
                (
                    "metadata",
                    .object([
                        ("payment_id", .string(payment.id)),
                        ("milestone_id", .string(milestoneID)),
                        ("listing_id", .string(payment.listingID)),
                        ("buyer_id", .string(payment.buyerID)),
                        ("seller_id", .string(payment.sellerID)),
                    ])
                ),
            ]
        case .purchase(let destination, let onBehalfOf):
            return common + [
                ("capture_method", "manual"),
                ("payment_method_types", ["card"]),
                ("application_fee_amount", .integer(payment.applicationFee)),
                ("transfer_data", ["destination": .string(destination)]),
            ] + (onBehalfOf ? [("on_behalf_of", .string(destination))] : []) + [
                ("transfer_group", .string(payment.transferGroup)),
                ("metadata", purchaseMetadata(payment)),
            ]
        case .direct:
            // On the seller's account (the header, not a parameter); the fee comes to the platform.
            return common + [
                ("capture_method", "manual"),
                ("payment_method_types", ["card"]),
                ("application_fee_amount", .integer(payment.applicationFee)),
                ("metadata", purchaseMetadata(payment)),
            ]
        }
    }

    /// A purchase's metadata, the same under both models.
    private static func purchaseMetadata(_ payment: Payment) -> StripeParameter {
        .object([
            ("payment_id", .string(payment.id)), ("listing_id", .string(payment.listingID)),
            ("buyer_id", .string(payment.buyerID)),
            ("seller_id", .string(payment.sellerID)),
        ])
    }

    /// One request's claim on a payment's create attempt.
    struct Attempt {
        let paymentID: String
        /// This claim's owner name (`RequestOwner.make()`), checked by every later write.
        let owner: String
        /// True when an earlier attempt may already have reached Stripe: then no failure of
        /// this one proves that no intent exists.
        let isResume: Bool
    }

    /// Runs a claimed create attempt's Stripe call (no connection is held meanwhile) and
    /// settles the attempt when it fails: Stripe refused a first attempt → the payment fails
    /// and releases its hold (listing or milestone); outcome unknown, or any failure of a
    /// resumed attempt → the attempt is released, and the payment stays `creating` for the
    /// buyer's retry or the sweeper. Returns the payment and the intent.
    static func callStripe(
        _ attempt: Attempt, operation: String, context: WorkerContext,
        request: Request
    ) throws -> (Payment, PaymentIntent) {
        let database = context.database
        guard let row = try load(attempt.paymentID, on: database) else { throw APIError.internalError }
        let payment = try Payment(row: row)
        do {
            return (payment, try create(payment, stripe: context.stripe))
        } catch {
            if error.mayHaveSucceeded || attempt.isResume {
                release(attempt, on: database)
            } else {
                try? database.withTransaction { connection in
                    try PaymentRecord.abandon(
                        attempt.paymentID, code: error.code ?? error.kind.rawValue, operation: operation,
                        request: request, on: connection)
                }
            }
            throw error
        }
    }

    /// Attaches the intent to its payment, unless the payment was cancelled meanwhile (by its
    /// buyer, an admin or the sweeper): then nil, and the intent is cancelled at Stripe too.
    /// `body` runs in the same transaction (the family's audit row); the row it gets back is
    /// `returning` of the updated payment.
    static func attach<T>(
        _ intent: PaymentIntent, of payment: Payment, to attempt: Attempt, returning: SQLQuery, context: WorkerContext,
        request: Request, operation: String, _ body: (Row, Connection) throws -> T
    ) throws -> T {
        let stored: T?
        do {
            stored = try context.database.withTransaction { connection -> T? in
                guard
                    let row = try connection.query(
                        """
                        UPDATE payments p SET stripe_payment_intent_id = \(intent.id), client_secret = \(intent.clientSecret),
                               status = CASE WHEN p.status = 'creating' THEN \(intent.status) ELSE p.status END,
                               create_attempt_owner = NULL, create_attempt_expires_at = NULL
                        WHERE p.id = \(attempt.paymentID)::uuid AND p.status NOT IN ('canceled', 'failed')
                          AND (p.stripe_payment_intent_id IS NULL OR p.stripe_payment_intent_id = \(intent.id))
                        RETURNING \(sql: returning)
                        """
                    ).first
                else { return nil }
                return try body(row, connection)
            }
        } catch let error as DatabaseError where error.isTransient {
            // Nothing was stored; the buyer's retry resumes the attempt and gets this same intent.
            release(attempt, on: context.database)
            throw error
        } catch {
            abandonUnstored(
                intent, account: payment.stripeAccount, attempt: attempt, operation: operation, context: context,
                request: request)
            throw error
        }
        guard let stored else {
            _ = try? context.stripe.cancelIntent(
                intent.id, ofPayment: attempt.paymentID, reason: .abandoned, account: payment.stripeAccount)
            throw APIError(.paymentCanceled)
        }
        return stored
    }

    /// Stripe holds an intent our database refused to store: cancel it (same key on every retry)
    /// and fail the payment. If even the cancel fails, the payment stays `creating`, and the
    /// sweeper recovers the intent and cancels it.
    private static func abandonUnstored(
        _ intent: PaymentIntent, account: String?, attempt: Attempt, operation: String,
        context: WorkerContext, request: Request
    ) {
        let database = context.database
        if (try? context.stripe.cancelIntent(
            intent.id, ofPayment: attempt.paymentID, reason: .abandoned, account: account)) != nil
        {
            try? database.withTransaction { connection in
                try PaymentRecord.abandon(
                    attempt.paymentID, code: "storage_failed", operation: operation, request: request,
                    on: connection)
            }
        } else {
            release(attempt, on: database)
        }
        context.shared.logger.error(
            "intent store failed; cancelled at Stripe",
            [
                ("request_id", .string(request.requestID)), ("payment_id", .string(attempt.paymentID)),
            ])
    }

    /// For a payment still `creating` without an intent, whose attempt no live request holds:
    /// the intent Stripe holds under the create key, attached to the payment — or nil when
    /// Stripe refused that very call, so no intent exists. Throws `409 payment_in_progress`
    /// while a live request holds the attempt, and the Stripe error while Stripe cannot say.
    /// (Past Stripe's 24 h key retention the same call makes a new intent, which the caller
    /// then cancels like the first.)
    static func recover(_ paymentID: String, stripe: StripeClient, on database: some SQLExecutor) throws -> String? {
        guard let attempt = try claim(paymentID, lease: .seconds(60), on: database),
            let row = try load(paymentID, on: database)
        else {
            throw APIError(.paymentInProgress, headers: [("Retry-After", "1")])
        }
        let payment = try Payment(row: row)
        let intent: PaymentIntent
        do {
            intent = try create(payment, stripe: stripe)
        } catch {
            guard !error.mayHaveSucceeded, error.kind != .rateLimited, error.kind != .idempotency else {
                release(attempt, on: database)
                throw error
            }
            return nil
        }
        try database.query(
            """
            UPDATE payments SET stripe_payment_intent_id = \(intent.id), create_attempt_owner = NULL,
                   create_attempt_expires_at = NULL
            WHERE id = \(paymentID)::uuid AND stripe_payment_intent_id IS NULL
            """)
        return intent.id
    }

    /// The insert columns of a new payment's first attempt, claimed by this request for `lease`.
    static func firstAttempt(
        paymentID: String, key: String,
        lease: Duration
    ) -> (attempt: Attempt, columns: SQLQuery, values: SQLQuery) {
        let owner = RequestOwner.make()
        return (
            Attempt(paymentID: paymentID, owner: owner, isResume: false),
            "create_attempt_owner, create_attempt_expires_at, stripe_create_key",
            "\(owner), now() + make_interval(secs => \(Double(lease.components.seconds))), \(key)"
        )
    }

    /// Claims a payment's unfinished create attempt for this request (a lease of `lease`), or
    /// nil when a live request holds it. One compare-and-set on the owner name: of two
    /// requests racing for the same attempt, one wins.
    static func claim(_ paymentID: String, lease: Duration, on connection: some SQLExecutor) throws -> Attempt? {
        guard
            let current = try connection.query(
                """
                SELECT create_attempt_owner AS owner,
                       (create_attempt_expires_at IS NULL OR create_attempt_expires_at <= now()) AS over
                FROM payments WHERE id = \(paymentID)::uuid AND status = 'creating' AND stripe_payment_intent_id IS NULL
                """
            ).first
        else { return nil }
        let holder: String? = try current.decodeIfPresent("owner")
        guard try current.decode("over", as: Bool.self) || RequestOwner.isGone(holder) else { return nil }
        let owner = RequestOwner.make()
        guard
            try connection.query(
                """
                UPDATE payments SET create_attempt_owner = \(owner),
                       create_attempt_expires_at = now() + make_interval(secs => \(Double(lease.components.seconds)))
                WHERE id = \(paymentID)::uuid AND status = 'creating' AND stripe_payment_intent_id IS NULL
                  AND create_attempt_owner IS NOT DISTINCT FROM \(holder)
                """
            ).affectedRows == 1
        else { return nil }
        return Attempt(paymentID: paymentID, owner: owner, isResume: true)
    }

    /// Ends this claim without an outcome, so that the buyer's retry (or the sweeper) may take
    /// over at once instead of waiting for the lease.
    static func release(_ attempt: Attempt, on connection: some SQLExecutor) {
        _ = try? connection.query(
            """
            UPDATE payments SET create_attempt_expires_at = now()
            WHERE id = \(attempt.paymentID)::uuid AND create_attempt_owner = \(attempt.owner)
            """)
    }
}
