import Foundation
import Postgres

/// An opaque keyset cursor: the last row's creation time (microseconds since 1970) and id.
/// Lists are newest first, ordered by `created_at DESC, id DESC`.
struct PageCursor {
    let createdAt: Int64
    let id: String

    init(createdAt: Int64, id: String) {
        self.createdAt = createdAt
        self.id = id
    }

    init(encoded: String) throws {
        let invalid = APIError.invalidField("cursor", "is not a cursor this API issued")
        guard let bytes = Base64URL.decode(Substring(encoded)), let text = String(bytes: bytes, encoding: .utf8) else {
            throw invalid
        }
        let parts = text.split(separator: "|", maxSplits: 1).map(String.init)
        guard parts.count == 2, UUID(uuidString: parts[1]) != nil, let micros = Int64(parts[0]), micros >= 0 else {
            throw invalid
        }
        createdAt = micros
        id = parts[1]
    }

    var encoded: String { Base64URL.encode(Array("\(createdAt)|\(id)".utf8)) }

    /// The sort key of table alias `alias` (our own constant): `created_at` in microseconds,
    /// compared exactly (a timestamp round-tripped through text could skip or repeat a row).
    static func sortKey(_ alias: String) -> SQLQuery {
        SQLQuery(unsafeSQL: "(extract(epoch FROM \(alias).created_at) * 1000000)::bigint")
    }

    /// `true` without a cursor; otherwise the rows after it.
    static func after(_ cursor: PageCursor?, alias: String) -> SQLQuery {
        guard let cursor else { return "true" }
        return
            "(\(sql: sortKey(alias)), \(sql: SQLQuery(unsafeSQL: alias + ".id"))) < (\(cursor.createdAt), \(cursor.id)::uuid)"
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
