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
        guard case .found(let route, let parameters) = makeRouter().route(method: "GET", path: "/api/payments/abc") else {
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
        guard case .methodNotAllowed(let allowed) = makeRouter().route(method: "DELETE", path: "/api/payments/capture") else {
            Issue.record("expected 405")
            return
        }
        #expect(allowed == ["POST"])
        // A literal route is never taken as a parameter of a less specific one.
        guard case .methodNotAllowed(let getAllowed) = makeRouter().route(method: "GET", path: "/api/payments/capture") else {
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
