import Foundation
import HTTPClient
import Stripe

/// A notification as the marketplace application receives it (docs/notifications.md): a JSON
/// event signed the way Stripe signs its own (`Marketplace-Signature: t=…,v1=…`, HMAC-SHA256 of
/// `"{t}.{body}"` with `MARKETPLACE_WEBHOOK_SECRET`), whose `id` — the notification's — stays
/// the same on every retry, so the receiver can drop a repeat.
struct OutboundWebhook {
    let webhook: NotificationSettings.Webhook
    let client: HTTPClient
    let timeout: Duration

    /// The event's body: the same bytes on every attempt (sorted keys).
    struct Event: Encodable {
        struct Body: Encodable {
            let profile_id: String
            let payload: JSONValue
        }

        let id: String
        let object: String
        let type: String
        let created: Int64
        let data: Body

        init(_ claim: NotificationDispatcher.Claim) {
            id = claim.notificationID
            object = "event"
            type = claim.kind
            created = claim.created
            data = Body(profile_id: claim.profileID, payload: claim.payload)
        }
    }

    /// The request of one attempt, signed at `timestamp` (each attempt signs afresh, so a
    /// retry hours later still falls within the receiver's tolerance).
    func request(_ claim: NotificationDispatcher.Claim, timestamp: Int64) -> HTTPRequest {
        let body = JSONCoding.encode(Event(claim))
        return HTTPRequest(
            method: "POST", url: webhook.url,
            headers: [
                ("Content-Type", "application/json"),
                ("User-Agent", "marketplace-payments/\(PaymentsVersion.current) (notifications)"),
                ("Marketplace-Event-Id", claim.notificationID),
                (
                    "Marketplace-Signature",
                    WebhookSignatureSigner.header(body: body, secrets: [webhook.secret], timestamp: timestamp)
                ),
            ],
            body: body)
    }

    /// Posts the event; a 2xx answer is an acknowledgement, anything else a failure to retry.
    func deliver(_ claim: NotificationDispatcher.Claim) -> NotificationDispatcher.Attempt {
        do {
            let response = try client.perform(
                request(claim, timestamp: Int64(Date().timeIntervalSince1970)), timeout: timeout)
            return (200..<300).contains(response.status)
                ? .delivered : .failed("the receiver answered HTTP \(response.status)", isFinal: false)
        } catch {
            return .failed(error.description, isFinal: false)
        }
    }
}
