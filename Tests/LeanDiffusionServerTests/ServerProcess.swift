import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest

/// `lean-diffusion serve --port 0` as a child process: the port it printed, plain HTTP to it, and signals.
final class ServerProcess: @unchecked Sendable {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardized
    static let binary = repo.appendingPathComponent(".build/release/lean-diffusion").path

    let process = Process()
    private(set) var port = 0
    private let errors = Pipe()
    private let lock = NSLock()
    private var errorText = ""

    /// Starts the server and waits (at most `timeout` s) for its "listening on" line.
    init(_ arguments: [String], timeout: Double = 60) throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: Self.binary), "build lean-diffusion first")
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = ["serve", "--port", "0"] + arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = errors
        try process.run()
        errors.fileHandleForReading.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self, !d.isEmpty else { return }
            self.lock.withLock { self.errorText += String(decoding: d, as: UTF8.self) }
        }
        var text = ""
        let deadline = Date().addingTimeInterval(timeout)
        var found: Int? = nil
        while found == nil, Date() < deadline, process.isRunning {
            let d = out.fileHandleForReading.availableData
            if d.isEmpty { usleep(20_000); continue }
            text += String(decoding: d, as: UTF8.self)
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("listening on http://") }),
               let colon = line.lastIndex(of: ":") {
                found = Int(line[line.index(after: colon)...])
            }
        }
        guard let found else {
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
            throw StartFailure(message: "lean-diffusion serve did not print its port in \(timeout) s; stdout: \(text) "
                               + "stderr: \(lock.withLock { errorText })")
        }
        port = found
    }

    struct StartFailure: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }

    var stderr: String { lock.withLock { errorText } }

    func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }

    /// Waits for the process to exit (at most `timeout` s; then kills it and fails).
    func wait(timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning, Date() < deadline { usleep(20_000) }
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
            return nil
        }
        return process.terminationStatus
    }

    deinit {
        if process.isRunning { process.terminate(); process.waitUntilExit() }
        errors.fileHandleForReading.readabilityHandler = nil
    }

    struct HTTPResult {
        let status: Int
        let body: Data
        let headers: [String: String]
        var json: [String: Any]? { try? JSONSerialization.jsonObject(with: body) as? [String: Any] }
    }

    /// One HTTP request to the server (URLSession, as a client program would).
    func request(_ method: String, _ path: String, json: [String: Any]? = nil, timeout: Double = 120) throws -> HTTPResult {
        var r = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        r.httpMethod = method
        r.timeoutInterval = timeout
        if let json {
            r.httpBody = try JSONSerialization.data(withJSONObject: json)
            r.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result: Result<HTTPResult, any Error> = .failure(URLError(.timedOut))
        URLSession.shared.dataTask(with: r) { data, response, error in
            if let error {
                result = .failure(error)
            } else if let http = response as? HTTPURLResponse {
                var headers: [String: String] = [:]
                for (k, v) in http.allHeaderFields { headers["\(k)".lowercased()] = "\(v)" }
                result = .success(HTTPResult(status: http.statusCode, body: data ?? Data(), headers: headers))
            }
            done.signal()
        }.resume()
        _ = done.wait(timeout: .now() + timeout + 5)
        return try result.get()
    }
}
