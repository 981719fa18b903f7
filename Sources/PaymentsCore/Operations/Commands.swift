import FastCGI
import Foundation
import Postgres
import Stripe

/// The `payments` command line: one binary, one subcommand per operator task (docs/operations.md).
public enum CommandLineTool {
    static let usage = """
        usage: payments <command>

        commands:
          serve     run the FastCGI server (env: DATABASE_URL, FCGI_SOCKET, WORKERS, …)
          migrate   apply pending migrations from MIGRATIONS_DIR (default: sql) as the database owner, then
                    grant the app's role (DATABASE_APP_ROLE, when set) its DML-only privileges
          token --user SUB [--ttl SECONDS]
                    print a development HS256 token signed with AUTH_JWT_SECRET (default ttl 3600)
          seed-demo create the demo buyer, seller, admin, listings and milestones (idempotent)
          sweep     run the housekeeping tasks once: purge idempotency keys after 24 h and old rate-limit
                    windows, cancel expired reservations, unpaid milestone fundings and lapsing
                    authorisations, retry parked and failed webhook events (safe from cron every
                    minute, and concurrently)
          events list [--status S] [--limit N]
          events replay (--id EVT | --type TYPE [--since UNIX_SECONDS])
                    inspect the webhook inbox; replay re-applies stored events idempotently
        """

    /// Runs the command named by `arguments[1]` and returns the process exit status.
    public static func main(arguments: [String], environment: [String: String]) -> Int32 {
        let env = Environment(environment)
        let logger = Logger()
        do {
            switch arguments.dropFirst().first {
            case "serve":
                return try serve(environment: env, logger: logger)
            case "migrate":
                return try migrate(environment: env)
            case "token":
                return try token(arguments: Array(arguments.dropFirst(2)), environment: env)
            case "sweep":
                let connection = Connection(connectionString: try env.required("DATABASE_URL"))
                StripeClient.initializeGlobalState()
                let payments = PaymentSweeper(
                    connection: connection,
                    stripe: try StripeClient(configuration: try ServerConfiguration.stripeConfiguration(env)),
                    marketplace: try MarketplaceConfiguration(environment: env))
                for (task, rows) in try Sweeper.runOnce(on: connection, payments: payments) {
                    print("sweep: \(task): \(rows)")
                }
                return 0
            case "events":
                let connection = Connection(connectionString: try env.required("DATABASE_URL"))
                // Replays may need to cancel abandoned authorisations; without Stripe settings they only record.
                StripeClient.initializeGlobalState()
                let stripe = (try? ServerConfiguration.stripeConfiguration(env)).flatMap {
                    try? StripeClient(configuration: $0)
                }
                return try EventsCommand.run(Array(arguments.dropFirst(2)), connection: connection, stripe: stripe)
            case "seed-demo":
                let connection = Connection(connectionString: try env.required("DATABASE_URL"))
                print("seed-demo: \(try DemoData.seed(on: connection)) rows created")
                return 0
            case "help", "--help", "-h":
                print(usage)
                return 0
            default:
                printError(usage)
                return 64
            }
        } catch let error as ConfigurationError {
            printError("payments: \(error.description)")
        } catch let error as MigrationError {
            printError("payments: \(error.description)")
        } catch let error as ListenerError {
            printError("payments: \(error.description)")
        } catch let error as DatabaseError {
            printError("payments: database error: \(error.description): \(error.serverMessage)")
        } catch {
            printError("payments: \(error)")
        }
        return 1
    }

