import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A block of device memory owned by one or more tensors. Allocation and release are reported to the
/// `MemoryTracker`, so the peak figures cover every activation, weight and workspace we create.
public final class Storage: @unchecked Sendable {
    public let byteCount: Int
    public let device: Device
    public let raw: UnsafeMutableRawPointer
    private let owned: Bool
    private let onRelease: (@Sendable () -> Void)?

    public init(byteCount: Int, device: Device = .cpu, zeroed: Bool = false) {
        precondition(device == .cpu, "only CPU storage is allocated here; device backends allocate their own")
        self.byteCount = byteCount
        self.device = device
        var p: UnsafeMutableRawPointer? = nil
        let rc = posix_memalign(&p, 64, max(byteCount, 64))
        precondition(rc == 0 && p != nil, "out of memory allocating \(byteCount) bytes")
        if zeroed { memset(p!, 0, byteCount) }
        raw = p!
        owned = true
        onRelease = nil
        MemoryTracker.shared.allocated(byteCount, on: device)
    }

    /// Wraps memory someone else owns (a memory-mapped weight file, a device allocation); `onRelease` runs when the
    /// last tensor referencing it goes away. Not counted by the tracker unless `tracked`.
    public init(borrowing pointer: UnsafeMutableRawPointer, byteCount: Int, device: Device = .cpu, tracked: Bool = false,
                onRelease: (@Sendable () -> Void)? = nil) {
        self.raw = pointer
        self.byteCount = byteCount
        self.device = device
        self.owned = false
        self.onRelease = onRelease
        self.tracked = tracked
        if tracked { MemoryTracker.shared.allocated(byteCount, on: device) }
    }

    private var tracked = true
    /// Derived data that must die with these bytes, such as oneDNN's pre-packed copy of a weight.
    let attachments = Mutex<[String: AnyObject]>([:])

    deinit {
        if owned { free(raw) }
        if tracked { MemoryTracker.shared.freed(byteCount, on: device) }
        onRelease?()
    }
}
