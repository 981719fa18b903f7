import Foundation

/// `payments token`: a development HS256 token signed with `AUTH_JWT_SECRET`.
public enum DevelopmentToken {
    /// The default lifetime in seconds.
    public static let defaultLifetime = 3600

    /// The longest lifetime accepted (`AUTH_MAX_TOKEN_LIFETIME_SECONDS`, which the server enforces too).
    public static func longestLifetime(environment: Environment) throws -> Int {
        try AuthConfiguration.maximumTokenLifetime(environment)
    }

    /// A token for `user` valid for `lifetime` seconds, with `iss`/`aud` when configured.
    public static func mint(user: String, lifetime: Int, environment: Environment) throws -> String {
        let secret = try environment.required("AUTH_JWT_SECRET")
        let now = Int64(Date().timeIntervalSince1970)
        var claims: [String: JSONValue] = [
            "sub": .string(user), "iat": .int(now), "exp": .int(now + Int64(lifetime)),
        ]
        if let issuer = environment.optional("AUTH_ISSUER") { claims["iss"] = .string(issuer) }
        if let audience = environment.optional("AUTH_AUDIENCE") { claims["aud"] = .string(audience) }
        return TokenVerifier.mintHS256(secret: Array(secret.utf8), claims: claims)
    }
}
