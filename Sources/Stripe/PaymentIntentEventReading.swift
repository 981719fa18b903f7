import JSON

extension Event {
    /// The event and, when its `data.object` decodes as one, its PaymentIntent: exactly what
    /// `decode(_:objectAs: PaymentIntent.self)` returns, for the webhook's hot path.
    ///
    /// Read from one `JSONParser` tree rather than through `Codable`, which costs several times
    /// as much per event (docs/performance.md, issue 17). Where the tree alone cannot say what
    /// `Codable` would make of the payload — the parser refuses it (it is stricter: duplicate
    /// keys, depth), a number has a fraction or an exponent, two keys name one field once
    /// converted to camelCase, `latest_charge` is expanded, or the envelope itself does not
    /// decode — it is decoded with `Codable`, so the answer never differs.
    public static func decodeWithPaymentIntent(_ payload: [UInt8]) throws -> (Event, PaymentIntent?) {
        if let read = try? PaymentIntentEventReading.read(payload) { return read }
        return try decode(payload, objectAs: PaymentIntent.self)
    }
}

/// Builds `Event` and `PaymentIntent` from a parsed tree the way `StripeJSON.decoder` decodes them.
enum PaymentIntentEventReading {
    /// `unsure`: only `Codable` can tell. `mismatch`: `Codable` would throw (a required field
    /// missing or null, a value of another JSON type).
    enum Failure: Error { case unsure, mismatch }

    static func read(_ payload: [UInt8]) throws(Failure) -> (Event, PaymentIntent?) {
        guard case .object(let root)? = try? JSONParser.parse(payload) else { throw .unsure }
        // The envelope must decode; anything else is left to `Codable` (and its error).
        let event: Event
        let object: Fields
        do {
            let fields = try Fields(root)
            let data = try Fields(fields.object("data"))
            object = try Fields(data.object("object"))
            event = Event(
                id: try fields.string("id"), type: try fields.string("type"), created: try fields.int64("created"),
                account: try fields.optionalString("account"), livemode: try fields.optionalBool("livemode"),
                apiVersion: try fields.optionalString("apiVersion"),
                data: Event.DataReference(
                    object: Event.ObjectReference(
                        id: try object.optionalString("id"), object: try object.optionalString("object"))))
        } catch {
            throw .unsure
        }
        do {
            return (event, try paymentIntent(object))
        } catch .mismatch {
            return (event, nil)  // `try?` in `decode(_:objectAs:)`: not a PaymentIntent
        }
    }

    private static func paymentIntent(_ fields: Fields) throws(Failure) -> PaymentIntent {
        PaymentIntent(
            id: try fields.string("id"), amount: try fields.int64("amount"),
            amountCapturable: try fields.optionalInt64("amountCapturable"),
            amountReceived: try fields.optionalInt64("amountReceived"), currency: try fields.string("currency"),
            status: try fields.string("status"), captureMethod: try fields.optionalString("captureMethod"),
            clientSecret: try fields.optionalString("clientSecret"),
            latestCharge: try fields.optionalChargeID("latestCharge").map(Expandable.id),
            transferGroup: try fields.optionalString("transferGroup"),
            applicationFeeAmount: try fields.optionalInt64("applicationFeeAmount"),
            metadata: try fields.optionalStringDictionary("metadata"),
            lastPaymentError: try fields.optionalObject("lastPaymentError").map { (error) throws(Failure) in
                let fields = try Fields(error)
                return PaymentIntent.PaymentError(
                    code: try fields.optionalString("code"), declineCode: try fields.optionalString("declineCode"),
                    message: try fields.optionalString("message"))
            },
            created: try fields.int64("created"))
    }

    /// An object's members under the names `Codable` looks them up by (`StripeJSON.camelCase`).
    struct Fields {
        private let members: [String: JSONValue]

        /// Throws `unsure` when two keys convert to one name: which one `Codable` reads is its own affair.
        init(_ object: [String: JSONValue]) throws(Failure) {
            var members = [String: JSONValue](minimumCapacity: object.count)
            for (key, value) in object {
                if members.updateValue(value, forKey: StripeJSON.camelCase(key)) != nil { throw .unsure }
            }
            self.members = members
        }

        /// A member that must be present and not null.
        private func required(_ name: String) throws(Failure) -> JSONValue {
            guard let value = members[name], value != .null else { throw .mismatch }
            return value
        }

        /// A member that may be absent or null.
        private func optional(_ name: String) -> JSONValue? {
            guard let value = members[name], value != .null else { return nil }
            return value
        }

        func string(_ name: String) throws(Failure) -> String {
            try Self.string(required(name))
        }

        func optionalString(_ name: String) throws(Failure) -> String? {
            try optional(name).map { (value) throws(Failure) in try Self.string(value) }
        }

        func int64(_ name: String) throws(Failure) -> Int64 {
            try Self.int64(required(name))
        }

        func optionalInt64(_ name: String) throws(Failure) -> Int64? {
            try optional(name).map { (value) throws(Failure) in try Self.int64(value) }
        }

        func optionalBool(_ name: String) throws(Failure) -> Bool? {
            guard let value = optional(name) else { return nil }
            guard case .bool(let flag) = value else { throw .mismatch }
            return flag
        }

        func object(_ name: String) throws(Failure) -> [String: JSONValue] {
            guard case .object(let object) = try required(name) else { throw .mismatch }
            return object
        }

        func optionalObject(_ name: String) throws(Failure) -> [String: JSONValue]? {
            guard let value = optional(name) else { return nil }
            guard case .object(let object) = value else { throw .mismatch }
            return object
        }

        /// `[String: String]`: `Codable` keeps a dictionary's keys as they are (no camelCase).
        func optionalStringDictionary(_ name: String) throws(Failure) -> [String: String]? {
            try optionalObject(name).map { (object) throws(Failure) in
                var strings = [String: String](minimumCapacity: object.count)
                for (key, value) in object { strings[key] = try Self.string(value) }
                return strings
            }
        }

        /// An `Expandable` given as its id; an expanded object is left to `Codable`.
        func optionalChargeID(_ name: String) throws(Failure) -> String? {
            guard let value = optional(name) else { return nil }
            switch value {
            case .string(let id): return id
            case .object: throw .unsure
            default: throw .mismatch
            }
        }

        private static func string(_ value: JSONValue) throws(Failure) -> String {
            guard case .string(let text) = value else { throw .mismatch }
            return text
        }

        /// `Codable` reads `5.0` as 5 and refuses `5.5`: a number with a fraction or exponent is its call.
        private static func int64(_ value: JSONValue) throws(Failure) -> Int64 {
            switch value {
            case .int(let number): return number
            case .double: throw .unsure
            default: throw .mismatch
            }
        }
    }
}
