import Cryptography
import Foundation
import Postgres

/// One of a profile's roles. They always come from `profiles.roles`, never from a token or a body.
public enum Role: String, Sendable, CaseIterable, Comparable, SQLDecodable {
    case buyer, seller, admin

    public static func < (lhs: Role, rhs: Role) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// `profiles.roles`: a text array (`{buyer,seller}`), which the schema limits to `{admin}`,
/// `{buyer}`, `{seller}` and `{buyer,seller}` — so its elements never need quoting.
extension Set: SQLDecodable where Element == Role {
    public init?(sqlText: String) {
        guard sqlText.hasPrefix("{"), sqlText.hasSuffix("}"), sqlText.count > 2 else { return nil }
        var roles = Set<Role>()
        for name in sqlText.dropFirst().dropLast().split(separator: ",", omittingEmptySubsequences: false) {
            guard let role = Role(rawValue: String(name)) else { return nil }
            roles.insert(role)
        }
        self = roles
    }
}

/// Who is calling: the verified token's subject mapped through `profiles.user_id`.
public struct Identity: Sendable, Equatable {
    /// `profiles.id`.
    public let profileID: UUID
    /// The token's `sub` (`profiles.user_id`).
    public let userID: String
    /// The profile's roles: `admin` alone, or `buyer`, `seller` or both.
    public let roles: Set<Role>
    /// True when the token came from the session cookie (CSRF rules apply), false for Bearer.
    public let viaCookie: Bool

    public var isAdmin: Bool { roles.contains(.admin) }

    /// The roles as the audit log and error messages spell them (`buyer,seller`).
    public var rolesDescription: String { roles.sorted().map(\.rawValue).joined(separator: ",") }
}

/// Who may call a route.
public enum Access: Sendable {
    /// Anyone (health, webhooks, onboarding redirects — each documents why).
    case anyone
    /// A signed-in profile with one of these roles.
    case roles(Set<Role>)

    /// Any signed-in profile.
    public static let signedIn = Access.roles(Set(Role.allCases))
}

/// Authentication settings (`AUTH_JWT_SECRET`, `AUTH_JWKS_FILE`, `AUTH_ISSUER`, `AUTH_AUDIENCE`).
public struct AuthConfiguration: Sendable {
    let verifier: TokenVerifier
    /// The cookie holding the access token for browser sessions.
    let accessCookie = "access_token"
    /// The double-submit CSRF cookie; unsafe cookie-authenticated requests echo it in `X-CSRF-Token`.
    let csrfCookie = "csrf_token"

    /// Reads the settings; at least one of `AUTH_JWT_SECRET` or `AUTH_JWKS_FILE` is required.
    public init(environment: Environment) throws {
        let secret = environment.optional("AUTH_JWT_SECRET")
        if let secret, secret.utf8.count < 32 {
            throw ConfigurationError(description: "environment variable AUTH_JWT_SECRET must be at least 32 bytes")
        }
        let keys = try environment.optional("AUTH_JWKS_FILE").map(JWKSLoader.load(path:)) ?? [:]
        guard secret != nil || !keys.isEmpty else {
            throw ConfigurationError(
                description: "missing required environment variable AUTH_JWT_SECRET (or AUTH_JWKS_FILE)")
        }
        verifier = TokenVerifier(
            sharedSecret: secret.map { Array($0.utf8) }, keys: keys,
            issuer: environment.optional("AUTH_ISSUER"), audience: environment.optional("AUTH_AUDIENCE"),
            leeway: 60, maximumLifetime: Int64(try Self.maximumTokenLifetime(environment)))
    }

    /// `AUTH_MAX_TOKEN_LIFETIME_SECONDS` (default one day): tokens whose `exp − iat` is longer are refused.
    static func maximumTokenLifetime(_ environment: Environment) throws -> Int {
        try environment.integer("AUTH_MAX_TOKEN_LIFETIME_SECONDS", default: 86_400, in: 60...31_536_000)
    }
}

/// Resolves the caller of a request and enforces the CSRF rule for cookie sessions.
struct AuthResolver {
    let configuration: AuthConfiguration

    /// The verified caller (`401 unauthenticated` otherwise). Role and CSRF checks come after,
    /// in `authorize`, so that a refused attempt is audited with the caller's identity.
    func authenticate(_ request: Request, on connection: some SQLExecutor) throws -> Identity {
        let token: String
        let viaCookie: Bool
        if let authorization = request.header("authorization") {
            guard authorization.count > 7, authorization.prefix(7).lowercased() == "bearer " else {
                throw Self.unauthenticated("the Authorization header must be `Bearer <token>`")
            }
            token = String(authorization.dropFirst(7)).trimmingCharacters(in: .whitespaces)
            viaCookie = false
        } else if let cookie = Self.cookies(request.header("cookie"))[configuration.accessCookie], !cookie.isEmpty {
            token = cookie
            viaCookie = true
        } else {
            throw Self.unauthenticated("authentication is required")
        }

        let claims: TokenClaims
        do {
            claims = try configuration.verifier.verify(token, now: Int64(Date().timeIntervalSince1970))
        } catch {
            throw Self.unauthenticated(error.rawValue)
        }
        let lookup: SQLQuery = """
            SELECT id, roles, disabled_at IS NOT NULL AS disabled FROM profiles WHERE user_id = \(claims.subject)
            """
        // Every signed-in request asks this: planned once per connection.
        let row = try connection.query(lookup.prepared(as: "profile_of_subject")).first
        guard let row else {
            throw Self.unauthenticated("the token's subject has no profile")
        }
        let profileID: UUID = try row.decode("id")
        let roles: Set<Role> = try row.decode("roles")
        guard try !row.decode("disabled", as: Bool.self) else {
            throw APIError(.profileDisabled)
        }
        return Identity(profileID: profileID, userID: claims.subject, roles: roles, viaCookie: viaCookie)
    }

    /// CSRF (double submit) for cookie sessions' unsafe methods, then the route's roles:
    /// `403 csrf_failed` / `403 forbidden`.
    func authorize(_ identity: Identity, request: Request, roles: Set<Role>) throws {
        if identity.viaCookie && !["GET", "HEAD", "OPTIONS"].contains(request.method) {
            let cookies = Self.cookies(request.header("cookie"))
            guard let header = request.header("x-csrf-token"), let cookie = cookies[configuration.csrfCookie],
                !cookie.isEmpty, Digest.constantTimeEqual(Array(header.utf8), Array(cookie.utf8))
            else {
                throw APIError(.csrfFailed)
            }
        }
        guard !roles.isDisjoint(with: identity.roles) else {
            throw APIError(
                .forbidden, message: "This action is not available to the \(identity.rolesDescription) role.")
        }
    }

    static func unauthenticated(_ reason: String) -> APIError {
        APIError(
            .unauthenticated, message: "Unauthenticated: \(reason).",
            headers: [("WWW-Authenticate", "Bearer")])
    }

    /// Parses a `Cookie` header (`a=1; b=2`); the first occurrence of a name wins.
    static func cookies(_ header: String?) -> [String: String] {
        var result: [String: String] = [:]
        for pair in (header ?? "").split(separator: ";") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let name = parts[0].trimmingCharacters(in: .whitespaces)
            if result[name] == nil { result[name] = parts[1].trimmingCharacters(in: .whitespaces) }
        }
        return result
    }
}
