import Foundation
import HTTPClient
import Stripe
import Testing

@testable import PaymentsCore

/// Issue 19, item 3: what the notification dispatcher sends, without any I/O — every kind's
/// email, the message's headers, the outbound webhook's body and signature, the settings.
@Suite struct NotificationDeliveryTests {
    /// A payload with every field a template may name, as the code writes them.
    private let payload: [String: JSONValue] = [
        "payment_id": "4c0f0b5e-0000-4000-8000-000000000001", "amount_cents": 123_456, "currency": "usd",
        "status": "succeeded", "milestone_id": "m-1", "dispute_id": "d-1", "outcome": "refund_buyer",
        "reason": "fraudulent", "action": "cancel", "action_at": "2026-12-07T10:00:00Z", "account": "acct_1",
        "payout_id": "po_1",
    ]

    @Test func everyKindHasATemplateThatFillsEveryPlaceholder() {
        #expect(NotificationKind.allCases.count >= 24)
        for kind in NotificationKind.allCases {
            let template = MailTemplate.of(kind)
            #expect(!template.subject.isEmpty && !template.body.isEmpty, "\(kind)")
            let mail = template.rendered(payload: payload)
            #expect(!mail.subject.contains("{") && !mail.body.contains("{"), "\(kind): \(mail.subject)")
            #expect(!mail.subject.contains("(not given)") && !mail.body.contains("(not given)"), "\(kind)")
            #expect(mail.body.contains("Details:\n  account: acct_1\n"), "\(kind)")
        }
    }

    @Test func amountsAreShownInTheCurrencysMajorUnit() {
        let refund = MailTemplate.of(.refundIssued)
        #expect(refund.rendered(payload: ["amount_cents": 1205, "currency": "eur"]).subject.contains("12.05 EUR"))
        #expect(refund.rendered(payload: ["amount_cents": 7]).subject.contains("0.07"))
        #expect(refund.rendered(payload: ["amount_cents": 500, "currency": "jpy"]).subject.contains("500 JPY"))
        #expect(refund.rendered(payload: [:]).subject.contains("(not given)"))
    }

    @Test func aValueCannotStartAHeaderOrANewLine() {
        let opened = MailTemplate.of(.chargebackOpened).rendered(payload: [
            "amount_cents": 100, "reason": "x\r\nBcc: victim@example.test", "payment_id": "p",
        ])
        #expect(!opened.body.contains("\nBcc:"))
        let mail = NotificationMail(
            from: "Marketplace <payments@marketplace.test>", to: "buyer@example.test",
            subject: "Déjà vu\r\nBcc: victim@example.test", body: "one\ntwo\n.\nthree", notificationID: "n-1",
            date: Date(timeIntervalSince1970: 1_765_000_000))
        let text = String(decoding: mail.data, as: UTF8.self)
        #expect(text.contains("Subject: =?UTF-8?B?"))
        #expect(!text.contains("\r\nBcc:"))
        #expect(text.contains("Message-ID: <n-1.notification@marketplace.test>\r\n"))
        #expect(text.contains("Date: Sat, 06 Dec 2025 05:46:40 +0000\r\n"))
        #expect(text.hasSuffix("\r\n\r\none\r\ntwo\r\n.\r\nthree\r\n"))
        #expect(mail.message(sender: "payments@marketplace.test").recipients == ["buyer@example.test"])
    }

    @Test func addressesAreCheckedBeforeTheyReachAnEnvelope() {
        #expect(MailAddress.isValid("buyer@example.test"))
        for bad in [
            "", "buyer", "@example.test", "buyer@", "a b@example.test", "<x>@example.test", "x@y\r\nRCPT",
            "buyer@example", "buyer@.test",
        ] {
            #expect(!MailAddress.isValid(bad), "\(bad)")
        }
        #expect(MailAddress.sender(of: "Marketplace <payments@marketplace.test>") == "payments@marketplace.test")
        #expect(MailAddress.sender(of: "payments@marketplace.test") == "payments@marketplace.test")
        #expect(MailAddress.sender(of: "Marketplace <payments@marketplace.test>\nBcc: x@y.z") == nil)
    }

