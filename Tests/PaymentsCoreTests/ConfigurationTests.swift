import Testing

@testable import PaymentsCore

@Suite struct ConfigurationTests {
    private let minimal = [
        "DATABASE_URL": "postgresql:///x", "FCGI_SOCKET": "/tmp/x.sock",
        "AUTH_JWT_SECRET": String(repeating: "s", count: 32), "STRIPE_SECRET_KEY": "sk_test_unit",
        "STRIPE_WEBHOOK_SECRETS": "whsec_test_unit_platform",
        "STRIPE_CONNECT_WEBHOOK_SECRETS": "whsec_test_unit_connect",
        "PUBLIC_BASE_URL": "https://payments.example.test", "APP_RETURN_URL": "https://market.example.test/done",
    ]

    private func message(_ values: [String: String]) -> String? {
        do {
            _ = try ServerConfiguration(environment: Environment(values))
            return nil
        } catch {
            return (error as? ConfigurationError)?.description
        }
    }

    @Test func defaultsApply() throws {
        let configuration = try ServerConfiguration(environment: Environment(minimal))
        #expect(configuration.socketMode == 0o660)
        #expect(configuration.maximumBodyBytes == 1 << 20)
        #expect(configuration.workers >= 2)
        #expect(!configuration.diagnosticsEnabled)
    }

    @Test func missingRequiredVariablesAreNamed() {
        #expect(message(["FCGI_SOCKET": "/tmp/x"])?.contains("DATABASE_URL") == true)
        #expect(message(["DATABASE_URL": "x"])?.contains("FCGI_SOCKET") == true)
    }

    @Test func malformedValuesAreNamed() {
        #expect(message(minimal.merging(["WORKERS": "many"]) { $1 })?.contains("WORKERS") == true)
        #expect(message(minimal.merging(["WORKERS": "0"]) { $1 })?.contains("WORKERS") == true)
        #expect(message(minimal.merging(["FCGI_SOCKET_MODE": "999"]) { $1 })?.contains("FCGI_SOCKET_MODE") == true)
        #expect(
            message(minimal.merging(["DIAGNOSTICS_ENABLED": "maybe"]) { $1 })?.contains("DIAGNOSTICS_ENABLED") == true)
    }

    @Test func diagnosticsAreRefusedWithALiveKey() throws {
        for key in ["sk_live_unit_0000", "rk_live_unit_0000"] {
            let refused = message(minimal.merging(["DIAGNOSTICS_ENABLED": "1", "STRIPE_SECRET_KEY": key]) { $1 })
            #expect(refused?.contains("DIAGNOSTICS_ENABLED") == true)
            #expect(refused?.contains(key) == false)
            #expect(message(minimal.merging(["STRIPE_SECRET_KEY": key]) { $1 }) == nil)
        }
        let testKey = minimal.merging(["DIAGNOSTICS_ENABLED": "1", "STRIPE_SECRET_KEY": "rk_test_unit"]) { $1 }
        #expect(message(testKey) == nil)
        #expect(message(minimal.merging(["DIAGNOSTICS_ENABLED": "1"]) { $1 }) == nil)
    }

    @Test func browserStripeFollowsTheAPIBase() throws {
        let stripe = try ServerConfiguration(
            environment: Environment(minimal.merging(["STRIPE_PUBLISHABLE_KEY": "pk_test_unit"]) { $1 }))
        #expect(stripe.browserStripe.backend == .stripe)
        #expect(stripe.browserStripe.publishableKey == "pk_test_unit")
        #expect(stripe.browserStripe.fakeOrigin == nil)
        let fake = try ServerConfiguration(
            environment: Environment(
                minimal.merging(["STRIPE_API_BASE": "https://user:secret@127.0.0.1:12111/some/path"]) { $1 }))
        #expect(fake.browserStripe.backend == .fake)
        #expect(fake.browserStripe.fakeOrigin == "https://127.0.0.1:12111")
        #expect(fake.browserStripe.publishableKey == nil)
    }

    @Test func publishableKeyMustMatchTheSecretKeysMode() {
        #expect(
            message(minimal.merging(["STRIPE_PUBLISHABLE_KEY": "sk_test_unit"]) { $1 })?
                .contains("STRIPE_PUBLISHABLE_KEY") == true)
        #expect(message(minimal.merging(["STRIPE_PUBLISHABLE_KEY": "pk_test_a;b"]) { $1 }) != nil)
        let mixed = message(minimal.merging(["STRIPE_PUBLISHABLE_KEY": "pk_live_unit"]) { $1 })
        #expect(mixed?.contains("same mode") == true)
        #expect(mixed?.contains("pk_live_unit") == false)
        #expect(
            message(
                minimal.merging(["STRIPE_PUBLISHABLE_KEY": "pk_live_unit", "STRIPE_SECRET_KEY": "sk_live_unit"]) { $1 })
                == nil)
    }
}
