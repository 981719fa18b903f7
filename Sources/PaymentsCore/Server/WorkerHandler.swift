import FastCGI

/// Adapts the application to the FastCGI server's per-thread handler.
public struct WorkerHandler: RequestHandler {
    let application: Application
    let context: WorkerContext

    /// Creates the handler for one worker thread.
    public init(application: Application, context: WorkerContext) {
        self.application = application
        self.context = context
    }

    public func respond(to request: FastCGIRequest) -> FastCGIResponse {
        application.respond(to: request, context: context)
    }

    public func respondBusy(to request: FastCGIRequest, waited: Duration) -> FastCGIResponse {
        application.respondBusy(to: request, waited: waited, context: context)
    }
}
