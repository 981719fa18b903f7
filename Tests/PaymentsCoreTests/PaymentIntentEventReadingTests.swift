import Foundation
import Testing

@testable import Stripe

/// The webhook's tree reading of an event and its PaymentIntent gives what `Codable` gives, on
/// every payload: read from the tree where it can tell, decoded with `Codable` where it cannot.
@Suite struct PaymentIntentEventReadingTests {
    /// A `payment_intent.succeeded` as Stripe sends it (API version 2024-06-20), every field.
    static let succeeded = #"""
        {"id":"evt_3PQ","object":"event","account":null,"api_version":"2024-06-20","created":1718000000,
         "data":{"object":{"id":"pi_3PQ","object":"payment_intent","amount":5000,"amount_capturable":0,
          "amount_details":{"tip":{}},"amount_received":5000,"application":null,"application_fee_amount":500,
          "automatic_payment_methods":{"allow_redirects":"always","enabled":true},"canceled_at":null,
          "cancellation_reason":null,"capture_method":"manual","client_secret":"pi_3PQ_secret_abc",
          "confirmation_method":"automatic","created":1717999000,"currency":"usd","customer":null,
          "description":"Listing \"Desk\" — café","invoice":null,"last_payment_error":null,
          "latest_charge":"ch_3PQ","livemode":false,
          "metadata":{"listing_id":"0b5e","buyer_id":"9f1c","Mixed_Key":"x","emoji":"\ud83d\ude00"},
          "next_action":null,"on_behalf_of":null,"payment_method":"pm_1","payment_method_configuration_details":null,
          "payment_method_options":{"card":{"installments":null,"mandate_options":null,"network":null,
          "request_three_d_secure":"automatic"}},"payment_method_types":["card"],"processing":null,
          "receipt_email":null,"review":null,"setup_future_usage":null,"shipping":null,"source":null,
          "statement_descriptor":null,"statement_descriptor_suffix":null,"status":"succeeded",
          "transfer_data":{"destination":"acct_1"},"transfer_group":"group_pi_3PQ"},
          "previous_attributes":null},
         "livemode":false,"pending_webhooks":1,"request":{"id":null,"idempotency_key":"k-1"},
         "type":"payment_intent.succeeded"}
        """#

    /// What each path made of the payload: every value, or that it threw.
    private static func outcomes(_ payload: String) -> (read: String, codable: String) {
        let bytes = Array(payload.utf8)
        let read = (try? Event.decodeWithPaymentIntent(bytes)).map(described) ?? "threw"
        let codable = (try? Event.decode(bytes, objectAs: PaymentIntent.self)).map(described) ?? "threw"
        return (read, codable)
    }

    /// Every stored value, the metadata sorted (two equal dictionaries may list in different orders).
    private static func described(_ decoded: (Event, PaymentIntent?)) -> String {
        let (event, intent) = decoded
        let metadata = intent?.metadata.map { $0.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" } }
        let error = intent?.lastPaymentError.map { [$0.code, $0.declineCode, $0.message] }
        return String(
            reflecting: [
                event.id, event.type, event.created, event.account, event.livemode, event.apiVersion,
                event.data.object.id, event.data.object.object, intent?.id, intent?.amount, intent?.amountCapturable,
                intent?.amountReceived, intent?.currency, intent?.status, intent?.captureMethod, intent?.clientSecret,
                intent?.latestCharge?.id, intent?.latestCharge?.object?.id, intent?.transferGroup,
                intent?.applicationFeeAmount, metadata, error, intent?.created, intent == nil,
            ] as [Any?])
    }

    private static func replacing(_ old: String, with new: String, in text: String = succeeded) -> String {
        precondition(text.contains(old), "the fixture has no \(old)")
        return text.replacingOccurrences(of: old, with: new)
    }

    /// Payloads the tree reads by itself, and that it reads as `Codable` does.
    @Test(arguments: [
        succeeded,
        // Optional fields absent or null, and the last payment error of a decline.
        replacing(
            #""last_payment_error":null"#,
            with:
                #""last_payment_error":{"code":"card_declined","decline_code":"insufficient_funds","message":"No.","type":"card_error"}"#
        ),
        replacing(#""latest_charge":"ch_3PQ","#, with: ""),
        replacing(#""latest_charge":"ch_3PQ""#, with: #""latest_charge":null"#),
        replacing(
            #""metadata":{"listing_id":"0b5e","buyer_id":"9f1c","Mixed_Key":"x","emoji":"\ud83d\ude00"}"#,
            with: #""metadata":{}"#),
        replacing(#""account":null"#, with: #""account":"acct_1""#),
        replacing(#""api_version":"2024-06-20","#, with: ""),
        // Not a PaymentIntent: a required field missing, null, or of another type.
        replacing(#""currency":"usd","#, with: ""),
        replacing(#""amount":5000"#, with: #""amount":null"#),
        replacing(#""amount":5000"#, with: #""amount":"5000""#),
        replacing(#""status":"succeeded""#, with: #""status":3"#),
        replacing(#""metadata":{"listing_id":"0b5e""#, with: #""metadata":{"listing_id":5"#),
        replacing(#""last_payment_error":null"#, with: #""last_payment_error":"declined""#),
        replacing(#""latest_charge":"ch_3PQ""#, with: #""latest_charge":7"#),
        #"{"id":"evt_2","object":"event","type":"charge.refunded","created":1700000000,"livemode":false,"data":{"object":{"id":"ch_1","object":"charge","amount":5000}}}"#,
        #"{"id":"evt_3","object":"event","type":"account.updated","created":1700000000,"account":"acct_1","data":{"object":{"id":"acct_1","object":"account","charges_enabled":true}}}"#,
    ])
    func theTreeReadsWhatCodableDecodes(_ payload: String) throws {
        #expect((try? PaymentIntentEventReading.read(Array(payload.utf8))) != nil, "left to Codable")
        let (read, codable) = Self.outcomes(payload)
        #expect(read == codable)
        #expect(read != "threw")
    }

    /// Payloads only `Codable` can answer for: the tree declines, and the answer is `Codable`'s.
    @Test(arguments: [
        replacing(#""amount":5000"#, with: #""amount":5000.0"#),
        replacing(#""amount":5000"#, with: #""amount":5e3"#),
        replacing(#""amount":5000"#, with: #""amount":50.5"#),
        replacing(#""latest_charge":"ch_3PQ""#, with: #""latest_charge":{"id":"ch_3PQ","object":"charge"}"#),
        // Two keys that name one field once converted, and a duplicate key.
        replacing(#""amount_received":5000"#, with: #""amount_received":5000,"amountReceived":1"#),
        replacing(#""currency":"usd""#, with: #""currency":"usd","currency":"eur""#),
        // Envelopes that do not decode, or decode differently.
        replacing(#""created":1718000000"#, with: #""created":"1718000000""#),
        replacing(#""type":"payment_intent.succeeded""#, with: #""type":null"#),
        replacing(#""livemode":false,"pending_webhooks""#, with: #""livemode":0,"pending_webhooks""#),
        #"{"id":"evt_4","type":"x","created":1,"data":{"object":"pi_1"}}"#,
        #"{"id":"evt_5","type":"x","created":1}"#,
        #"["not","an","event"]"#,
        "{\"id\":\"evt_6\",\"type\":\"x\",\"created\":1,\"data\":{\"object\":{\"id\":\"\u{FF}\"}}",
    ])
    func theRestIsCodablesCall(_ payload: String) throws {
        #expect((try? PaymentIntentEventReading.read(Array(payload.utf8))) == nil, "read by the tree")
        let (read, codable) = Self.outcomes(payload)
        #expect(read == codable)
    }

    @Test func theSucceededEventReadsEveryField() throws {
        let (event, intent) = try PaymentIntentEventReading.read(Array(Self.succeeded.utf8))
        #expect(event.id == "evt_3PQ" && event.type == "payment_intent.succeeded" && event.created == 1_718_000_000)
        #expect(event.account == nil && event.livemode == false && event.apiVersion == "2024-06-20")
        #expect(event.data.object.id == "pi_3PQ" && event.data.object.object == "payment_intent")
        let pi = try #require(intent)
        #expect(pi.amount == 5000 && pi.amountReceived == 5000 && pi.amountCapturable == 0)
        #expect(pi.applicationFeeAmount == 500 && pi.captureMethod == "manual" && pi.latestCharge?.id == "ch_3PQ")
        #expect(
            pi.transferGroup == "group_pi_3PQ" && pi.created == 1_717_999_000 && pi.clientSecret == "pi_3PQ_secret_abc")
        // A dictionary's keys are kept as sent, as `Codable` keeps them.
        #expect(pi.metadata == ["listing_id": "0b5e", "buyer_id": "9f1c", "Mixed_Key": "x", "emoji": "😀"])
    }
}
