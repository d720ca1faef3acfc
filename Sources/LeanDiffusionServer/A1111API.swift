import LeanDiffusion
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The fields of AUTOMATIC1111's `/sdapi/v1/txt2img` and `/sdapi/v1/img2img` bodies that apply here; others
/// (restore_faces, enable_hr, styles, mask_blur, ...) are ignored, as A1111 ignores fields it does not know.
struct A1111Request: Decodable {
    var prompt: String?
    var negativePrompt: String?
    var steps: JSONInteger?
    var cfgScale: Double?
    var seed: JSONInteger?
    var width: JSONInteger?
    var height: JSONInteger?
    var batchSize: JSONInteger?
    var nIter: JSONInteger?
    var samplerName: String?
    var samplerIndex: String?
    var scheduler: String?
    var overrideSettings: OverrideSettings?
    // img2img
    var initImages: [String]?
    var mask: String?
    var denoisingStrength: Double?

    struct OverrideSettings: Decodable {
        /// A1111's CLIP skip, 1-based (1 = the last layer).
        var clipStopAtLastLayers: JSONInteger?
        enum CodingKeys: String, CodingKey { case clipStopAtLastLayers = "CLIP_stop_at_last_layers" }
    }

    enum CodingKeys: String, CodingKey {
        case prompt, steps, seed, width, height, scheduler, mask
        case negativePrompt = "negative_prompt", cfgScale = "cfg_scale", batchSize = "batch_size", nIter = "n_iter"
        case samplerName = "sampler_name", samplerIndex = "sampler_index", overrideSettings = "override_settings"
        case initImages = "init_images", denoisingStrength = "denoising_strength"
    }
}

/// A JSON integer. Swift's decoder reports 1.5 or 1e30 where an `Int` belongs as invalid JSON with no field; this
/// names the field ("seed: expected an integer, got 1.5").
struct JSONInteger: Decodable, Equatable {
    let value: Int

    init(_ value: Int) { self.value = value }

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let i = try? c.decode(Int.self) {
            value = i
        } else if let d = try? c.decode(Double.self) {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: "expected an integer, got \(d)"))
        } else {
            throw DecodingError.typeMismatch(Int.self, .init(codingPath: decoder.codingPath,
                                                             debugDescription: "expected an integer"))
        }
    }
}

/// A1111's names for our request fields, for errors.
let a1111FieldNames = ["steps": "steps", "guidanceScale": "cfg_scale", "width": "width", "height": "height",
                       "imagesPerPrompt": "batch_size", "clipSkip": "override_settings.CLIP_stop_at_last_layers",
                       "prompts": "prompt", "negativePrompts": "negative_prompt", "initImage": "init_images",
                       "mask": "mask", "strength": "denoising_strength"]

/// A1111's schedule types we can follow: the config's own spacing, or a `timestep_spacing` override.
let a1111ScheduleTypes: [(name: String, spacing: TimestepSpacing?)] = [
    ("Automatic", nil), ("Uniform", .linspace), ("SGM Uniform", .trailing), ("DDIM", .leading),
]

extension ModelService {
    /// A checked job from an A1111 body. Fields left out take the CLI's defaults: the model's size and scheduler,
    /// the folder's sampling defaults (else 30 steps, guidance 7.5), a random seed; img2img's strength 0.75
    /// (A1111's default). Every problem is a 400 naming the A1111 field.
    func spec(_ body: A1111Request, imageToImage: Bool, maxImages: Int) throws -> JobSpec {
        var request = GenerationRequest(prompt: body.prompt ?? "", negativePrompt: body.negativePrompt)
        request.steps = body.steps?.value ?? defaults.steps ?? 30
        if let cfg = body.cfgScale {
            guard cfg.isFinite, abs(cfg) <= 1e6 else { throw APIError.badRequest("cfg_scale: \(cfg) is out of range", field: "cfg_scale") }
            request.guidanceScale = Float(cfg)
        } else {
            request.guidanceScale = defaults.guidanceScale ?? 7.5
        }
        request.width = body.width?.value
        request.height = body.height?.value
        let batch = body.batchSize?.value ?? 1, iterations = body.nIter?.value ?? 1
        guard batch >= 1 else { throw APIError.badRequest("batch_size: \(batch) must be at least 1", field: "batch_size") }
        guard iterations >= 1 else { throw APIError.badRequest("n_iter: \(iterations) must be at least 1", field: "n_iter") }
        guard batch <= maxImages, iterations <= maxImages, batch * iterations <= maxImages else {
            throw APIError.badRequest("batch_size x n_iter = \(batch) x \(iterations) is more than the \(maxImages) images "
                                      + "one request may ask for (--max-images)", field: "batch_size")
        }
        request.imagesPerPrompt = batch
        request.seed = try Self.seed(body.seed?.value, field: "seed")
        if let name = body.samplerName ?? body.samplerIndex {
            request.scheduler = try Self.scheduler(named: name, field: body.samplerName != nil ? "sampler_name" : "sampler_index")
        }
        if let type = body.scheduler {
            guard let match = a1111ScheduleTypes.first(where: { $0.name.lowercased() == type.lowercased() }) else {
                throw APIError.badRequest("scheduler: unknown schedule type \"\(type)\"; known: "
                                          + a1111ScheduleTypes.map(\.name).joined(separator: ", "), field: "scheduler")
            }
            request.timestepSpacing = match.spacing
        }
        if let skip = body.overrideSettings?.clipStopAtLastLayers?.value {
            guard skip >= 1 else {
                throw APIError.badRequest("override_settings.CLIP_stop_at_last_layers: \(skip) must be at least 1 (1 = the last layer)",
                                          field: "override_settings.CLIP_stop_at_last_layers")
            }
            request.clipSkip = skip - 1
        }
        var strength: Double? = nil
        if imageToImage {
            guard let images = body.initImages, let first = images.first else {
                throw APIError.badRequest("init_images: img2img needs a picture (base64 PNG or JPEG)", field: "init_images")
            }
            guard images.count == 1 else {
                throw APIError.badRequest("init_images: one picture per request (got \(images.count))", field: "init_images")
            }
            let picture = try Self.picture(first, field: "init_images[0]")
            let mask = try body.mask.map { try Self.picture($0, field: "mask") }
            strength = body.denoisingStrength ?? 0.75
            request.initImage = InitImage(image: picture, mask: mask, strength: strength)
        } else if body.initImages != nil || body.mask != nil {
            throw APIError.badRequest("init_images and mask belong to /sdapi/v1/img2img", field: body.initImages != nil ? "init_images" : "mask")
        }
        let steps = try check(request, fields: a1111FieldNames)
        let kind = request.scheduler ?? defaultScheduler
        let size = outputSize(request)
        let parameters = ResolvedParameters(
            prompt: request.prompts[0], negativePrompt: body.negativePrompt ?? "", steps: request.steps,
            cfgScale: Double(request.guidanceScale), seed: request.seed!, width: size.width, height: size.height,
            batchSize: batch, nIter: iterations, samplerName: kind.a1111SamplerName,
            scheduler: scheduleType(request), denoisingStrength: strength)
        return JobSpec(request: request, iterations: iterations, stepsPerIteration: steps, parameters: parameters)
    }

