import Foundation
import CycleTimeCore

/// Errors of checkpoint loading; each names the file.
public enum CheckpointError: Error, CustomStringConvertible {
    /// The file was read but its state dict does not fit the module.
    case stateDict(path: String, error: StateDictError)
    /// The file is not the checkpoint expected (layout, keys, metadata); the message says how.
    case invalid(path: String, message: String)

    public var description: String {
        switch self {
        case .stateDict(let p, let e): return "\(p): \(e.description)"
        case .invalid(let p, let m): return "\(p): \(m)"
        }
    }
}

extension Module {
    /// Writes the state dict (parameters and buffers, Float32) to a safetensors file that
    /// `safetensors.torch.load_file` reads. The write is atomic (temporary file, then rename).
    public func save(to path: String, metadata: [String: String] = [:]) throws {
        try SafeTensors.write(stateDict(), metadata: metadata, to: path)
    }

    /// Loads a safetensors state dict (F32, or F16/BF16/F64 converted) saved here or by
    /// PyTorch (`safetensors.torch.save_file(model.state_dict(), path)`). Throws
    /// `SafeTensorsError` for unreadable files and `CheckpointError` when the keys or shapes do
    /// not fit; both name the file. Returns the missing and unexpected keys (non-strict).
    @discardableResult
    public func load(from path: String, strict: Bool = true) throws -> (missingKeys: [String], unexpectedKeys: [String]) {
        let tensors = try SafeTensors.load(path)
        do { return try loadStateDict(tensors, strict: strict) }
        catch let e as StateDictError { throw CheckpointError.stateDict(path: path, error: e) }
    }
}
