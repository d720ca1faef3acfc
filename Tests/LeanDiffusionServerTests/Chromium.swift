import Foundation
#if canImport(Glibc)
import Glibc
#endif
import XCTest

/// Headless Chromium driven over the DevTools protocol on `--remote-debugging-pipe` (JSON messages separated by
/// NUL on file descriptors 3 and 4): no WebDriver, no WebSocket client, only Debian's `chromium`.
final class Chromium {
    static let candidates = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
    static var path: String? { candidates.first { FileManager.default.isExecutableFile(atPath: $0) } }

    let pid: pid_t
    private let commands: Int32
    private let replies: Int32
    private var buffer: [UInt8] = []
    private var nextID = 1
    private let profile: String
    /// The page's session, after `open`.
    private var session: String?

    struct ProtocolError: Error, CustomStringConvertible { let description: String }

    init(windowWidth: Int = 1000, windowHeight: Int = 1150) throws {
        guard let path = Self.path else { throw ProtocolError(description: "no chromium") }
        profile = NSTemporaryDirectory() + "lean-chromium-\(UUID().uuidString)"
        var toChrome: [Int32] = [0, 0], fromChrome: [Int32] = [0, 0]
        guard pipe(&toChrome) == 0, pipe(&fromChrome) == 0 else { throw ProtocolError(description: "pipe failed") }
        // Move every end above 10 so that the dup2s onto 3 and 4 cannot clobber one another.
        let high = [toChrome[0], toChrome[1], fromChrome[0], fromChrome[1]].map { fd -> Int32 in
            let h = fcntl(fd, F_DUPFD, 10); close(fd); return h
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, high[0], 3)
        posix_spawn_file_actions_adddup2(&actions, high[3], 4)
        for fd in high { posix_spawn_file_actions_addclose(&actions, fd) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let args = [path, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                    "--no-default-browser-check", "--disable-extensions", "--user-data-dir=\(profile)",
                    "--remote-debugging-pipe", "--window-size=\(windowWidth),\(windowHeight)", "about:blank"]
        var argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, nil, &argv, environ)
        close(high[0]); close(high[3])
        guard rc == 0 else { throw ProtocolError(description: "posix_spawn \(path): \(String(cString: strerror(rc)))") }
        pid = child
        commands = high[1]
        replies = high[2]
    }

    deinit {
        close(commands)
        close(replies)
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        try? FileManager.default.removeItem(atPath: profile)
    }

    /// Sends a command and waits for its reply (events in between are dropped).
    @discardableResult
    func send(_ method: String, _ params: [String: Any] = [:], sessionless: Bool = false, timeout: Double = 30) throws -> [String: Any] {
        let id = nextID
        nextID += 1
        var message: [String: Any] = ["id": id, "method": method, "params": params]
        if !sessionless, let session { message["sessionId"] = session }
        var bytes = [UInt8](try JSONSerialization.data(withJSONObject: message))
        bytes.append(0)
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBytes { write(commands, $0.baseAddress, $0.count) }
            guard n > 0 else { throw ProtocolError(description: "chromium closed its pipe") }
            written += n
        }
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            while let nul = buffer.firstIndex(of: 0) {
                let frame = Array(buffer[..<nul])
                buffer.removeSubrange(...nul)
                guard let reply = try JSONSerialization.jsonObject(with: Data(frame)) as? [String: Any],
                      reply["id"] as? Int == id else { continue }
                if let error = reply["error"] as? [String: Any] {
                    throw ProtocolError(description: "\(method): \(error["message"] ?? error)")
                }
                return reply["result"] as? [String: Any] ?? [:]
            }
            var pfd = pollfd(fd: replies, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 200) >= 0 else { continue }
            if pfd.revents & Int16(POLLIN | POLLHUP) != 0 {
                var chunk = [UInt8](repeating: 0, count: 65536)
                let n = read(replies, &chunk, chunk.count)
                guard n > 0 else { throw ProtocolError(description: "chromium closed its pipe") }
                buffer += chunk[..<n]
            }
        }
        throw ProtocolError(description: "\(method): no reply in \(timeout) s")
    }

    /// Opens `url` in a new page and attaches to it.
    func open(_ url: String) throws {
        let target = try send("Target.createTarget", ["url": url], sessionless: true)
        guard let targetID = target["targetId"] as? String else { throw ProtocolError(description: "no target") }
        let attached = try send("Target.attachToTarget", ["targetId": targetID, "flatten": true], sessionless: true)
        session = attached["sessionId"] as? String
        try send("Page.enable")
        try send("Runtime.enable")
    }

    /// Evaluates JavaScript in the page (promises awaited) and returns its JSON-able value.
    func evaluate(_ expression: String) throws -> Any? {
        let r = try send("Runtime.evaluate", ["expression": expression, "awaitPromise": true, "returnByValue": true])
        if let exception = r["exceptionDetails"] as? [String: Any] {
            throw ProtocolError(description: "JavaScript: \(exception["text"] ?? "") \((exception["exception"] as? [String: Any])?["description"] ?? "")")
        }
        return (r["result"] as? [String: Any])?["value"]
    }

    /// Polls `expression` until it is truthy (a non-null, non-false value), at most `timeout` s.
    func waitFor(_ expression: String, timeout: Double) throws -> Any {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let v = try evaluate(expression), !(v is NSNull), (v as? Bool) != false { return v }
            usleep(100_000)
        }
        throw ProtocolError(description: "timed out after \(timeout) s waiting for \(expression)")
    }

    /// Types `text` into the element `selector` as a user would: focus, select what is there, insert.
    func type(_ text: String, into selector: String) throws {
        _ = try evaluate("(() => { const e = document.querySelector('\(selector)'); e.focus(); e.select(); return true })()")
        try send("Input.insertText", ["text": text])
    }

    /// A left click in the middle of the element `selector`, as mouse events.
    func click(_ selector: String) throws {
        guard let rect = try evaluate("(() => { const r = document.querySelector('\(selector)').getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2] })()") as? [Double],
              rect.count == 2 else { throw ProtocolError(description: "no element \(selector)") }
        for type in ["mousePressed", "mouseReleased"] {
            try send("Input.dispatchMouseEvent", ["type": type, "x": rect[0], "y": rect[1], "button": "left", "clickCount": 1])
        }
    }

    func screenshot() throws -> Data {
        let r = try send("Page.captureScreenshot", ["format": "png"])
        guard let b64 = r["data"] as? String, let data = Data(base64Encoded: b64) else {
            throw ProtocolError(description: "no screenshot")
        }
        return data
    }
}
