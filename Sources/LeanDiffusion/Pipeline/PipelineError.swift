/// Everything that can go wrong between a user's arguments and an image, each naming what to fix.
public enum PipelineError: Error, CustomStringConvertible, Equatable {
    case missingFolder(String)
    case missingFile(String)
    case missingComponent(name: String, folder: String)
    case unsupportedPipeline(String, file: String)
    case unsupportedComponent(name: String, className: String, file: String)
    case invalidConfig(file: String, field: String, reason: String)
    case invalidArgument(String)
    case cancelled
    case outputFailed(path: String, reason: String)
    /// A config or tokenizer file that exists but cannot be read: not a regular file (FIFO, directory, device),
    /// too large, or refused by the system (`reason` says which).
    case unreadableFile(path: String, reason: String)
    /// A `GenerationRequest` field (or a pipeline setting such as `vaeOptions`) out of range; `field` is its name.
    case invalidRequest(field: String, reason: String)
    /// Two components of one folder that cannot work together (the UNet's cross_attention_dim against the text
    /// encoder's hidden_size, say); the message names both files and fields.
    case incompatibleComponents(String)
    /// The request would need more memory than the machine has (see `MemoryEstimate`).
    case insufficientMemory(MemoryEstimate, availableBytes: Int, source: String, advice: [String])
    /// The compute type cannot run on this CPU (bf16 needs AVX-512); `isa` is oneDNN's name for what it has.
    case unsupportedDType(DType, isa: String)
    /// A component produced NaN or infinity: `step` is 1-based, nil outside the denoising loop.
    case nonFinite(component: String, step: Int?, totalSteps: Int?, count: Int, total: Int)

    public var description: String {
        switch self {
        case .missingFolder(let p): return "model folder not found: \(p)"
        case .unsupportedDType(let d, let isa):
            return "\(d) needs oneDNN's bf16 kernels, which need an AVX-512 CPU (avx512_core; native bf16 with "
                + "avx512_bf16); this CPU offers \(isa): use fp32, or fp16 (half the weight bytes, computed in f32)"
        case .missingFile(let p): return "file not found: \(p)"
        case .missingComponent(let n, let f): return "the pipeline in \(f) has no '\(n)' component (expected \(f)/\(n)/)"
        case .unsupportedPipeline(let c, let f): return "\(f): pipeline class '\(c)' is not supported (StableDiffusionPipeline is)"
        case .unsupportedComponent(let n, let c, let f): return "\(f): component '\(n)' has unsupported class '\(c)'"
        case .invalidConfig(let f, let field, let r): return "\(f): field '\(field)': \(r)"
        case .invalidArgument(let m): return m
        case .cancelled: return "generation cancelled"
        case .outputFailed(let p, let r): return "cannot write \(p): \(r)"
        case .unreadableFile(let p, let r): return "\(p): \(r)"
        case .invalidRequest(let f, let r): return "invalid request: \(f): \(r)"
        case .incompatibleComponents(let m): return "incompatible components: \(m)"
        case .insufficientMemory(let e, let available, let source, let advice):
            return "this request needs about \(MemoryEstimate.format(e.additionalBytes)) more memory (\(e.summary)) "
                + "but \(MemoryEstimate.format(available)) is available (\(source))"
                + (advice.isEmpty ? "" : "; what would help: " + advice.joined(separator: ", "))
        case .nonFinite(let component, let step, let totalSteps, let count, let total):
            let when = step.map { s in " at step \(s)" + (totalSteps.map { " of \($0)" } ?? "") } ?? ""
            return "\(component) produced NaN/Inf\(when) (\(count) of \(total) values); the weights may be damaged or "
                + "the precision too low: check the files, try --dtype fp32 or a lower guidance scale"
        }
    }
}
