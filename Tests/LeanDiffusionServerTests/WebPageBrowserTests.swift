import Foundation
import LeanDiffusion
import XCTest

/// The page at `/` in a real browser (headless Chromium from Debian, installed by scripts/test.sh): type a prompt,
/// press Generate, the progress bar moves, the image appears with its parameters, and the session's gallery fills.
final class WebPageBrowserTests: XCTestCase {
    func testTypePromptPressGenerateImageAppears() throws {
        guard Chromium.path != nil else {
            // CI installs Chromium; elsewhere the test says why it did not run.
            if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail("CI must have chromium (scripts/test.sh installs it)") }
            throw XCTSkip("no chromium: apt-get install chromium")
        }
        let server = try ServerProcess([])
        let browser = try Chromium()
        try browser.open("http://127.0.0.1:\(server.port)/")
        _ = try browser.waitFor("document.readyState === 'complete' && document.querySelectorAll('#sampler option').length > 1", timeout: 30)

        try browser.type("a blue square on a red background", into: "#prompt")
        try browser.type("12", into: "#steps")
        try browser.type("11", into: "#seed")
        try browser.click("#generate")

        let shown = try XCTUnwrap(browser.waitFor("""
            (() => { const img = document.querySelector('#result img.generated');
                     return img && img.complete && img.naturalWidth > 0
                       ? { width: img.naturalWidth, job: img.dataset.job, src: img.src,
                           status: document.getElementById('status').textContent,
                           progress: document.getElementById('progress').value,
                           params: document.getElementById('params').textContent,
                           gallery: document.querySelectorAll('#gallery img').length } : null })()
            """, timeout: 60) as? [String: Any])
        XCTAssertEqual(shown["width"] as? Int, 64)
        // PNDM's PLMS schedule runs steps + 1 UNet calls, and the bar counts them.
        XCTAssertEqual(shown["status"] as? String, "done 13/13")
        XCTAssertEqual(shown["progress"] as? Double, 13)
        let params = try XCTUnwrap(shown["params"] as? String)
        XCTAssert(params.hasPrefix("a blue square on a red background\nSteps: 12, Sampler: PLMS"), params)
        XCTAssert(params.contains("Seed: 11"), params)
        _ = try browser.waitFor("document.querySelectorAll('#gallery img').length >= 1", timeout: 10)

        // What the page shows is the job's PNG.
        let job = try XCTUnwrap(shown["job"] as? String)
        let result = try server.request("GET", "/v1/jobs/\(job)/result")
        let b64 = try XCTUnwrap((result.json?["images"] as? [String])?.first)
        XCTAssertEqual(shown["src"] as? String, "data:image/png;base64," + b64)

        // A value the form allows but the model cannot run is shown as the server's message.
        try browser.type("5000", into: "#steps")
        try browser.click("#generate")
        let error = try XCTUnwrap(browser.waitFor("document.getElementById('error').textContent || null", timeout: 20) as? String)
        XCTAssert(error.contains("steps"), error)

        if let path = ProcessInfo.processInfo.environment["LEAN_SCREENSHOT"] {
            try browser.type("12", into: "#steps")
            _ = try browser.evaluate("document.getElementById('error').textContent = ''")
            try browser.screenshot().write(to: URL(fileURLWithPath: path))
        }
        server.signal(SIGTERM)
        XCTAssertEqual(server.wait(timeout: 30), 0)
    }
}
