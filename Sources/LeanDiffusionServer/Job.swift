import LeanDiffusion

/// Where a job is in its life. `done`, `failed` and `cancelled` are final.
public enum JobState: String, Codable, Sendable, CaseIterable {
    case queued, running, done, failed, cancelled

    public var isFinal: Bool { self == .done || self == .failed || self == .cancelled }
}

/// What a job draws: a checked request with its seed drawn, run `iterations` times (A1111's `n_iter`; iteration i
/// uses seed + i), plus the resolved parameters echoed back in responses.
public struct JobSpec: Sendable {
    public var request: GenerationRequest
    public var iterations: Int
    /// Denoising steps of one iteration (`StableDiffusionPipeline.denoisingSteps(for:)`).
    public var stepsPerIteration: Int
    public var parameters: ResolvedParameters

    public init(request: GenerationRequest, iterations: Int, stepsPerIteration: Int, parameters: ResolvedParameters) {
        self.request = request
        self.iterations = iterations
        self.stepsPerIteration = stepsPerIteration
        self.parameters = parameters
    }

    /// The seed each iteration's generator starts from.
    public var seeds: [UInt64] {
        let base = request.seed ?? 0
        return (0..<iterations).map { base &+ UInt64($0) }
    }

    /// Images the job returns.
    public var imageCount: Int { iterations * request.prompts.count * request.imagesPerPrompt }
}

/// The request's values after defaults were applied, as responses report them (A1111's `parameters`).
public struct ResolvedParameters: Codable, Sendable, Equatable {
    public var prompt: String
    public var negativePrompt: String
    public var steps: Int
    public var cfgScale: Double
    public var seed: UInt64
    public var width: Int
    public var height: Int
    public var batchSize: Int
    public var nIter: Int
    public var samplerName: String
    public var scheduler: String
    public var denoisingStrength: Double?

    enum CodingKeys: String, CodingKey {
        case prompt, steps, seed, width, height, scheduler
        case negativePrompt = "negative_prompt", cfgScale = "cfg_scale", batchSize = "batch_size", nIter = "n_iter"
        case samplerName = "sampler_name", denoisingStrength = "denoising_strength"
    }
}

/// A finished job's output: PNG files (with the same `parameters` text chunk as the CLI's) and their infotexts.
public struct JobResult: Sendable {
    public var pngs: [[UInt8]]
    public var infotexts: [String]
    /// The generator seed of each image (the images of one iteration share it: one generator draws the batch).
    public var seeds: [UInt64]
}

/// A job as the API shows it.
public struct JobSnapshot: Codable, Sendable, Equatable {
    public var id: String
    public var state: JobState
    /// Denoising steps done, over all iterations.
    public var step: Int
    public var total: Int
    /// Seconds until it is done, from the measured step time (nil before any step has been timed).
    public var etaSeconds: Double?
    /// Jobs ahead of it in the queue (0 = next); nil once it runs.
    public var position: Int?
    /// Unix times.
    public var createdAt: Double
    public var startedAt: Double?
    public var finishedAt: Double?
    public var error: String?
    /// Images ready to fetch (when done).
    public var images: Int
    public var prompt: String

    enum CodingKeys: String, CodingKey {
        case id, state, step, total, position, error, images, prompt
        case etaSeconds = "eta_seconds", createdAt = "created_at", startedAt = "started_at", finishedAt = "finished_at"
    }
}
