#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import LeanCore

/// One phase of a run (load, text encoding, a denoising step, decode): wall time and memory.
public struct PhaseReport: Codable, Sendable, Equatable {
    public var name: String
    public var seconds: Double
    /// `MemoryTracker` peak per device within the phase (the peak is reset when the phase starts), in bytes.
    public var peakTrackedBytes: [String: Int]
    /// `MemoryTracker` current bytes per device when the phase ended.
    public var endTrackedBytes: [String: Int]
    /// Process peak RSS so far (VmHWM on Linux; it cannot be reset) and RSS when the phase ended (/proc/self/statm).
    public var peakRSSBytes: Int
    public var endRSSBytes: Int
}

/// What `generate` did: the pipeline's load (from init) followed by the phases of this call.
public struct RunReport: Codable, Sendable, Equatable {
    public var offload: String
    public var dtype: String
    public var width: Int
    public var height: Int
    public var steps: Int
    public var phases: [PhaseReport]
    public var totalSeconds: Double { phases.reduce(0) { $0 + $1.seconds } }
    /// Weight bytes of each component (plain, in the compute type).
    public var weightBytes: [String: Int]
    /// Sequential offload: streamer figures for the denoising loop (peak resident weight bytes, loads, evictions).
    public var streamedPeakResidentBytes: Int?
    public var demandLoads: Int?
    public var prefetchLoads: Int?

    public func jsonData() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try e.encode(self)
    }

    /// A short table for humans (stderr with --verbose).
    public func table() -> String {
        func mb(_ b: Int) -> String {
            let v = Double(b) / 1_048_576
            return v >= 100 ? String(Int(v.rounded())) : String(Double(Int(v * 100)) / 100)
        }
        func pad(_ t: String, _ n: Int) -> String { t.count >= n ? t : t + String(repeating: " ", count: n - t.count) }
        var lines = ["phase            seconds   tracked peak MB   RSS MB (end/peak)"]
        for p in phases {
            let name = pad(p.name, 16)
            let secs = String(Double(Int(p.seconds * 1000)) / 1000)
            let tracked = mb(p.peakTrackedBytes["cpu"] ?? 0)
            lines.append("\(name) \(pad(secs, 9)) \(pad(tracked, 17)) \(mb(p.endRSSBytes))/\(mb(p.peakRSSBytes))")
        }
        lines.append("offload \(offload): total \(Double(Int(totalSeconds * 1000)) / 1000) s")
        return lines.joined(separator: "\n")
    }
}

/// Measures phases: resets the tracker's peak at the start, reads time, tracker and RSS at the end.
struct PhaseClock {
    let clock = ContinuousClock()
    /// The pipeline's context's tracker.
    let tracker: MemoryTracker

    func measure<T>(_ name: String, into phases: inout [PhaseReport], _ body: () throws -> T) rethrows -> T {
        tracker.resetPeak()
        let start = clock.now
        let result = try body()
        let seconds = (clock.now - start).inSeconds
        let rss = ProcessMemory.currentRSSBytes()
        phases.append(PhaseReport(name: name, seconds: seconds,
                                  peakTrackedBytes: Self.tracked { tracker.peak($0) },
                                  endTrackedBytes: Self.tracked { tracker.current($0) },
                                  peakRSSBytes: max(ProcessMemory.peakRSSBytes(), rss), endRSSBytes: rss))
        return result
    }

    static func tracked(_ value: (Device) -> Int) -> [String: Int] {
        var out: [String: Int] = [:]
        for d in [Device.cpu] { out[d.description] = value(d) }
        return out
    }
}

/// This process's memory as the kernel sees it: what `--report` and the benches print as peak RSS.
public enum ProcessMemory {
    /// The process's peak RSS. On Linux this is VmHWM of /proc/self/status, which belongs to this program's address
    /// space: `ru_maxrss` also counts the parent's RSS when the parent forked or vforked us (it is carried across
    /// exec), so a CLI started from a large process (a Python bench that imported torch) would report the parent's
    /// size as its own floor.
    public static func peakRSSBytes() -> Int {
        #if os(Linux)
        if let hwm = statusKiB("VmHWM:") { return hwm * 1024 }
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Int(u.ru_maxrss) * 1024
        #else
        var u = rusage()
        getrusage(RUSAGE_SELF, &u)
        return Int(u.ru_maxrss)
        #endif
    }

    /// A "Name:   123 kB" line of /proc/self/status, in KiB.
    private static func statusKiB(_ key: String) -> Int? {
        guard let f = fopen("/proc/self/status", "r") else { return nil }
        defer { fclose(f) }
        var buf = [CChar](repeating: 0, count: 512)
        while fgets(&buf, 512, f) != nil {
            let line = String(cString: buf)
            guard line.hasPrefix(key) else { continue }
            return line.dropFirst(key.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first.flatMap { Int($0) }
        }
        return nil
    }

    public static func currentRSSBytes() -> Int {
        guard let f = fopen("/proc/self/statm", "r") else { return 0 }
        defer { fclose(f) }
        var size = 0, resident = 0
        guard fscanf_statm(f, &size, &resident) else { return 0 }
        return resident * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    private static func fscanf_statm(_ f: UnsafeMutablePointer<FILE>, _ size: inout Int, _ resident: inout Int) -> Bool {
        var buf = [CChar](repeating: 0, count: 256)
        guard fgets(&buf, 256, f) != nil else { return false }
        let text = String(cString: buf)
        let parts = text.split(separator: " ")
        guard parts.count >= 2, let s = Int(parts[0]), let r = Int(parts[1]) else { return false }
        size = s
        resident = r
        return true
    }
}