    static func printError(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    private static func migrate(environment: Environment) throws -> Int32 {
        let connection = Connection(connectionString: try environment.required("DATABASE_URL"), statementTimeout: .zero)
        let migrations = try Migration.load(from: environment.optional("MIGRATIONS_DIR") ?? "sql")
        let applied = try Migrator(migrations: migrations).migrate(on: connection)
        print(
            applied.isEmpty
                ? "migrations: up to date (\(migrations.count) applied)"
                : "migrations: applied \(applied.joined(separator: ", "))")
        if let role = environment.optional("DATABASE_APP_ROLE") {
            try AppRoleGrants.apply(to: role, on: connection)
            print("migrations: privileges of \(role) granted (DML; payment_audit_logs insert-only)")
        }
        return 0
    }

    private static func token(arguments: [String], environment: Environment) throws -> Int32 {
        var user: String?
        var ttl = 3600
        var remaining = arguments[...]
        while let flag = remaining.popFirst() {
            switch (flag, remaining.popFirst()) {
            case ("--user", let value?): user = value
            case ("--ttl", let value?):
                let longest = try AuthConfiguration.maximumTokenLifetime(environment)
                guard let seconds = Int(value), (1...longest).contains(seconds) else {
                    throw ConfigurationError(
                        description:
                            "--ttl must be a number of seconds from 1 to \(longest) (AUTH_MAX_TOKEN_LIFETIME_SECONDS)")
                }
                ttl = seconds
            default:
                throw ConfigurationError(description: "usage: payments token --user SUB [--ttl SECONDS]")
            }
        }
        guard let user, !user.isEmpty else {
            throw ConfigurationError(description: "usage: payments token --user SUB [--ttl SECONDS]")
        }
        let secret = try environment.required("AUTH_JWT_SECRET")
        let now = Int64(Date().timeIntervalSince1970)
        var claims: [String: JSONValue] = ["sub": .string(user), "iat": .int(now), "exp": .int(now + Int64(ttl))]
        if let issuer = environment.optional("AUTH_ISSUER") { claims["iss"] = .string(issuer) }
        if let audience = environment.optional("AUTH_AUDIENCE") { claims["aud"] = .string(audience) }
        print(TokenVerifier.mintHS256(secret: Array(secret.utf8), claims: claims))
        return 0
    }

    private static func serve(environment: Environment, logger: Logger) throws -> Int32 {
        let configuration = try ServerConfiguration(environment: environment)
        let migrations = try Migration.load(from: configuration.migrationsDirectory)
        // Before any thread starts: signal mask and libcurl's global state are inherited by every thread.
        FastCGIServer.prepareProcess()
        StripeClient.initializeGlobalState()
        let shared = SharedState(
            configuration: configuration, logger: logger, metrics: Metrics(), migrations: migrations)
        let application = Application(shared: shared)

        let queueTimeout = configuration.laneQueueTimeout
        let lanes = [
            Lane(
                name: LaneKind.core.rawValue,
                listener: try Listener(
                    address: configuration.socketAddress, mode: configuration.socketMode,
                    group: configuration.socketGroup),
                // Core workers wait only on PostgreSQL: the backlog is their queue (see `Lane`).
                workers: configuration.workers, queueCapacity: 0, queueTimeout: queueTimeout),
            Lane(
                name: LaneKind.stripe.rawValue,
                listener: try Listener(
                    address: configuration.stripeSocketAddress, mode: configuration.socketMode,
                    group: configuration.socketGroup),
                workers: configuration.stripeWorkers, queueCapacity: configuration.stripeWorkers,
                queueTimeout: queueTimeout),
        ]
        let server = FastCGIServer(
            maximumBodyBytes: configuration.maximumBodyBytes,
            shutdownTimeout: .seconds(configuration.shutdownTimeoutSeconds))
        logger.info(
            "listening",
            [
                ("socket", .string(configuration.socketAddress)), ("workers", .int(configuration.workers)),
                ("stripe_socket", .string(configuration.stripeSocketAddress)),
                ("stripe_workers", .int(configuration.stripeWorkers)),
                ("pool_size", .int(configuration.pool.size)), ("instance", .string(configuration.instanceName)),
                ("pid", .int(Int(getpid()))),
            ])
        let finished = server.run(
            lanes: lanes,
            makeHandler: { lane, index in
                // A worker without a curl handle cannot serve; there is no way to continue without memory.
                guard
                    let context = try? WorkerContext(
                        shared: shared, lane: LaneKind(rawValue: lane.name) ?? .core,
                        workerIndex: index)
                else { preconditionFailure("cannot allocate a curl handle") }
                return WorkerHandler(application: application, context: context)
            },
            onSignal: { signal in logger.info("shutting down", [("signal", .int(Int(signal)))]) })
        if !shared.followUps.drain(timeout: .seconds(5)) {
            logger.warning("stopped with Stripe follow-ups still queued", [])
        }
        logger.info(finished ? "stopped" : "stopped with requests still running", [])
        return finished ? 0 : 1
    }
}
