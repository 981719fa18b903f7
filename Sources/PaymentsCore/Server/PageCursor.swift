import Foundation
import Postgres

/// An opaque keyset cursor: the last row's sort key (for most lists its `created_at` in
/// microseconds since 1970) and its id, which breaks ties. Lists are newest first.
struct PageCursor {
    /// What a list's ids are: the cursor checks an id before it reaches SQL.
    enum IDKind {
        case uuid
        /// Stripe's ids (`evt_…`): letters, digits and `_`.
        case stripe
        case integer

        func accepts(_ text: String) -> Bool {
            switch self {
            case .uuid: UUID(uuidString: text) != nil
            case .stripe:
                (1...255).contains(text.utf8.count)
                    && text.utf8.allSatisfy { $0.isASCIIAlphanumeric || $0 == UInt8(ascii: "_") }
            case .integer: Int64(text) != nil
            }
        }

        var sqlType: String {
            switch self {
            case .uuid: "uuid"
            case .stripe: "text"
            case .integer: "bigint"
            }
        }
    }

    let createdAt: Int64
    let id: String

    init(createdAt: Int64, id: String) {
        self.createdAt = createdAt
        self.id = id
    }

    init(encoded: String, ids: IDKind = .uuid) throws {
        let invalid = APIError.invalidField("cursor", "is not a cursor this API issued")
        guard encoded.utf8.count <= 512, let bytes = Base64URL.decode(Substring(encoded)),
            let text = String(bytes: bytes, encoding: .utf8)
        else {
            throw invalid
        }
        let parts = text.split(separator: "|", maxSplits: 1).map(String.init)
        guard parts.count == 2, ids.accepts(parts[1]), let micros = Int64(parts[0]), micros >= 0 else {
            throw invalid
        }
        createdAt = micros
        id = parts[1]
    }

    /// The `cursor` query parameter, if any.
    static func from(_ request: Request, ids: IDKind = .uuid) throws -> PageCursor? {
        try request.query["cursor"].map { try PageCursor(encoded: $0, ids: ids) }
    }

    var encoded: String { Base64URL.encode(Array("\(createdAt)|\(id)".utf8)) }

    /// The sort key of table alias `alias` (our own constant): `column` (a timestamp) in
    /// microseconds, compared exactly (a timestamp round-tripped through text could skip or
    /// repeat a row).
    static func sortKey(_ alias: String, column: String = "created_at") -> SQLQuery {
        SQLQuery(unsafeSQL: "(extract(epoch FROM \(alias).\(column)) * 1000000)::bigint")
    }

    /// `true` without a cursor; otherwise the rows after it in the order of `sortKey` and `alias.id`.
    static func after(_ cursor: PageCursor?, alias: String, sortKey: SQLQuery? = nil, ids: IDKind = .uuid) -> SQLQuery {
        guard let cursor else { return "true" }
        let key = sortKey ?? Self.sortKey(alias)
        let id = SQLQuery(unsafeSQL: alias + ".id")
        let cast = SQLQuery(unsafeSQL: ids.sqlType)
        return "(\(sql: key), \(sql: id)) < (\(cursor.createdAt), \(cursor.id)::\(sql: cast))"
    }

    /// Splits `limit + 1` fetched rows (each with `sort_key` and `id`) into the page and the
    /// cursor of the next one, nil on the last page.
    static func page(_ rows: [Row], limit: Int) throws -> (ArraySlice<Row>, String?) {
        let page = rows.prefix(limit)
        guard rows.count > limit, let last = page.last else { return (page, nil) }
        return (page, PageCursor(createdAt: try last.decode("sort_key"), id: try last.decode("id")).encoded)
    }
}

/// One page of a list: its items, and the cursor of the next page (null on the last).
struct Page<Item: Encodable>: Encodable {
    let data: [Item]
    @Nullable var next_cursor: String?
}
