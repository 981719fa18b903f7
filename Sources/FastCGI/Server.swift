internal import CFastCGI
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What a worker thread does with each request. Created once per thread, inside that thread,
/// so it may own non-Sendable resources (a database connection, a curl handle).
public protocol RequestHandler {
    /// Turns one request into one response. Must not throw: errors become responses here.
    func respond(to request: FastCGIRequest) -> FastCGIResponse
}

/// Runs `workers` threads that accept FastCGI requests on one listener until SIGTERM or SIGINT.
///
/// Signal handling follows PLATFORM-NOTES: SIGPIPE is ignored (a client that aborts mid-response
/// must not kill the process), TERM and INT are blocked in every thread and taken with `sigwait`
/// in the calling thread, which then shuts the listener down so that idle workers wake up,
/// lets busy workers finish their in-flight request, and returns within `shutdownTimeout`.
public struct FastCGIServer: Sendable {
    /// Worker thread count.
    public let workers: Int
    /// Largest body read; larger declared bodies are reported as `.tooLarge` without being read.
    public let maximumBodyBytes: Int
    /// How long in-flight requests may take to finish after a shutdown signal.
    public let shutdownTimeout: Duration

    /// Creates a server description.
    public init(workers: Int, maximumBodyBytes: Int, shutdownTimeout: Duration) {
        self.workers = workers
        self.maximumBodyBytes = maximumBodyBytes
        self.shutdownTimeout = shutdownTimeout
    }

    /// Prepares process-wide state; call before opening the listener or starting any thread.
    public static func prepareProcess() {
        FCGX_Init()
        signal(SIGPIPE, SIG_IGN)
        var blocked = shutdownSignals()
        pthread_sigmask(SIG_BLOCK, &blocked, nil)
    }

    /// Serves until a shutdown signal arrives; returns true when every worker finished in time.
    /// `makeHandler` runs inside each worker thread with the worker's index.
    public func run(
        listener: Listener,
        makeHandler: @escaping @Sendable (Int) -> any RequestHandler,
        onSignal: @Sendable (Int32) -> Void
    ) -> Bool {
        let running = Arc(Atomic<Int>(workers))
        for index in 0..<workers {
            let thread = Thread { [maximumBodyBytes] in
                Self.workerLoop(listener: listener, maximumBodyBytes: maximumBodyBytes, handler: makeHandler(index))
                running.value.subtract(1, ordering: .sequentiallyConsistent)
            }
            thread.name = "fcgi-worker-\(index)"
            thread.start()
        }

        var signals = Self.shutdownSignals()
        var received: Int32 = 0
        sigwait(&signals, &received)
        onSignal(received)
        FCGX_ShutdownPending()
        listener.shutdown()

        let deadline = ContinuousClock.now + shutdownTimeout
        while running.value.load(ordering: .sequentiallyConsistent) > 0, ContinuousClock.now < deadline {
            usleep(20_000)
        }
        return running.value.load(ordering: .sequentiallyConsistent) == 0
    }

    private static func workerLoop(listener: Listener, maximumBodyBytes: Int, handler: any RequestHandler) {
        let exchange = Exchange(listener: listener)
        while exchange.accept() {
            let parameters = exchange.parameters()
            let body = exchange.readBody(contentLength: parameters["CONTENT_LENGTH"], maximum: maximumBodyBytes)
            let response = handler.respond(to: FastCGIRequest(parameters: parameters, body: body))
            exchange.write(response)
            exchange.finish()
        }
    }

    private static func shutdownSignals() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        return set
    }
}

/// A reference box so that an `Atomic` (which is not copyable) can be shared between threads.
final class Arc<Value: ~Copyable & Sendable>: Sendable {
    let value: Value
    init(_ value: consuming Value) { self.value = value }
}
