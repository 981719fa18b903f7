import Postgres

/// The connected accounts the platform may still act for.
enum ConnectedAccounts {
    /// Every seller's Express account, except those that revoked the platform's access
    /// (`account.application.deauthorized`): Stripe refuses calls made for them.
    static func active(on connection: some SQLExecutor) throws -> [String] {
        try connection.query(
            """
            SELECT stripe_account_id FROM profiles
            WHERE stripe_account_id IS NOT NULL AND disabled_reason IS DISTINCT FROM 'application_deauthorized'
            ORDER BY stripe_account_id
            """
        ).rows.map { try $0.decode("stripe_account_id", as: String.self) }
    }
}
