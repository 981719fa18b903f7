import FastCGI
import Foundation
import Postgres
import Stripe

/// `payments serve`: both lanes' sockets and workers over one pool, until a signal.
public enum ServeCommand {
    /// Serves until SIGTERM/SIGINT; returns whether every in-flight request finished in time.
    public static func run(environment: Environment) throws -> Bool {
        let logger = Logger()
        let configuration = try ServerConfiguration(environment: environment)
        if let logFile = configuration.logFile { try LogFile.reopen(logFile) }
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
            makeHandler: { lane, _ in
                // A worker without a curl handle cannot serve; there is no way to continue without memory.
                guard
                    let context = try? WorkerContext(
                        shared: shared, lane: LaneKind(rawValue: lane.name) ?? .core)
                else { preconditionFailure("cannot allocate a curl handle") }
                return WorkerHandler(application: application, context: context)
            },
            onHangUp: {
                // SIGHUP: reopen LOG_FILE (logrotate moved it); the server goes on either way.
                guard let logFile = configuration.logFile else { return }
                do {
                    try LogFile.reopen(logFile)
                    logger.info("log file reopened", [("signal", "SIGHUP")])
                } catch {
                    logger.error("log file not reopened", [("reason", .string(OperatorMessage.line(for: error)))])
                }
            },
            onSignal: { signal in logger.info("shutting down", [("signal", .int(Int(signal)))]) })
        if !shared.followUps.drain(timeout: .seconds(5)) {
            logger.warning("stopped with Stripe follow-ups still queued", [])
        }
        logger.info(finished ? "stopped" : "stopped with requests still running", [])
        return finished
    }
}
