// One VAE decode of seeded random latents, for bench/vae_tiling.py: prints a JSON line with the wall time, the
// process peak RSS (VmHWM) and the peak tracked bytes. Not a test.
//
//   lean-bench-vae VAE_DIR SIZE [bf16|fp16|fp32] [tiled|untiled] [TILE]
#if canImport(Glibc)
import Glibc
#endif
import LeanCore
import LeanDiffusion

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// A "Name:   123 kB" line of /proc/self/status, in MiB.
func statusMiB(_ key: String) -> Double {
    guard let f = fopen("/proc/self/status", "r") else { return -1 }
    defer { fclose(f) }
    var buf = [CChar](repeating: 0, count: 512)
    while fgets(&buf, 512, f) != nil {
        let line = String(cString: buf)
        if line.hasPrefix(key), let kb = line.dropFirst(key.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first.flatMap({ Double($0) }) {
            return kb / 1024
        }
    }
    return -1
}

let args = CommandLine.arguments
guard args.count >= 3, let size = Int(args[2]), size % 8 == 0 else {
    fputs("usage: lean-bench-vae VAE_DIR SIZE [bf16|fp16|fp32] [tiled|untiled] [TILE]\n", stderr)
    exit(2)
}
let dtype: DType = ["fp32": .f32, "fp16": .f16, "bf16": .bf16][args.count > 3 ? args[3] : "bf16"] ?? .bf16
let tiled = (args.count > 4 ? args[4] : "tiled") == "tiled"
let tile = args.count > 5 ? Int(args[5]) ?? 512 : 512

do {
    let t0 = now()
    let vae = try AutoencoderKL(directory: args[1], policy: ComputePolicy(dtype: dtype))
    let loaded = now()
    let weightsMB = Double(MemoryTracker.shared.current(.cpu)) / 1048576
    let rssLoaded = statusMiB("VmRSS:")
    let h = size / vae.scaleFactor
    var s: UInt64 = 7
    let latents = Tensor((0..<(4 * h * h)).map { _ in
        s = s &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int64(bitPattern: s >> 11) % 2000 - 1000) / 1000
    }, shape: [1, 4, h, h])
    MemoryTracker.shared.resetPeak(.cpu)
    let t1 = now()
    let image = vae.decode(latents, options: VAEOptions(tiling: tiled, tileSampleSize: tile))
    let t2 = now()
    let finite = image.toFloats().allSatisfy { $0.isFinite }
    print("{\"impl\":\"lean\",\"size\":\(size),\"dtype\":\"\(dtype)\",\"tiled\":\(tiled),\"tile\":\(tile),"
          + "\"load_s\":\(loaded - t0),\"decode_s\":\(t2 - t1),\"weights_mb\":\(weightsMB),\"rss_after_load_mb\":\(rssLoaded),"
          + "\"peak_tracked_mb\":\(Double(MemoryTracker.shared.peak(.cpu)) / 1048576),"
          + "\"peak_rss_mb\":\(statusMiB("VmHWM:")),\"finite\":\(finite)}")
} catch {
    fputs("error: \(error)\n", stderr)
    exit(1)
}
