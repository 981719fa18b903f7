import ArgumentParser
import PaymentsCore

/// `payments migrate`.
struct Migrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply pending migrations from MIGRATIONS_DIR (default: sql) as the database owner.",
        discussion: """
            Then, when DATABASE_APP_ROLE is set, grant that role its DML-only privileges \
            (docs/security.md, "Database roles").
            """)

    func run() throws {
        try operate {
            for line in try MigrateCommand.run(environment: processEnvironment) { print(line) }
            return true
        }
    }
}
