import SafeTensors

/// A LoRA file: low-rank updates W + scale · (alpha / rank) · up · down for some of a model's weights.
///
/// Formats read: kohya / sd-scripts (`lora_unet_<module path with _>.lora_down.weight`, `.lora_up.weight`, `.alpha`;
/// text encoder `lora_te_…`; LoCon convolutions, whose down is a k x k kernel and up 1 x 1) and diffusers / PEFT
/// (`unet.<module>.lora_A.weight`, `lora_B.weight`, alpha = rank). Module paths are diffusers names; a kohya name is
/// matched to the model's weight whose path, with `.` as `_`, spells it.
public struct LoRAFile: Sendable {
    public enum Format: String, Sendable { case kohya, peft }
    public enum Target: String, Sendable { case unet, textEncoder = "text_encoder" }

    /// One low-rank pair. `module` is the diffusers path for PEFT files, the underscored path for kohya ones.
    public struct Entry: Sendable {
        public let target: Target
        public let module: String
        public let downKey: String
        public let upKey: String
        public let rank: Int
        /// alpha / rank as diffusers applies it (1 when the file stores no alpha).
        public let alphaScale: Float
    }

    public let path: String
    public let file: SafeTensorsFile
    public let format: Format
    public let entries: [Entry]

    public init(path: String) throws {
        do { file = try SafeTensorsFile(path: path) } catch {
            throw ModelLoadError.missingFile(path: path, reason: "\(error)")
        }
        self.path = path
        func bad(_ reason: String) -> PipelineError { .invalidConfig(file: path, field: "(LoRA)", reason: reason) }
        let names = Set(file.tensorNames)
        // The two formats differ in their suffixes, their target prefixes and whether alpha is stored.
        let kohya = names.contains { $0.hasSuffix(".lora_down.weight") }
        guard kohya || names.contains(where: { $0.hasSuffix(".lora_A.weight") }) else {
            throw bad("no LoRA weights (neither kohya .lora_down/.lora_up nor PEFT .lora_A/.lora_B keys)")
        }
        format = kohya ? .kohya : .peft
        let (downSuffix, upSuffix) = kohya ? (".lora_down.weight", ".lora_up.weight") : (".lora_A.weight", ".lora_B.weight")
        let targets: [(prefix: String, target: Target)] = kohya
            ? [("lora_unet_", .unet), ("lora_te_", .textEncoder)] : [("unet.", .unet), ("text_encoder.", .textEncoder)]
        var entries: [Entry] = []
        for down in names.sorted() where down.hasSuffix(downSuffix) {
            let base = String(down.dropLast(downSuffix.count))
            guard let (prefix, target) = targets.first(where: { base.hasPrefix($0.prefix) }) else {
                if kohya && (base.hasPrefix("lora_te1_") || base.hasPrefix("lora_te2_")) {
                    throw bad("\(base) is an SDXL text encoder LoRA; SDXL is not supported yet")
                }
                throw bad("\(down): not a " + (kohya ? "kohya UNet (lora_unet_) or text encoder (lora_te_)" : "unet. or text_encoder.") + " key")
            }
            let up = base + upSuffix
            guard names.contains(up) else { throw bad("\(down) has no \(up)") }
            let rank = try Self.rank(file, down: down, up: up, path: path)
            var alphaScale: Float = 1  // PEFT files store none: alpha = rank
            if kohya, let alphaInfo = file.info(base + ".alpha") {
                guard alphaInfo.shape.reduce(1, *) == 1, let alpha = try file.floats(base + ".alpha").first, alpha.isFinite else {
                    throw bad("\(base).alpha is not one finite number")
                }
                alphaScale = alpha / Float(rank)
            }
            entries.append(Entry(target: target, module: String(base.dropFirst(prefix.count)), downKey: down, upKey: up,
                                 rank: rank, alphaScale: alphaScale))
        }
        self.entries = entries
    }

    /// One line for `inspect`: format, modules per target, ranks and alpha/rank.
    public var summary: String {
        let unet = entries.filter { $0.target == .unet }.count, te = entries.count - unet
        let ranks = Set(entries.map(\.rank)).sorted().map(String.init).joined(separator: "/")
        let alphas = Set(entries.map(\.alphaScale)).sorted().map { "\($0)" }.joined(separator: "/")
        let convs = entries.filter { (file.info($0.downKey)?.shape.count ?? 2) == 4 }.count
        return "LoRA (\(format.rawValue) keys): \(unet) UNet and \(te) text encoder modules (\(convs) convolutions), "
            + "rank \(ranks), alpha/rank \(alphas)"
    }

    static func rank(_ file: SafeTensorsFile, down: String, up: String, path: String) throws -> Int {
        guard let d = file.info(down)?.shape, let u = file.info(up)?.shape, d.count >= 2, u.count >= 2,
              d[0] > 0, d[0] == u[1], u.dropFirst(2).allSatisfy({ $0 == 1 }) else {
            throw PipelineError.invalidConfig(file: path, field: down, reason: "down and up shapes do not form a low-rank pair")
        }
        return d[0]
    }

    /// Normalised module name for matching: `text_model.` dropped (transformers 5 saves CLIP without it), kohya
    /// names compared with `.` as `_`.
    static func matchName(_ module: String, format: Format) -> String {
        var m = module
        for p in ["text_model.", "text_model_"] where m.hasPrefix(p) { m = String(m.dropFirst(p.count)) }
        return format == .kohya ? m.replacingDots() : m
    }
}

extension String {
    func replacingDots() -> String { String(map { $0 == "." ? "_" : $0 }) }
}
