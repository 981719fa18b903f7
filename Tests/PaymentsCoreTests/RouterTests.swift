import Testing

@testable import PaymentsCore

@Suite struct RouterTests {
    private func makeRouter() -> Router {
        var router = Router()
        let ok: Handler = { _, _ in Response(status: 200) }
        router.add("GET", "/api/payments/{id}", ok)
        router.add("POST", "/api/payments/capture", body: .json, ok)
        router.add("POST", "/api/payments/{id}/cancel", body: .json, ok)
        router.add("GET", "/api/health", ok)
        return router
    }

    @Test func capturesPathParameters() throws {
        guard case .found(let route, let parameters) = makeRouter().route(method: "GET", path: "/api/payments/abc")
        else {
            Issue.record("expected a match")
            return
        }
        #expect(route.pattern == "/api/payments/{id}")
        #expect(parameters == ["id": "abc"])
    }

    @Test func prefersLiteralSegmentsOverParameters() {
        guard case .found(let route, _) = makeRouter().route(method: "POST", path: "/api/payments/capture") else {
            Issue.record("expected a match")
            return
        }
        #expect(route.pattern == "/api/payments/capture")
    }

    @Test func wrongMethodListsTheMethodsOfTheMostSpecificRoute() {
        guard case .methodNotAllowed(let allowed) = makeRouter().route(method: "DELETE", path: "/api/payments/capture")
        else {
            Issue.record("expected 405")
            return
        }
        #expect(allowed == ["POST"])
        // A literal route is never taken as a parameter of a less specific one.
        guard case .methodNotAllowed(let getAllowed) = makeRouter().route(method: "GET", path: "/api/payments/capture")
        else {
            Issue.record("expected 405")
            return
        }
        #expect(getAllowed == ["POST"])
        guard case .methodNotAllowed(let byID) = makeRouter().route(method: "DELETE", path: "/api/payments/abc") else {
            Issue.record("expected 405")
            return
        }
        #expect(byID == ["GET"])
    }

    @Test func unknownPathsAndEmptySegmentsAreNotFound() {
        let router = makeRouter()
        for path in ["/api/nope", "/api/payments//cancel", "/api", "/", "/api/health/extra"] {
            guard case .notFound = router.route(method: "GET", path: path) else {
                Issue.record("expected 404 for \(path)")
                continue
            }
        }
    }

    @Test func headIsAnsweredByGetAndTrailingSlashIsTolerated() {
        guard case .found(let route, _) = makeRouter().route(method: "HEAD", path: "/api/health/") else {
            Issue.record("expected a match")
            return
        }
        #expect(route.pattern == "/api/health")
    }
}

@Suite struct PageCursorTests {
    @Test func cursorsRoundTripAndRejectForgeries() throws {
        let cursor = PageCursor(createdAt: 1_795_000_000_123_456, id: "6f9619ff-8b86-d011-b42d-00c04fc964ff")
        let decoded = try PageCursor(encoded: cursor.encoded)
        #expect(decoded.createdAt == cursor.createdAt && decoded.id == cursor.id)
        for forged in [
            "", "not-base64!", Base64URL.encode(Array("x|y".utf8)),
            Base64URL.encode(Array("-1|6f9619ff-8b86-d011-b42d-00c04fc964ff".utf8)),
        ] {
            #expect(throws: APIError.self) { try PageCursor(encoded: forged) }
        }
    }

    @Test func theKeysetConditionBindsTheCursor() {
        #expect(PageCursor.after(nil, alias: "p").sql == "true")
        let after = PageCursor.after(PageCursor(createdAt: 42, id: "6f9619ff-8b86-d011-b42d-00c04fc964ff"), alias: "p")
        #expect(after.sql == "((extract(epoch FROM p.created_at) * 1000000)::bigint, p.id) < ($1, $2::uuid)")
        #expect(after.binds == [.text("42"), .text("6f9619ff-8b86-d011-b42d-00c04fc964ff")])
    }
}
