import Stripe

/// Development-only commands (`token`, `seed-demo`) refuse to run against a live Stripe account:
/// a live key means a production deployment, where demo rows and hand-minted tokens do harm.
public enum LiveModeGuard {
    /// Throws, naming `command` and never the key, when `STRIPE_SECRET_KEY` is a live key
    /// (`StripeConfiguration.isLiveMode`: `sk_live_…`, `rk_live_…`).
    public static func refuseLiveKey(for command: String, environment: Environment) throws {
        guard let key = environment.optional("STRIPE_SECRET_KEY"), StripeConfiguration(secretKey: key).isLiveMode
        else { return }
        throw OperatorFailure(
            "payments \(command) refuses to run with a live STRIPE_SECRET_KEY (sk_live_…, rk_live_…): "
                + "it is for development and test stacks only")
    }
}
