import Hummingbird
import LeanDiffusion
import Logging
import NIOCore
import ServiceLifecycle
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// `lean-diffusion serve`: loaded pipelines (one per concurrent generation), the job queue, and the HTTP routes.
/// The model loads once, before the server listens; each request becomes a job on the queue, run by the first free
/// worker.
public final class GenerationServer: Sendable {
    public let queue: JobQueue
    public let configuration: ServerConfiguration
    let workers: [GenerationWorker]
    let routes: ServerRoutes
    let logger: Logger

    /// `pipelines`: one per concurrent generation (`configuration.concurrency` of them), all of the same model.
    public init(pipelines: [StableDiffusionPipeline], model: ServedModel, configuration: ServerConfiguration,
                logger: Logger) throws {
        try configuration.validate()
        guard let first = pipelines.first, pipelines.count == configuration.concurrency else {
            throw PipelineError.invalidArgument("GenerationServer: \(pipelines.count) pipelines for concurrency "
                                                + "\(configuration.concurrency); give one per concurrent generation")
        }
        self.configuration = configuration
        self.logger = logger
        let queue = JobQueue(queueSize: configuration.queueSize, timeoutSeconds: configuration.timeoutSeconds,
                             keptJobs: configuration.keptJobs)
        self.queue = queue
        workers = pipelines.map { GenerationWorker(pipeline: $0, queue: queue, model: model, logger: logger) }
        routes = ServerRoutes(queue: queue, service: ModelService(pipeline: first, model: model),
                              configuration: configuration, counts: HTTPCounts(), workers: pipelines.count)
    }

    /// The routes, for an `Application` (tests drive it with HummingbirdTesting).
    public func makeRouter() -> Router<BasicRequestContext> { routes.router() }

    /// Starts the generation threads.
    public func startWorkers() {
        for (i, worker) in workers.enumerated() { worker.start(name: "lean-diffusion-worker-\(i)") }
    }

    /// Takes no more work, lets running and queued jobs finish for `seconds`, cancels what is left (a running job
    /// stops at its next step), then stops the workers.
    public func drain(seconds: Double) async {
        queue.beginDrain()
        let deadline = Date().addingTimeInterval(seconds)
        while queue.outstanding > 0, Date() < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        if queue.outstanding > 0 {
            logger.warning("drain time is up: cancelling \(queue.outstanding) jobs")
            queue.cancelAll(reason: "the server shut down (--drain-seconds \(configuration.drainSeconds))")
        }
        queue.stop(workers: workers.count)
        // A cancelled job stops at its next step; wait for that. (Calling drain again waits the same way.)
        while workers.contains(where: { !$0.hasExited }) { try? await Task.sleep(for: .milliseconds(20)) }
    }

    /// Serves until SIGTERM or SIGINT, then drains (`drainSeconds`) and returns. `onListening` gets the bound port.
    public func run(onListening: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        startWorkers()
        let app = Application(router: makeRouter(),
                              configuration: .init(address: .hostname(configuration.host, port: configuration.port),
                                                   serverName: "LeanDiffusion/\(LeanDiffusionVersion.string)"),
                              onServerRunning: { channel in onListening(channel.localAddress?.port ?? 0) },
                              logger: logger)
        // Services shut down in reverse order: the drainer first (the server still answers status requests and
        // refuses new work meanwhile), then the HTTP server.
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: app), .init(service: Drainer(server: self))],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    struct Drainer: Service {
        let server: GenerationServer
        func run() async throws {
            try? await gracefulShutdown()
            server.logger.notice("shutting down: finishing \(server.queue.outstanding) jobs")
            await server.drain(seconds: server.configuration.drainSeconds)
        }
    }
}
