import LeanDiffusion
import Logging
import Dispatch
import Foundation
import Synchronization

/// The model a server runs, as its responses and images name it.
public struct ServedModel: Sendable {
    /// What the images' infotext names: model hash and name, a replacement VAE, LoRA hashes.
    public var provenance: ModelProvenance
    public var path: String
    /// A1111's short model hash (10 hex digits), nil when it could not be computed.
    public var hash: String? { provenance.modelHash }
    /// The checkpoint's or folder's name.
    public var name: String { provenance.model ?? path }

    public init(provenance: ModelProvenance, path: String) {
        self.provenance = provenance
        self.path = path
    }

    public init(hash: String?, name: String, path: String) {
        self.init(provenance: ModelProvenance(modelHash: hash, model: name), path: path)
    }
}

/// One generation slot: a thread that owns a loaded pipeline and runs the queue's jobs on it one at a time.
/// Generation is long, synchronous CPU work, so it runs on its own thread, never on the threads that serve HTTP.
final class GenerationWorker: @unchecked Sendable {
    // The pipeline is used only on this worker's thread (after `start`), which is what makes the type safe to share.
    private let pipeline: StableDiffusionPipeline
    private let queue: JobQueue
    private let model: ServedModel
    private let logger: Logger
    /// Set when the thread has left its loop.
    private let exited = Mutex(false)

    init(pipeline: StableDiffusionPipeline, queue: JobQueue, model: ServedModel, logger: Logger) {
        self.pipeline = pipeline
        self.queue = queue
        self.model = model
        self.logger = logger
    }

    func start(name: String) {
        let thread = Thread { [self] in
            while let job = queue.take() { run(job.id, job.spec) }
            exited.withLock { $0 = true }
        }
        thread.name = name
        // The CLI runs generation on the main thread (8 MiB of stack); give the worker as much.
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// Whether the thread has left its loop (after `JobQueue.stop` and the job it was running).
    var hasExited: Bool { exited.withLock { $0 } }

    func run(_ id: String, _ spec: JobSpec) {
        logger.info("job started", metadata: ["job": "\(id)", "prompt": "\(spec.parameters.prompt)"])
        let started = Date()
        do {
            var pngs: [[UInt8]] = []
            var infotexts: [String] = []
            var seeds: [UInt64] = []
            for (iteration, seed) in spec.seeds.enumerated() {
                var request = spec.request
                request.seed = seed
                let images = try pipeline.generate(request) { p in
                    self.queue.progress(id, step: iteration * p.totalSteps + p.step, total: spec.iterations * p.totalSteps,
                                   stepSeconds: p.seconds)
                }
                let parameters = pipeline.generationParameters(for: request, seed: seed, provenance: model.provenance)
                for (image, p) in zip(images, parameters) {
                    pngs.append(try image.pngData(text: [PNGTextChunk(keyword: "parameters", text: p.infotext)]))
                    infotexts.append(p.infotext)
                    seeds.append(seed)
                }
            }
            queue.finish(id, .success(JobResult(pngs: pngs, infotexts: infotexts, seeds: seeds)))
            logger.info("job done", metadata: ["job": "\(id)", "seconds": "\(Date().timeIntervalSince(started))"])
        } catch {
            // A request the model cannot run (the memory estimate is made here) is the client's 400.
            var status = 500
            if let e = error as? PipelineError, APIError(e, fields: [:]).status == .badRequest { status = 400 }
            queue.finish(id, .failure(error), failureStatus: status)
            logger.info("job ended", metadata: ["job": "\(id)", "error": "\(error)"])
        }
    }
}
