import CycleTimeCore
import CycleTimeData
import CycleTimeTraining
import Foundation

/// Which split's keyframes `ava bank` runs over: the training annotations (data.annotations with
/// data.proposals) or the test ones (test.annotations with test.proposals).
public enum AVABankSplit: String, Sendable, CaseIterable {
    case train, test
}

/// What `runAVABank` did.
public struct AVABankSummary: Sendable {
    /// Videos whose files were written, and those already in the bank (left as they were).
    public let written: [String]
    public let skipped: [String]
    public let keyframes: Int
    public let features: Int
    public let channels: Int
    public let checkpoint: String
}

/// `cycletime ava bank`: the long-term feature bank of a split (Wu et al., CVPR 2019; mmaction2's
/// lfb_infer step): the trained detector of `checkpoint` (a detector with the RoI head's pooling:
/// the linear head or ACRN) runs on every keyframe of the split with its proposals, test-time
/// clips, and each proposal's RoI feature [C] is stored under its video and second
/// (`FeatureBankStore`). Videos are done one at a time and written atomically when complete, so an
/// interrupted build is resumed by running it again: the videos whose files hold every keyframe
/// second of the split are skipped; a video also in another split gets this split's seconds added.
public func runAVABank(configPath: String, overrides: [String] = [], checkpoint: String?, out: String, split: AVABankSplit,
                       report: @escaping @Sendable (String) -> Void, progress: @escaping (String) -> Void) throws -> AVABankSummary {
    let config = try ConfigLoader.load(AVAConfig.self, path: configPath, overrides: overrides)
    try config.validate(file: configPath)
    let inputs = try AVAInputs(config: config, file: configPath)
    guard config.model.head != AVAHeadKind.acar.rawValue else {
        throw ConfigError(configPath, "field 'model.head': acar pools no per-box RoI feature; build the bank with a linear-head (or ACRN) detector")
    }
    let (det, ckpt) = try inputs.trainedDetector(checkpoint: checkpoint)
    let data: AVADataset
    switch split {
    case .train:
        data = try inputs.keyframeDataset(annotations: config.data.annotations, proposals: config.data.proposals, proposalsField: "data.proposals'",
                                          excluded: config.data.excluded, boxes: .proposals, report: report)
    case .test:
        data = try inputs.testDataset(boxes: .proposals, report: report)
    }
    let store = FeatureBankStore(root: out)
    do { try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true) } catch {
        throw TrainingError("\(out): cannot create the bank folder: \(error.localizedDescription)")
    }
    // Video by video, keyframes in time order; a video whose file holds every keyframe second of the
    // split is skipped, the others get the missing seconds added to what their file holds.
    let all = data.entries.sorted { ($0.key.videoID, $0.key.timestamp) < ($1.key.videoID, $1.key.timestamp) }
    var held: [String: Set<Int>] = [:]
    for v in Set(all.map(\.key.videoID)) { held[v] = try store.seconds(v) }
    let todo = all.filter { !(held[$0.key.videoID] ?? []).contains($0.key.timestamp) }
    let skipped = Set(all.map(\.key.videoID)).subtracting(todo.map(\.key.videoID)).sorted()
    if !skipped.isEmpty { report("\(skipped.count) video\(skipped.count == 1 ? "" : "s") of the split already in \(out) (kept): \(skipped.prefix(5).joined(separator: ", "))") }
    let source = AVADataset(entries: todo, store: data.store, options: data.options, training: false)
    let loader = PrefetchLoader(source: source, batchSize: 1, workers: config.data.workers, queueDepth: config.data.prefetch,
                                seed: UInt64(config.seed), epochs: 1, shuffle: false)
    loader.warn = { report($0.hasPrefix("warning: ") ? String($0.dropFirst(9)) : $0) }
    defer { loader.stop() }
    let counter = CountProgress(total: todo.count, unit: "keyframe", line: ProgressLine(write: progress))
    var written: [String] = [], current: String?, seconds: [Int: Tensor] = [:], features = 0, channels = 0
    func flush() throws {
        guard let video = current, !seconds.isEmpty else { return }
        // A keyframe that could not be read would leave a hole in its video's file: write no more.
        if loader.skipped > 0 {
            throw TrainingError("\(loader.skipped) keyframe\(loader.skipped == 1 ? "" : "s") could not be read (\(loader.skippedSamples.prefix(3).joined(separator: "; "))); the videos finished before are in \(out), run again to resume")
        }
        if !(held[video] ?? []).isEmpty {
            for (k, t) in try store.read(video: video, channels: channels) where seconds[k] == nil { seconds[k] = t }
        }
        try store.write(video: video, seconds: seconds, channels: channels)
        written.append(video)
        seconds = [:]
    }
    while let b = loader.next() {
        guard let f = noGrad({ det.roiFeatures(b.clips, boxes: b.boxes) }) else {
            throw TrainingError("\(ckpt): the detector pools no per-box RoI feature")
        }
        channels = f.shape[1]
        var offset = 0
        for (i, key) in b.keys.enumerated() {
            if key.videoID != current {
                try flush()
                current = key.videoID
            }
            let n = b.boxes[i].count
            let rows = f.sliced(axis: 0, start: offset, end: offset + n)
            seconds[key.timestamp] = seconds[key.timestamp].map { Tensor.cat([$0, rows], axis: 0) } ?? rows
            features += n
            offset += n
        }
        counter.tick("bank", count: b.keys.count)
    }
    counter.finish()
    try flush()
    return AVABankSummary(written: written, skipped: skipped, keyframes: counter.done, features: features, channels: channels, checkpoint: ckpt)
}
