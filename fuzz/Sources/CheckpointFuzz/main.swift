// libFuzzer target for the .ckpt reader (zip directory + restricted unpickler + tensor views); built with
// -parse-as-library like SafeTensorsFuzz (see scripts/fuzz-checkpoint.sh).
import LeanDiffusion
#if canImport(Glibc)
import Glibc
#endif

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

@_cdecl("CheckpointFuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, fuzz)
}

let scratch: String = {
    var template = Array("/tmp/ckpt-fuzz-XXXXXX".utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    close(fd)
    return template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}()

/// Each input is tried as a bare pickle and as a whole checkpoint file. Errors are fine; crashes, hangs and
/// sanitizer reports are findings. A marker path in the seeds' evil pickle must never appear.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    try? TorchCheckpoint.unpickle(bytes)
    let fd = open(scratch, O_WRONLY | O_TRUNC)
    if fd >= 0 {
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, size) }
        close(fd)
        _ = try? TorchCheckpoint(path: scratch)
    }
    if access("/tmp/lean-diffusion-ckpt-marker", F_OK) == 0 { fatalError("the evil pickle ran") }
    return 0
}
