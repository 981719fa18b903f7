import Foundation
import Testing

@testable import PaymentsCore

@Suite struct MigrationTests {
    private func makeDirectory(_ files: [String: String]) throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("migrations-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for (name, text) in files {
            try text.write(toFile: directory + "/" + name, atomically: true, encoding: .utf8)
        }
        return directory
    }

    @Test func loadsNumberedFilesInOrderWithChecksums() throws {
        let directory = try makeDirectory([
            "0002_more.sql": "SELECT 2;", "0001_first.sql": "SELECT 1;", "README.md": "x", "01_bad.sql": "x",
        ])
        let migrations = try Migration.load(from: directory)
        #expect(migrations.map(\.version) == ["0001_first", "0002_more"])
        // sha256("SELECT 1;")
        #expect(migrations[0].checksum == "17db4fd369edb9244b9f91d9aeed145c3d04ad8ba6e95d06247f07a63527d11a")
    }

    @Test func pendingListsUnappliedFiles() throws {
        let migrations = try Migration.load(from: try makeDirectory(["0001_a.sql": "A", "0002_b.sql": "B"]))
        let pending = try Migrator(migrations: migrations).pending(applied: ["0001_a": migrations[0].checksum])
        #expect(pending.map(\.version) == ["0002_b"])
    }

    @Test func anEditedAppliedFileIsRefused() throws {
        let migrations = try Migration.load(from: try makeDirectory(["0001_a.sql": "A"]))
        #expect(throws: MigrationError.self) {
            try Migrator(migrations: migrations).pending(applied: ["0001_a": String(repeating: "0", count: 64)])
        }
    }

    @Test func anAppliedFileThatVanishedIsRefused() throws {
        let migrations = try Migration.load(from: try makeDirectory(["0001_a.sql": "A"]))
        #expect(throws: MigrationError.self) {
            try Migrator(migrations: migrations).pending(applied: ["0001_a": migrations[0].checksum, "0002_gone": "x"])
        }
    }
}
