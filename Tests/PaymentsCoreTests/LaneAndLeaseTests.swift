import Foundation
import Testing

@testable import FastCGI
@testable import PaymentsCore
@testable import Stripe

@Suite struct LaneAndLeaseTests {
    @Test func requestStartIsTrustedOnlyWhenPlausible() {
        let accepted = Date(timeIntervalSince1970: 1_800_000_000)
        let sent = FastCGIServer.sentTime("1799999999.250", accepted: accepted)
        #expect(abs(sent.timeIntervalSince1970 - 1_799_999_999.25) < 0.001)
        // From the future, far in the past, or not a number: the accept time counts.
        for bad in ["1800000100.000", "1799999900.000", "1700000000.000", "soon", ""] {
            #expect(FastCGIServer.sentTime(bad, accepted: accepted) == accepted)
        }
        #expect(FastCGIServer.sentTime(nil, accepted: accepted) == accepted)
    }

    @Test func metricsCarryTheInstanceLabelFirst() {
        #expect(
            Metrics.labelled(#"payments_x_total{lane="core"} 3"#, instance: "h/app-1.sock")
                == #"payments_x_total{instance="h/app-1.sock",lane="core"} 3"#)
        #expect(
            Metrics.labelled("payments_db_pool_size 16", instance: #"we"ird"#)
                == #"payments_db_pool_size{instance="we\"ird"} 16"#)
        #expect(Metrics.labelled("# TYPE payments_x_total counter", instance: "h") == "# TYPE payments_x_total counter")
    }

    @Test func theStripeSocketSitsBesideTheCoreSocket() {
        #expect(
            ServerConfiguration.stripeSocket(beside: "/run/payments/app-1.sock") == "/run/payments/app-1-stripe.sock")
        #expect(ServerConfiguration.stripeSocket(beside: "/run/payments/app") == "/run/payments/app-stripe")
        #expect(ServerConfiguration.stripeSocket(beside: "10.0.0.11:9000") == "10.0.0.11:9001")
    }

    @Test func anOwnerIsGoneOnlyWhenItsProcessOnThisHostNoLongerRuns() {
        let mine = RequestOwner.make()
        let parts = mine.split(separator: ":")
        let host = parts.dropLast(3).joined(separator: ":")
        #expect(host.contains("#"), "the host part names the PID namespace")
        #expect(RequestOwner.make() != mine, "every claim has its own token")
        #expect(!RequestOwner.isGone(mine))
        #expect(!RequestOwner.isGone(nil))
        // A pid that cannot exist, and a live pid whose start time differs (a reused pid).
        #expect(RequestOwner.isGone("\(host):2147483646:1:ab"))
        #expect(RequestOwner.isGone("\(host):\(getppid()):1:ab"))
        #expect(RequestOwner.isGone("\(host):\(getpid()):1:ab"))
        // Another host's (or PID namespace's) process cannot be checked from here: its lease decides.
        #expect(!RequestOwner.isGone("elsewhere.example#1:2147483646:1:ab"))
        #expect(!RequestOwner.isGone("garbage"))
    }

    @Test func aDeadlineIs504StripeTimeoutAndRemembersAnUnknownOutcome() {
        let error = StripeError.deadlineExceeded(attempts: 2, mayHaveSucceeded: true)
        #expect(error.kind == .timeout && error.mayHaveSucceeded)
        #expect(error.description.contains("outcome unknown"))
        let api = APIError.from(error)
        #expect(api.status == 504 && api.code == "stripe_timeout")
    }
}
