/// Development-only commands (`token`, `seed-demo`) refuse to run against a live Stripe account:
/// a live key means a production deployment, where demo rows and hand-minted tokens do harm.
public enum LiveModeGuard {
    /// Whether a Stripe key moves real money (`sk_live_…`, or a restricted `rk_live_…` key).
    public static func isLive(_ key: String) -> Bool {
        key.hasPrefix("sk_live_") || key.hasPrefix("rk_live_")
    }

    /// Throws, naming `command` and never the key, when `STRIPE_SECRET_KEY` is a live key.
    public static func refuseLiveKey(for command: String, environment: Environment) throws {
        guard let key = environment.optional("STRIPE_SECRET_KEY"), isLive(key) else { return }
        throw OperatorFailure(
            "payments \(command) refuses to run with a live STRIPE_SECRET_KEY (sk_live_…, rk_live_…): "
                + "it is for development and test stacks only")
    }
}
