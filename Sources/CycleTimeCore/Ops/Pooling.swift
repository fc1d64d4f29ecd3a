// Pooling (owner: convolution family).

extension F {
    /// F.max_pool2d (stride defaults to kernel).
    public static func maxPool2d(_ x: Tensor, kernel: [Int], stride: [Int]? = nil, padding: [Int] = [0, 0],
                                 dilation: [Int] = [1, 1], ceilMode: Bool = false) -> Tensor { fatalError("unimplemented: maxPool2d") }
    public static func maxPool3d(_ x: Tensor, kernel: [Int], stride: [Int]? = nil, padding: [Int] = [0, 0, 0],
                                 ceilMode: Bool = false) -> Tensor { fatalError("unimplemented: maxPool3d") }
    /// F.avg_pool2d.
    public static func avgPool2d(_ x: Tensor, kernel: [Int], stride: [Int]? = nil, padding: [Int] = [0, 0],
                                 ceilMode: Bool = false, countIncludePad: Bool = true) -> Tensor { fatalError("unimplemented: avgPool2d") }
    public static func avgPool3d(_ x: Tensor, kernel: [Int], stride: [Int]? = nil, padding: [Int] = [0, 0, 0],
                                 ceilMode: Bool = false, countIncludePad: Bool = true) -> Tensor { fatalError("unimplemented: avgPool3d") }
    /// F.adaptive_avg_pool2d / 3d (output size per spatial dim).
    public static func adaptiveAvgPool2d(_ x: Tensor, outputSize: [Int]) -> Tensor { fatalError("unimplemented: adaptiveAvgPool2d") }
    public static func adaptiveAvgPool3d(_ x: Tensor, outputSize: [Int]) -> Tensor { fatalError("unimplemented: adaptiveAvgPool3d") }
}
