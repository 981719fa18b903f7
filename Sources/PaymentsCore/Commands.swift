import FastCGI
import Foundation
import HTTPClient
import Postgres

/// The `payments` command line: one binary, one subcommand per operator task (SPEC §9).
public enum CommandLineTool {
    static let usage = """
        usage: payments <command>

        commands:
          serve     run the FastCGI server (env: DATABASE_URL, FCGI_SOCKET, WORKERS, …)
          migrate   apply pending migrations from MIGRATIONS_DIR (default: sql)
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
        print(applied.isEmpty ? "migrations: up to date (\(migrations.count) applied)"
                              : "migrations: applied \(applied.joined(separator: ", "))")
        return 0
    }

    private static func serve(environment: Environment, logger: Logger) throws -> Int32 {
        let configuration = try ServerConfiguration(environment: environment)
        let migrations = try Migration.load(from: configuration.migrationsDirectory)
        let shared = SharedState(configuration: configuration, logger: logger, metrics: Metrics(), migrations: migrations)
        let application = Application(shared: shared)

        FastCGIServer.prepareProcess()
        HTTPClient.initializeGlobalState()
        let listener = try Listener(address: configuration.socketAddress, mode: configuration.socketMode)
        let server = FastCGIServer(
            workers: configuration.workers, maximumBodyBytes: configuration.maximumBodyBytes,
            shutdownTimeout: .seconds(configuration.shutdownTimeoutSeconds))
        logger.info("listening", [
            ("socket", .string(configuration.socketAddress)), ("workers", .int(configuration.workers)),
            ("pid", .int(Int(getpid()))),
        ])
        let finished = server.run(
            listener: listener,
            makeHandler: { _ in WorkerHandler(application: application, context: WorkerContext(shared: shared)) },
            onSignal: { signal in logger.info("shutting down", [("signal", .int(Int(signal)))]) })
        logger.info(finished ? "stopped" : "stopped with requests still running", [])
        return finished ? 0 : 1
    }
}
