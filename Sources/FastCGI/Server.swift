internal import CFastCGI
import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// What a worker thread does with each request. Created once per thread, inside that thread,
/// so it may own non-Sendable resources (a curl handle, a view of the database pool).
public protocol RequestHandler {
    /// Turns one request into one response. Must not throw: errors become responses here.
    func respond(to request: FastCGIRequest) -> FastCGIResponse
    /// The fast answer for a request that waited `waited` for a free worker of its lane and
    /// gave up (backpressure): nothing of the request has run.
    func respondBusy(to request: FastCGIRequest, waited: Duration) -> FastCGIResponse
}

/// One class of requests with workers of its own, on its own listening socket, so that one
/// class (slow Stripe calls) can never make another (webhooks, health checks) wait.
///
/// `workers` requests run at once. Up to `queueCapacity` more are accepted and wait for a free
/// worker, each at most `queueTimeout` counted from when nginx sent it (`REQUEST_START`);
/// then it gets `respondBusy`. Past that, connections wait in the socket's listen backlog (a
/// FIFO) and are answered as soon as a thread accepts them: late ones get `respondBusy` at once.
/// A lane whose workers never wait on anything slow needs no queue threads: its backlog is
/// fairer (a semaphore lets a returning worker overtake the threads already waiting).
public struct Lane: Sendable {
    /// A short name for logs and metrics (`core`, `stripe`).
    public let name: String
    /// The lane's socket.
    public let listener: Listener
    /// Requests served at the same time.
    public let workers: Int
    /// Accepted requests that may wait for a worker.
    public let queueCapacity: Int
    /// Longest wait for a worker.
    public let queueTimeout: Duration

    /// Describes a lane.
    public init(name: String, listener: Listener, workers: Int, queueCapacity: Int, queueTimeout: Duration) {
        self.name = name
        self.listener = listener
        self.workers = workers
        self.queueCapacity = queueCapacity
        self.queueTimeout = queueTimeout
    }
}

/// Runs every lane's threads until SIGTERM or SIGINT.
///
/// Signal handling: SIGPIPE is ignored (a client that aborts mid-response
/// must not kill the process), TERM, INT and HUP are blocked in every thread and taken with
/// `sigwait` in the calling thread. HUP calls `onHangUp` (the app reopens its log file) and the
/// server goes on; TERM and INT shut the listeners down so that idle threads wake up, let busy
/// workers finish their in-flight request, and return within `shutdownTimeout`.
public struct FastCGIServer: Sendable {
    /// Largest body read; larger declared bodies are reported as `.tooLarge` without being read.
    public let maximumBodyBytes: Int
    /// How long in-flight requests may take to finish after a shutdown signal.
    public let shutdownTimeout: Duration

    /// Creates a server description.
    public init(maximumBodyBytes: Int, shutdownTimeout: Duration) {
        self.maximumBodyBytes = maximumBodyBytes
        self.shutdownTimeout = shutdownTimeout
    }

    /// Prepares process-wide state; call before opening the listener or starting any thread.
    public static func prepareProcess() {
        FCGX_Init()
        signal(SIGPIPE, SIG_IGN)
        var blocked = handledSignals()
        pthread_sigmask(SIG_BLOCK, &blocked, nil)
    }

    /// Serves until a shutdown signal arrives; returns true when every thread finished in time.
    /// `makeHandler` runs inside each thread with its lane and a process-wide thread index.
    public func run(
        lanes: [Lane],
        makeHandler: @escaping @Sendable (Lane, Int) -> any RequestHandler,
        onHangUp: @Sendable () -> Void = {},
        onSignal: @Sendable (Int32) -> Void
    ) -> Bool {
        let threadCount = lanes.reduce(0) { $0 + $1.workers + $1.queueCapacity }
        let running = Arc(Atomic<Int>(threadCount))
        var index = 0
        for lane in lanes {
            let slots = DispatchSemaphore(value: lane.workers)
            for _ in 0..<(lane.workers + lane.queueCapacity) {
                let thread = Thread { [maximumBodyBytes, index] in
                    Self.serve(
                        lane, slots: slots, maximumBodyBytes: maximumBodyBytes, handler: makeHandler(lane, index))
                    running.value.subtract(1, ordering: .sequentiallyConsistent)
                }
                thread.name = "fcgi-\(lane.name)-\(index)"
                thread.start()
                index += 1
            }
        }

        var signals = Self.handledSignals()
        var received: Int32 = 0
        while sigwait(&signals, &received) == 0, received == SIGHUP {
            onHangUp()
        }
        onSignal(received)
        FCGX_ShutdownPending()
        for lane in lanes { lane.listener.shutdown() }

        let deadline = ContinuousClock.now + shutdownTimeout
        while running.value.load(ordering: .sequentiallyConsistent) > 0, ContinuousClock.now < deadline {
            usleep(20_000)
        }
        return running.value.load(ordering: .sequentiallyConsistent) == 0
    }

    /// One thread's loop: accept, read, wait (bounded) for one of the lane's worker slots, answer.
    private static func serve(
        _ lane: Lane, slots: DispatchSemaphore, maximumBodyBytes: Int, handler: any RequestHandler
    ) {
        let exchange = Exchange(listener: lane.listener)
        while exchange.accept() {
            let accepted = Date()
            let parameters = exchange.parameters()
            let body = exchange.readBody(contentLength: parameters["CONTENT_LENGTH"], maximum: maximumBodyBytes)
            let request = FastCGIRequest(parameters: parameters, body: body)
            let sent = Self.sentTime(parameters["REQUEST_START"], accepted: accepted)
            let giveUp = sent.addingTimeInterval(
                Double(lane.queueTimeout.components.seconds)
                    + Double(lane.queueTimeout.components.attoseconds) / 1e18)
            // A request that already waited its time in the socket's backlog is not served late.
            let remaining = giveUp.timeIntervalSinceNow
            if remaining > 0, slots.wait(timeout: .now() + remaining) == .success {
                exchange.write(handler.respond(to: request))
                slots.signal()
            } else {
                let waited = Date().timeIntervalSince(sent)
                exchange.write(handler.respondBusy(to: request, waited: .milliseconds(Int(waited * 1000))))
            }
            exchange.finish(inputRead: body.isComplete)
        }
    }

    /// When nginx sent the request (`$msec`), if that is plausible; else when we accepted it.
    /// A value from the future, or older than nginx would ever wait (60 s), is not trusted:
    /// nginx and the app must share a clock (NTP) for the bound to be exact.
    static func sentTime(_ requestStart: String?, accepted: Date) -> Date {
        guard let requestStart, let seconds = Double(requestStart) else { return accepted }
        let sent = Date(timeIntervalSince1970: seconds)
        let age = accepted.timeIntervalSince(sent)
        return (-1.0...60.0).contains(age) ? min(sent, accepted) : accepted
    }

    private static func handledSignals() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGHUP)
        return set
    }
}

/// A reference box so that an `Atomic` (which is not copyable) can be shared between threads.
final class Arc<Value: ~Copyable & Sendable>: Sendable {
    let value: Value
    init(_ value: consuming Value) { self.value = value }
}
