import CycleTimeCore

/// The fixtures' reproducible weight formula (scripts/fixtures/common.py `hash_values`): element i
/// (row-major) of the k-th tensor is Float(offset + q * scale) with
/// q = ((i * 2654435761 + k * 40503 + 12345) mod 2^32) mod 2001 - 1000, computed in Double.
public func hashTensor(k: Int, shape: [Int], offset: Double, scale: Double) -> Tensor {
    let t = Tensor(uninitialized: shape)
    let kk = UInt64(k) &* 40503 &+ 12345
    for i in 0..<t.count {
        let h = (UInt64(i) &* 2654435761 &+ kk) & 0xFFFF_FFFF
        t.data[i] = Float(offset + Double(Int(h % 2001) - 1000) * scale)
    }
    return t
}

/// scripts/fixtures/common.py `resnet_offset_scale`: (offset, scale) of the formula for a torchvision
/// ResNet state-dict entry (4-D convs kaiming-uniform, BN weight 1 +- 0.3, running_var in [0.6, 1.4]).
public func resnetOffsetScale(key: String, shape: [Int]) -> (offset: Double, scale: Double) {
    if key.hasSuffix("num_batches_tracked") { return (1000, 1) }
    if key.hasSuffix("running_mean") { return (0, 1e-4) }
    if key.hasSuffix("running_var") { return (1, 4e-4) }
    if shape.count == 4 { return (0, (2.0 / Double(shape[1] * shape[2] * shape[3])).squareRoot() / 577.0) }
    if key.hasPrefix("fc.") { return key.hasSuffix("weight") ? (0, (1.0 / Double(shape[1])).squareRoot() / 577.0) : (0, 1e-5) }
    if key.hasSuffix("weight") { return (1, 3e-4) }
    return (0, 1e-4)
}
