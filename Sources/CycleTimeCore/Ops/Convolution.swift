// Convolutions (owner: convolution family). NCHW / NCDHW, weights [Cout, Cin/groups, k...].

extension F {
    /// F.conv2d. stride/padding/dilation are [h, w]. `paddingMode: .reflect` pads by reflection
    /// (Conv2d's padding_mode='reflect').
    public static func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: [Int] = [1, 1],
                              padding: [Int] = [0, 0], dilation: [Int] = [1, 1], groups: Int = 1,
                              paddingMode: PadMode = .zeros) -> Tensor { fatalError("unimplemented: conv2d") }
    /// F.conv3d. stride/padding/dilation are [t, h, w].
    public static func conv3d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: [Int] = [1, 1, 1],
                              padding: [Int] = [0, 0, 0], dilation: [Int] = [1, 1, 1], groups: Int = 1) -> Tensor { fatalError("unimplemented: conv3d") }
}
