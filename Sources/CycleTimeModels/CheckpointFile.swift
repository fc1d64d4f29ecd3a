import CycleTimeNN
import Foundation

/// What an encoder was trained as: enough to rebuild it and to feed it the inputs it saw.
/// New CycleTime checkpoints record it as explicit metadata keys (`metadataKeys`); older ones
/// only embed their training YAML, which a resolver supplied by the training side turns into a spec.
public struct EncoderSpec: Sendable, Equatable {
    /// torchvision architecture name ("resnet18", "resnet50", ...).
    public var arch: String
    /// The last stage created ("layer3", "layer4", ...).
    public var lastStage: String
    /// Stride of the first block of layer1...layer4.
    public var strides: [Int]
    public var padding: PadMode
    /// The input normalization of the training data pipeline.
    public var normalization: Normalization

    public init(arch: String, lastStage: String, strides: [Int], padding: PadMode, normalization: Normalization) {
        self.arch = arch; self.lastStage = lastStage; self.strides = strides; self.padding = padding
        self.normalization = normalization
    }

    /// The metadata keys a checkpoint records the spec under (added to `format`, `step`, ...).
    public var metadata: [String: String] {
        [
            "encoder_arch": arch, "encoder_last_stage": lastStage,
            "encoder_strides": strides.map(String.init).joined(separator: ","),
            "encoder_padding": padding.rawValue, "encoder_normalization": normalization.description,
        ]
    }

    /// The spec recorded in `metadata`; nil when it records none; an error naming the key when a
    /// recorded value is not valid.
    public static func recorded(in metadata: [String: String], file: String) throws -> EncoderSpec? {
        guard let arch = metadata["encoder_arch"] else { return nil }
        func value(_ key: String) throws -> String {
            guard let v = metadata[key] else { throw CheckpointError.invalid(path: file, message: "metadata has encoder_arch but no '\(key)'") }
            return v
        }
        let stage = try value("encoder_last_stage")
        let strides = try value("encoder_strides").split(separator: ",").compactMap { Int($0) }
        guard let padding = PadMode(rawValue: try value("encoder_padding")) else {
            throw CheckpointError.invalid(path: file, message: "metadata 'encoder_padding' is not zeros or reflect")
        }
        guard let normalization = Normalization(try value("encoder_normalization")) else {
            throw CheckpointError.invalid(path: file, message: "metadata 'encoder_normalization' is not 'mean a,b,c std d,e,f' with positive std")
        }
        let spec = EncoderSpec(arch: arch, lastStage: stage, strides: strides, padding: padding, normalization: normalization)
        guard spec.resnetConfig != nil else {
            throw CheckpointError.invalid(path: file, message: "metadata encoder '\(arch)' up to '\(stage)' with strides \(strides) is not a known ResNet")
        }
        return spec
    }

    /// The ResNet this spec describes (nil when the names or strides are not valid).
    public var resnetConfig: ResNetConfig? {
        guard ResNetConfig.stageNames.contains(lastStage), strides.count == 4, strides.allSatisfy({ (1...4).contains($0) }) else { return nil }
        return ResNetConfig(name: arch, lastStage: lastStage, strides: strides, paddingMode: padding)
    }
}

/// A checkpoint, read once: a CycleTime training checkpoint (model state, optimizer state under
/// `optimizer.`, encoder under `encoder.`, step and spec in the metadata) or a plain torchvision
/// state dict saved as safetensors. The one place these layouts are understood.
public struct CheckpointFile {
    public let path: String
    public let metadata: [String: String]
    public let tensors: [String: Tensor]

    public static let optimizerPrefix = "optimizer."
    public static let encoderPrefix = "encoder."

