#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension RGBImage {
    /// The PNG file's bytes in memory, with `text` chunks when given (the same encoder as `writePNG(to:text:)`),
    /// for callers that send images rather than store them: the server's base64 responses.
    public func pngData(text: [PNGTextChunk] = []) throws -> [UInt8] {
        let keywords = try text.map { try PNGText.checkKeyword($0.keyword) }
        var buffer: UnsafeMutablePointer<CChar>? = nil
        var size = 0
        guard let file = open_memstream(&buffer, &size) else {
            throw PipelineError.outputFailed(path: "<memory>", reason: String(cString: strerror(errno)))
        }
        defer { free(buffer) }
        do {
            if text.isEmpty {
                try encodePNG(to: file, path: "<memory>")
            } else {
                try encodePNG(to: file, path: "<memory>", text: text, keywords: keywords)
            }
        } catch {
            fclose(file)
            throw error
        }
        // fclose publishes the final buffer and size.
        guard fclose(file) == 0, let buffer else {
            throw PipelineError.outputFailed(path: "<memory>", reason: "could not finish the in-memory PNG")
        }
        return buffer.withMemoryRebound(to: UInt8.self, capacity: size) { Array(UnsafeBufferPointer(start: $0, count: size)) }
    }
}
