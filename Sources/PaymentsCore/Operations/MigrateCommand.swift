import Postgres

/// `payments migrate`: applies the pending files as the database owner, then grants the app's
/// role its DML-only privileges (`DATABASE_APP_ROLE`, when set).
public enum MigrateCommand {
    /// Runs the migrations; returns the lines to print.
    public static func run(environment: Environment) throws -> [String] {
        let connection = Connection(connectionString: try environment.required("DATABASE_URL"), statementTimeout: .zero)
        let migrations = try Migration.load(from: environment.optional("MIGRATIONS_DIR") ?? "sql")
        let applied = try Migrator(migrations: migrations).migrate(on: connection)
        var lines = [
            applied.isEmpty
                ? "migrations: up to date (\(migrations.count) applied)"
                : "migrations: applied \(applied.joined(separator: ", "))"
        ]
        if let role = environment.optional("DATABASE_APP_ROLE") {
            try AppRoleGrants.apply(to: role, on: connection)
            lines.append("migrations: privileges of \(role) granted (DML; payment_audit_logs insert-only)")
        }
        return lines
    }
}
