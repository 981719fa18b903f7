import Foundation
import Testing

@testable import PaymentsCore

/// `ErrorCode` is the one catalogue of the app's error codes; the documents must agree with it.
@Suite struct ErrorCatalogueTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// `(status, code, produced by)` of every row of docs/errors.md's table.
    static func documentedRows() throws -> [(status: Int, code: String, producer: String)] {
        let text = try String(contentsOf: repository.appendingPathComponent("docs/errors.md"), encoding: .utf8)
        return text.split(separator: "\n").compactMap { line in
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).map {
                $0.trimmingCharacters(in: .whitespaces)
            }
            guard cells.count > 4, let status = Int(cells[1]), cells[2].hasPrefix("`"), cells[2].hasSuffix("`") else {
                return nil
            }
            return (status, String(cells[2].dropFirst().dropLast()), cells[3])
        }
    }

    @Test func errorsMarkdownListsExactlyTheCatalogue() throws {
        let rows = try Self.documentedRows()
        let documented = Dictionary(
            rows.filter { $0.producer.hasPrefix("app") }.map { ($0.code, $0.status) },
            uniquingKeysWith: { first, _ in first })
        let catalogue = Dictionary(uniqueKeysWithValues: ErrorCode.allCases.map { ($0.rawValue, $0.status) })
        #expect(Set(documented.keys).subtracting(catalogue.keys).isEmpty, "documented but not in ErrorCode")
        #expect(Set(catalogue.keys).subtracting(documented.keys).isEmpty, "in ErrorCode but not in docs/errors.md")
        for (code, status) in catalogue {
            #expect(
                documented[code] == status, "\(code): docs/errors.md says \(documented[code] ?? 0), ErrorCode \(status)"
            )
        }
    }

    @Test func openAPIErrorSchemaListsEveryDocumentedCode() throws {
        let spec = try String(contentsOf: Self.repository.appendingPathComponent("docs/openapi.yaml"), encoding: .utf8)
        guard let schema = spec.range(of: "    Error:\n"), let end = spec.range(of: "    Payment:\n") else {
            Issue.record("docs/openapi.yaml has no Error schema")
            return
        }
        // The code's enum: the list items after `enum:` in the Error schema.
        let lines = spec[schema.upperBound..<end.lowerBound].split(separator: "\n").map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        let items = lines.drop { $0 != "enum:" }.dropFirst().prefix { $0.hasPrefix("- ") }
        let listed = Set(items.map { String($0.dropFirst(2)) })
        #expect(listed == Set(try Self.documentedRows().map(\.code)))
    }

    @Test func everyCodeHasAClientErrorOrServerErrorStatusAndAMessage() {
        for code in ErrorCode.allCases {
            #expect((400...599).contains(code.status), "\(code)")
            #expect(!code.defaultMessage.isEmpty && code.defaultMessage.hasSuffix("."), "\(code)")
            #expect(APIError(code).code == code.rawValue && APIError(code).status == code.status)
        }
    }
}
