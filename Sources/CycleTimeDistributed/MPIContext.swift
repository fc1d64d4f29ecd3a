import CMPI
import CycleTimeCore
import Foundation

/// An error of the distributed layer: names the operation and the rank.
public struct DistributedError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }
}

/// The MPI job this process belongs to (Open MPI). Initialized once per process, when the process
/// was started by `mpirun`; collective operations are nonblocking requests polled against a
/// deadline, so a rank that died or hangs ends the job with a message after `timeout` seconds
/// instead of a silent hang. MPI is called from one thread at a time (the training loop's).
public final class MPIContext: @unchecked Sendable {
    public let rank: Int
    public let size: Int
    /// This rank's index among the ranks of its machine, and their number.
    public let localRank: Int
    public let localSize: Int
    /// Seconds a collective operation may wait for the other ranks before the job is aborted.
    public var timeout: Double = 300
    /// Appended to the timeout message (e.g. which checkpoint is intact).
    public var abortNote: () -> String = { "" }
    private let comm: MPI_Comm
    private var finalized = false

    nonisolated(unsafe) private static var instance: MPIContext?
    nonisolated(unsafe) private static var initError: DistributedError?
    private static let lock = NSLock()

    /// True when the environment says this process is a rank of an MPI job (mpirun sets it).
    public static var launchedByMPI: Bool {
        let env = ProcessInfo.processInfo.environment
        return env["OMPI_COMM_WORLD_SIZE"] != nil || env["PMIX_RANK"] != nil || env["PMI_SIZE"] != nil
    }

    /// The job of this process: nil when it was not started by mpirun (one process, no MPI at
    /// all); MPI_Init runs on the first call only.
    public static func shared() throws -> MPIContext? {
        lock.lock()
        defer { lock.unlock() }
        if let i = instance { return i }
        if let e = initError { throw e }
        guard launchedByMPI else { return nil }
        do {
            let c = try MPIContext()
            instance = c
            return c
        } catch let e as DistributedError {
            initError = e
            throw e
        }
    }

