import Foundation
import Postgres
import Stripe

/// `POST /api/payments/webhook` (platform secrets) and `/api/payments/webhook/connect` (Connect
/// secrets). Outside the auth and CSRF policy: Stripe authenticates with `Stripe-Signature` over
/// the exact raw bytes (a `.raw` route: nothing parses or re-serialises the body first).
struct WebhookResponder {
    func addRoutes(to router: inout Router) {
        router.add("POST", WebhookEndpoint.platform.path, body: .raw) { request, context in
            try receive(request, context, endpoint: .platform, verifier: context.shared.configuration.platformWebhooks)
        }
        router.add("POST", WebhookEndpoint.connect.path, body: .raw) { request, context in
            try receive(request, context, endpoint: .connect, verifier: context.shared.configuration.connectWebhooks)
        }
    }

    private func receive(
        _ request: Request, _ context: WorkerContext, endpoint: WebhookEndpoint,
        verifier: WebhookSignatureVerifier
    ) throws -> Response {
        let metrics = context.shared.metrics
        do throws(WebhookSignatureFailure) {
            try verifier.verify(
                header: request.header("stripe-signature"), body: request.body,
                now: Int64(Date().timeIntervalSince1970))
        } catch {
            metrics.increment(
                "payments_webhook_signature_failures_total{endpoint=\"\(endpoint.rawValue)\",reason=\"\(error.rawValue)\"}"
            )
            throw APIError(.signatureInvalid, message: "The Stripe-Signature header is invalid (\(error.rawValue)).")
        }
        // One parse: the envelope, and the object when it is a PaymentIntent (the bulk of the traffic).
        guard let (event, intent) = try? Event.decodeWithPaymentIntent(request.body),
            !event.id.isEmpty, !event.type.isEmpty
        else {
            throw APIError(.invalidEvent)
        }
        try refuseMisdirected(
            event, endpoint: endpoint, isLiveMode: context.shared.configuration.stripe.isLiveMode,
            metrics: metrics)
        metrics.increment(
            "payments_webhook_events_total{endpoint=\"\(endpoint.rawValue)\",type=\"\(event.type)\",outcome=\"received\"}"
        )
        noteVersionMismatch(event, endpoint: endpoint, request: request, context: context)

        let started = ContinuousClock.now
        let inbox = WebhookInbox(
            connection: context.database, audit: AuditContext(request: request, actorRole: "stripe"),
            followUps: context.shared.followUps,
            payoutDelayDays: context.shared.configuration.marketplace.payoutDelayDays)
        let outcome: DeliveryOutcome
        do {
            outcome = try inbox.receive(event, payload: request.body, endpoint: endpoint, intent: intent)
        } catch let error as DatabaseError where error.isTransient {
            throw error
        } catch {
            metrics.increment(
                "payments_webhook_events_total{endpoint=\"\(endpoint.rawValue)\",type=\"\(event.type)\",outcome=\"failed\"}"
            )
            context.shared.logger.error(
                "webhook effect failed",
                [
                    ("request_id", .string(request.requestID)), ("event_id", .string(event.id)),
                    ("type", .string(event.type)),
                ])
            throw APIError(.webhookProcessingFailed)
        }
        let elapsed = ContinuousClock.now - started
        metrics.observeWebhook(
            seconds: Double(elapsed.components.attoseconds) / 1e18 + Double(elapsed.components.seconds))

        let label: String
        switch outcome {
        case .duplicate:
            label = "duplicate"
        case .applied(.refused):
            label = EffectOutcome.refused.rawValue
            metrics.increment(
                "payments_webhook_rejections_total{endpoint=\"\(endpoint.rawValue)\",reason=\"account_mismatch\"}")
        case .applied(let effect):
            label = effect.rawValue
        }
        metrics.increment(
            "payments_webhook_events_total{endpoint=\"\(endpoint.rawValue)\",type=\"\(event.type)\",outcome=\"\(label)\"}"
        )
        return Self.answers[outcome] ?? Self.answer(to: outcome)
    }

    /// The answer to each outcome, encoded once: there are only five.
    private static let answers = Dictionary(
        uniqueKeysWithValues: ([.duplicate] + EffectOutcome.allCases.map(DeliveryOutcome.applied)).map {
            ($0, answer(to: $0))
        })

    private static func answer(to outcome: DeliveryOutcome) -> Response {
        switch outcome {
        case .duplicate: .json(["received": true, "duplicate": true] as [String: JSONValue])
        case .applied(.processed): .json(["received": true])
        // A refused event is stored `ignored` (the reason in `last_error`): Stripe has nothing to retry.
        case .applied(.refused), .applied(.ignored):
            .json(["received": true, "status": "ignored"] as [String: JSONValue])
        case .applied(.parked): .json(["received": true, "status": "parked"] as [String: JSONValue])
        }
    }

    /// An event rendered at another API version than ours (an endpoint created by hand, or one
    /// left behind by an upgrade) may be shaped differently: it is still processed, but counted
    /// and logged so the endpoint gets fixed (`payments stripe endpoints check` names it).
    private func noteVersionMismatch(
        _ event: Event, endpoint: WebhookEndpoint, request: Request, context: WorkerContext
    ) {
        let pinned = context.shared.configuration.stripe.apiVersion
        guard let version = event.apiVersion, version != pinned else { return }
        context.shared.metrics.increment(
            "payments_webhook_api_version_mismatch_total{endpoint=\"\(endpoint.rawValue)\"}")
        context.shared.logger.warning(
            "webhook event api_version differs from the pinned version",
            [
                ("request_id", .string(request.requestID)), ("event_id", .string(event.id)),
                ("endpoint", .string(endpoint.rawValue)), ("api_version", .string(String(version.prefix(32)))),
                ("pinned", .string(pinned)),
            ])
    }

    /// Refuses, before anything is stored, an event of the other mode than our key's (a test
    /// event at a live deployment, or the reverse) and, on the platform endpoint, an event of a
    /// connected account (it belongs on the Connect endpoint). Both mean a wrong key or endpoint
    /// configuration: a `400` makes Stripe show the failing deliveries until it is fixed.
    private func refuseMisdirected(_ event: Event, endpoint: WebhookEndpoint, isLiveMode: Bool, metrics: Metrics) throws
    {
        let refusal: APIError
        if event.livemode != isLiveMode {
            refusal = APIError(
                .livemodeMismatch,
                message: "The event is \(event.livemode == true ? "live" : "test")-mode; this endpoint takes "
                    + "\(isLiveMode ? "live" : "test")-mode events only.")
        } else if endpoint == .platform, event.account != nil {
            refusal = APIError(.wrongWebhookEndpoint)
        } else {
            return
        }
        metrics.increment(
            "payments_webhook_rejections_total{endpoint=\"\(endpoint.rawValue)\",reason=\"\(refusal.code)\"}")
        throw refusal
    }
}
