import Foundation

/// The JSON decoder for Stripe objects: snake_case keys, unknown fields ignored.
enum StripeJSON {
    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .custom { path in
            CamelCaseKey(stringValue: camelCase(path[path.count - 1].stringValue))
        }
        return decoder
    }()

    /// Foundation's `convertFromSnakeCase`, with a fast path for the keys Stripe sends (ASCII
    /// lower case, digits and underscores). Foundation converts every key of every object with
    /// Unicode-aware case mapping: a `payment_intent.succeeded` event takes about twice as long
    /// to decode with it as with this (docs/performance.md, issue 17). No state is kept: the
    /// workers share nothing here (a shared cache of conversions cost more in lock waits).
    static func camelCase(_ key: String) -> String {
        let utf8 = key.utf8
        guard utf8.contains(UInt8(ascii: "_")) else { return key }
        guard utf8.allSatisfy({ $0 == UInt8(ascii: "_") || isLowercaseLetter($0) || (0x30...0x39).contains($0) }) else {
            return convertFromSnakeCase(key)
        }
        guard let first = utf8.firstIndex(where: { $0 != UInt8(ascii: "_") }),
            let last = utf8.lastIndex(where: { $0 != UInt8(ascii: "_") }),
            utf8[first...last].contains(UInt8(ascii: "_"))
        else { return key }
        var out = [UInt8](utf8[..<first])
        out.reserveCapacity(utf8.count)
        // `capitalized`, in every word after the first: a letter that follows no letter (the
        // word's first, or one after a digit: "3d" → "3D") is upper-cased.
        var laterWord = false
        var afterLetter = false
        for byte in utf8[first...last] {
            if byte == UInt8(ascii: "_") {
                laterWord = true
                afterLetter = false
                continue
            }
            let letter = isLowercaseLetter(byte)
            out.append(laterWord && letter && !afterLetter ? byte - 0x20 : byte)
            afterLetter = letter
        }
        out.append(contentsOf: utf8[utf8.index(after: last)...])
        return String(decoding: out, as: UTF8.self)
    }

    private static func isLowercaseLetter(_ byte: UInt8) -> Bool { (0x61...0x7a).contains(byte) }

    /// Foundation's rule: leading and trailing underscores kept, the first word lower-cased, each
    /// later word capitalised (`payment_method_details` → `paymentMethodDetails`).
    static func convertFromSnakeCase(_ key: String) -> String {
        guard let first = key.firstIndex(where: { $0 != "_" }) else { return key }
        guard let last = key.lastIndex(where: { $0 != "_" }) else { return key }
        let words = key[first...last].split(separator: "_")
        guard words.count > 1 else { return key }
        let joined = words[0].lowercased() + words.dropFirst().map(\.capitalized).joined()
        return String(key[..<first]) + joined + String(key[key.index(after: last)...])
    }
}

/// A coding key produced by `StripeJSON.camelCase`.
private struct CamelCaseKey: CodingKey {
    let stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

extension JSONDecoder {
    func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try decode(type, from: Data(bytes))
    }
}

/// Any Stripe object with an id.
public protocol StripeObject: Decodable, Sendable {
    /// The object's id (`pi_…`, `ch_…`, …).
    var id: String { get }
}

/// An expandable field: Stripe returns either the id or, when expanded, the whole object.
public enum Expandable<Object: StripeObject>: Decodable, Sendable {
    case id(String)
    case object(Object)

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let id = try? container.decode(String.self) {
            self = .id(id)
        } else {
            self = .object(try container.decode(Object.self))
        }
    }

    /// The id, whichever form arrived.
    public var id: String {
        switch self {
        case .id(let id): return id
        case .object(let object): return object.id
        }
    }

    /// The object when it was expanded.
    public var object: Object? {
        if case .object(let object) = self { return object }
        return nil
    }
}

/// A PaymentIntent (the fields the app uses).
public struct PaymentIntent: StripeObject {
    public let id: String
    public let amount: Int64
    public let amountCapturable: Int64?
    public let amountReceived: Int64?
    public let currency: String
    public let status: String
    public let captureMethod: String?
    public let clientSecret: String?
    public let latestCharge: Expandable<Charge>?
    public let transferGroup: String?
    public let applicationFeeAmount: Int64?
    public let metadata: [String: String]?
    public let lastPaymentError: PaymentError?
    public let created: Int64

    /// `last_payment_error` of a declined attempt.
    public struct PaymentError: Decodable, Sendable {
        public let code: String?
        public let declineCode: String?
        public let message: String?
    }
}

/// A Charge.
public struct Charge: StripeObject {
    public let id: String
    public let amount: Int64
    public let amountCaptured: Int64
    public let amountRefunded: Int64
    public let refunded: Bool?
    public let disputed: Bool?
    public let paymentIntent: String?
    public let transfer: Expandable<Transfer>?
    public let captured: Bool?
    public let paymentMethodDetails: PaymentMethodDetails?
    /// What the charge did to the platform's balance: set once it is captured.
    public let balanceTransaction: Expandable<BalanceTransaction>?

    /// How the charge was paid; for a card, until when its authorisation can be captured.
    public struct PaymentMethodDetails: Decodable, Sendable {
        public let card: Card?

        public struct Card: Decodable, Sendable {
            /// Unix seconds; the end of the authorisation's hold.
            public let captureBefore: Int64?
        }
    }
}

/// A BalanceTransaction: one movement of a balance, with Stripe's fee.
public struct BalanceTransaction: StripeObject {
    public let id: String
    public let amount: Int64
    /// Stripe's fee (processing), in the same currency.
    public let fee: Int64
    /// `amount − fee`.
    public let net: Int64
    public let currency: String
}

