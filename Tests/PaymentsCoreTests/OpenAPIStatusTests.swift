import Foundation
import Testing

@testable import PaymentsCore

/// The status enums of docs/openapi.yaml are the code's: a consumer that switches over them sees
/// every state the API can return, and a new case in the code fails here until it is documented.
@Suite struct OpenAPIStatusTests {
    /// The items of the `enum:` list under `status:` in the schema `name` (a top-level schema of
    /// components, indented four spaces, as the file is written).
    static func statusEnum(ofSchema name: String) throws -> [String] {
        let spec = try String(
            contentsOf: ErrorCatalogueTests.repository.appendingPathComponent("docs/openapi.yaml"), encoding: .utf8)
        let lines = spec.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let start = lines.firstIndex(of: "    \(name):") else { return [] }
        let schema = lines[(start + 1)...].prefix { $0.hasPrefix("     ") || $0.isEmpty }
        let afterStatus = schema.drop { $0.trimmingCharacters(in: .whitespaces) != "status:" }.dropFirst()
        let status = afterStatus.prefix { $0.hasPrefix("          ") }.map { $0.trimmingCharacters(in: .whitespaces) }
        return Array(
            status.drop { $0 != "enum:" }.dropFirst().prefix { $0.hasPrefix("- ") }.map { String($0.dropFirst(2)) })
    }

    @Test func paymentStatusesAreTheCodes() throws {
        let cases = PaymentStatus.allCases.map(\.rawValue)
        #expect(try Self.statusEnum(ofSchema: "Payment") == cases)
        #expect(try Self.statusEnum(ofSchema: "CreatedIntent") == cases)
    }

    @Test func disputeStatusesAreTheCodes() throws {
        #expect(try Self.statusEnum(ofSchema: "Dispute") == DisputeStatus.allCases.map(\.rawValue))
    }
}
