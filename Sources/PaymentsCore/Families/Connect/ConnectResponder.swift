import Cryptography
import Foundation
import Postgres
import Stripe

/// Seller onboarding with Stripe Connect Express (docs/connect.md): the account is created once,
/// the seller follows single-use account links, and our return endpoint asks Stripe (never the
/// redirect itself) whether onboarding is complete.
struct ConnectResponder {
    func addRoutes(to router: inout Router) {
        router.add(
            "POST", "/api/connect/accounts", body: .json, access: .roles([.seller]), rateLimits: [.connect],
            audit: AuditTarget("connect.account", entity: "profile"), lane: .stripe, createAccount)
        router.add("GET", "/api/connect/status", access: .roles([.seller]), status)
        router.add(
            "POST", "/api/connect/dashboard-link", body: .json, access: .roles([.seller]), rateLimits: [.connect],
            lane: .stripe, dashboardLink)
        // The seller's browser follows these after Stripe's hosted pages: no Bearer token, no
        // cookie needed; the signed `state` says whose account it is (outside the CSRF policy:
        // they change nothing but the profile's mirror of Stripe's account). Their rate limits
        // depend on the state, so `verifiedState` checks them rather than the pipeline.
        router.add("GET", "/api/connect/onboarding/refresh", lane: .stripe, refresh)
        router.add("GET", "/api/connect/onboarding/return", lane: .stripe, returned)
    }

    /// Creates the Express account once (Stripe key `profile:{id}:account`; concurrent calls
    /// get the same account from Stripe), stores it, and returns a fresh onboarding link.
    private func createAccount(_ request: Request, _ context: WorkerContext) throws -> Response {
        let identity = try request.requireIdentity()
        let profileID = identity.profileID.uuidString.lowercased()
        guard
            let profile = try ProfileRow.find(
                identity.profileID, terms: context.shared.configuration.marketplace.purchaseTerms, on: context.database)
        else {
            throw APIError.notFound
        }

        var accountID = profile.stripeAccountID
        var created = false
        if accountID == nil {
            let marketplace = context.shared.configuration.marketplace
            let account = try context.stripe.createAccount(
                [
                    ("type", "express"),
                    ("email", profile.email.map(StripeParameter.string) ?? .omitted),
                    ("capabilities", ["card_payments": ["requested": true], "transfers": ["requested": true]]),
                    (
                        "settings",
                        [
                            "payouts": [
                                "schedule": [
                                    "interval": "daily",
                                    "delay_days": .integer(Int64(marketplace.payoutDelayDays)),
                                ]
                            ]
                        ]
                    ),
                    ("metadata", ["profile_id": .string(profileID)]),
                ], idempotencyKey: StripeKeys.connectAccount(profileID))
            accountID = try context.database.withTransaction { connection -> String in
                guard
                    let updated = try connection.query(
                        """
                        UPDATE profiles SET stripe_account_id = COALESCE(stripe_account_id, \(account.id))
                        WHERE id = \(identity.profileID) RETURNING stripe_account_id
                        """
                    ).first
                else { throw APIError.notFound }
                // A concurrent request may have stored the same account first (same Stripe key).
                let stored: String = try updated.decode("stripe_account_id")
                try AuditLog.record(
                    AuditEntry(
                        operation: "connect.account", entityType: "profile", entityID: profileID,
                        oldValues: ["stripe_account_id": nil], newValues: ["stripe_account_id": .string(stored)]),
                    request: request, on: connection)
                return stored
            }
            created = true
            // account.updated events may have arrived before we stored the id.
            WebhookInbox(connection: context.database, audit: AuditContext(request: request, actorRole: "stripe"))
                .applyParked(objectID: account.id)
        }
        guard let accountID else { throw APIError.internalError }
        let link = try makeLink(profileID: profileID, accountID: accountID, context: context)
        struct Created: Encodable {
            let account_id: String
            let onboarding_url: String
            let expires_at: Int64
        }
        return .json(
            Created(account_id: accountID, onboarding_url: link.url, expires_at: link.expiresAt),
            status: created ? 201 : 200)
    }

    private func status(_ request: Request, _ context: WorkerContext) throws -> Response {
        let identity = try request.requireIdentity()
        guard
            let profile = try ProfileRow.find(
                identity.profileID, terms: context.shared.configuration.marketplace.purchaseTerms, on: context.database)
        else {
            throw APIError.notFound
        }
        struct Status: Encodable {
            @Nullable var account_id: String?
            let charges_enabled, payouts_enabled, details_submitted: Bool
            let requirements_due: JSONValue
            @Nullable var disabled_reason: String?
            /// Whether buyers can pay this seller now, and if not, what is missing.
            let ready_to_sell: Bool
            let missing: [String]
        }
        return .json(
            Status(
                account_id: profile.stripeAccountID, charges_enabled: profile.chargesEnabled,
                payouts_enabled: profile.payoutsEnabled, details_submitted: profile.detailsSubmitted,
                requirements_due: profile.requirementsDue, disabled_reason: profile.disabledReason,
                ready_to_sell: profile.sellerGaps.isEmpty, missing: profile.sellerGaps))
    }

