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

    public var description: String {
        switch self {
        case .missingFolder(let p): return "model folder not found: \(p)"
        case .missingFile(let p): return "file not found: \(p)"
        case .missingComponent(let n, let f): return "the pipeline in \(f) has no '\(n)' component (expected \(f)/\(n)/)"
        case .unsupportedPipeline(let c, let f): return "\(f): pipeline class '\(c)' is not supported (StableDiffusionPipeline is)"
        case .unsupportedComponent(let n, let c, let f): return "\(f): component '\(n)' has unsupported class '\(c)'"
        case .invalidConfig(let f, let field, let r): return "\(f): field '\(field)': \(r)"
        case .invalidArgument(let m): return m
        case .cancelled: return "generation cancelled"
        case .outputFailed(let p, let r): return "cannot write \(p): \(r)"
        }
    }
}
