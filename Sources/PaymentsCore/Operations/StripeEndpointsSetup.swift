import Cryptography
import Stripe

/// `payments stripe endpoints setup`: creates the platform and Connect webhook endpoints at
/// Stripe, or brings existing ones in line with `StripeEndpointSpec` (Laravel Cashier's
/// `cashier:webhook`, for both endpoints). Signing secrets are printed once, on creation: Stripe
/// returns them only then.
public enum StripeEndpointsSetup {
    /// Creates or updates both endpoints; false when one differs in a way Stripe cannot change
    /// (`api_version`, `connect`: delete that endpoint at Stripe and run setup again).
    public static func run(environment: Environment) throws -> Bool {
        let configuration = try ServerConfiguration.stripeConfiguration(environment)
        let specs = StripeEndpointSpec.all(
            publicBaseURL: try StripeEndpointSpec.publicBaseURL(environment), apiVersion: configuration.apiVersion)
        StripeClient.initializeGlobalState()
        let stripe = try StripeClient(configuration: configuration)
        let existing = try stripe.listWebhookEndpoints()
        var settled = true
        for spec in specs {
            if let found = spec.find(in: existing) {
                settled = try update(found, to: spec, stripe: stripe) && settled
            } else {
                try create(spec, stripe: stripe)
            }
        }
        return settled
    }

    private static func create(_ spec: StripeEndpointSpec, stripe: StripeClient) throws {
        // One key per run: a retry within the run reuses it, while a setup after the endpoint was
        // deleted at Stripe must not get the old creation replayed from Stripe's 24 h key store.
        let run = Hex.encode(Digest.randomBytes(8))
        let created = try stripe.createWebhookEndpoint(
            spec.creation, idempotencyKey: StripeKeys.createWebhookEndpoint(spec.endpoint, run: run))
        print("\(spec.name): created \(created.id) (\(spec.url), api_version \(spec.apiVersion))")
        let variable = spec.endpoint == .connect ? "STRIPE_CONNECT_WEBHOOK_SECRETS" : "STRIPE_WEBHOOK_SECRETS"
        if let secret = created.secret {
            print("\(spec.name): signing secret \(secret) (shown once: add it to \(variable))")
        } else {
            print("\(spec.name): Stripe returned no signing secret (a repeated creation): reveal it in the Dashboard")
        }
    }

    private static func update(_ found: WebhookEndpointObject, to spec: StripeEndpointSpec, stripe: StripeClient)
        throws -> Bool
    {
        let parameters = spec.updates(for: found)
        if !parameters.isEmpty {
            // Per run too: the same repair may be needed again after the endpoint drifted back.
            let run = Hex.encode(Digest.randomBytes(8))
            _ = try stripe.updateWebhookEndpoint(
                found.id, parameters, idempotencyKey: StripeKeys.updateWebhookEndpoint(found.id, run: run))
            print("\(spec.name): updated \(found.id) (\(parameters.map(\.0).joined(separator: ", ")))")
        } else {
            print("\(spec.name): \(found.id) is up to date")
        }
        let fixed = spec.fixedDifferences(from: found)
        for difference in fixed {
            print(
                "\(spec.name) \(found.id): \(difference); Stripe cannot change this: delete the endpoint at Stripe "
                    + "and run setup again (it gets a new signing secret)")
        }
        return fixed.isEmpty
    }
}
