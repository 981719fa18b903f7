import FastCGI
import Foundation
import Testing

@testable import PaymentsCore

/// Drives the whole pipeline with FastCGI requests, without a socket (layer 2 of CONVENTIONS).
/// None of these routes touches the database, so the lazy connection is never opened.
@Suite struct PipelineTests {
    private let application: Application
    private let context: WorkerContext

    init() throws {
        let configuration = try ServerConfiguration(
            environment: Environment([
                "DATABASE_URL": "postgresql:///unused?host=/nonexistent", "FCGI_SOCKET": "/tmp/unused.sock",
                "DIAGNOSTICS_ENABLED": "1", "MAX_BODY_BYTES": "2048",
                "AUTH_JWT_SECRET": "test-secret-test-secret-test-secret!", "STRIPE_SECRET_KEY": "sk_test_unit",
                "STRIPE_WEBHOOK_SECRETS": "whsec_test_unit_platform",
                "STRIPE_CONNECT_WEBHOOK_SECRETS": "whsec_test_unit_connect",
                "PUBLIC_BASE_URL": "https://payments.example.test",
                "APP_RETURN_URL": "https://market.example.test/done",
            ]))
        let shared = SharedState(
            configuration: configuration, logger: Logger(descriptor: -1), metrics: Metrics(),
            migrations: [])
        application = Application(shared: shared)
        context = try WorkerContext(shared: shared)
    }

    private func send(
        _ method: String, _ path: String, body: RequestBody = .complete([]), contentType: String? = nil,
        requestID: String? = "abc123"
    ) -> (FastCGIResponse, [String: Any]) {
        var parameters = ["REQUEST_METHOD": method, "DOCUMENT_URI": path, "REMOTE_ADDR": "127.0.0.1"]
        parameters["REQUEST_ID"] = requestID
        parameters["CONTENT_TYPE"] = contentType
        let response = application.respond(to: FastCGIRequest(parameters: parameters, body: body), context: context)
        let json = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] ?? [:]
        return (response, json)
    }

    private func header(_ response: FastCGIResponse, _ name: String) -> String? {
        response.headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    private func errorCode(_ json: [String: Any]) -> String? {
        (json["error"] as? [String: Any])?["code"] as? String
    }

    @Test func healthAnswersWithRequestID() {
        let (response, json) = send("GET", "/api/health")
        #expect(response.status == 200)
        #expect(json["status"] as? String == "ok")
        #expect(header(response, "X-Request-Id") == "abc123")
    }

    @Test func errorsUseTheEnvelopeWithTheRequestID() {
        let (response, json) = send("GET", "/api/nowhere")
        #expect(response.status == 404)
        let error = json["error"] as? [String: Any]
        #expect(error?["code"] as? String == "not_found")
        #expect(error?["request_id"] as? String == "abc123")
        #expect((error?["message"] as? String)?.isEmpty == false)
        #expect(header(response, "Content-Type") == "application/json")
    }

    @Test func wrongMethodIs405WithAllow() {
        let (response, json) = send("DELETE", "/api/health")
        #expect(response.status == 405)
        #expect(errorCode(json) == "method_not_allowed")
        #expect(header(response, "Allow") == "GET")
    }

    @Test func jsonRoutesRequireJSONContentType() {
        let (response, json) = send(
            "POST", "/api/_diag/json", body: .complete(Array("{}".utf8)), contentType: "text/plain")
        #expect(response.status == 415)
        #expect(errorCode(json) == "unsupported_media_type")
    }

    @Test func malformedJSONIs400() {
        let (response, json) = send(
            "POST", "/api/_diag/json", body: .complete(Array("{\"a\":".utf8)),
            contentType: "application/json; charset=utf-8")
        #expect(response.status == 400)
        #expect(errorCode(json) == "invalid_json")
    }

    @Test func validJSONReachesTheHandler() {
        let (response, json) = send(
            "POST", "/api/_diag/json", body: .complete(Array("{\"n\":9007199254740993}".utf8)),
            contentType: "application/json")
        #expect(response.status == 200)
        #expect(String(decoding: response.body, as: UTF8.self) == "{\"received\":{\"n\":9007199254740993}}")
        #expect(json["received"] != nil)
    }

    @Test func oversizedAndTruncatedBodiesAreRejected() {
        let (tooLarge, tooLargeJSON) = send("POST", "/api/_diag/echo", body: .tooLarge(declaredLength: 5000))
        #expect(tooLarge.status == 413)
        #expect(errorCode(tooLargeJSON) == "payload_too_large")
        let (truncated, truncatedJSON) = send("POST", "/api/_diag/echo", body: .malformed)
        #expect(truncated.status == 400)
        #expect(errorCode(truncatedJSON) == "malformed_body")
    }

    @Test func rawRoutesSeeExactBytes() {
        let bytes: [UInt8] = [0x61, 0x0d, 0x0a, 0x00, 0xff, 0xef, 0xbb, 0xbf]
        let (response, json) = send(
            "POST", "/api/_diag/echo", body: .complete(bytes), contentType: "application/octet-stream")
        #expect(response.status == 200)
        #expect(json["length"] as? Int == bytes.count)
        #expect(json["sha256"] as? String == "45e737cb3051a27c2ad3b53c60ea4498152dfdc4b658275d49b29940c9588aa3")
    }

    @Test func spoofedOrMissingRequestIDsAreReplaced() {
        for candidate in [nil, "", "bad id\r\nX-Evil: 1", String(repeating: "a", count: 65)] {
            let (response, json) = send("GET", "/api/nowhere", requestID: candidate)
            let id = header(response, "X-Request-Id") ?? ""
            #expect(id.count == 32 && id.allSatisfy(\.isHexDigit))
            #expect((json["error"] as? [String: Any])?["request_id"] as? String == id)
        }
    }

    @Test func databaseOutageIs503NotA500() {
        let (response, json) = send("GET", "/api/ready")
        #expect(response.status == 503)
        #expect(errorCode(json) == "database_unavailable")
        #expect(header(response, "Retry-After") == "1")
    }
}