    @Test func theOutboundWebhookIsSignedLikeStripesAndKeepsItsBodyAcrossAttempts() throws {
        let secret = "whsec_marketplace_unit_0123456789"
        let webhook = OutboundWebhook(
            webhook: .init(url: "https://market.example.test/hooks", secret: secret), client: try HTTPClient(),
            timeout: .seconds(5))
        let claim = NotificationDispatcher.Claim(
            id: 7, notificationID: "0b0e0000-0000-4000-8000-000000000007", channel: .webhook, attempts: 2,
            kind: "payment_succeeded", payload: .object(["payment_id": "p-1"]), created: 1_765_000_000,
            profileID: "0b0e0000-0000-4000-8000-0000000000aa", email: nil)
        let first = webhook.request(claim, timestamp: 1_765_000_100)
        let second = webhook.request(claim, timestamp: 1_765_000_900)
        #expect(first.body == second.body)
        let body = try #require(first.body)
        #expect(
            String(decoding: body, as: UTF8.self)
                == #"{"created":1765000000,"data":{"payload":{"payment_id":"p-1"},"profile_id":"0b0e0000-0000-4000-8000-0000000000aa"},"id":"0b0e0000-0000-4000-8000-000000000007","object":"event","type":"payment_succeeded"}"#
        )
        let headers = Dictionary(first.headers, uniquingKeysWith: { $1 })
        #expect(headers["Marketplace-Event-Id"] == claim.notificationID)
        let signature = try #require(headers["Marketplace-Signature"])
        #expect(signature.hasPrefix("t=1765000100,v1="))
        let verifier = WebhookSignatureVerifier(secrets: [secret], tolerance: 300)
        #expect(throws: Never.self) { try verifier.verify(header: signature, body: body, now: 1_765_000_150) }
        #expect(throws: WebhookSignatureFailure.noMatch) {
            try WebhookSignatureVerifier(secrets: ["whsec_other_secret_000000"], tolerance: 300)
                .verify(header: signature, body: body, now: 1_765_000_150)
        }
    }

    @Test func eachChannelIsOnWhenConfiguredAndHalfAConfigurationIsRefused() throws {
        let none = try NotificationSettings(environment: Environment([:]))
        #expect(none.channels.isEmpty && none.retryBaseSeconds == 30 && none.maxAttempts == 10)
        let both = try NotificationSettings(
            environment: Environment([
                "MARKETPLACE_WEBHOOK_URL": "https://market.example.test/hooks",
                "MARKETPLACE_WEBHOOK_SECRET": "whsec_0123456789abcdef", "SMTP_URL": "smtp://mail.example.test:587",
                "SMTP_FROM": "Marketplace <payments@marketplace.test>",
            ]))
        #expect(both.channels == [.webhook, .email])
        #expect(both.mail?.security == .required && both.mail?.sender == "payments@marketplace.test")
        let loopback = try NotificationSettings(
            environment: Environment(["SMTP_URL": "smtp://127.0.0.1:2525", "SMTP_FROM": "p@marketplace.test"]))
        #expect(loopback.mail?.security == MailTransportSecurity.none)
        for (values, named) in [
            (["MARKETPLACE_WEBHOOK_URL": "https://market.example.test/hooks"], "MARKETPLACE_WEBHOOK_SECRET"),
            (["MARKETPLACE_WEBHOOK_SECRET": "whsec_0123456789abcdef"], "MARKETPLACE_WEBHOOK_URL"),
            (
                [
                    "MARKETPLACE_WEBHOOK_URL": "http://market.example.test/",
                    "MARKETPLACE_WEBHOOK_SECRET": "whsec_0123456789abcdef",
                ],
                "MARKETPLACE_WEBHOOK_URL"
            ),
            (
                ["MARKETPLACE_WEBHOOK_URL": "https://m.example.test/", "MARKETPLACE_WEBHOOK_SECRET": "short"],
                "at least 16"
            ),
            (["SMTP_URL": "smtp://127.0.0.1:2525"], "SMTP_FROM"),
            (["SMTP_URL": "https://mail.example.test", "SMTP_FROM": "p@marketplace.test"], "SMTP_URL"),
            (["SMTP_URL": "smtp://127.0.0.1:2525", "SMTP_FROM": "not an address"], "SMTP_FROM"),
        ] {
            let message = failure(values)
            #expect(message.contains(named), "\(values): \(message)")
            #expect(!message.contains("whsec_"))
        }
    }

    private func failure(_ values: [String: String]) -> String {
        do {
            _ = try NotificationSettings(environment: Environment(values))
            return "accepted"
        } catch {
            return "\(error)"
        }
    }

    @Test func theBackoffDoublesUpToAnHour() throws {
        let settings = try NotificationSettings(environment: Environment(["NOTIFY_RETRY_BASE_SECONDS": "30"]))
        #expect(
            (1...9).map { settings.backoffSeconds(afterAttempts: $0) } == [
                30, 60, 120, 240, 480, 960, 1920, 3600, 3600,
            ])
        #expect(settings.backoffSeconds(afterAttempts: 1000) == 3600)
    }
}
