import Foundation
import Stripe
import Testing

@testable import PaymentsCore

/// The webhook endpoints `payments stripe endpoints setup` creates subscribe to exactly the event
/// types the webhook family applies, and `check` words every difference.
@Suite struct WebhookEndpointSpecTests {
    static func endpoint(_ json: String) throws -> WebhookEndpointObject {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(WebhookEndpointObject.self, from: Data(json.utf8))
    }

    @Test func theSubscribedTypesAreTheHandledTypes() {
        for endpoint in WebhookEndpoint.allCases {
            for type in endpoint.handledEventTypes {
                #expect(WebhookEffects.isHandled(type, on: endpoint))
            }
            #expect(!WebhookEffects.isHandled("payment_intent.created", on: endpoint))
            #expect(endpoint.handledEventTypes == endpoint.handledEventTypes.sorted())
        }
        // Only a direct charge's payment events (issue 16) are applied on both endpoints.
        #expect(
            Set(WebhookEndpoint.platform.handledEventTypes).intersection(WebhookEndpoint.connect.handledEventTypes)
                == Set(WebhookEndpoint.directChargeEventTypes))
    }

    @Test func differencesAreWordedAndOnlyUpdatableOnesAreUpdated() throws {
        let spec = StripeEndpointSpec(
            endpoint: .connect, url: "https://pay.test/api/payments/webhook/connect", apiVersion: "2024-06-20")
        let exact = try Self.endpoint(
            """
            {"id":"we_1","url":"https://pay.test/api/payments/webhook/connect","api_version":"2024-06-20",
             "enabled_events":\(Array(WebhookEndpoint.connect.handledEventTypes.reversed())),"status":"enabled",
             "metadata":{"payments_endpoint":"connect"}}
            """)
        #expect(spec.differences(from: exact).isEmpty && spec.updates(for: exact).isEmpty)
        let drifted = try Self.endpoint(
            """
            {"id":"we_1","url":"https://old.test/hook","api_version":"2023-10-16","connect":false,
             "enabled_events":["account.updated","*"],"status":"disabled","metadata":{}}
            """)
        #expect(
            spec.differences(from: drifted) == [
                "url is https://old.test/hook, expected https://pay.test/api/payments/webhook/connect",
                "api_version is 2023-10-16, expected the pinned 2024-06-20", "connect is false, expected true",
                "does not receive account.application.deauthorized, charge.dispute.closed, charge.dispute.created, "
                    + "charge.dispute.funds_reinstated, charge.dispute.funds_withdrawn, charge.dispute.updated, "
                    + "charge.refund.updated, charge.refunded, "
                    + "charge.succeeded, payment_intent.amount_capturable_updated, payment_intent.canceled, "
                    + "payment_intent.payment_failed, payment_intent.succeeded, payout.failed, payout.paid",
                "also receives *, which the app does not handle", "status is disabled, expected enabled",
            ])
        #expect(spec.updates(for: drifted).map(\.0) == ["url", "enabled_events", "disabled", "metadata"])
        #expect(spec.fixedDifferences(from: drifted).count == 2)
    }
}
