// Built with -parse-as-library, so there is no top-level code. SwiftPM links
// executables with `--defsym main=<Target>_main`, which hides libFuzzer's own
// `main`; we therefore define that symbol and hand control to libFuzzer's
// public driver entry point.
import SafeTensors

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

@_cdecl("SafeTensorsFuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, fuzz)
}

/// Each input is tried three ways so the fuzzer reaches the interesting code
/// without first having to discover the 8-byte length prefix:
/// 1. as a whole safetensors file image,
/// 2. as bare JSON text for the strict parser,
/// 3. as the JSON header of a file with an empty data section.
/// Accepted headers must satisfy the format invariants and survive a
/// write -> read round trip unchanged.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)

    if let header = try? SafeTensorsHeader(fileBytes: input) {
        check(header, file: input)
    }

    _ = try? StrictJSON.parse(input)

    var wrapped = [UInt8]()
    wrapped.reserveCapacity(size + 8)
    withUnsafeBytes(of: UInt64(size).littleEndian) { wrapped.append(contentsOf: $0) }
    wrapped.append(contentsOf: input)
    wrapped.withUnsafeBytes { file in
        if let header = try? SafeTensorsHeader(fileBytes: file) {
            check(header, file: file)
        }
    }
    return 0
}

func check(_ header: SafeTensorsHeader, file: UnsafeRawBufferPointer) {
    precondition(header.fileSize == file.count, "fileSize mismatch")
    var cursor = header.dataOffset
    var tensors: [SafeTensorsWriter.Tensor] = []
    for t in header.tensors {
        precondition(t.byteRange.lowerBound == cursor, "hole or overlap accepted")
        precondition(t.byteRange.upperBound <= file.count, "range beyond file")
        precondition(t.byteCount == t.elementCount * t.dtype.byteSize, "size mismatch accepted")
        cursor = t.byteRange.upperBound
        let bytes = UnsafeRawBufferPointer(rebasing: file[t.byteRange])
        let floats = SafeTensorsConversion.floats(from: bytes, dtype: t.dtype)
        precondition(floats.count == t.elementCount, "conversion count")
        tensors.append((t.name, t.dtype, t.shape, Array(bytes)))
    }
    precondition(cursor == file.count, "trailing data accepted")

    let image: [UInt8]
    do {
        image = try SafeTensorsWriter.serialize(tensors, metadata: header.metadata.isEmpty ? nil : header.metadata)
    } catch {
        preconditionFailure("writer rejected a header the reader accepted: \(error)")
    }
    image.withUnsafeBytes { raw in
        let again: SafeTensorsHeader
        do { again = try SafeTensorsHeader(fileBytes: raw) } catch {
            preconditionFailure("reader rejected writer output: \(error)")
        }
        precondition(again.metadata == header.metadata, "metadata round trip")
        precondition(again.tensors.count == header.tensors.count, "tensor count round trip")
        for (a, b) in zip(again.tensors, header.tensors) {
            precondition(a.name == b.name && a.dtype == b.dtype && a.shape == b.shape && a.byteCount == b.byteCount,
                         "tensor round trip")
            precondition(raw[a.byteRange].elementsEqual(file[b.byteRange]), "data round trip")
        }
    }
}
