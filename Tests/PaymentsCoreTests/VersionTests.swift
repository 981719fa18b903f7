import Foundation
import Stripe
import Testing

@testable import PaymentsCore

/// One version string: the binary's, the User-Agent sent to Stripe, docs/openapi.yaml's
/// `info.version`, and the newest release in CHANGELOG.md.
@Suite struct VersionTests {
    @Test func theVersionIsSemantic() {
        let parts = PaymentsVersion.current.split(separator: ".")
        #expect(parts.count == 3 && parts.allSatisfy { Int($0) != nil })
    }

    @Test func openAPISharesTheVersion() throws {
        let spec = try String(
            contentsOf: ErrorCatalogueTests.repository.appendingPathComponent("docs/openapi.yaml"), encoding: .utf8)
        let lines = spec.split(separator: "\n")
        let info = try #require(lines.firstIndex(of: "info:"))
        let version = lines[(info + 1)...].prefix { $0.hasPrefix(" ") }.first { $0.hasPrefix("  version:") }
        #expect(version?.dropFirst("  version:".count).trimmingCharacters(in: .whitespaces) == PaymentsVersion.current)
    }

    @Test func theStripeUserAgentCarriesTheVersion() throws {
        let configuration = try ServerConfiguration.stripeConfiguration(
            Environment(["STRIPE_SECRET_KEY": "sk_test_version_0000"]))
        #expect(configuration.userAgent == "marketplace-payments/\(PaymentsVersion.current) (Swift; libcurl)")
    }

    @Test func theChangelogsNewestReleaseIsTheVersion() throws {
        let changelog = try String(
            contentsOf: ErrorCatalogueTests.repository.appendingPathComponent("CHANGELOG.md"), encoding: .utf8)
        let releases = changelog.split(separator: "\n").filter {
            $0.hasPrefix("## [") && !$0.hasPrefix("## [Unreleased]")
        }
        let newest = try #require(releases.first)
        #expect(newest.hasPrefix("## [\(PaymentsVersion.current)] — "), "\(newest)")
    }
}
