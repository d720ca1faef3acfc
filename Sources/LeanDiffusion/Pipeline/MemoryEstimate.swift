import LeanCore
import SafeTensors

/// What a request will need in memory, estimated before anything is allocated, so that a size the machine
/// cannot hold is refused with numbers rather than ending in an allocation failure or the OOM killer.
///
/// The estimate is deliberately simple (within a small factor of measured peaks): the weights resident at the
/// worst moment for the offload mode, the UNet's largest live activations at the latent size and batch (skips,
/// the working tensors of the largest level, GEGLU's 8x inner tensor, and the attention scores the chosen kernel
/// materialises: B·heads·N·N floats for standard attention over N = h·w tokens), and the VAE decode's
/// full-resolution activations (a few live tensors of its widest levels, per image with slicing, per tile with
/// tiling). All arithmetic is in `Double`, so absurd sizes give absurd numbers, never an overflow.
public struct MemoryEstimate: Sendable, Equatable {
    /// Weights resident at the worst moment of the run (all of them unless offloading).
    public var weightBytes: Double
    /// Weight bytes in memory already (loaded at init); the run does not allocate them again.
    public var residentWeightBytes: Double
    /// The denoising loop's activations and latents at its peak.
    public var denoisingBytes: Double
    /// The VAE decode's activations and the output image at its peak.
    public var decodeBytes: Double

    public init(weightBytes: Double, residentWeightBytes: Double, denoisingBytes: Double, decodeBytes: Double) {
        self.weightBytes = weightBytes
        self.residentWeightBytes = residentWeightBytes
        self.denoisingBytes = denoisingBytes
        self.decodeBytes = decodeBytes
    }

    /// The peak of the run: weights plus the larger phase.
    public var totalBytes: Double { weightBytes + max(denoisingBytes, decodeBytes) }
    /// What the run still has to allocate.
    public var additionalBytes: Double { max(0, totalBytes - residentWeightBytes) }

    var summary: String {
        "weights \(Self.format(weightBytes)), \(Self.format(residentWeightBytes)) of them loaded; denoising "
            + "\(Self.format(denoisingBytes)); VAE decode \(Self.format(decodeBytes))"
    }

    /// "1.5 GB", "3.2 TB": decimal units, one decimal.
    public static func format(_ bytes: Double) -> String {
        guard bytes.isFinite else { return "an unbounded amount" }
        let units = ["bytes", "kB", "MB", "GB", "TB", "PB", "EB"]
        var v = bytes, i = 0
        while v >= 1000 && i < units.count - 1 { v /= 1000; i += 1 }
        if i == 0 { return "\(Int(v)) bytes" }
        let tenths = (v * 10).rounded()
        return tenths < 1e15 ? "\(Int(tenths) / 10).\(Int(tenths) % 10) \(units[i])" : "\(v) \(units[i])"
    }

    static func format(_ bytes: Int) -> String { format(Double(bytes)) }
}

/// Where the bytes a request may use come from. `.system` reads Linux's `/proc/meminfo` (MemAvailable plus free
/// swap) and a cgroup v2 limit when one is set; elsewhere it knows nothing and every request is allowed.
public struct AvailableMemory: Sendable {
    /// Available bytes and a phrase naming where the number came from; nil when unknown (no check).
    public let read: @Sendable () -> (bytes: Int, source: String)?

    public init(read: @escaping @Sendable () -> (bytes: Int, source: String)?) { self.read = read }

    /// This machine, as the kernel reports it.
    public static let system = AvailableMemory { SystemMemory.available() }
    /// A fixed amount (tests, or a caller that wants a ceiling).
    public static func fixed(_ bytes: Int) -> AvailableMemory {
        AvailableMemory { (bytes, "a fixed limit of \(MemoryEstimate.format(bytes))") }
    }
    /// No check.
    public static let unlimited = AvailableMemory { nil }
}

enum SystemMemory {
    static func available() -> (bytes: Int, source: String)? {
        guard let text = try? RegularFile.read("/proc/meminfo", byteLimit: 1 << 20) else { return nil }
        var fields: [String: Int] = [:]
        for line in String(decoding: text, as: UTF8.self).split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == ":" || $0 == " " })
            if parts.count >= 2, let kb = Int(parts[1]) { fields[String(parts[0])] = kb * 1024 }
        }
        guard let avail = fields["MemAvailable"] else { return nil }
        var bytes = avail + (fields["SwapFree"] ?? 0)
        var source = "MemAvailable + free swap in /proc/meminfo"
        if let limit = cgroupHeadroom(), limit < bytes {
            bytes = limit
            source = "the cgroup memory limit (memory.max - memory.current)"
        }
        return (bytes, source)
    }

    /// memory.max - memory.current of this process's cgroup (v2), when limited.
    static func cgroupHeadroom() -> Int? {
        func value(_ path: String) -> Int? {
            guard let b = try? RegularFile.read(path, byteLimit: 4096) else { return nil }
            return Int(String(decoding: b, as: UTF8.self).trimmingWhitespace())
        }
        guard let cg = try? RegularFile.read("/proc/self/cgroup", byteLimit: 65536) else { return nil }
        // "0::/some/path" on cgroup v2.
        guard let line = String(decoding: cg, as: UTF8.self).split(separator: "\n").first(where: { $0.hasPrefix("0::") })
        else { return nil }
        let dir = "/sys/fs/cgroup" + line.dropFirst(3)
        guard let max = value(dir + "/memory.max"), let current = value(dir + "/memory.current") else { return nil }
        return Swift.max(0, max - current)
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s = s.dropFirst() }
        while let c = s.last, c.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}

