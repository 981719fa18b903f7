import Foundation
import Postgres

/// `seed-demo`: a buyer, a seller, an admin, two listings and a job with three milestones, under
/// fixed ids so that running it again changes nothing.
public enum DemoData {
    static let buyer = "demo-buyer"
    static let seller = "demo-seller"
    static let admin = "demo-admin"

    /// `payments seed-demo`: refused with a live Stripe key; seeds the database of `DATABASE_URL`.
    public static func seed(environment: Environment) throws -> Int {
        try LiveModeGuard.refuseLiveKey(for: "seed-demo", environment: environment)
        return try seed(on: Connection(connectionString: try environment.required("DATABASE_URL")))
    }

    /// Inserts whatever is missing; returns the number of rows created.
    static func seed(on connection: some SQLExecutor) throws -> Int {
        try connection.withTransaction { connection in
            var created = 0
            let profiles: [(String, String, String, String)] = [
                ("00000000-0000-4000-8000-000000000001", buyer, "buyer", "buyer@example.test"),
                ("00000000-0000-4000-8000-000000000002", seller, "seller", "seller@example.test"),
                ("00000000-0000-4000-8000-000000000003", admin, "admin", "admin@example.test"),
            ]
            for (id, user, role, email) in profiles {
                created += try connection.query(
                    """
                    INSERT INTO profiles (id, user_id, role, email, display_name)
                    VALUES (\(id)::uuid, \(user), \(role), \(email), \(user))
                    ON CONFLICT DO NOTHING
                    """
                ).affectedRows
            }
            let sellerID = "00000000-0000-4000-8000-000000000002"
            let listings: [(String, String, String, Int)] = [
                ("00000000-0000-4000-8000-000000000101", "Vintage camera", "item", 12_500),
                ("00000000-0000-4000-8000-000000000102", "Handmade desk", "item", 48_000),
                ("00000000-0000-4000-8000-000000000103", "Website redesign", "job", 90_000),
            ]
            for (id, title, kind, price) in listings {
                created += try connection.query(
                    """
                    INSERT INTO listings (id, seller_id, title, kind, price_cents, currency)
                    VALUES (\(id)::uuid, \(sellerID)::uuid, \(title), \(kind), \(price), 'usd')
                    ON CONFLICT DO NOTHING
                    """
                ).affectedRows
            }
            let milestones: [(String, Int, String, Int)] = [
                ("00000000-0000-4000-8000-000000000201", 1, "Wireframes", 20_000),
                ("00000000-0000-4000-8000-000000000202", 2, "Visual design", 30_000),
                ("00000000-0000-4000-8000-000000000203", 3, "Build and launch", 40_000),
            ]
            for (id, position, title, amount) in milestones {
                created += try connection.query(
                    """
                    INSERT INTO milestones (id, listing_id, position, title, amount_cents)
                    VALUES (\(id)::uuid, '00000000-0000-4000-8000-000000000103'::uuid, \(position), \(title), \(amount))
                    ON CONFLICT DO NOTHING
                    """
                ).affectedRows
            }
            return created
        }
    }
}
