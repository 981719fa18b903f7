import Foundation
import Stripe
import Testing

@testable import PaymentsCore
@testable import Postgres

/// Rows decode into typed values or throw a typed error: no empty-string or zero defaults.
@Suite struct RowDecodingTests {
    static let columns = [
        "id", "kind", "status", "buyer_id", "seller_id", "listing_id", "milestone_id", "stripe_payment_intent_id",
        "amount_cents", "application_fee_cents", "currency", "amount_capturable", "amount_received", "amount_refunded",
        "capture_before", "is_disputed", "charge_model", "stripe_account", "description", "succeeded_at",
        "succeeded_epoch", "created_at", "updated_at",
    ]

    static func row(_ overrides: [String: String?] = [:], without missing: String? = nil) -> Row {
        var values: [String: String?] = [
            "id": "p1", "kind": "purchase", "status": "requires_capture", "buyer_id": "b", "seller_id": "s",
            "listing_id": "l", "milestone_id": nil, "stripe_payment_intent_id": "pi_1", "amount_cents": "5000",
            "application_fee_cents": "500", "currency": "usd", "amount_capturable": "5000", "amount_received": "0",
            "amount_refunded": "0", "capture_before": nil, "is_disputed": "f", "charge_model": "destination",
            "stripe_account": nil, "created_at": "2026-12-06T00:00:00Z",
            "updated_at": "2026-12-06T00:00:00Z",
        ]
        for (column, value) in overrides { values[column] = value }
        let names = columns.filter { $0 != missing }
        return Row(
            columnIndex: Dictionary(uniqueKeysWithValues: names.enumerated().map { ($1, $0) }),
            values: names.map { values[$0] ?? nil })
    }

    @Test func aCompleteRowDecodes() throws {
        let record = try PaymentRecord(row: Self.row())
        #expect(record.amount == 5000 && record.application_fee == 500 && record.status == .requiresCapture)
        #expect(record.milestone_id == nil && record.is_disputed == false)
    }

