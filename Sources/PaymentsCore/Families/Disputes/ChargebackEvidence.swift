import Cryptography
import Foundation
import Postgres
import Stripe

/// Chargeback evidence, staged at Stripe (`submit: false`) or submitted (`submit: true`), on the
/// account that owns the disputed charge: the platform's for a destination charge, the seller's
/// (`Stripe-Account`) for a direct charge. An admin answers any chargeback
/// (`POST /api/admin/disputes/{id}/evidence`); a seller answers its own direct charges'
/// (`POST /api/disputes/{id}/evidence`, issue 16), since they are the seller's to bear.
enum ChargebackEvidence {
    /// Validates the body, finds the dispute, lets `mayAnswer` refuse the caller (it throws), then
    /// sends the evidence to Stripe under a key naming the dispute and the evidence's digest (the
    /// same request again is the same Stripe call) and records the new status, audited.
    static func answer(
        _ request: Request, _ context: WorkerContext, mayAnswer: (DisputeRow) throws -> Void
    ) throws -> Response {
        let id = try PathParameter.uuid(request, "id")
        let body = try JSONBody(request)
        guard case .object(let fields)? = body.fields["evidence"], !fields.isEmpty else {
            throw APIError.invalidField("evidence", "must be an object of evidence fields")
        }
        var evidence: [(String, StripeParameter)] = []
        var characters = 0
        for (name, value) in fields.sorted(by: { $0.key < $1.key }) {
            guard evidenceFields.contains(name) else {
                throw APIError.invalidField(
                    "evidence.\(name.prefix(64))", "is not a field of Stripe's dispute evidence")
            }
            guard case .string(let text) = value, text.count <= 20_000 else {
                throw APIError.invalidField("evidence.\(name)", "must be text of at most 20000 characters")
            }
            try JSONBody.checkText(text, field: "evidence.\(name)", multiline: true)
            characters += text.count
            evidence.append((name, .string(text)))
        }
        guard characters <= 150_000 else {
            throw APIError.invalidField("evidence", "must not exceed 150000 characters in all (Stripe's limit)")
        }
        let submit: Bool
        switch body.fields["submit"] {
        case nil, .null?: submit = false
        case .bool(let flag)?: submit = flag
        default: throw APIError.invalidField("submit", "must be true or false")
        }
        guard let dispute = try DisputeRow.find(id, on: context.database) else { throw APIError.notFound }
        try mayAnswer(dispute)
        // A chargeback always has its Stripe id; a platform dispute has none.
        guard dispute.kind == .chargeback, let stripeID = dispute.stripe_dispute_id else {
            throw APIError(.notAChargeback)
        }
        let parameters: [(String, StripeParameter)] = [("evidence", .object(evidence)), ("submit", .boolean(submit))]
        let digest = Hex.encode(Digest.sha256(Array(FormEncoder.encode(parameters).utf8))).prefix(16)
        // A direct charge's dispute lives on the seller's account, like the charge.
        let updated = try context.stripe.updateDispute(
            stripeID, parameters, idempotencyKey: StripeKeys.disputeEvidence(id.uuidString, digest: digest),
            account: dispute.payment.stripe_account)
        let status = submit ? "submitted" : "staged"
        try context.database.withTransaction { connection in
            try connection.query(
                """
                UPDATE disputes SET evidence_status = \(status), status = \(updated.status) WHERE id = \(id)
                """)
            try AuditLog.record(
                AuditEntry(
                    operation: "dispute.evidence", entityType: "dispute", entityID: id.uuidString.lowercased(),
                    oldValues: [
                        "evidence_status": JSONValue(dispute.evidence_status)
                    ],
                    newValues: ["evidence_status": .string(status), "fields": .array(evidence.map { .string($0.0) })]),
                request: request, on: connection)
        }
        return .json(
            [
                "id": .string(id.uuidString.lowercased()), "evidence_status": .string(status),
                "status": .string(updated.status),
            ] as [String: JSONValue])
    }

    /// The text and file-id fields of Stripe's dispute `evidence` hash (API version 2024-06-20 and later).
    static let evidenceFields: Set<String> = [
        "access_activity_log", "billing_address", "cancellation_policy", "cancellation_policy_disclosure",
        "cancellation_rebuttal", "customer_communication", "customer_email_address", "customer_name",
        "customer_purchase_ip", "customer_signature", "duplicate_charge_documentation", "duplicate_charge_explanation",
        "duplicate_charge_id", "product_description", "receipt", "refund_policy", "refund_policy_disclosure",
        "refund_refusal_explanation", "service_date", "service_documentation", "shipping_address", "shipping_carrier",
        "shipping_date", "shipping_documentation", "shipping_tracking_number", "uncategorized_file",
        "uncategorized_text",
    ]
}
