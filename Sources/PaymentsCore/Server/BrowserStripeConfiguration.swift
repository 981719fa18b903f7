import Foundation
import Stripe

/// What a buyer's browser needs to confirm a card, served by `GET /api/config`: the publishable
/// key, whether the backend talks to Stripe or to the project's fake, and for the fake the
/// origin the browser sends its confirmation to. Nothing here is secret.
public struct BrowserStripeConfiguration: Sendable {
    /// Which Stripe the backend talks to.
    public enum Backend: String, Sendable, Encodable {
        /// `https://api.stripe.com`: the pages load Stripe.js and the Payment Element.
        case stripe
        /// Any other `STRIPE_API_BASE` (the project's fake): the pages confirm through its API.
        case fake
    }

    /// `pk_test_…` / `pk_live_…` (`STRIPE_PUBLISHABLE_KEY`); nil when unset: no card form.
    public var publishableKey: String?
    /// Stripe or the fake, read from `STRIPE_API_BASE`.
    public var backend: Backend
    /// The fake's origin (`scheme://host[:port]` of `STRIPE_API_BASE`, no path or credentials);
    /// nil with Stripe, whose browser side is Stripe.js.
    public var fakeOrigin: String?

    /// Reads `STRIPE_PUBLISHABLE_KEY`; a key of the other mode than the secret key (a live
    /// publishable key with a test secret key, or the reverse) stops start-up.
    public init(environment: Environment, stripe: StripeConfiguration) throws {
        let key = environment.optional("STRIPE_PUBLISHABLE_KEY")
        if let key {
            guard (key.hasPrefix("pk_test_") || key.hasPrefix("pk_live_")) && key.count > 8 && key.count <= 255,
                key.utf8.allSatisfy({ $0.isASCIIAlphanumeric || $0 == UInt8(ascii: "_") })
            else {
                throw ConfigurationError(
                    description:
                        "environment variable STRIPE_PUBLISHABLE_KEY must be a publishable key (pk_test_… or pk_live_…)"
                )
            }
            guard key.hasPrefix("pk_live_") == stripe.isLiveMode else {
                throw ConfigurationError(
                    description: "environment variable STRIPE_PUBLISHABLE_KEY must be of the same mode (test or live) "
                        + "as STRIPE_SECRET_KEY")
            }
        }
        publishableKey = key
        let components = URLComponents(string: stripe.apiBase)
        if components?.host == "api.stripe.com" {
            backend = .stripe
            fakeOrigin = nil
        } else {
            backend = .fake
            fakeOrigin = components.flatMap(Self.origin)
        }
    }

    /// `scheme://host[:port]` of a URL, or nil when it has no scheme or host.
    static func origin(of components: URLComponents) -> String? {
        guard let scheme = components.scheme, let host = components.host, !host.isEmpty else { return nil }
        return components.port.map { "\(scheme)://\(host):\($0)" } ?? "\(scheme)://\(host)"
    }
}
