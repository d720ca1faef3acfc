import LeanDiffusion
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// OpenAI's `POST /v1/images/generations` body. `model`, `quality`, `style` and `user` are accepted and ignored
/// (one model is loaded); `seed`, `negative_prompt`, `steps` and `guidance_scale` are our extensions.
struct OpenAIImageRequest: Decodable {
    var prompt: String
    var n: JSONInteger?
    var size: String?
    var responseFormat: String?
    var seed: JSONInteger?
    var negativePrompt: String?
    var steps: JSONInteger?
    var guidanceScale: Double?

    enum CodingKeys: String, CodingKey {
        case prompt, n, size, seed, steps
        case responseFormat = "response_format", negativePrompt = "negative_prompt", guidanceScale = "guidance_scale"
    }
}

struct OpenAIImageResponse: Encodable {
    struct Image: Encodable {
        let b64Json: String
        let revisedPrompt: String
        enum CodingKeys: String, CodingKey { case b64Json = "b64_json", revisedPrompt = "revised_prompt" }
    }
    let created: Int
    let data: [Image]
}

let openAIFieldNames = ["steps": "steps", "guidanceScale": "guidance_scale", "width": "size", "height": "size",
                        "imagesPerPrompt": "n", "prompts": "prompt", "negativePrompts": "negative_prompt"]

extension ModelService {
    /// The OpenAI body as an A1111 one (n images in one batch, "WxH" size), checked the same way.
    func spec(_ body: OpenAIImageRequest, maxImages: Int) throws -> JobSpec {
        if let format = body.responseFormat, format != "b64_json" {
            throw APIError.badRequest("response_format: only \"b64_json\" is served (got \"\(format)\"); images are not stored at URLs",
                                      field: "response_format")
        }
        guard !body.prompt.isEmpty else { throw APIError.badRequest("prompt must not be empty", field: "prompt") }
        let n = body.n?.value ?? 1
        guard n >= 1, n <= maxImages else {
            throw APIError.badRequest("n: \(n) is outside 1...\(maxImages) (--max-images)", field: "n")
        }
        var width: Int? = nil, height: Int? = nil
        if let size = body.size, size != "auto" {
            let parts = size.lowercased().split(separator: "x", omittingEmptySubsequences: false)
            guard parts.count == 2, let w = Int(parts[0]), let h = Int(parts[1]) else {
                throw APIError.badRequest("size: \"\(size)\" is not WIDTHxHEIGHT (e.g. \"512x512\") or \"auto\"", field: "size")
            }
            (width, height) = (w, h)
        }
        var a1111 = A1111Request()
        a1111.prompt = body.prompt
        a1111.negativePrompt = body.negativePrompt
        a1111.steps = body.steps
        a1111.cfgScale = body.guidanceScale
        a1111.seed = body.seed
        a1111.width = width.map(JSONInteger.init)
        a1111.height = height.map(JSONInteger.init)
        a1111.batchSize = JSONInteger(n)
        do {
            return try spec(a1111, imageToImage: false, maxImages: maxImages)
        } catch var e as APIError {
            // Name OpenAI's fields in the message.
            if let field = e.field, let name = [("batch_size", "n"), ("cfg_scale", "guidance_scale"), ("width", "size"),
                                                ("height", "size")].first(where: { $0.0 == field })?.1 {
                e.field = name
                e.message = e.message.replacing(field + ":", with: name + ":")
            }
            throw e
        }
    }
}