/// A Refund.
public struct Refund: StripeObject {
    public let id: String
    public let amount: Int64
    public let currency: String
    public let status: String?
    public let paymentIntent: String?
    public let charge: Expandable<Charge>?
    public let reason: String?
    public let failureReason: String?
    /// Why a `pending` refund waits: `insufficient_funds` (the balance of the account that owns
    /// the charge cannot cover it yet), `processing` or `charge_pending`.
    public let pendingReason: String?
    public let metadata: [String: String]?
}

/// A connected Account.
public struct Account: StripeObject {
    public let id: String
    public let type: String?
    public let email: String?
    public let chargesEnabled: Bool
    public let payoutsEnabled: Bool
    public let detailsSubmitted: Bool
    public let requirements: Requirements?
    /// Each requested capability's state (`active`, `inactive`, `pending`), by name.
    public let capabilities: [String: String]?
    public let metadata: [String: String]?
    /// The account's settings; the app reads its payout schedule.
    public let settings: Settings?

    /// The payout delay Stripe applies (`settings.payouts.schedule.delay_days`), when it says.
    public var payoutDelayDays: Int64? { settings?.payouts?.schedule?.delayDays }

    /// `settings`, as far as the app reads it.
    public struct Settings: Decodable, Sendable {
        public let payouts: Payouts?

        public struct Payouts: Decodable, Sendable {
            public let schedule: Schedule?
        }

        public struct Schedule: Decodable, Sendable {
            public let delayDays: Int64?
        }
    }

    /// What Stripe still needs from the account holder.
    public struct Requirements: Decodable, Sendable {
        public let currentlyDue: [String]?
        public let pastDue: [String]?
        public let disabledReason: String?
    }
}

/// An onboarding AccountLink (single use, short-lived).
public struct AccountLink: Decodable, Sendable {
    public let url: String
    public let expiresAt: Int64
    public let created: Int64?
}

/// An Express dashboard LoginLink.
public struct LoginLink: Decodable, Sendable {
    public let url: String
    public let created: Int64?
}

/// A Transfer to a connected account.
public struct Transfer: StripeObject {
    public let id: String
    public let amount: Int64
    public let amountReversed: Int64
    public let currency: String
    public let destination: String?
    public let sourceTransaction: String?
    public let transferGroup: String?
    public let reversed: Bool?
    public let metadata: [String: String]?
}

/// A card Dispute (chargeback).
public struct Dispute: StripeObject {
    public let id: String
    public let amount: Int64
    public let currency: String
    public let charge: Expandable<Charge>?
    public let paymentIntent: String?
    public let reason: String?
    public let status: String
    public let evidenceDetails: EvidenceDetails?

    /// Deadline and submission state of the evidence.
    public struct EvidenceDetails: Decodable, Sendable {
        public let dueBy: Int64?
        public let hasEvidence: Bool?
        public let submissionCount: Int?
    }
}

/// An Event's envelope; decode `data.object` with `object(_:from:)` once the type is known.
public struct Event: StripeObject {
    public let id: String
    public let type: String
    public let created: Int64
    public let account: String?
    public let livemode: Bool?
    public let apiVersion: String?
    public let data: DataReference

    /// `data.object`'s id and kind.
    public struct DataReference: Decodable, Sendable {
        public let object: ObjectReference
    }

    /// The id and `object` name of an event's subject.
    public struct ObjectReference: Decodable, Sendable {
        public let id: String?
        public let object: String?
    }

    /// Parses an event payload (a webhook body or an API response).
    public static func decode(_ payload: [UInt8]) throws -> Event {
        try StripeJSON.decoder.decode(Event.self, from: payload)
    }

    /// Decodes `data.object` of the same payload as `T`.
    public static func object<T: Decodable>(_ type: T.Type, from payload: [UInt8]) throws -> T {
        try StripeJSON.decoder.decode(EventEnvelope<T>.self, from: payload).data.object
    }

    /// The event, and `data.object` as `T` when it is one (nil otherwise), from one parse of the
    /// payload: the webhook path reads its most frequent object type without a second pass.
    public static func decode<T: Decodable>(_ payload: [UInt8], objectAs type: T.Type) throws -> (Event, T?) {
        let decoded = try StripeJSON.decoder.decode(EventWithObject<T>.self, from: payload)
        return (decoded.event, decoded.object)
    }
}

/// An event and, decoded from the same parse, its `data.object` as `T` if it is one.
private struct EventWithObject<T: Decodable>: Decodable {
    let event: Event
    let object: T?

    private enum Keys: String, CodingKey { case data }
    private enum DataKeys: String, CodingKey { case object }

    init(from decoder: any Decoder) throws {
        event = try Event(from: decoder)
        let data = try decoder.container(keyedBy: Keys.self).nestedContainer(keyedBy: DataKeys.self, forKey: .data)
        object = try? data.decode(T.self, forKey: .object)
    }
}

/// `{"data":{"object":…}}` with a typed object.
private struct EventEnvelope<T: Decodable>: Decodable {
    struct Payload: Decodable { let object: T }
    let data: Payload
}

/// A Payout of a connected account's balance to its bank.
public struct Payout: StripeObject {
    public let id: String
    public let amount: Int64
    public let currency: String
    public let status: String
    public let arrivalDate: Int64?
    public let failureCode: String?
}

/// An account's Balance: funds available to pay out, and funds still pending, by currency.
public struct Balance: Decodable, Sendable {
    public let available: [Money]
    public let pending: [Money]

    /// An amount in one currency.
    public struct Money: Decodable, Sendable {
        public let amount: Int64
        public let currency: String
    }
}
