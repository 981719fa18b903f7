import Cryptography
import Foundation
import Postgres

/// One numbered schema file from `sql/` (`0001_initial.sql` → version `0001_initial`).
public struct Migration: Sendable, Equatable {
    /// The file name without `.sql`; versions sort in application order.
    public let version: String
    /// The SQL text.
    public let sql: String
    /// SHA-256 (hex) of the file's bytes; an applied file whose checksum changes is refused.
    public let checksum: String

    /// Loads every `NNNN_name.sql` file of `directory`, in order.
    public static func load(from directory: String) throws -> [Migration] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw ConfigurationError(description: "cannot read MIGRATIONS_DIR \(directory)")
        }
        return try names.filter(isMigrationFileName).sorted().map { name in
            guard let data = FileManager.default.contents(atPath: directory + "/" + name),
                let sql = String(data: data, encoding: .utf8)
            else {
                throw ConfigurationError(description: "cannot read migration file \(directory)/\(name) as UTF-8")
            }
            return Migration(
                version: String(name.dropLast(4)), sql: sql, checksum: Hex.encode(Digest.sha256(Array(data))))
        }
    }

    private static func isMigrationFileName(_ name: String) -> Bool {
        let utf8 = Array(name.utf8)
        return name.hasSuffix(".sql") && utf8.count > 9 && utf8.prefix(4).allSatisfy { (48...57).contains($0) }
            && utf8[4] == UInt8(ascii: "_")
    }
}

/// Why migrations cannot run or the schema is not current.
public struct MigrationError: Error, CustomStringConvertible {
    /// One line for the operator.
    public let description: String
}

/// Applies pending migrations, each in its own transaction, under an advisory lock so that two
/// `migrate` runs cannot interleave; refuses to touch a database whose applied files were edited.
public struct Migrator {
    /// The files this binary knows.
    public let migrations: [Migration]

    /// Creates a migrator for loaded files.
    public init(migrations: [Migration]) {
        self.migrations = migrations
    }

    /// The applied versions and checksums recorded in `schema_migrations` (empty before the first run).
    public static func applied(on connection: some SQLExecutor) throws -> [String: String] {
        let exists = try connection.query("SELECT to_regclass('public.schema_migrations') IS NOT NULL AS present")
        guard try exists.first?.decode("present", as: Bool.self) == true else { return [:] }
        var result: [String: String] = [:]
        for row in try connection.query("SELECT version, checksum FROM schema_migrations").rows {
            result[try row.decode("version")] = try row.decode("checksum")
        }
        return result
    }

    /// Checks applied files against the known ones; returns the pending migrations in order.
    public func pending(applied: [String: String]) throws -> [Migration] {
        let known = Dictionary(uniqueKeysWithValues: migrations.map { ($0.version, $0.checksum) })
        for (version, checksum) in applied.sorted(by: { $0.key < $1.key }) {
            guard let expected = known[version] else {
                throw MigrationError(
                    description: "migration \(version) is applied in the database but its file is missing")
            }
            guard expected == checksum else {
                throw MigrationError(
                    description:
                        "migration \(version) was edited after it was applied (checksum mismatch); add a new numbered file instead"
                )
            }
        }
        return migrations.filter { applied[$0.version] == nil }
    }

    /// Applies every pending migration; returns the versions applied (empty when up to date).
    public func migrate(on connection: some SQLExecutor) throws -> [String] {
        try connection.query(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version text PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now(),
                checksum text NOT NULL
            )
            """)
        try connection.query("SELECT pg_advisory_lock(727274)")
        defer { _ = try? connection.query("SELECT pg_advisory_unlock(727274)") }
        let pending = try pending(applied: try Self.applied(on: connection))
        for migration in pending {
            try connection.withTransaction { connection in
                try connection.query(SQLQuery(unsafeSQL: migration.sql))
                try connection.query(
                    "INSERT INTO schema_migrations (version, checksum) VALUES (\(migration.version), \(migration.checksum))"
                )
            }
        }
        return pending.map(\.version)
    }
}