    /// An Express dashboard login link; 409 until the seller has finished onboarding.
    private func dashboardLink(_ request: Request, _ context: WorkerContext) throws -> Response {
        let identity = try request.requireIdentity()
        guard
            let profile = try ProfileRow.find(
                identity.profileID, terms: context.shared.configuration.marketplace.purchaseTerms, on: context.database),
            let account = profile.stripeAccountID, profile.detailsSubmitted
        else {
            throw APIError(.notOnboarded)
        }
        let nonce = Hex.encode(Digest.randomBytes(8))
        let link = try context.stripe.createLoginLink(
            account: account,
            idempotencyKey: StripeKeys.loginLink(identity.profileID.uuidString, nonce: nonce))
        return .json(["url": link.url])
    }

    /// A valid state, used for the first time, gets a newly minted link (the old one expired or
    /// was used). A state is single-use here: a reused one is refused before any Stripe call.
    private func refresh(_ request: Request, _ context: WorkerContext) throws -> Response {
        let state = try verifiedState(request, context: context)
        // The state binds profile and account: both must still belong together.
        guard
            try context.database.query(
                """
                SELECT 1 FROM profiles WHERE id = \(state.profileID)::uuid AND stripe_account_id = \(state.accountID)
                """
            ).first != nil
        else { throw Self.stateRejected("forged") }
        guard try state.claimNonce(on: context.database) else { throw Self.stateRejected("already used") }
        do {
            let link = try makeLink(profileID: state.profileID, accountID: state.accountID, context: context)
            return Self.redirect(to: link.url)
        } catch {
            // No link reached the seller: the same state may be tried again.
            try? state.releaseNonce(on: context.database)
            throw error
        }
    }

    /// Stripe sends the seller back here whether or not they finished: ask Stripe, sync, and
    /// send the browser to the marketplace with the real outcome.
    private func returned(_ request: Request, _ context: WorkerContext) throws -> Response {
        let state = try verifiedState(request, context: context)
        let account = try context.stripe.retrieveAccount(state.accountID)
        let synced = try context.database.withTransaction { connection in
            try AccountMirror.sync(
                account, eventCreated: nil, profileID: state.profileID,
                operation: "connect.synced", audit: AuditContext(request: request, actorRole: "seller"),
                on: connection)
        }
        if case .unknownAccount = synced { throw Self.stateRejected("forged") }
        let complete = account.detailsSubmitted && account.chargesEnabled
        let target = context.shared.configuration.appReturnURL
        let separator = target.contains("?") ? "&" : "?"
        return Self.redirect(to: "\(target)\(separator)onboarding=\(complete ? "complete" : "incomplete")")
    }

    // MARK: Helpers

    private func makeLink(profileID: String, accountID: String, context: WorkerContext) throws -> AccountLink {
        let now = Int64(Date().timeIntervalSince1970)
        let state = OnboardingState.make(profileID: profileID, accountID: accountID, now: now)
            .encoded(key: context.shared.configuration.onboardingStateKey)
        let base = context.shared.configuration.publicBaseURL + "/api/connect/onboarding"
        return try context.stripe.createAccountLink(
            [
                ("account", .string(accountID)),
                ("refresh_url", .string("\(base)/refresh?state=\(state)")),
                ("return_url", .string("\(base)/return?state=\(state)")),
                ("type", "account_onboarding"),
            ], idempotencyKey: StripeKeys.accountLink(profileID, state: state))
    }

    /// The request's state, verified, and counted: against the profile it names (`onboarding`),
    /// or, when it does not verify, against the client's address (`onboarding-ip`), so that
    /// neither a seller's reloads nor a stranger's guesses turn into unbounded Stripe calls.
    private func verifiedState(_ request: Request, context: WorkerContext) throws -> OnboardingState {
        let configuration = context.shared.configuration
        let limiter = configuration.rateLimiter
        let state: OnboardingState
        do throws(OnboardingState.Failure) {
            state = try OnboardingState.decode(
                request.query["state"], key: configuration.onboardingStateKey,
                now: Int64(Date().timeIntervalSince1970))
        } catch {
            let key = RateLimitPolicy.onboardingIP.key(profileID: nil, remoteAddress: request.remoteAddress)
            try limiter.check(.onboardingIP, key: key, on: context.database)
            throw Self.stateRejected(error.rawValue)
        }
        let key = RateLimitPolicy.onboarding.key(profileID: state.profileID, remoteAddress: request.remoteAddress)
        try limiter.check(.onboarding, key: key, on: context.database)
        return state
    }

    /// nginx turns this 400 into the static onboarding error page (never a redirect).
    private static func stateRejected(_ reason: String) -> APIError {
        APIError(
            .onboardingStateInvalid, message: "This onboarding link is \(reason); start again from the marketplace.")
    }

    /// A 302 whose target is never logged.
    private static func redirect(to url: String) -> Response {
        Response(
            status: 302, headers: [("Location", url), ("Content-Type", "text/plain; charset=utf-8")],
            body: Array("Redirecting…\n".utf8))
    }
}
