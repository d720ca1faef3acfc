import XCTest
@testable import LeanDiffusion
#if canImport(Glibc)
import Glibc
#endif

/// Output that loses nothing: atomic writes, output checks before work, images before the report.
final class OutputTests: XCTestCase {
    func scratchDir() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lean-out-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    let image = RGBImage(width: 4, height: 2, pixels: (0..<24).map { UInt8($0 * 10) })

    /// A write that fails half-way leaves the existing file as it was and no temporary file behind.
    func testFailedWriteKeepsTheExistingFile() throws {
        let dir = try scratchDir()
        let path = dir + "/out.png"
        try image.writePNG(to: path)
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        struct Injected: Error {}
        XCTAssertThrowsError(try AtomicFile.write(to: path) { file in
            _ = fwrite("partial", 1, 7, file)
            throw Injected()
        })
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), before)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["out.png"])
        // A real failure: the target became a directory after the check; the directory is untouched.
        try FileManager.default.removeItem(atPath: path)
        try FileManager.default.createDirectory(atPath: path + "/keep", withIntermediateDirectories: true)
        expectError("out.png", "cannot move the finished file into place") { try image.writePNG(to: path) }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["out.png"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: path), ["keep"])
    }

    func testWriteReplacesAtomically() throws {
        let dir = try scratchDir()
        let path = dir + "/out.png"
        _ = FileManager.default.createFile(atPath: path, contents: Data("old".utf8))
        try image.writePNG(to: path)
        XCTAssertEqual(try RGBImage.readPNG(from: path), image)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["out.png"])
    }

    func testOutputTargetChecks() throws {
        let dir = try scratchDir()
        expectError("/nonexistent-dir/out.png", "does not exist", "No such file or directory") {
            try OutputTarget.check("/nonexistent-dir/out.png")
        }
        _ = FileManager.default.createFile(atPath: dir + "/file", contents: Data())
        expectError("is not a directory") { try OutputTarget.check(dir + "/file/out.png") }
        expectError("a directory") { try OutputTarget.check(dir) }
        XCTAssertEqual(mkfifo(dir + "/fifo.png", 0o644), 0)
        expectError("FIFO") { try OutputTarget.check(dir + "/fifo.png") }
        XCTAssertNoThrow(try OutputTarget.check(dir + "/new.png"))
        XCTAssertNoThrow(try OutputTarget.check("relative-name.png"))
    }

    /// A report that cannot be written never costs the images: they are written first, the error names the report.
    func testReportFailureKeepsTheImages() throws {
        let dir = try scratchDir()
        let paths = [dir + "/a.png", dir + "/b.png"]
        struct ReportBroke: Error, CustomStringConvertible { var description: String { "disk full" } }
        let text = expectError("report.json", "disk full", "only the report failed", "a.png, ") {
            try GenerationOutput.write([image, image], to: paths, report: (dir + "/report.json", { throw ReportBroke() }))
        }
        print(text)
        for p in paths { XCTAssertEqual(try RGBImage.readPNG(from: p), image) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/report.json"))
        // And a good report lands next to them.
        try GenerationOutput.write([image], to: [paths[0]], report: (dir + "/report.json", { Array("{}".utf8) }))
        XCTAssertEqual(try String(contentsOfFile: dir + "/report.json", encoding: .utf8), "{}")
    }

    /// A hostile PNG header cannot overflow the pixel count.
    func testHugePNGHeaderIsAnError() throws {
        let dir = try scratchDir()
        var png = [UInt8](try Data(contentsOf: URL(fileURLWithPath: {
            let p = dir + "/small.png"; try? image.writePNG(to: p); return p }())))
        // IHDR width/height at bytes 16..<24: 100000 x 100000 (CRC left wrong: libpng rejects or we do).
        let big: [UInt8] = [0, 1, 0x86, 0xA0]
        png.replaceSubrange(16..<20, with: big)
        png.replaceSubrange(20..<24, with: big)
        let path = dir + "/huge.png"
        _ = FileManager.default.createFile(atPath: path, contents: Data(png))
        XCTAssertThrowsError(try RGBImage.readPNG(from: path))
    }
}
