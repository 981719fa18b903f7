import Foundation
import Testing

@testable import PaymentsCore

@Suite struct JWTTests {
    private func makeVerifier() throws -> TokenVerifier {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("jwks-\(UUID()).json").path
        try JWTVectors.jwks.write(toFile: path, atomically: true, encoding: .utf8)
        return TokenVerifier(
            sharedSecret: Array(JWTVectors.sharedSecret.utf8), keys: try JWKSLoader.load(path: path),
            issuer: "https://id.example.test", audience: "payments", leeway: 60, maximumLifetime: 86_400)
    }

    @Test(arguments: JWTVectors.cases.map(\.name))
    func vector(_ name: String) throws {
        let vector = try #require(JWTVectors.cases.first { $0.name == name })
        let verifier = try makeVerifier()
        let outcome: String
        do {
            let claims = try verifier.verify(vector.token, now: JWTVectors.now)
            #expect(claims.subject == "user-1")
            outcome = "ok"
        } catch {
            outcome = "\(error)"
        }
        #expect(outcome == vector.outcome, "\(name)")
    }

    @Test func hs256IsRefusedWhenNoSharedSecretIsConfigured() throws {
        let verifier = try makeVerifier()
        let withoutSecret = TokenVerifier(
            sharedSecret: nil, keys: verifier.keys, issuer: nil, audience: nil, leeway: 60, maximumLifetime: 86_400)
        let token = try #require(JWTVectors.cases.first { $0.name == "hs256Valid" }).token
        #expect(throws: TokenRejection.unsupportedAlgorithm) { try withoutSecret.verify(token, now: JWTVectors.now) }
    }

    @Test func mintedTokensVerify() throws {
        let secret = Array("minted-secret-minted-secret-minted".utf8)
        let token = TokenVerifier.mintHS256(secret: secret, claims: ["sub": "u", "exp": .int(JWTVectors.now + 10)])
        let verifier = TokenVerifier(
            sharedSecret: secret, keys: [:], issuer: nil, audience: nil, leeway: 0, maximumLifetime: 86_400)
        #expect(try verifier.verify(token, now: JWTVectors.now).subject == "u")
        #expect(throws: TokenRejection.expired) { try verifier.verify(token, now: JWTVectors.now + 11) }
    }

    @Test func csrfCookiesParse() {
        #expect(AuthResolver.cookies("a=1; csrf_token=xyz; a=2") == ["a": "1", "csrf_token": "xyz"])
        #expect(AuthResolver.cookies(nil).isEmpty)
    }

    @Test func clientIPDropsPorts() {
        #expect(RateLimiter.clientIP("10.0.0.1:5555") == "10.0.0.1")
        #expect(RateLimiter.clientIP("[::1]:5555") == "::1")
        #expect(RateLimiter.clientIP("::1") == "::1")
        #expect(RateLimiter.clientIP("127.0.0.1") == "127.0.0.1")
    }

    @Test func rateLimitOverridesAreValidated() throws {
        let limiter = try RateLimiter(environment: Environment(["RATE_LIMITS": "intent=5/10, capture=1/1"]))
        #expect(limiter.limits[.intent] == RateLimit(limit: 5, windowSeconds: 10))
        #expect(limiter.limits[.connect] == RateLimitPolicy.connect.defaultLimit)
        #expect(throws: ConfigurationError.self) {
            try RateLimiter(environment: Environment(["RATE_LIMITS": "intent=5"]))
        }
        #expect(throws: ConfigurationError.self) {
            try RateLimiter(environment: Environment(["RATE_LIMITS": "nope=5/10"]))
        }
    }
}
