import Stripe

/// The service's one version string (semantic versioning; CHANGELOG.md says what each release
/// changed). `payments --version` prints it, every Stripe call's `User-Agent` carries it, and
/// docs/openapi.yaml's `info.version` must equal it (a unit test compares them).
public enum PaymentsVersion {
    /// This release.
    public static let current = "0.14.0"

    /// The `User-Agent` sent to Stripe: product, version, runtime.
    public static var stripeUserAgent: String { "marketplace-payments/\(current) (Swift; libcurl)" }

    /// What `payments --version` prints: ours and the Stripe API version we are pinned to.
    public static var description: String {
        "payments \(current) (Stripe API \(StripeConfiguration.pinnedAPIVersion))"
    }
}
