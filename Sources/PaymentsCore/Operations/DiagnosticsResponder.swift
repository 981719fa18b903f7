import Cryptography
import Postgres
import Stripe

/// Test-only routes (`DIAGNOSTICS_ENABLED=1`): they let the integration suite prove what the
/// pipeline delivers (exact body bytes, JSON handling), hold a worker busy on purpose (graceful
/// shutdown), and drive the Stripe client against the fake (retries, timeouts, typed errors)
/// before any payment family exists. Never enabled by `make run` or in production.
struct DiagnosticsResponder {
    func addRoutes(to router: inout Router) {
        router.add("POST", "/api/_diag/echo", body: .raw) { request, _ in
            struct Echo: Encodable {
                let length: Int
                let sha256: String
            }
            return .json(Echo(length: request.body.count, sha256: Hex.encode(Digest.sha256(request.body))))
        }
        router.add("POST", "/api/_diag/json", body: .json) { request, _ in
            .json(["received": request.json ?? .null])
        }
        router.add("GET", "/api/_diag/sleep") { request, context in
            guard let text = request.query["ms"], let milliseconds = Int(text), (0...10_000).contains(milliseconds)
            else {
                throw APIError.invalidField("ms", "must be an integer from 0 to 10000")
            }
            try context.database.query("SELECT pg_sleep(\(Double(milliseconds) / 1000))")
            return .json(["slept_ms": milliseconds])
        }
        router.add("POST", "/api/_diag/stripe", body: .json, lane: .stripe, stripeCall)
    }

    /// `{"method":"POST","path":"/v1/payment_intents","idempotency_key":"k","params":{…},"account":"acct_…"}`
    /// → the object's `id` and `status`, or the typed `StripeError` fields with status 502.
    private func stripeCall(_ request: Request, _ context: WorkerContext) throws -> Response {
        guard case .object(let body)? = request.json, case .string(let method)? = body["method"],
            case .string(let path)? = body["path"], path.hasPrefix("/v1/")
        else {
            throw APIError.invalidField("method/path", "method and a /v1/ path are required")
        }
        let parameters: [(String, StripeParameter)] =
            if case .object(let params)? = body["params"] {
                params.sorted { $0.key < $1.key }.map { ($0.key, Self.parameter($0.value)) }
            } else { [] }
        struct Summary: Decodable {
            let id: String?
            let status: String?
        }
        let account: String? = if case .string(let value)? = body["account"] { value } else { nil }
        do {
            let summary: Summary
            switch (method, body["idempotency_key"]) {
            case ("POST", .string(let key)?):
                summary = try context.stripe.post(path, parameters, idempotencyKey: key, account: account)
            case ("GET", _): summary = try context.stripe.get(path, query: parameters, account: account)
            default: throw APIError.invalidField("idempotency_key", "every POST needs one")
            }
            return .json(["id": JSONValue(summary.id), "status": JSONValue(summary.status)])
        } catch let error as StripeError {
            return .json(
                [
                    "kind": .string(error.kind.rawValue), "http_status": .int(Int64(error.httpStatus)),
                    "code": JSONValue(error.code), "decline_code": JSONValue(error.declineCode),
                    "param": JSONValue(error.param),
                    "request_id": JSONValue(error.requestID), "attempts": .int(Int64(error.attempts)),
                    "message": .string(error.message),
                ] as [String: JSONValue], status: 502)
        }
    }

    private static func parameter(_ value: JSONValue) -> StripeParameter {
        switch value {
        case .null: return .omitted
        case .bool(let flag): return .boolean(flag)
        case .int(let number): return .integer(number)
        case .double(let number): return .string(String(number))
        case .string(let text): return .string(text)
        case .array(let items): return .array(items.map(parameter))
        case .object(let fields):
            return .object(fields.sorted { $0.key < $1.key }.map { ($0.key, parameter($0.value)) })
        }
    }
}
