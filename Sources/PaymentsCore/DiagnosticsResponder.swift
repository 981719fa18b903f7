import Cryptography
import Postgres

/// Test-only routes (`DIAGNOSTICS_ENABLED=1`): they let the integration suite prove what the
/// pipeline delivers (exact body bytes, JSON handling) and hold a worker busy on purpose
/// (graceful shutdown). Never enabled by `make run` or in production.
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
            guard let text = request.query["ms"], let milliseconds = Int(text), (0...10_000).contains(milliseconds) else {
                throw APIError.invalidField("ms", "must be an integer from 0 to 10000")
            }
            try context.database.query("SELECT pg_sleep(\(Double(milliseconds) / 1000))")
            return .json(["slept_ms": milliseconds])
        }
    }
}
