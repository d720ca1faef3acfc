import LeanDiffusion

/// What the HTTP side needs of the model: its defaults and request checks. It holds the first worker's pipeline but
/// reads only its configuration (`check(_:memory: false)`, sizes, scheduler), never its weights, so handlers may
/// call it while the worker generates; the memory estimate is made by `generate` itself on the worker.
final class ModelService: @unchecked Sendable {
    private let pipeline: StableDiffusionPipeline
    let model: ServedModel
    let defaults: SamplingDefaults
    let defaultScheduler: SchedulerKind
    let defaultSize: Int

    init(pipeline: StableDiffusionPipeline, model: ServedModel) {
        self.pipeline = pipeline
        self.model = model
        self.defaults = pipeline.samplingDefaults
        self.defaultScheduler = pipeline.defaultScheduler
        self.defaultSize = pipeline.defaultSize
    }

    /// The library's field checks, their errors in the API's field names; returns the denoising steps one run of
    /// the request takes.
    func check(_ request: GenerationRequest, fields: [String: String]) throws -> Int {
        do { return try pipeline.denoisingSteps(for: request) } catch let e as PipelineError {
            throw APIError(e, fields: fields)
        }
    }

    func outputSize(_ request: GenerationRequest) -> (width: Int, height: Int) { pipeline.outputSize(for: request) }

    func scheduleType(_ request: GenerationRequest) -> String {
        request.schedulerKind(folderDefault: defaultScheduler)
            .a1111ScheduleType(config: request.schedulerConfig(from: pipeline.schedulerConfig))
    }
}
