import Foundation
import Testing

@testable import PaymentsCore

/// Issue 18, item 6: secrets from files (`X_FILE`) and the shutdown timeout against the Stripe deadline.
@Suite struct OperationsSettingsTests {
    private let minimal = [
        "DATABASE_URL": "postgresql:///x", "FCGI_SOCKET": "/tmp/x.sock",
        "AUTH_JWT_SECRET": String(repeating: "s", count: 32), "STRIPE_SECRET_KEY": "sk_test_unit",
        "STRIPE_WEBHOOK_SECRETS": "whsec_test_unit_platform",
        "STRIPE_CONNECT_WEBHOOK_SECRETS": "whsec_test_unit_connect",
        "PUBLIC_BASE_URL": "https://payments.example.test", "APP_RETURN_URL": "https://market.example.test/done",
        "MARKETPLACE_WEBHOOK_SECRET": "whsec_test_unit_marketplace", "SMTP_URL": "smtp://user:pass@127.0.0.1:2525",
    ]

    private func file(_ contents: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("secret-\(UUID().uuidString)").path
        try contents.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    private func failure(_ values: [String: String]) -> String? {
        do {
            _ = try ServerConfiguration(environment: try Environment(resolvingSecretFiles: values))
            return nil
        } catch {
            return (error as? ConfigurationError)?.description ?? "\(error)"
        }
    }

    @Test func everySecretMayComeFromAFileWithItsWhitespaceTrimmed() throws {
        var values = minimal
        for name in Environment.secretNames {
            let secret = try #require(values[name])
            values[name] = nil
            values[name + "_FILE"] = try file("  \(secret)\n")
        }
        let environment = try Environment(resolvingSecretFiles: values)
        for name in Environment.secretNames {
            #expect(try environment.required(name) == minimal[name])
        }
        let configuration = try ServerConfiguration(environment: environment)
        #expect(configuration.stripe.secretKey == "sk_test_unit")
        #expect(configuration.databaseURL == "postgresql:///x")
    }

    @Test func bothSetAMissingFileAndAnEmptyFileAreConfigurationErrors() throws {
        let both = failure(minimal.merging(["STRIPE_SECRET_KEY_FILE": try file("sk_test_other")]) { $1 })
        #expect(both?.contains("STRIPE_SECRET_KEY and STRIPE_SECRET_KEY_FILE are both set") == true)
        var values = minimal
        values["AUTH_JWT_SECRET"] = nil
        values["AUTH_JWT_SECRET_FILE"] = "/nonexistent/jwt-secret"
        #expect(failure(values)?.contains("AUTH_JWT_SECRET_FILE") == true)
        values["AUTH_JWT_SECRET_FILE"] = try file(" \n")
        #expect(failure(values)?.contains("AUTH_JWT_SECRET_FILE names an empty file") == true)
        // A file's contents never appear in a message.
        values["STRIPE_SECRET_KEY"] = nil
        values["STRIPE_SECRET_KEY_FILE"] = try file("sk_test_must_not_leak")
        values["AUTH_JWT_SECRET_FILE"] = try file(String(repeating: "j", count: 32))
        values["STRIPE_DEADLINE_SECONDS"] = "30"
        values["SHUTDOWN_TIMEOUT_SECONDS"] = "20"
        #expect(failure(values)?.contains("sk_test_must_not_leak") == false)
    }

    @Test func theShutdownTimeoutDefaultsAboveTheStripeDeadlineAndMustStayAbove() throws {
        let defaults = try ServerConfiguration(environment: Environment(minimal))
        #expect(defaults.shutdownTimeoutSeconds == 30)  // STRIPE_DEADLINE_SECONDS (20) + 10
        let longer = try ServerConfiguration(
            environment: Environment(minimal.merging(["STRIPE_DEADLINE_SECONDS": "60"]) { $1 }))
        #expect(longer.shutdownTimeoutSeconds == 70)
        let refused = failure(
            minimal.merging(["STRIPE_DEADLINE_SECONDS": "20", "SHUTDOWN_TIMEOUT_SECONDS": "20"]) { $1 })
        #expect(refused?.contains("SHUTDOWN_TIMEOUT_SECONDS must be above STRIPE_DEADLINE_SECONDS") == true)
        #expect(failure(minimal.merging(["SHUTDOWN_TIMEOUT_SECONDS": "21"]) { $1 }) == nil)
    }
}