extension StableDiffusionPipeline {
    /// The memory `request` (already validated: `checked`) would need with this pipeline's policy and options.
    func memoryEstimate(_ r: CheckedRequest) -> MemoryEstimate {
        let e = Double(policy.dtype.byteSize), f32 = 4.0
        let registries = OffloadController.Component.allCases.map(offloadController.registry)
        let weightTotals = registries.map { Double($0.totalBytes) }
        let resident = Double(registries.reduce(0) { $0 + $1.residentBytes })
        let weights: Double
        switch offload {
        case .none: weights = weightTotals.reduce(0, +)
        case .model: weights = weightTotals.max() ?? 0
        case .sequential:
            let largest = Double(registries[OffloadController.Component.unet.rawValue].weights.map(\.storage.byteCount).max() ?? 0)
            weights = min(weightTotals.reduce(0, +), Double(offloadController.budgetBytes ?? Int(3 * largest)) + largest)
        }

        // Denoising: the UNet on B' = batch (x2 with guidance) latents of h x w.
        let bu = Double(r.batch * (r.guidance ? 2 : 1))
        let (h, w) = (Double(r.height / vaeScaleFactor), Double(r.width / vaeScaleFactor))
        let c = unetConfig
        var skips = 0.0, work = 0.0
        for (i, ch) in c.blockOutChannels.enumerated() {
            let n = (h / Double(1 << i)).rounded(.up) * (w / Double(1 << i)).rounded(.up)
            let act = bu * n * Double(ch) * e
            skips += Double(c.layersPerBlock[i] + 1) * act
            // concat with a skip (2C), resnet temporaries, and in attention levels q/k/v, GEGLU's 8C projection.
            var level = 6 * act
            let hasAttention = c.downBlockTypes[i] == .crossAttn || i == c.blockOutChannels.count - 1
            if hasAttention {
                level += 12 * act + attentionScores(batch: bu, heads: Double(c.numAttentionHeads[i]), tokens: n)
            }
            work = max(work, level)
        }
        let latents = bu * Double(c.inChannels) * h * w * f32 * 8  // latents, noise, model input, scheduler history
        let denoising = skips + work + latents

        // Decode: per image with slicing; per tile (plus the blended full image) with tiling. Image-to-image's
        // encode runs once per picture (its latents are repeated for the batch) through levels of the same widths
        // in reverse, with the same tiling, so the decode's figure covers it.
        let images = Double(vaeOptions.slicing ? 1 : r.batch)
        let tile = vaeOptions.sampleTile(for: vaeConfig)
        let tiled = vaeOptions.tiling && (r.width > tile || r.height > tile)
        let (dh, dw) = tiled ? (Double(tile) / Double(vaeScaleFactor), Double(tile) / Double(vaeScaleFactor)) : (h, w)
        var decode = 0.0
        for (j, ch) in vaeConfig.blockOutChannels.reversed().enumerated() {
            let n = dh * dw * Double(1 << (2 * j))
            decode = max(decode, 3 * images * n * Double(ch) * e)
        }
        decode += attentionScores(batch: images, heads: 1, tokens: dh * dw)
        let pixels = Double(r.batch) * 3 * Double(r.width) * Double(r.height)
        decode += pixels * (f32 * (tiled ? 3 : 2) + 1)  // f32 image (and the tiled blend), NCHW copy, 8-bit pixels
        return MemoryEstimate(weightBytes: weights, residentWeightBytes: min(resident, weights),
                              denoisingBytes: denoising, decodeBytes: decode)
    }

    /// Score bytes the attention kernel materialises at once for `tokens` queries and keys.
    func attentionScores(batch: Double, heads: Double, tokens: Double) -> Double {
        switch policy.attention {
        case .standard: return batch * heads * tokens * tokens * 4
        case .sliced(let per):
            let slice = per > 0 ? min(Double(per), heads) : max(1, (heads / 2).rounded(.down))
            return batch * slice * tokens * tokens * 4
        case .flash: return Double(8 << 20)
        }
    }

    /// Refuses `request` when its estimate exceeds what `availableMemory` reports.
    func checkMemory(_ r: CheckedRequest) throws {
        guard let reading = availableMemory.read() else { return }
        let (available, source) = (reading.bytes, reading.source)
        let estimate = memoryEstimate(r)
        guard estimate.additionalBytes > Double(available) else { return }
        var advice: [String] = []
        if estimate.decodeBytes >= estimate.denoisingBytes {
            if !vaeOptions.tiling { advice.append("VAE tiling (--vae-tiling)") }
            if !vaeOptions.slicing && r.batch > 1 { advice.append("VAE slicing (--vae-slicing)") }
        }
        if policy.attention != .flash { advice.append("flash attention (--attention flash)") }
        if offload == .none && estimate.weightBytes > Double(available) / 4 {
            advice.append("offload (--offload model or --offload sequential)")
        }
        if policy.dtype == .f32 { advice.append("half precision (--dtype bf16)") }
        advice.append("a smaller size (now \(r.width)x\(r.height))")
        if r.batch > 1 { advice.append("fewer images (now \(r.batch))") }
        throw PipelineError.insufficientMemory(estimate, availableBytes: available, source: source, advice: advice)
    }
}
