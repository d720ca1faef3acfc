import ArgumentParser
import LeanDiffusion
import LeanDiffusionServer
import Logging
#if canImport(Glibc)
import Glibc
#endif

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the model over HTTP: AUTOMATIC1111's /sdapi/v1 API, OpenAI's images API, async jobs, a web page at /.",
        discussion: "The model loads once, with every option of generate; each request is a job on a bounded queue. "
            + "SIGTERM stops taking work, lets jobs finish for --drain-seconds, then exits 0. API: docs/openapi.yaml.")

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "Address to bind (loopback by default; 0.0.0.0 serves every interface).")
    var host = "127.0.0.1"

    @Option(help: "TCP port (0 picks a free one; the server prints which).")
    var port = 7860

    @Option(help: "Generations at once; each loads its own copy of the model.")
    var concurrency = 1

    @Option(help: "Jobs that may wait; past that a request gets 429 with Retry-After.")
    var queueSize = 16

    @Option(help: "Require 'Authorization: Bearer KEY' on the API (not on the page or /health). Also read from LEAN_DIFFUSION_API_KEY.")
    var apiKey: String?

    @Option(help: "Largest request body in bytes.")
    var maxBodyBytes = 32 << 20

    @Option(help: "Most images one request may ask for.")
    var maxImages = 16

    @Option(help: "Seconds a job may take from submission before it is stopped as timed out.")
    var timeout: Double = 600

    @Option(help: "On SIGTERM, seconds to let queued and running jobs finish before cancelling them.")
    var drainSeconds: Double = 30

    func validate() throws {
        do { try serverConfiguration.validate() } catch { throw ValidationError(error.description) }
    }

    var serverConfiguration: ServerConfiguration {
        var c = ServerConfiguration()
        c.host = host
        c.port = port
        c.concurrency = concurrency
        c.queueSize = queueSize
        c.apiKey = apiKey ?? getenv("LEAN_DIFFUSION_API_KEY").map { String(cString: $0) }
        c.maxBodyBytes = maxBodyBytes
        c.maxImagesPerRequest = maxImages
        c.timeoutSeconds = timeout
        c.drainSeconds = drainSeconds
        return c
    }

    func run() async throws {
        modelOptions.bootstrapLogging()
        var logger = Logger(label: "lean-diffusion-serve")
        logger.logLevel = modelOptions.verbose ? .debug : .notice
        let configuration = serverConfiguration
        let pipelines: [StableDiffusionPipeline]
        do {
            pipelines = try (0..<configuration.concurrency).map { _ in try modelOptions.loadPipeline(logger: logger) }
        } catch let e as PipelineError {
            throw CLIError(Generate.describe(e))
        }
        let path = modelOptions.modelPath
        let (provenance, warnings) = ModelProvenance.compute(modelPath: path, variant: modelOptions.variant,
                                                             vaePath: modelOptions.vae, loras: pipelines[0].loras)
        for w in warnings { FileHandleOutput.stderr("warning: \(w)\n") }
        let model = ServedModel(provenance: provenance, path: path)
        let server = try GenerationServer(pipelines: pipelines, model: model, configuration: configuration, logger: logger)
        let host = configuration.host
        try await server.run { port in
            // Tests and scripts read this line for the port (with --port 0).
            FileHandleOutput.stdout("listening on http://\(host):\(port)\n")
        }
        FileHandleOutput.stderr("stopped\n")
    }
}