    @Test func aMissingColumnIsATypedErrorNotADefault() {
        #expect(throws: RowDecodingError(problem: .missingColumn, column: "amount_cents", type: "Int64")) {
            try PaymentRecord(row: Self.row(without: "amount_cents"))
        }
        #expect(throws: RowDecodingError(problem: .missingColumn, column: "milestone_id", type: "String")) {
            try PaymentRecord(row: Self.row(without: "milestone_id"))
        }
    }

    @Test func nullsAndMistypedValuesAreTypedErrors() {
        #expect(throws: RowDecodingError(problem: .null, column: "application_fee_cents", type: "Int64")) {
            try PaymentRecord(row: Self.row(["application_fee_cents": nil]))
        }
        #expect(throws: RowDecodingError(problem: .mistyped, column: "amount_received", type: "Int64")) {
            try PaymentRecord(row: Self.row(["amount_received": "12.5"]))
        }
        #expect(throws: RowDecodingError(problem: .mistyped, column: "status", type: "PaymentStatus")) {
            try PaymentRecord(row: Self.row(["status": "teleported"]))
        }
        #expect(throws: RowDecodingError(problem: .mistyped, column: "is_disputed", type: "Bool")) {
            try PaymentRecord(row: Self.row(["is_disputed": "maybe"]))
        }
    }

    @Test func statusesAnswerTheStateQuestions() {
        #expect(PaymentStatus.requiresCapture.isCapturable && PaymentStatus.requiresCapture.isCancellable)
        #expect(!PaymentStatus.succeeded.isCancellable && !PaymentStatus.processing.isCancellable)
        #expect(
            PaymentStatus.processing.isAwaitingAuthorisation && !PaymentStatus.requiresCapture.isAwaitingAuthorisation)
        #expect(PaymentStatus.allCases.filter(\.isTerminal) == [.canceled, .failed, .refunded])
        #expect(PaymentStatus.sqlArray(where: \.isCapturable) == "{requires_capture}")
    }

    /// A row of the given columns and values (nil is SQL NULL).
    static func makeRow(_ values: KeyValuePairs<String, String?>) -> Row {
        Row(
            columnIndex: Dictionary(uniqueKeysWithValues: values.enumerated().map { ($1.key, $0) }),
            values: values.map(\.value))
    }

    static func intentRow(
        kind: String, milestoneID: String?, destination: String?, createKey: String?, model: String = "destination",
        account: String? = nil, onBehalfOf: String = "f"
    ) -> Row {
        makeRow([
            "id": "p1", "kind": kind, "amount_cents": "5000", "application_fee_cents": "500", "currency": "usd",
            "listing_id": "l", "milestone_id": milestoneID, "buyer_id": "b", "seller_id": "s",
            "transfer_group": "listing:l", "stripe_create_key": createKey, "destination": destination,
            "description": "Lamp", "receipt_email": nil, "charge_model": model, "stripe_account": account,
            "on_behalf_of": onBehalfOf,
        ])
    }

    /// Issue 16: the intent's parameters and its account follow the row's charge model.
    @Test func aPurchaseIsChargedUnderItsRowsModel() throws {
        let direct = try IntentCreation.Payment(
            row: Self.intentRow(
                kind: "purchase", milestoneID: nil, destination: "acct_1", createKey: nil, model: "direct",
                account: "acct_1"))
        let form = FormEncoder.encode(IntentCreation.parameters(direct))
        #expect(direct.stripeAccount == "acct_1")
        #expect(form.contains("application_fee_amount=500") && form.contains("capture_method=manual"))
        #expect(form.contains("metadata%5Bpayment_id%5D=p1") || form.contains("metadata[payment_id]=p1"))
        #expect(!form.contains("transfer_data") && !form.contains("on_behalf_of") && !form.contains("acct_1"))

        let onBehalf = try IntentCreation.Payment(
            row: Self.intentRow(
                kind: "purchase", milestoneID: nil, destination: "acct_2", createKey: nil, onBehalfOf: "t"))
        #expect(onBehalf.stripeAccount == nil)
        #expect(FormEncoder.encode(IntentCreation.parameters(onBehalf)).contains("on_behalf_of=acct_2"))
        let plain = try IntentCreation.Payment(
            row: Self.intentRow(kind: "purchase", milestoneID: nil, destination: "acct_2", createKey: nil))
        #expect(!FormEncoder.encode(IntentCreation.parameters(plain)).contains("on_behalf_of"))

        #expect(throws: RowDecodingError(problem: .null, column: "stripe_account", type: "String")) {
            try IntentCreation.Payment(
                row: Self.intentRow(
                    kind: "purchase", milestoneID: nil, destination: "acct_1", createKey: nil, model: "direct"))
        }
        #expect(throws: RowDecodingError(problem: .mistyped, column: "charge_model", type: "ChargeModel")) {
            try IntentCreation.Payment(
                row: Self.intentRow(
                    kind: "purchase", milestoneID: nil, destination: "acct_1", createKey: nil, model: "platform"))
        }
    }

    @Test func anIntentIsCreatedFromADecodedPayment() throws {
        let purchase = try IntentCreation.Payment(
            row: Self.intentRow(kind: "purchase", milestoneID: nil, destination: "acct_1", createKey: nil))
        #expect(purchase.createKey == StripeKeys.create("p1"))
        #expect(FormEncoder.encode(IntentCreation.parameters(purchase)).contains("application_fee_amount=500"))
        #expect(FormEncoder.encode(IntentCreation.parameters(purchase)).contains("acct_1"))
        #expect(FormEncoder.encode(IntentCreation.parameters(purchase)).contains("description=Lamp"))
        #expect(!FormEncoder.encode(IntentCreation.parameters(purchase)).contains("receipt_email"))
        let milestone = try IntentCreation.Payment(
            row: Self.intentRow(kind: "milestone", milestoneID: "m1", destination: nil, createKey: "k"))
        #expect(milestone.createKey == "k")
        #expect(!FormEncoder.encode(IntentCreation.parameters(milestone)).contains("application_fee_amount"))
        #expect(FormEncoder.encode(IntentCreation.parameters(milestone)).contains("m1"))
    }

    @Test func anIntentWithoutItsDestinationOrMilestoneIsATypedError() {
        #expect(throws: RowDecodingError(problem: .null, column: "destination", type: "String")) {
            try IntentCreation.Payment(
                row: Self.intentRow(kind: "purchase", milestoneID: nil, destination: nil, createKey: nil))
        }
        #expect(throws: RowDecodingError(problem: .null, column: "milestone_id", type: "String")) {
            try IntentCreation.Payment(
                row: Self.intentRow(kind: "milestone", milestoneID: nil, destination: "acct_1", createKey: nil))
        }
        #expect(throws: RowDecodingError(problem: .mistyped, column: "kind", type: "PaymentKind")) {
            try IntentCreation.Payment(
                row: Self.intentRow(kind: "gift", milestoneID: nil, destination: "acct_1", createKey: nil))
        }
    }

    @Test func milestoneStatusesAnswerTheStateQuestions() throws {
        #expect(MilestoneStatus.allCases.filter(\.isFundable) == [.pending])
        #expect(MilestoneStatus.allCases.filter(\.isFundingUnderway) == [.funding])
        #expect(MilestoneStatus.allCases.filter(\.isReleasable) == [.funded])
        #expect(MilestoneStatus.allCases.filter(\.isReleased) == [.released])
        #expect(try Self.makeRow(["status": "funded"]).decode("status", as: MilestoneStatus.self) == .funded)
        #expect(throws: RowDecodingError(problem: .mistyped, column: "status", type: "MilestoneStatus")) {
            try Self.makeRow(["status": "paid"]).decode("status", as: MilestoneStatus.self)
        }
    }

    @Test func disputeStatusesAndKindsDecode() throws {
        #expect(DisputeStatus.allCases.filter(\.isOpen) == [.open])
        #expect(DisputeStatus.allCases.filter(\.isClosed) == [.resolved, .dismissed, .warningClosed, .won, .lost])
        #expect(
            try Self.makeRow(["status": "needs_response"]).decode("status", as: DisputeStatus.self) == .needsResponse)
        #expect(try Self.makeRow(["kind": "chargeback"]).decode("kind", as: DisputeKind.self) == .chargeback)
        #expect(try Self.makeRow(["kind": "milestone"]).decode("kind", as: PaymentKind.self) == .milestone)
        #expect(throws: RowDecodingError(problem: .mistyped, column: "kind", type: "DisputeKind")) {
            try Self.makeRow(["kind": "purchase"]).decode("kind", as: DisputeKind.self)
        }
    }

    @Test func eachTableHasOneTypedRow() throws {
        let dispute: KeyValuePairs<String, String?> = [
            "id": "d1", "payment_id": "p1", "kind": "platform", "status": "open", "opened_by": "b", "reason": "r",
            "details": nil, "stripe_dispute_id": nil, "amount_cents": nil, "currency": nil, "due_by": nil,
            "evidence_status": nil, "funds_withdrawn_cents": "0", "funds_reinstated_cents": "0", "outcome": nil,
            "resolution_note": nil, "resolved_by": nil, "resolved_at": nil, "created_at": "t", "buyer_id": "b",
            "seller_id": "s", "payment_kind": "purchase", "payment_status": "succeeded", "payment_amount": "5000",
            "amount_received": "5000", "amount_refunded": "0", "payment_currency": "usd", "milestone_id": nil,
            "charge_model": "direct", "payment_stripe_account": "acct_1",
        ]
        let decoded = try DisputeRow(row: Self.makeRow(dispute))
        #expect(decoded.kind == .platform && decoded.status == .open && decoded.amount == nil)
        #expect(decoded.payment.status == .succeeded && decoded.payment.amount_received == 5000)
        #expect(decoded.payment.charge_model == .direct && decoded.payment.stripe_account == "acct_1")
        let withoutCurrency = Row(
            columnIndex: Dictionary(
                uniqueKeysWithValues: dispute.filter { $0.key != "payment_currency" }.enumerated().map { ($1.key, $0) }),
            values: dispute.filter { $0.key != "payment_currency" }.map(\.value))
        #expect(throws: RowDecodingError(problem: .missingColumn, column: "payment_currency", type: "String")) {
            try DisputeRow(row: withoutCurrency)
        }

        let profile: KeyValuePairs<String, String?> = [
            "id": "00000000-0000-0000-0000-000000000001", "user_id": "u", "roles": "{buyer,seller}", "email": nil,
            "display_name": nil, "stripe_account_id": "acct_1", "charges_enabled": "t", "payouts_enabled": "f",
            "details_submitted": "t", "requirements_due": #"["external_account"]"#, "disabled_reason": nil,
            "seller_gaps": "payouts_enabled",
        ]
        let seller = try ProfileRow(row: Self.makeRow(profile))
        #expect(seller.roles == [.buyer, .seller] && seller.chargesEnabled && !seller.payoutsEnabled)
        #expect(seller.sellerGaps == ["payouts_enabled"])
        #expect(seller.requirementsDue == .array([.string("external_account")]))
        #expect(throws: RowDecodingError(problem: .mistyped, column: "roles", type: "Set<Role>")) {
            try ProfileRow(
                row: Self.makeRow([
                    "id": "00000000-0000-0000-0000-000000000001", "user_id": "u", "roles": "{buyer,owner}",
                ]))
        }

        let listing = try ListingRow(
            row: Self.makeRow([
                "id": "00000000-0000-0000-0000-000000000002", "seller_id": "00000000-0000-0000-0000-000000000001",
                "kind": "item", "price_cents": "5000", "currency": "usd", "status": "payment_pending",
                "title": "Lamp", "reserved_by": nil, "hold_active": "f", "seller_gaps": "", "seller_account": nil,
            ]))
        #expect(listing.status == .paymentPending && listing.kind == .item && listing.sellerGaps.isEmpty)
        #expect(throws: RowDecodingError(problem: .null, column: "hold_active", type: "Bool")) {
            try ListingRow(
                row: Self.makeRow([
                    "id": "00000000-0000-0000-0000-000000000002", "seller_id": "00000000-0000-0000-0000-000000000001",
                    "kind": "item", "price_cents": "5000", "currency": "usd", "status": "active", "title": "Lamp",
                    "reserved_by": nil,
                    "hold_active": nil, "seller_gaps": "", "seller_account": nil,
                ]))
        }

        let milestone = try MilestoneRow(
            row: Self.makeRow([
                "id": "00000000-0000-0000-0000-000000000003", "listing_id": "00000000-0000-0000-0000-000000000002",
                "position": "1", "title": "Design", "amount_cents": "2500", "status": "funding",
            ]))
        #expect(milestone.status.isFundingUnderway && milestone.amount == 2500)
    }

    @Test func byteaAndJSONColumnsDecodeOrAreMistyped() throws {
        #expect(try Self.makeRow(["b": "\\x4142"]).decode("b", as: [UInt8].self) == [0x41, 0x42])
        #expect(throws: RowDecodingError(problem: .mistyped, column: "b", type: "Array<UInt8>")) {
            try Self.makeRow(["b": "\\x4"]).decode("b", as: [UInt8].self)
        }
        #expect(try Self.makeRow(["j": #"{"a":1}"#]).decode("j", as: JSONValue.self) == .object(["a": .int(1)]))
        #expect(throws: RowDecodingError(problem: .mistyped, column: "j", type: "JSONValue")) {
            try Self.makeRow(["j": "{"]).decode("j", as: JSONValue.self)
        }
    }
}
