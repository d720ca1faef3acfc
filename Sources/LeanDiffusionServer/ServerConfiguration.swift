/// What `lean-diffusion serve` is started with besides the model: where it listens, how much work it takes on, and
/// how it protects itself. Every field is checked by `validate()` before the server starts.
public struct ServerConfiguration: Sendable {
    /// Address to bind; loopback unless told otherwise.
    public var host = "127.0.0.1"
    /// TCP port; 0 picks a free one (the server reports which).
    public var port = 7860
    /// Generations running at once, each on its own loaded pipeline (memory grows with it).
    public var concurrency = 1
    /// Jobs that may wait behind the running ones; one more is refused with 429 and Retry-After.
    public var queueSize = 16
    /// When set, every API route needs `Authorization: Bearer <key>` (the page and /health do not).
    public var apiKey: String? = nil
    /// Largest request body accepted (base64 pictures for img2img are the big ones).
    public var maxBodyBytes = 32 << 20
    /// Largest number of images one request may ask for (batch_size x n_iter, or n).
    public var maxImagesPerRequest = 16
    /// A job not finished this many seconds after it was submitted is stopped and fails as timed out.
    public var timeoutSeconds: Double = 600
    /// On SIGTERM: how long running and queued jobs may take to finish before they are cancelled.
    public var drainSeconds: Double = 30
    /// Finished jobs kept for their results; past this the oldest finished job is forgotten.
    public var keptJobs = 256

    public init() {}

    /// Names the first setting out of range.
    public func validate() throws(ServerConfigurationError) {
        func bad(_ field: String, _ reason: String) -> ServerConfigurationError { .invalid(field: field, reason: reason) }
        guard !host.isEmpty else { throw bad("host", "must not be empty") }
        guard (0...65535).contains(port) else { throw bad("port", "\(port) is outside 0...65535") }
        guard (1...64).contains(concurrency) else { throw bad("concurrency", "\(concurrency) is outside 1...64") }
        guard (0...100_000).contains(queueSize) else { throw bad("queue-size", "\(queueSize) is outside 0...100000") }
        guard (1024...(1 << 30)).contains(maxBodyBytes) else {
            throw bad("max-body-bytes", "\(maxBodyBytes) is outside 1024...\(1 << 30)")
        }
        guard (1...4096).contains(maxImagesPerRequest) else {
            throw bad("max-images", "\(maxImagesPerRequest) is outside 1...4096")
        }
        guard timeoutSeconds.isFinite, timeoutSeconds > 0, timeoutSeconds <= 7 * 86400 else {
            throw bad("timeout", "\(timeoutSeconds) must be a positive number of seconds up to a week")
        }
        guard drainSeconds.isFinite, drainSeconds >= 0, drainSeconds <= 86400 else {
            throw bad("drain-seconds", "\(drainSeconds) must be 0...86400 seconds")
        }
        guard (1...1_000_000).contains(keptJobs) else { throw bad("kept-jobs", "\(keptJobs) is outside 1...1000000") }
        if let apiKey, apiKey.isEmpty { throw bad("api-key", "must not be empty when given") }
    }
}

public enum ServerConfigurationError: Error, CustomStringConvertible, Equatable {
    case invalid(field: String, reason: String)

    public var description: String {
        switch self {
        case .invalid(let field, let reason): return "--\(field): \(reason)"
        }
    }
}
