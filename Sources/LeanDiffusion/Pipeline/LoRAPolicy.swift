import LeanCore
import SafeTensors

/// A LoRA to apply: its file and the user's weight for it (diffusers' `set_adapters(..., adapter_weights=)`).
public struct LoRASpec: Sendable, Equatable {
    public var path: String
    public var scale: Float
    public init(path: String, scale: Float = 1) {
        self.path = path
        self.scale = scale
    }
}

/// LoRA as a policy around the models: each targeted weight's `Parameter` gets an adjustment that adds
/// Σ scale · (alpha / rank) · up · down to its bytes after every load, so the same model code runs with or without
/// LoRA, in every precision (the sum is formed in f32 and rounded once to the weight's type) and offload mode (an
/// evicted weight is read back with its delta; sequential offload's spilled packed copies are made from the adjusted
/// bytes). The up/down factors are held in f32 (for SD1.5 a rank-32 attention LoRA is about 50 MB).
enum LoRAPolicy {
    /// What was applied: per file, how many weights it changed.
    struct Applied: Sendable, Equatable {
        let path: String
        let format: LoRAFile.Format
        let weights: Int
    }

    struct Contribution: Sendable {
        let down: [Float]
        let up: [Float]
        let rank: Int
        let scale: Float
    }

    static func apply(_ specs: [LoRASpec], to registries: [LoRAFile.Target: WeightRegistry],
                      dtype: DType) throws -> [Applied] {
        var contributions: [ObjectIdentifier: (Parameter, [Int], [Contribution])] = [:]
        var applied: [Applied] = []
        for spec in specs {
            guard spec.scale.isFinite else {
                throw PipelineError.invalidRequest(field: "lora", reason: "\(spec.path): scale \(spec.scale) is not a finite number")
            }
            let lora = try LoRAFile(path: spec.path)
            var tables: [LoRAFile.Target: [String: WeightRegistry.Weight]] = [:]
            for (target, registry) in registries {
                var t: [String: WeightRegistry.Weight] = [:]
                for w in registry.weights where w.key.hasSuffix(".weight") {
                    t[LoRAFile.matchName(String(w.key.dropLast(".weight".count)), format: lora.format)] = w
                }
                tables[target] = t
            }
            var missing: [String] = []
            var count = 0
            for e in lora.entries {
                guard let w = tables[e.target]?[LoRAFile.matchName(e.module, format: lora.format)],
                      let parameter = w.storage.parameter else {
                    missing.append("\(e.target.rawValue): \(e.module)")
                    continue
                }
                let down = try lora.file.floats(e.downKey), up = try lora.file.floats(e.upKey)
                let out = w.shape[0], inner = w.shape.dropFirst().reduce(1, *)
                guard up.count == out * e.rank, down.count == e.rank * inner else {
                    throw PipelineError.invalidConfig(file: spec.path, field: e.downKey,
                        reason: "rank-\(e.rank) factors of \(down.count) and \(up.count) values do not fit \(w.key) \(w.shape)")
                }
                let c = Contribution(down: down, up: up, rank: e.rank, scale: spec.scale * e.alphaScale)
                contributions[ObjectIdentifier(parameter), default: (parameter, w.shape, [])].2.append(c)
                count += 1
            }
            guard missing.isEmpty else {
                throw PipelineError.invalidConfig(file: spec.path, field: "(LoRA)",
                    reason: "\(missing.count) of its \(lora.entries.count) modules are not in this model, e.g. "
                        + missing.prefix(3).joined(separator: ", ") + " (a LoRA for another architecture?)")
            }
            applied.append(Applied(path: spec.path, format: lora.format, weights: count))
        }
        for (_, (parameter, shape, list)) in contributions {
            let out = shape[0], inner = shape.dropFirst().reduce(1, *)
            parameter.adjustment = { bytes in add(list, to: bytes, dtype: dtype, out: out, inner: inner) }
        }
        return applied
    }

    /// W[o, :] += Σ scale · up[o, r] · down[r, :], row by row in f32.
    static func add(_ list: [Contribution], to bytes: UnsafeMutableRawPointer, dtype: DType, out: Int, inner: Int) {
        var row = [Float](repeating: 0, count: inner)
        row.withUnsafeMutableBufferPointer { row in
            let rp = row.baseAddress!
            for o in 0..<out {
                let at = bytes + o * inner * dtype.byteSize
                Convert.toFloat(at, dtype, rp, inner)
                for c in list {
                    c.down.withUnsafeBufferPointer { down in
                        for r in 0..<c.rank {
                            let u = c.scale * c.up[o * c.rank + r]
                            if u == 0 { continue }
                            let d = down.baseAddress! + r * inner
                            for i in 0..<inner { rp[i] += u * d[i] }
                        }
                    }
                }
                Convert.fromFloat(rp, at, dtype, inner)
            }
        }
    }
}
