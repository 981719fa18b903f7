/// A webhook endpoint at Stripe (`we_…`): where Stripe sends which events, rendered at which API version.
public struct WebhookEndpointObject: StripeObject {
    public let id: String
    public let url: String
    /// The API version events are rendered at (nil: the account's default).
    public let apiVersion: String?
    public let enabledEvents: [String]
    /// `enabled` or `disabled`.
    public let status: String
    /// The signing secret: returned once, by the call that creates the endpoint.
    public let secret: String?
    /// Whether it receives connected accounts' events. Stripe's documented object does not
    /// carry it (it is a create-only parameter): nil when the answer does not say.
    public let connect: Bool?
    public let metadata: [String: String]?
    public let livemode: Bool?
}

/// One page of a Stripe list.
public struct StripeList<Item: Decodable & Sendable>: Decodable, Sendable {
    public let data: [Item]
    public let hasMore: Bool
}

extension StripeClient {
    /// `GET /v1/webhook_endpoints`: every endpoint of the account, all pages.
    public func listWebhookEndpoints() throws(StripeError) -> [WebhookEndpointObject] {
        try listAll("/v1/webhook_endpoints")
    }

    /// `POST /v1/webhook_endpoints`: the answer carries the signing `secret`.
    public func createWebhookEndpoint(_ parameters: [(String, StripeParameter)], idempotencyKey: String)
        throws(StripeError) -> WebhookEndpointObject
    {
        try post("/v1/webhook_endpoints", parameters, idempotencyKey: idempotencyKey)
    }

    /// `POST /v1/webhook_endpoints/{id}`: url, enabled events, `disabled`, metadata.
    public func updateWebhookEndpoint(
        _ id: String, _ parameters: [(String, StripeParameter)], idempotencyKey: String
    ) throws(StripeError) -> WebhookEndpointObject {
        try post("/v1/webhook_endpoints/\(Self.pathComponent(id))", parameters, idempotencyKey: idempotencyKey)
    }
}
