// Kernel throughput of the CPU backend: the figures the foundation issue asks for, printed as JSON lines so
// bench/ops.sh can put them beside PyTorch's in one table. Not a test: run it on a quiet machine.
#if canImport(Glibc)
import Glibc
#endif
import LeanCore

/// Best of `reps` timed runs after one warm-up (primitive creation and weight packing happen in the warm-up).
func time(_ reps: Int, _ body: () -> Void) -> Double {
    body()
    var best = Double.infinity
    for _ in 0..<reps {
        let t0 = ContinuousClock.now
        body()
        best = min(best, (ContinuousClock.now - t0).inSeconds)
    }
    return best
}

func random(_ n: Int, seed: UInt64) -> [Float] {
    var s = seed
    return (0..<n).map { _ in
        s = s &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int64(bitPattern: s >> 11) % 2000 - 1000) / 1000
    }
}

func emit(_ op: String, _ config: String, seconds: Double, flops: Double, peakBytes: Int? = nil) {
    var line = "{\"impl\":\"lean\",\"op\":\"\(op)\",\"config\":\"\(config)\",\"ms\":\(seconds * 1000),\"gflops\":\(flops / seconds / 1e9)"
    if let peakBytes { line += ",\"peak_mb\":\(Double(peakBytes) / 1048576)" }
    print(line + "}")
}

let args = CommandLine.arguments
let reps = args.count > 1 ? Int(args[1]) ?? 5 : 5
/// Optional filter: only configurations whose "op config" contains this text.
let filter = args.count > 2 ? args[2] : ""
func selected(_ op: String, _ config: String) -> Bool { filter.isEmpty || "\(op) \(config)".contains(filter) }

// 3x3 convolution 320 -> 320 on 64x64, batch 2 (the UNet's first-level convolution).
do {
    let x32 = Tensor(random(2 * 320 * 64 * 64, seed: 1), shape: [2, 320, 64, 64])
    let w32 = Tensor(random(320 * 320 * 9, seed: 2).map { $0 * 0.05 }, shape: [320, 320, 3, 3])
    let b32 = Tensor(random(320, seed: 3), shape: [320])
    let flops = 2.0 * 2 * 320 * 64 * 64 * 320 * 9
    for dtype in [DType.f32, .bf16] {
        for layout in [Layout.nhwc, .nchw] {
            guard selected("conv3x3_320", "\(dtype) \(layout)") else { continue }
            let x = x32.converted(to: dtype).withLayout(layout), w = w32.converted(to: dtype)
            let t = time(reps) { _ = Ops.conv2d(x, weight: w, bias: b32, padding: Padding2D(1)) }
            emit("conv3x3_320", "\(dtype) \(layout)", seconds: t, flops: flops)
        }
    }
}

// Attention over 4096 tokens (64x64 latent self-attention), head dim 40, 8 heads, batch 2.
do {
    let (b, n, h, d) = (2, 4096, 8, 40)
    let q32 = Tensor(random(b * n * h * d, seed: 4), shape: [b, n, h * d])
    let k32 = Tensor(random(b * n * h * d, seed: 5), shape: [b, n, h * d])
    let v32 = Tensor(random(b * n * h * d, seed: 6), shape: [b, n, h * d])
    let flops = 4.0 * Double(b * h) * Double(n) * Double(n) * Double(d)
    for dtype in [DType.f32, .bf16] {
        let (q, k, v) = (q32.converted(to: dtype), k32.converted(to: dtype), v32.converted(to: dtype))
        for (name, kernel) in [("flash", AttentionKernel.flash), ("standard", .standard)] {
            guard selected("attention_4096", "\(dtype) \(name)") else { continue }
            _ = Ops.attention(q: q, k: k, v: v, heads: h, kernel: kernel)
            RuntimeContext.current.tracker.resetPeak(.cpu)
            let base = RuntimeContext.current.tracker.current(.cpu)
            let t = time(max(1, reps / 2)) { _ = Ops.attention(q: q, k: k, v: v, heads: h, kernel: kernel) }
            // Peak above the inputs: output plus whatever the kernel held (scores or tiles).
            emit("attention_4096", "\(dtype) \(name)", seconds: t, flops: flops,
                 peakBytes: RuntimeContext.current.tracker.peak(.cpu) - base)
        }
    }
}