    private init() throws {
        var provided: Int32 = 0
        let rc = MPI_Init_thread(nil, nil, ct_mpi_thread_serialized(), &provided)
        guard rc == MPI_SUCCESS else { throw DistributedError("MPI_Init_thread failed: \(MPIContext.errorString(rc))") }
        comm = ct_mpi_comm_world()
        MPI_Comm_set_errhandler(comm, ct_mpi_errors_return())
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(comm, &r)
        MPI_Comm_size(comm, &s)
        rank = Int(r)
        size = Int(s)
        let env = ProcessInfo.processInfo.environment
        localRank = env["OMPI_COMM_WORLD_LOCAL_RANK"].flatMap(Int.init) ?? 0
        localSize = env["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init) ?? 1
    }

    /// The text of an MPI error code (MPI_Error_string; only after MPI_Init, as Open MPI aborts before).
    public static func errorString(_ code: Int32) -> String {
        var buf = [CChar](repeating: 0, count: Int(ct_mpi_max_error_string()) + 1)
        var len: Int32 = 0
        MPI_Error_string(code, &buf, &len)
        let text = String(decoding: buf.prefix(Int(max(0, len))).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return text + " (MPI error \(code))"
    }

    /// "rank r/n".
    public var label: String { "rank \(rank)/\(size)" }

    private func check(_ rc: Int32, _ what: String) throws {
        if rc != MPI_SUCCESS { throw DistributedError("\(label): \(what) failed: \(MPIContext.errorString(rc))") }
    }

    /// Waits for a request, polling MPI_Test (which also drives Open MPI's progress) with a short
    /// back-off; past the deadline the job is aborted with a message naming the operation.
    private func wait(_ request: inout MPI_Request?, _ what: String) throws {
        let start = DispatchTime.now().uptimeNanoseconds
        var polls = 0
        while true {
            var done: Int32 = 0
            try check(MPI_Test(&request, &done, ct_mpi_status_ignore()), what)
            if done != 0 { return }
            polls += 1
            let waited = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            if waited > timeout {
                abort("\(label): timed out after \(Int(timeout)) s waiting for the other ranks in \(what): a rank died or hangs (distributed.timeout_seconds)")
            }
            if polls > 200 { usleep(polls > 20_000 ? 2000 : 100) }
        }
    }

    /// Ends the whole job: the message (and `abortNote`) on stderr, then MPI_Abort.
    public func abort(_ message: String, code: Int32 = 1) -> Never {
        let note = abortNote()
        FileHandle.standardError.write(Data(("error: " + message + (note.isEmpty ? "" : "; " + note) + "\n").utf8))
        MPI_Abort(comm, code)
        exit(code)
    }

    /// Sums (or maxes) `count` floats in place over all ranks.
    public func allReduce(_ buffer: UnsafeMutablePointer<Float>, count: Int, max: Bool = false, _ what: String = "all-reduce") throws {
        var req: MPI_Request? = nil
        try check(MPI_Iallreduce(ct_mpi_in_place(), buffer, Int32(count), ct_mpi_float(), max ? ct_mpi_max() : ct_mpi_sum(), comm, &req), what)
        try wait(&req, what)
    }

    /// Starts a nonblocking in-place sum of `count` floats; finish it with `finish`.
    public func startAllReduce(_ buffer: UnsafeMutablePointer<Float>, count: Int, _ what: String) throws -> MPI_Request? {
        var req: MPI_Request? = nil
        try check(MPI_Iallreduce(ct_mpi_in_place(), buffer, Int32(count), ct_mpi_float(), ct_mpi_sum(), comm, &req), what)
        return req
    }

    public func finish(_ request: inout MPI_Request?, _ what: String) throws { try wait(&request, what) }

    /// Sums doubles over all ranks (small vectors: loss terms, flags, timings).
    public func allReduce(_ values: [Double], max: Bool = false, _ what: String = "all-reduce") throws -> [Double] {
        var v = values
        var req: MPI_Request? = nil
        try v.withUnsafeMutableBufferPointer { p in
            try check(MPI_Iallreduce(ct_mpi_in_place(), p.baseAddress, Int32(p.count), ct_mpi_double(), max ? ct_mpi_max() : ct_mpi_sum(), comm, &req), what)
            try wait(&req, what)
        }
        return v
    }

    /// Rank 0's bytes on every rank (its length first, then the bytes).
    public func broadcast(_ bytes: Data, _ what: String) throws -> Data {
        var n = [Double(rank == 0 ? bytes.count : 0)]
        var req: MPI_Request? = nil
        try n.withUnsafeMutableBufferPointer { p in
            try check(MPI_Ibcast(p.baseAddress, 1, ct_mpi_double(), 0, comm, &req), what)
            try wait(&req, what)
        }
        var buf = rank == 0 ? [UInt8](bytes) : [UInt8](repeating: 0, count: Int(n[0]))
        var offset = 0
        let chunk = 1 << 30
        while offset < buf.count {
            let len = min(chunk, buf.count - offset)
            try buf.withUnsafeMutableBufferPointer { p in
                try check(MPI_Ibcast(p.baseAddress! + offset, Int32(len), ct_mpi_byte(), 0, comm, &req), what)
                try wait(&req, what)
            }
            offset += len
        }
        return Data(buf)
    }

    /// All ranks reach this point (within the timeout).
    public func barrier(_ what: String = "barrier") throws {
        var req: MPI_Request? = nil
        try check(MPI_Ibarrier(comm, &req), what)
        try wait(&req, what)
    }

    /// MPI_Finalize (once; later calls do nothing).
    public func finalize() {
        guard !finalized else { return }
        finalized = true
        MPI_Finalize()
    }

    /// Splits the machine's cores among its ranks: our parallel loops and OpenBLAS each get
    /// cores / local ranks threads (at least 1).
    public func shareCores() {
        let n = max(1, ProcessInfo.processInfo.activeProcessorCount / max(1, localSize))
        Parallel.threadCount = n
        BLAS.threads = n
    }
}
