import XCTest
@testable import LeanDiffusion
import SafeTensors

/// `.ckpt` files read by the restricted unpickler (tools/make_ckpt_fixtures.py): the same tensors as PyTorch saved,
/// code in a pickle refused and never run, damaged archives and pickles named errors.
final class CheckpointTests: XCTestCase {
    static let dir = PipelineTests.fixtures.deletingLastPathComponent().appendingPathComponent("ckpt")
    static let marker = "/tmp/lean-diffusion-ckpt-marker"

    func testStateDictMatchesPyTorch() throws {
        let ckpt = try TorchCheckpoint(path: Self.dir.appendingPathComponent("state.ckpt").path)
        let reference = try SafeTensorsFile(path: Self.dir.appendingPathComponent("state.safetensors").path)
        XCTAssertEqual(Set(ckpt.tensors.map(\.name)), Set(reference.tensorNames))
        for t in ckpt.tensors {
            let info = try XCTUnwrap(reference.info(t.name))
            XCTAssertEqual(t.dtype, info.dtype, t.name)
            XCTAssertEqual(t.shape, info.shape, t.name)
            XCTAssertEqual(t.data, try reference.copyBytes(t.name), "\(t.name): bytes (views, strides, shared storages)")
        }
        // Converting writes a safetensors file with those tensors.
        let tmp = TempDir()
        try ckpt.writeSafeTensors(to: tmp.file("out.safetensors"))
        let written = try SafeTensorsFile(path: tmp.file("out.safetensors"))
        for t in ckpt.tensors { XCTAssertEqual(try written.copyBytes(t.name), t.data) }
        var half = ckpt
        half.convert(to: .F16)
        XCTAssertEqual(half.tensors.first { $0.name == "model.a.weight" }?.dtype, .F16)
        XCTAssertEqual(half.tensors.first { $0.name == "model.steps" }?.dtype, .I64, "integers stay")
    }

    /// The pickle would call posix.system("touch <marker>"): refused by name, and the marker never appears.
    func testCodeInAPickleIsRefusedAndNeverRuns() throws {
        unlink(Self.marker)
        XCTAssertThrowsError(try TorchCheckpoint(path: Self.dir.appendingPathComponent("evil.ckpt").path)) {
            XCTAssertTrue("\($0)".contains("refusing to load 'posix.system'"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: Self.marker))
        // Other ways in: builtins.eval through STACK_GLOBAL, an unknown opcode (INST), a persistent id that is not a storage.
        for (bytes, expected) in [
            ([0x80, 0x04, 0x8C, 0x08] + Array("builtins".utf8) + [0x8C, 0x04] + Array("eval".utf8) + [0x93, 0x2E], "builtins.eval"),
            ([0x80, 0x02, 0x69] + Array("os\nsystem\n".utf8) + [0x2E], "opcode 0x69"),
            ([0x80, 0x02, 0x4B, 0x01, 0x51, 0x2E], "persistent id"),
        ] as [([UInt8], String)] {
            var u = RestrictedUnpickler(bytes, path: "x")
            XCTAssertThrowsError(try u.load()) { XCTAssertTrue("\($0)".contains(expected), "\($0)") }
        }
    }

    /// Every truncation and a few thousand random byte changes of a real checkpoint give an error or a result,
    /// never a crash or a hang.
    func testDamagedCheckpointsNeverCrash() throws {
        let original = try Data(contentsOf: Self.dir.appendingPathComponent("state.ckpt"))
        let tmp = TempDir()
        let path = tmp.file("damaged.ckpt")
        for cut in stride(from: 0, to: original.count, by: 97) {
            try original.prefix(cut).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try TorchCheckpoint(path: path), "truncated at \(cut)")
        }
        var rng = SplitMix(seed: 7)
        var errors = 0
        for _ in 0..<2000 {
            var bytes = [UInt8](original)
            for _ in 0..<(1 + Int(rng.next() % 4)) {
                bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next())
            }
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            do { _ = try TorchCheckpoint(path: path) } catch { errors += 1 }
        }
        print("ckpt mutations: 2000 runs, \(errors) named errors, \(2000 - errors) loaded")
        // The pickle alone, mutated.
        let pickle = try XCTUnwrap(try ZipArchive(path: Self.dir.appendingPathComponent("state.ckpt").path).entries
            .first { $0.key.hasSuffix("data.pkl") }?.value)
        let zip = try ZipArchive(path: Self.dir.appendingPathComponent("state.ckpt").path)
        defer { zip.closeFile() }
        let pkl = try zip.data(pickle)
        for _ in 0..<3000 {
            var b = pkl
            b[Int(rng.next() % UInt64(b.count))] = UInt8(truncatingIfNeeded: rng.next())
            var u = RestrictedUnpickler(b, path: "x")
            _ = try? u.load()
        }
        XCTAssertThrowsError(try TorchCheckpoint(path: tmp.file("missing.ckpt")))
        // A stride-0 view of a huge shape over a one-element storage: refused, not allocated.
        let storage = RestrictedUnpickler.Storage(key: "0", typeName: "FloatStorage", elements: 1)
        let huge = try RestrictedUnpickler.reduce(.rebuildTensor, [.storage(storage), .int(0), .tuple([.int(1 << 40)]),
                                                                  .tuple([.int(0)])], bad: { CheckpointError(path: "x", reason: $0) })
        guard case .tensor(let t) = huge else { return XCTFail("not a tensor") }
        XCTAssertEqual(t.shape, [1 << 40])
        XCTAssertThrowsError(try TorchCheckpoint(path: Self.dir.appendingPathComponent("state.safetensors").path)) {
            XCTAssertTrue("\($0)".contains("zip"), "\($0)")
        }
    }

    struct SplitMix {
        var state: UInt64
        init(seed: UInt64) { state = seed }
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }
}