    /// -1 or nothing: a random seed, drawn here so that responses and images can name it.
    static func seed(_ value: Int?, field: String) throws -> UInt64 {
        guard let value, value != -1 else { return UInt64.random(in: 0...UInt64(UInt32.max)) }
        guard value >= 0 else { throw APIError.badRequest("\(field): \(value) must be -1 (random) or at least 0", field: field) }
        return UInt64(value)
    }

    /// A1111's sampler name ("Euler a", "DPM++ 2M") or ours ("euler-a", "dpm++2m").
    static func scheduler(named name: String, field: String) throws -> SchedulerKind {
        if let kind = SchedulerKind(a1111SamplerName: name) ?? SchedulerKind(rawValue: name.lowercased()) { return kind }
        let known = SchedulerKind.allCases.map { "\"\($0.a1111SamplerName)\" (\($0.rawValue))" }.joined(separator: ", ")
        throw APIError.badRequest("\(field): unknown sampler \"\(name)\"; known: \(known)", field: field)
    }

    /// A base64 picture, with or without a `data:image/...;base64,` prefix.
    static func picture(_ text: String, field: String) throws -> RGBImage {
        var b64 = Substring(text)
        if b64.hasPrefix("data:"), let comma = b64.firstIndex(of: ",") { b64 = b64[b64.index(after: comma)...] }
        guard let data = Data(base64Encoded: String(b64), options: .ignoreUnknownCharacters), !data.isEmpty else {
            throw APIError.badRequest("\(field): not base64 data of a PNG or JPEG picture", field: field)
        }
        do {
            return try RGBImage.decode([UInt8](data), path: field)
        } catch {
            throw APIError.badRequest("\(field): \(error.description)", field: field)
        }
    }
}

/// A1111's response: base64 PNGs (with their `parameters` chunk), the resolved parameters, and `info`, a JSON
/// string with the seeds and infotexts.
struct A1111Response: Encodable {
    let images: [String]
    let parameters: ResolvedParameters
    let info: String

    struct Info: Encodable {
        let prompt: String
        let allPrompts: [String]
        let negativePrompt: String
        let allNegativePrompts: [String]
        let seed: UInt64
        let allSeeds: [UInt64]
        let subseed: Int64 = -1
        let allSubseeds: [Int64]
        let width: Int
        let height: Int
        let samplerName: String
        let cfgScale: Double
        let steps: Int
        let batchSize: Int
        let denoisingStrength: Double?
        let sdModelName: String
        let sdModelHash: String?
        let indexOfFirstImage = 0
        let infotexts: [String]
        let version: String

        enum CodingKeys: String, CodingKey {
            case prompt, seed, subseed, width, height, steps, infotexts, version
            case allPrompts = "all_prompts", negativePrompt = "negative_prompt", allNegativePrompts = "all_negative_prompts"
            case allSeeds = "all_seeds", allSubseeds = "all_subseeds", samplerName = "sampler_name", cfgScale = "cfg_scale"
            case batchSize = "batch_size", denoisingStrength = "denoising_strength", sdModelName = "sd_model_name"
            case sdModelHash = "sd_model_hash", indexOfFirstImage = "index_of_first_image"
        }
    }

    init(result: JobResult, parameters p: ResolvedParameters, model: ServedModel) throws {
        images = result.pngs.map { Data($0).base64EncodedString() }
        parameters = p
        let n = result.pngs.count
        let info = Info(prompt: p.prompt, allPrompts: Array(repeating: p.prompt, count: n), negativePrompt: p.negativePrompt,
                        allNegativePrompts: Array(repeating: p.negativePrompt, count: n), seed: p.seed,
                        allSeeds: result.seeds, allSubseeds: Array(repeating: -1, count: n), width: p.width,
                        height: p.height, samplerName: p.samplerName, cfgScale: p.cfgScale, steps: p.steps,
                        batchSize: p.batchSize, denoisingStrength: p.denoisingStrength, sdModelName: model.name,
                        sdModelHash: model.hash, infotexts: result.infotexts,
                        version: "LeanDiffusion \(LeanDiffusionVersion.string)")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        self.info = String(decoding: try encoder.encode(info), as: UTF8.self)
    }
}
