#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Sampling settings a model folder recommends, from an optional `lean_diffusion.json` next to `model_index.json`:
/// `{"guidance_scale": 2.5, "num_inference_steps": 20}`.
///
/// diffusers has no place for these, yet a model can depend on them: the embedded default model, 18 MB trained in
/// under two hours, follows its prompts at guidance 2.5 and over-saturates at SD's customary 7.5.
/// `StableDiffusionPipeline.samplingDefaults` holds them and the CLI uses them when the user does not say; an explicit
/// option always wins. Fields left out (or the whole file) mean "no recommendation".
public struct SamplingDefaults: Decodable, Equatable, Sendable {
    public static let fileName = "lean_diffusion.json"

    public var guidanceScale: Float?
    public var steps: Int?

    enum CodingKeys: String, CodingKey {
        case guidanceScale = "guidance_scale"
        case steps = "num_inference_steps"
    }

    public init(guidanceScale: Float? = nil, steps: Int? = nil) {
        self.guidanceScale = guidanceScale
        self.steps = steps
    }

    /// Reads `directory/lean_diffusion.json`; no file gives no recommendations, a malformed one is an error.
    public init(directory: String) throws {
        let path = directory + "/" + Self.fileName
        guard FileManager.default.fileExists(atPath: path) else {
            self.init()
            return
        }
        let data = try StableDiffusionPipeline.readInputFile(path)
        do {
            self = try JSONDecoder().decode(Self.self, from: data)
        } catch {
            throw PipelineError.invalidConfig(file: path, field: "-", reason: "not a JSON object of guidance_scale / num_inference_steps (\(error))")
        }
        if let s = steps, s < 1 {
            throw PipelineError.invalidConfig(file: path, field: "num_inference_steps", reason: "\(s) is not a positive count")
        }
        if let g = guidanceScale, !g.isFinite || g < 0 {
            throw PipelineError.invalidConfig(file: path, field: "guidance_scale", reason: "\(g) is not a finite non-negative scale")
        }
    }
}
