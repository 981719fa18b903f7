import Postgres

/// The privileges of the role the app serves as (`DATABASE_APP_ROLE`), granted by `payments
/// migrate` — which runs as the database owner — after the migrations, on every run.
///
/// Why here and not in a migration: the role's name is a deployment choice, and migrations are
/// checksummed, so a name written into one could never change; and granting after every run
/// also covers the tables later migrations add. The owner keeps DDL; the app role gets DML on
/// the tables, `USAGE` on sequences and `EXECUTE` on functions, reads `schema_migrations`, and
/// may only `INSERT` and `SELECT` audit rows. Not owning `payment_audit_logs`, it cannot disable
/// or drop the append-only trigger, and it has no `UPDATE`, `DELETE` or `TRUNCATE` there.
enum AppRoleGrants {
    /// Grants `role` exactly the privileges above (revoking any others it was given), in one
    /// transaction. Refuses a role that does not exist, is a superuser, or is (a member of) the
    /// owner, since any of those would bypass the restriction.
    static func apply(to role: String, on connection: some SQLExecutor) throws {
        let isAllowed: (Unicode.Scalar) -> Bool = { $0 == "_" || ("a"..."z").contains($0) || ("0"..."9").contains($0) }
        guard let first = role.unicodeScalars.first, !("0"..."9").contains(first), role.unicodeScalars.count <= 63,
            role.unicodeScalars.allSatisfy(isAllowed)
        else {
            throw MigrationError(description: "DATABASE_APP_ROLE must be a lower-case role name (letters, digits, _)")
        }
        guard
            let found = try connection.query(
                """
                SELECT r.rolsuper OR r.rolbypassrls AS privileged, pg_has_role(\(role), current_user, 'MEMBER') AS owner
                FROM pg_roles r WHERE r.rolname = \(role)
                """
            ).first
        else {
            throw MigrationError(
                description: "DATABASE_APP_ROLE \(role) does not exist: create it first (CREATE ROLE \(role) LOGIN)")
        }
        guard try !found.decode("privileged", as: Bool.self), try !found.decode("owner", as: Bool.self) else {
            throw MigrationError(
                description:
                    "DATABASE_APP_ROLE \(role) must be a plain role: not a superuser, not the owner or a member of it")
        }
        let quoted = "\"\(role)\""  // validated above: nothing to escape
        try connection.withTransaction { connection in
            for statement in [
                "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM \(quoted)",
                "REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM \(quoted)",
                // Before PostgreSQL 15 every role may create objects in `public`; only the owner should.
                "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
                "GRANT USAGE ON SCHEMA public TO \(quoted)",
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO \(quoted)",
                "REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM \(quoted)",
                "REVOKE UPDATE, DELETE ON payment_audit_logs FROM \(quoted)",
                "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO \(quoted)",
                "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO \(quoted)",
            ] {
                try connection.query(SQLQuery(unsafeSQL: statement))
            }
        }
    }
}
