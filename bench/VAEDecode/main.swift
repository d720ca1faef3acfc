// One VAE decode of seeded random latents, for bench/vae_tiling.py: prints a JSON line with the wall time, the
// process peak RSS (VmHWM) and the peak tracked bytes. Not a test.
//
//   lean-bench-vae VAE_DIR SIZE [bf16|fp16|fp32] [tiled|untiled] [TILE]
#if canImport(Glibc)
import Glibc
#endif
import LeanCore
import LeanDiffusion

/// A line on standard error (fd 2 directly: Swift 6 treats C's `stderr` as shared mutable state).
func printError(_ line: String) {
    let text = line + "\n"
    _ = text.utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count - 1) }
}

let clock = ContinuousClock()
let mib = 1_048_576.0

let args = CommandLine.arguments
guard args.count >= 3, let size = Int(args[2]), size % 8 == 0 else {
    printError("usage: lean-bench-vae VAE_DIR SIZE [bf16|fp16|fp32] [tiled|untiled] [TILE]")
    exit(2)
}
let dtype: DType = ["fp32": .f32, "fp16": .f16, "bf16": .bf16][args.count > 3 ? args[3] : "bf16"] ?? .bf16
let tiled = (args.count > 4 ? args[4] : "tiled") == "tiled"
let tile = args.count > 5 ? Int(args[5]) ?? 512 : 512

do {
    let t0 = clock.now
    let vae = try AutoencoderKL(directory: args[1], policy: ComputePolicy(dtype: dtype))
    let loaded = clock.now
    let weightsMB = Double(RuntimeContext.current.tracker.current(.cpu)) / mib
    let rssLoaded = Double(ProcessMemory.currentRSSBytes()) / mib
    let h = size / vae.scaleFactor
    var s: UInt64 = 7
    let latents = Tensor((0..<(4 * h * h)).map { _ in
        s = s &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int64(bitPattern: s >> 11) % 2000 - 1000) / 1000
    }, shape: [1, 4, h, h])
    RuntimeContext.current.tracker.resetPeak(.cpu)
    let t1 = clock.now
    let image = vae.decode(latents, options: VAEOptions(tiling: tiled, tileSampleSize: tile))
    let t2 = clock.now
    let finite = image.toFloats().allSatisfy { $0.isFinite }
    print("{\"impl\":\"lean\",\"size\":\(size),\"dtype\":\"\(dtype)\",\"tiled\":\(tiled),\"tile\":\(tile),"
          + "\"load_s\":\((loaded - t0).inSeconds),\"decode_s\":\((t2 - t1).inSeconds),\"weights_mb\":\(weightsMB),\"rss_after_load_mb\":\(rssLoaded),"
          + "\"peak_tracked_mb\":\(Double(RuntimeContext.current.tracker.peak(.cpu)) / mib),"
          + "\"peak_rss_mb\":\(Double(ProcessMemory.peakRSSBytes()) / mib),\"finite\":\(finite)}")
} catch {
    printError("error: \(error)")
    exit(1)
}
