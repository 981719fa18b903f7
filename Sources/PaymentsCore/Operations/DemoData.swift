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
                    INSERT INTO profiles (id, user_id, roles, email, display_name)
                    VALUES (\(id)::uuid, \(user), ARRAY[\(role)], \(email), \(user))
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

    /// `payments seed-demo --fresh-listings`: new listings of the demo seller for one run of the
    /// demo story (four items and a job of two milestones), as JSON `{items, job, milestones}`.
    /// Refused with a live Stripe key.
    public static func freshListings(environment: Environment) throws -> String {
        try LiveModeGuard.refuseLiveKey(for: "seed-demo", environment: environment)
        let connection = Connection(connectionString: try environment.required("DATABASE_URL"))
        _ = try seed(on: connection)
        return try connection.withTransaction { connection -> String in
            let sellerID = "00000000-0000-4000-8000-000000000002"
            var items: [JSONValue] = []
            for (title, price) in [
                ("Demo lamp", 4_200), ("Demo chair", 6_500), ("Demo vase (declined card)", 1_900),
                ("Demo clock (3-D Secure)", 3_300),
            ] {
                let id = UUID().uuidString.lowercased()
                try connection.query(
                    """
                    INSERT INTO listings (id, seller_id, title, kind, price_cents, currency)
                    VALUES (\(id)::uuid, \(sellerID)::uuid, \(title), 'item', \(price), 'usd')
                    """)
                items.append(.string(id))
            }
            let job = UUID().uuidString.lowercased()
            try connection.query(
                """
                INSERT INTO listings (id, seller_id, title, kind, price_cents, currency)
                VALUES (\(job)::uuid, \(sellerID)::uuid, 'Demo logo design', 'job', 15000, 'usd')
                """)
            var milestones: [JSONValue] = []
            for (position, title, amount) in [(1, "Sketches", 5_000), (2, "Final files", 10_000)] {
                let id = UUID().uuidString.lowercased()
                try connection.query(
                    """
                    INSERT INTO milestones (id, listing_id, position, title, amount_cents)
                    VALUES (\(id)::uuid, \(job)::uuid, \(position), \(title), \(amount))
                    """)
                milestones.append(.string(id))
            }
            let story: JSONValue = ["items": .array(items), "job": .string(job), "milestones": .array(milestones)]
            return String(decoding: JSONCoding.encode(story), as: UTF8.self)
        }
    }
}
