import Foundation
import Postgres

/// Audits refused attempts at state-changing routes, after the rollback, on their own.
///
/// A row stores a bounded summary of what was attempted, built only from the body the pipeline
/// already parsed and validated (a request refused before that — 401, 429, a bad body — stores
/// none): a few top-level fields, scalars only, short and free of control characters. Refusals
/// of anonymous callers (no verified identity) are all counted in
/// `payments_audit_anonymous_refusals_total`, but only the first of each kind per client
/// address and minute (in each process) is written as a row, so a flood of forged tokens
/// neither grows the append-only table without bound nor costs a database write each.
struct FailureAudit {
    /// Fields kept from a refused body.
    static let maximumFields = 16
    /// Characters kept of a field's name or text value.
    static let maximumTextLength = 64
    let shared: SharedState

    /// Records a refused attempt at `audit`'s operation.
    func record(_ audit: AuditTarget, errorCode: String, request: Request, context: WorkerContext) {
        var entityID = request.pathParameters["id"].flatMap(Self.identifier)
        if let field = audit.bodyField, case .object(let fields)? = request.json, case .string(let id)? = fields[field]
        {
            entityID = Self.identifier(id)
        }
        do {
            if request.identity == nil {
                shared.metrics.increment(
                    "payments_audit_anonymous_refusals_total{operation=\"\(audit.operation)\",code=\"\(errorCode)\"}")
                let key = "\(audit.operation) \(errorCode) \(ClientAddress.rateLimitBucket(request.remoteAddress))"
                guard shared.refusalSampler.isFirstInWindow(key) else { return }
            }
            let entry = AuditEntry(
                operation: audit.operation, entityType: audit.entityType, entityID: entityID,
                oldValues: entityID.flatMap { try? Self.snapshot(audit.entityType, id: $0, on: context.database) },
                newValues: request.json.flatMap(Self.summary).map { ["attempted": $0] },
                success: false, errorCode: errorCode,
                metadata: request.identity == nil ? ["sampled": "first per address and minute"] : [:])
            try AuditLog.record(entry, request: request, on: context.database)
        } catch {
            shared.logger.error("audit write failed", [("request_id", .string(request.requestID))])
        }
    }

    /// A refused body as an audit row keeps it: at most `maximumFields` top-level fields (sorted
    /// by name), names and strings cut to `maximumTextLength` characters with control characters
    /// removed, nested values replaced by their kind. Nil when the body was not an object.
    static func summary(_ body: JSONValue) -> JSONValue? {
        guard case .object(let fields) = body, !fields.isEmpty else { return nil }
        var kept: [String: JSONValue] = [:]
        for (name, value) in fields.sorted(by: { $0.key < $1.key }).prefix(maximumFields) {
            let summarised: JSONValue
            switch value {
            case .string(let text): summarised = .string(clean(text))
            case .array(let items): summarised = .string("<array of \(items.count)>")
            case .object: summarised = "<object>"
            case .null, .bool, .int, .double: summarised = value
            }
            kept[clean(name)] = summarised
        }
        if fields.count > maximumFields { kept["<omitted fields>"] = .int(Int64(fields.count - maximumFields)) }
        return .object(kept)
    }

    /// An entity id from the request, kept only when it looks like one (letters, digits, `-`, `_`).
    static func identifier(_ text: String) -> String? {
        guard (1...64).contains(text.utf8.count),
            text.utf8.allSatisfy({ $0.isASCIIAlphanumeric || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") })
        else { return nil }
        return text
    }

    private static func clean(_ text: String) -> String {
        String(
            String.UnicodeScalarView(
                text.unicodeScalars.lazy.filter { !$0.isControlCharacter }.prefix(maximumTextLength)))
    }

    /// What a refused action would have changed, as it stood: the entity's state columns.
    private static func snapshot(_ entityType: String, id: String, on connection: some SQLExecutor) throws -> JSONValue?
    {
        guard UUID(uuidString: id) != nil else { return nil }
        let query: SQLQuery
        switch entityType {
        case "payment":
            query = """
                SELECT jsonb_build_object('status', status, 'amount_received', amount_received,
                                          'amount_refunded', amount_refunded)::text AS v
                FROM payments WHERE id = \(id)::uuid
                """
        case "dispute":
            query =
                "SELECT jsonb_build_object('status', status, 'kind', kind)::text AS v FROM disputes WHERE id = \(id)::uuid"
        case "milestone":
            query = "SELECT jsonb_build_object('status', status)::text AS v FROM milestones WHERE id = \(id)::uuid"
        case "listing":
            query = "SELECT jsonb_build_object('status', status)::text AS v FROM listings WHERE id = \(id)::uuid"
        case "notification":
            query = "SELECT jsonb_build_object('read_at', read_at)::text AS v FROM notifications WHERE id = \(id)::uuid"
        default: return nil
        }
        return try connection.query(query).first.flatMap {
            JSONValue.parse(Array(try $0.decode("v", as: String.self).utf8))
        }
    }
}

/// Remembers which kinds of anonymous refusal (operation, code, address) a process has audited
/// in the current minute. Bounded: past `capacity` keys in one minute, the rest of that minute's
/// new keys are counted but not written.
final class RefusalSampler: @unchecked Sendable {
    // @unchecked: `seen` and `window` are touched only while `lock` is held.
    private let lock = NSLock()
    private var seen: Set<String> = []
    private var window: Int64 = 0
    private let capacity: Int

    init(capacity: Int = 10_000) {
        self.capacity = capacity
    }

    /// True the first time `key` is offered in the current minute.
    func isFirstInWindow(_ key: String, now: Date = Date()) -> Bool {
        let minute = Int64(now.timeIntervalSince1970) / 60
        lock.lock()
        defer { lock.unlock() }
        if minute != window {
            window = minute
            seen.removeAll(keepingCapacity: true)
        }
        guard seen.count < capacity else { return false }
        return seen.insert(key).inserted
    }
}
