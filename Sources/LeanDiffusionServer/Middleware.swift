import Hummingbird
import Synchronization

/// Responses by status class ("2xx", "4xx", ...), for /metrics.
final class HTTPCounts: Sendable {
    struct Snapshot: Sendable { var byClass: [String: Int] }
    private let counts = Mutex(Snapshot(byClass: [:]))

    func record(_ status: Int) {
        counts.withLock { $0.byClass["\(status / 100)xx", default: 0] += 1 }
    }

    var snapshot: Snapshot { counts.withLock { $0 } }
}

/// Counts every response, errors included, by status class.
struct CountingMiddleware<Context: RequestContext>: RouterMiddleware {
    let counts: HTTPCounts

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            let response = try await next(request, context)
            counts.record(response.status.code)
            return response
        } catch let e as any HTTPResponseError {
            counts.record(e.status.code)
            throw e
        } catch {
            counts.record(500)
            throw error
        }
    }
}

/// With an API key, every route but the page and /health needs `Authorization: Bearer <key>`.
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let key: [UInt8]
    static var open: Set<String> { ["/", "/health", "/favicon.ico"] }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if Self.open.contains(request.uri.path) { return try await next(request, context) }
        let header = request.headers[.authorization] ?? ""
        let prefix = "Bearer "
        guard header.hasPrefix(prefix), Self.equal(Array(header.utf8.dropFirst(prefix.utf8.count)), key) else {
            throw APIError(status: .unauthorized, message: "this server needs an API key: Authorization: Bearer <key>",
                           headers: [.wwwAuthenticate: "Bearer"])
        }
        return try await next(request, context)
    }

    /// Compares in time that does not depend on where the bytes differ.
    static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var diff = UInt8(a.count == b.count ? 0 : 1)
        for i in 0..<max(a.count, b.count) {
            diff |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
        }
        return diff == 0
    }
}
