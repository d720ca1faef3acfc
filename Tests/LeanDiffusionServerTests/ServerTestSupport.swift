import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import HTTPTypes
import Hummingbird
import LeanDiffusion
import LeanDiffusionServer
import Logging
import NIOCore
import XCTest

/// A server on the embedded model (Models/tiny-sd), in process and live on a free loopback port; the tests talk
/// to it over real HTTP with `TestClient`.
enum ServerFixture {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    static let model = root.appendingPathComponent("../../Models/tiny-sd").standardized.path
    static let served = ServedModel(hash: "0123456789", name: "tiny-sd", path: model)

    static func withServer(_ configure: (inout ServerConfiguration) -> Void = { _ in },
                           _ body: @Sendable (TestClient, GenerationServer) async throws -> Void) async throws {
        var configuration = ServerConfiguration()
        configuration.port = 0
        configure(&configuration)
        let pipelines = try (0..<configuration.concurrency).map { _ in try StableDiffusionPipeline(directory: model) }
        var logger = Logger(label: "server-test")
        logger.logLevel = .warning
        let server = try GenerationServer(pipelines: pipelines, model: served, configuration: configuration, logger: logger)
        server.startWorkers()
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        // Stopping the app by cancelling its task logs a shutdown error that is no failure: keep it quiet.
        var appLogger = logger
        appLogger.logLevel = .critical
        let app = Application(router: server.makeRouter(),
                              configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { channel in portContinuation.yield(channel.localAddress?.port ?? 0) },
                              logger: appLogger)
        let running = Task { try await app.runService(gracefulShutdownSignals: []) }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw CancellationError() }
        let client = TestClient(port: port)
        do {
            try await body(client, server)
        } catch {
            await server.drain(seconds: 0)
            running.cancel()
            throw error
        }
        await server.drain(seconds: 0)
        running.cancel()
        _ = await running.result
    }
}

/// A response as the tests read it.
struct TestResponse: Sendable {
    let status: HTTPResponse.Status
    let headers: HTTPFields
    let body: ByteBuffer
}

/// Plain HTTP/1.1 to the test server through URLSession, as a client program would talk to it.
struct TestClient: Sendable {
    let port: Int

    func execute(uri: String, method: HTTPRequest.Method, headers: HTTPFields = [:], body: ByteBuffer? = nil,
                 timeout: Double = 120) async throws -> TestResponse {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(uri)")!)
        request.httpMethod = method.rawValue
        request.timeoutInterval = timeout
        for field in headers { request.setValue(field.value, forHTTPHeaderField: field.name.rawName) }
        if let body { request.httpBody = Data(body.readableBytesView) }
        let (data, http): (Data, HTTPURLResponse) = try await withCheckedThrowingContinuation { continuation in
            URLSession.shared.dataTask(with: request) { data, response, error in
                if let error { continuation.resume(throwing: error); return }
                guard let http = response as? HTTPURLResponse else {
                    continuation.resume(throwing: URLError(.badServerResponse)); return
                }
                continuation.resume(returning: (data ?? Data(), http))
            }.resume()
        }
        var fields = HTTPFields()
        for (k, v) in http.allHeaderFields {
            if let name = HTTPField.Name("\(k)") { fields[name] = "\(v)" }
        }
        return TestResponse(status: HTTPResponse.Status(code: http.statusCode), headers: fields, body: ByteBuffer(bytes: data))
    }
}

/// A JSON body for a request.
func json(_ object: [String: Any]) -> ByteBuffer {
    ByteBuffer(bytes: try! JSONSerialization.data(withJSONObject: object))
}

/// A response body as a JSON object (nil when it is not one).
func object(_ response: TestResponse) -> [String: Any]? {
    try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
}

func text(_ response: TestResponse) -> String { String(decoding: response.body.readableBytesView, as: UTF8.self) }

extension TestClient {
    /// POSTs a JSON body, returning status and parsed body.
    func post(_ uri: String, _ body: [String: Any], headers: HTTPFields = [:]) async throws -> TestResponse {
        var h = headers
        h[.contentType] = "application/json"
        return try await execute(uri: uri, method: .post, headers: h, body: json(body))
    }

    func get(_ uri: String, headers: HTTPFields = [:]) async throws -> TestResponse {
        try await execute(uri: uri, method: .get, headers: headers)
    }

    /// Polls a job until it reaches a final state (at most `timeout` seconds).
    func waitForJob(_ id: String, timeout: Double = 60) async throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let r = try await get("/v1/jobs/\(id)")
            let o = try XCTUnwrap(object(r))
            if let state = o["state"] as? String, ["done", "failed", "cancelled"].contains(state) { return o }
            try await Task.sleep(for: .milliseconds(30))
        }
        XCTFail("job \(id) did not finish in \(timeout) s")
        return [:]
    }

    /// Polls until the job runs.
    func waitUntilRunning(_ id: String, timeout: Double = 30) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let r = try await get("/v1/jobs/\(id)")
            let o = try XCTUnwrap(object(r))
            if o["state"] as? String == "running", (o["step"] as? Int ?? 0) > 0 { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        XCTFail("job \(id) did not start in \(timeout) s")
    }
}

/// The base64 PNGs of an A1111 response, decoded.
func pngs(_ body: [String: Any]) throws -> [[UInt8]] {
    let images = try XCTUnwrap(body["images"] as? [String])
    return try images.map { [UInt8](try XCTUnwrap(Data(base64Encoded: $0))) }
}

/// Writes PNG bytes to a temporary file and reads its pixels and `parameters` chunk back with the library.
func decodePNG(_ bytes: [UInt8]) throws -> (image: RGBImage, parameters: String?) {
    let path = NSTemporaryDirectory() + "server-test-\(UUID().uuidString).png"
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    defer { try? FileManager.default.removeItem(atPath: path) }
    return (try RGBImage.load(path: path), try PNGText.text("parameters", from: path))
}