    /// Reads `path` (errors name the file).
    public init(_ path: String) throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            throw CheckpointError.invalid(path: path, message: "is a folder, not a safetensors checkpoint")
        }
        let file = try SafeTensors.read(path)
        self.init(path: path, metadata: file.metadata, tensors: file.tensors)
    }

    public init(path: String, metadata: [String: String], tensors: [String: Tensor]) {
        self.path = path; self.metadata = metadata; self.tensors = tensors
    }

    /// The model's state dict: every tensor but the optimizer's.
    public var modelState: [String: Tensor] { tensors.filter { !$0.key.hasPrefix(Self.optimizerPrefix) } }

    /// The optimizer's state, prefix removed.
    public var optimizerState: [String: Tensor] { Self.strip(Self.optimizerPrefix, from: tensors) }

    /// The step recorded by the trainer; nil when the file records none. A recorded step that is not
    /// a non-negative integer is an error naming the key.
    public func step() throws -> Int? {
        guard let s = metadata["step"] else { return nil }
        guard let v = Int(s), v >= 0 else { throw CheckpointError.invalid(path: path, message: "metadata 'step' is '\(s)', not a non-negative integer") }
        return v
    }

    /// The encoder's state dict with torchvision names, and the prefix that was removed.
    /// `prefix` nil: the `encoder.` keys of a CycleTime checkpoint, else the whole file (a
    /// torchvision state dict); "" : the whole file; otherwise the keys under that prefix, which
    /// must exist.
    public func encoderState(prefix: String? = nil) throws -> (state: [String: Tensor], prefix: String) {
        if tensors.isEmpty { throw CheckpointError.invalid(path: path, message: "checkpoint has no tensors") }
        let p = prefix ?? Self.encoderPrefix
        if !p.isEmpty && tensors.keys.contains(where: { $0.hasPrefix(p) }) {
            let state = Self.strip(p, from: tensors)
            try requireFinite(state, prefix: p)
            return (state, p)
        }
        if let prefix, !prefix.isEmpty {
            throw CheckpointError.invalid(path: path, message: "no key starts with the prefix '\(prefix)' (e.g. '\(tensors.keys.sorted().first ?? "")')")
        }
        try requireFinite(tensors, prefix: "")
        return (tensors, "")
    }

    /// Weights with NaN or infinite values (a run that diverged) would give NaN features and
    /// empty masks with no word: they are an error naming the first such key.
    public func requireFinite(_ state: [String: Tensor], prefix: String) throws {
        for (k, t) in state.sorted(by: { $0.key < $1.key }) {
            let p = t.data
            for i in 0..<t.count where !p[i].isFinite {
                throw CheckpointError.invalid(path: path, message: "key '\(prefix)\(k)' holds a NaN or infinite value (a run that diverged?)")
            }
        }
    }

    /// The encoder spec: the one recorded in the metadata, else what `resolver` derives from the
    /// metadata of an older checkpoint (e.g. its embedded training config), else nil.
    public func encoderSpec(resolver: (([String: String], String) throws -> EncoderSpec?)? = nil) throws -> EncoderSpec? {
        if let s = try EncoderSpec.recorded(in: metadata, file: path) { return s }
        return try resolver?(metadata, path)
    }

    /// Loads the encoder keys into `model`, strictly for the model's own stages: missing keys, shape
    /// mismatches and unexpected keys of the created stages are errors, each one line naming the
    /// file and key; keys of later stages, avgpool and fc are ignored.
    public func loadEncoder(into model: Module, prefix: String? = nil, description: String) throws {
        let (dict, used) = try encoderState(prefix: prefix)
        let entries = model.namedStateEntries()
        let stages = Set(entries.map { String($0.0.split(separator: ".")[0]) })
        for (k, t) in entries {
            guard let src = dict[k] else {
                if k.hasSuffix("num_batches_tracked") { continue }
                let missing = entries.filter { dict[$0.0] == nil && !$0.0.hasSuffix("num_batches_tracked") }.count
                throw CheckpointError.invalid(path: path, message: "missing key '\(used)\(k)' for \(description)"
                                              + (missing > 1 ? " (\(missing) keys missing)" : "") + " (wrong --arch or --prefix?)")
            }
            if src.shape != t.shape {
                throw CheckpointError.invalid(path: path, message: "key '\(used)\(k)' has shape \(src.shape) in the checkpoint but \(t.shape) in \(description) (wrong --arch?)")
            }
        }
        let modelKeys = Set(entries.map { $0.0 })
        let unexpected = dict.keys.filter { !modelKeys.contains($0) && stages.contains(String($0.split(separator: ".")[0])) }.sorted()
        if let first = unexpected.first {
            throw CheckpointError.invalid(path: path, message: "unexpected key '\(used)\(first)' for \(description)"
                                          + (unexpected.count > 1 ? " (\(unexpected.count) unexpected keys)" : "") + " (wrong --arch?)")
        }
        for (k, t) in entries { if let src = dict[k] { t.assign(src) } }
    }

    static func strip(_ prefix: String, from tensors: [String: Tensor]) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (k, v) in tensors where k.hasPrefix(prefix) { out[String(k.dropFirst(prefix.count))] = v }
        return out
    }
}
