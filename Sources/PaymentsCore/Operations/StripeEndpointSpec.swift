import Stripe

/// What one of our webhook endpoints must look like at Stripe: the URL of its route below
/// `PUBLIC_BASE_URL`, the pinned API version, exactly the event types the webhook family
/// handles (`WebhookEndpoint.handledEventTypes`), `connect` for the Connect one, enabled.
struct StripeEndpointSpec {
    let endpoint: WebhookEndpoint
    let url: String
    let apiVersion: String

    /// The metadata key that marks an endpoint as ours, with the endpoint's name as value.
    static let metadataKey = "payments_endpoint"

    /// Both endpoints, from the environment (`PUBLIC_BASE_URL` and the Stripe settings).
    static func all(publicBaseURL: String, apiVersion: String) -> [StripeEndpointSpec] {
        WebhookEndpoint.allCases.map {
            StripeEndpointSpec(endpoint: $0, url: publicBaseURL + $0.path, apiVersion: apiVersion)
        }
    }

    /// `PUBLIC_BASE_URL` (https, no trailing slash), as `serve` reads it.
    static func publicBaseURL(_ environment: Environment) throws -> String {
        try ServerConfiguration.httpURL("PUBLIC_BASE_URL", environment)
    }

    /// The event types, sorted.
    var events: [String] { endpoint.handledEventTypes }

    /// "platform endpoint", "connect endpoint".
    var name: String { "\(endpoint.rawValue) endpoint" }

    /// Ours among the account's endpoints: the one our metadata names, else the one at our URL.
    func find(in endpoints: [WebhookEndpointObject]) -> WebhookEndpointObject? {
        endpoints.first { $0.metadata?[Self.metadataKey] == endpoint.rawValue } ?? endpoints.first { $0.url == url }
    }

    /// Every way `existing` differs, each in plain words (empty: as it must be).
    func differences(from existing: WebhookEndpointObject) -> [String] {
        var found: [String] = []
        if existing.url != url { found.append("url is \(existing.url), expected \(url)") }
        found += fixedDifferences(from: existing)
        let have = Set(existing.enabledEvents)
        let want = Set(events)
        let missing = want.subtracting(have).sorted()
        let extra = have.subtracting(want).sorted()
        if !missing.isEmpty { found.append("does not receive \(missing.joined(separator: ", "))") }
        if !extra.isEmpty {
            found.append("also receives \(extra.joined(separator: ", ")), which the app does not handle")
        }
        if existing.status != "enabled" { found.append("status is \(existing.status), expected enabled") }
        return found
    }

    /// The differences Stripe cannot change on an existing endpoint (`api_version` and `connect`
    /// are set when it is created): such an endpoint must be deleted and created again.
    func fixedDifferences(from existing: WebhookEndpointObject) -> [String] {
        var found: [String] = []
        if existing.apiVersion != apiVersion {
            found.append(
                "api_version is \(existing.apiVersion ?? "the account's default"), expected the pinned \(apiVersion)")
        }
        if let connect = existing.connect, connect != endpoint.isConnect {
            found.append("connect is \(connect), expected \(endpoint.isConnect)")
        }
        return found
    }

    /// `POST /v1/webhook_endpoints` parameters.
    var creation: [(String, StripeParameter)] {
        [
            ("url", .string(url)), ("api_version", .string(apiVersion)),
            ("enabled_events", .array(events.map { .string($0) })), ("connect", .boolean(endpoint.isConnect)),
            ("description", .string("marketplace payments: \(endpoint.rawValue) events")),
            ("metadata", .object([(Self.metadataKey, .string(endpoint.rawValue))])),
        ]
    }

    /// `POST /v1/webhook_endpoints/{id}` parameters that bring `existing` in line, as far as
    /// Stripe lets an endpoint change (empty: nothing to update).
    func updates(for existing: WebhookEndpointObject) -> [(String, StripeParameter)] {
        var parameters: [(String, StripeParameter)] = []
        if existing.url != url { parameters.append(("url", .string(url))) }
        if Set(existing.enabledEvents) != Set(events) {
            parameters.append(("enabled_events", .array(events.map { .string($0) })))
        }
        if existing.status != "enabled" { parameters.append(("disabled", .boolean(false))) }
        if existing.metadata?[Self.metadataKey] != endpoint.rawValue {
            parameters.append(("metadata", .object([(Self.metadataKey, .string(endpoint.rawValue))])))
        }
        return parameters
    }
}
