import Foundation
import Postgres
import Stripe

/// `payments doctor`: checks what a deployment needs, one line per check, in plain words —
/// the configuration (read as `serve` reads it), PostgreSQL and its migrations, Stripe's
/// reachability and clock, the two webhook endpoints, and the FastCGI sockets.
public enum Doctor {
    /// How one check came out: a warning is printed but does not fail the run.
    enum Verdict: String {
        case ok, warning, problem
    }

    /// One printed line.
    struct Check {
        let name: String
        let verdict: Verdict
        let detail: String
    }

    /// Runs every check and prints them; false when any found a problem.
    public static func run(environment: Environment) -> Bool {
        let configuration = Result { try ServerConfiguration(environment: environment) }
        var checks: [Check] = []
        switch configuration {
        case .success: checks.append(Check(name: "configuration", verdict: .ok, detail: "parses as `serve` reads it"))
        case .failure(let error):
            checks.append(Check(name: "configuration", verdict: .problem, detail: OperatorMessage.line(for: error)))
        }
        checks += DoctorChecks.database(environment)
        checks += DoctorChecks.stripe(environment, tolerance: (try? configuration.get())?.platformWebhooks.tolerance)
        checks += DoctorChecks.endpoints(environment)
        checks += DoctorChecks.sockets(try? configuration.get())
        for check in checks {
            print(
                "\(check.verdict.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0))\(check.name): \(check.detail)"
            )
        }
        return !checks.contains { $0.verdict == .problem }
    }
}
