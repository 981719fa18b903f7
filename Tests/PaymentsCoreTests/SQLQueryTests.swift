import Foundation
import Postgres
import Testing

@Suite struct SQLQueryTests {
    @Test func interpolationBecomesNumberedParameters() {
        let user = "x'; DROP TABLE profiles; --"
        let limit = 10
        let missing: String? = nil
        let query: SQLQuery = "SELECT * FROM profiles WHERE user_id = \(user) AND n < \(limit) OR email = \(missing)"
        #expect(query.sql == "SELECT * FROM profiles WHERE user_id = $1 AND n < $2 OR email = $3")
        #expect(query.binds == [.text(user), .text("10"), nil])
    }

    @Test func literalQueriesHaveNoParameters() {
        let query: SQLQuery = "SELECT 1"
        #expect(query.sql == "SELECT 1")
        #expect(query.binds.isEmpty)
    }

    @Test func valuesUsePostgresTextFormsAndBytesGoBinary() {
        let id = UUID(uuidString: "6F9619FF-8B86-D011-B42D-00C04FC964FF")!
        let query: SQLQuery = "\(id) \(true) \(ByteA([0x00, 0xff, 0x0d]))"
        #expect(
            query.binds == [.text("6f9619ff-8b86-d011-b42d-00c04fc964ff"), .text("true"), .binary([0x00, 0xff, 0x0d])])
    }
}

@Suite struct SQLFragmentTests {
    @Test func fragmentsAreRenumberedAfterTheOuterParameters() {
        let inner: SQLQuery = "f(\(7), \("x"))"
        let outer: SQLQuery = "SELECT \("a") FROM \(sql: inner) WHERE y = \(true)"
        #expect(outer.sql == "SELECT $1 FROM f($2, $3) WHERE y = $4")
        #expect(outer.binds == [.text("a"), .text("7"), .text("x"), .text("true")])
    }

    @Test func fixedFragmentsSpliceAsText() {
        let clause: SQLQuery = "FOR UPDATE"
        let query: SQLQuery = "SELECT 1 FROM t WHERE id = \(3) \(sql: clause)"
        #expect(query.sql == "SELECT 1 FROM t WHERE id = $1 FOR UPDATE")
    }
}
