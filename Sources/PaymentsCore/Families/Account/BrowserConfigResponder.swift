/// `GET /api/config`: what the browser pages (nginx/static/buyer, seller, admin) need to talk
/// to Stripe. Public and the same for everyone; it never carries the secret key.
struct BrowserConfigResponder {
    func addRoutes(to router: inout Router) {
        router.add("GET", "/api/config", config)
    }

    private func config(_ request: Request, _ context: WorkerContext) throws -> Response {
        let stripe = context.shared.configuration.browserStripe
        struct StripeView: Encodable {
            let backend: BrowserStripeConfiguration.Backend
            @Nullable var publishable_key: String?
            @Nullable var fake_api_base: String?
        }
        struct Config: Encodable {
            let stripe: StripeView
        }
        return .json(
            Config(
                stripe: StripeView(
                    backend: stripe.backend, publishable_key: stripe.publishableKey, fake_api_base: stripe.fakeOrigin)))
    }
}
