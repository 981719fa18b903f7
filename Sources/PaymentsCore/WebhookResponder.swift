import Foundation
import Postgres
import Stripe

/// `POST /api/payments/webhook` (platform secrets) and `/api/payments/webhook/connect` (Connect
/// secrets). Outside the auth and CSRF policy: Stripe authenticates with `Stripe-Signature` over
/// the exact raw bytes (a `.raw` route: nothing parses or re-serialises the body first).
struct WebhookResponder {
    func addRoutes(to router: inout Router) {
        router.add("POST", "/api/payments/webhook", body: .raw) { request, context in
            try receive(request, context, endpoint: .platform, verifier: context.shared.configuration.platformWebhooks)
        }
        router.add("POST", "/api/payments/webhook/connect", body: .raw) { request, context in
            try receive(request, context, endpoint: .connect, verifier: context.shared.configuration.connectWebhooks)
        }
    }

    private func receive(_ request: Request, _ context: WorkerContext, endpoint: WebhookEndpoint,
                         verifier: WebhookSignatureVerifier) throws -> Response {
        let metrics = context.shared.metrics
        do throws(WebhookSignatureFailure) {
            try verifier.verify(header: request.header("stripe-signature"), body: request.body,
                                now: Int64(Date().timeIntervalSince1970))
        } catch {
            metrics.increment("payments_webhook_signature_failures_total{endpoint=\"\(endpoint.rawValue)\",reason=\"\(error.rawValue)\"}")
            throw APIError(status: 400, code: "signature_invalid", message: "The Stripe-Signature header is invalid (\(error.rawValue)).")
        }
        guard let event = try? Event.decode(request.body), !event.id.isEmpty, !event.type.isEmpty else {
            throw APIError(status: 400, code: "invalid_event", message: "The body is not a Stripe event.")
        }
        metrics.increment("payments_webhook_events_total{endpoint=\"\(endpoint.rawValue)\",type=\"\(event.type)\",outcome=\"received\"}")

        let started = ContinuousClock.now
        let inbox = WebhookInbox(connection: context.database, audit: AuditContext(request: request, actorRole: "stripe"),
                                 canceller: context.shared.followUps)
        let outcome: DeliveryOutcome
        do {
            outcome = try inbox.receive(event, payload: request.body, endpoint: endpoint)
        } catch let error as DatabaseError where error.isTransient {
            throw error
        } catch {
            metrics.increment("payments_webhook_events_total{endpoint=\"\(endpoint.rawValue)\",type=\"\(event.type)\",outcome=\"failed\"}")
            context.shared.logger.error("webhook effect failed", [
                ("request_id", .string(request.requestID)), ("event_id", .string(event.id)), ("type", .string(event.type)),
            ])
            throw APIError(status: 500, code: "webhook_processing_failed",
                           message: "The event was stored and will be retried.")
        }
        let elapsed = ContinuousClock.now - started
        metrics.observeWebhook(seconds: Double(elapsed.components.attoseconds) / 1e18 + Double(elapsed.components.seconds))

        let label: String
        let body: [String: JSONValue]
        switch outcome {
        case .duplicate:
            label = "duplicate"
            body = ["received": true, "duplicate": true]
        case .applied(let effect):
            label = effect.rawValue
            body = effect == .processed ? ["received": true] : ["received": true, "status": .string(effect.rawValue)]
        }
        metrics.increment("payments_webhook_events_total{endpoint=\"\(endpoint.rawValue)\",type=\"\(event.type)\",outcome=\"\(label)\"}")
        return .json(body)
    }
}
