// Spatial sampling with exactly PyTorch's semantics (owner: sampling family).

extension F {
    /// F.affine_grid for 2-D: theta [N, 2, 3], size [N, C, H, W] -> grid [N, H, W, 2] (x, y).
    public static func affineGrid(_ theta: Tensor, size: [Int], alignCorners: Bool) -> Tensor { fatalError("unimplemented: affineGrid") }
    /// F.grid_sample for 2-D input [N, C, H, W] and grid [N, Ho, Wo, 2]; zero padding.
    public static func gridSample(_ x: Tensor, grid: Tensor, mode: InterpolationMode = .bilinear,
                                  alignCorners: Bool) -> Tensor { fatalError("unimplemented: gridSample") }
    /// F.interpolate for [N, C, H, W]: `size` [Ho, Wo] or `scaleFactor`; nearest or bilinear
    /// (alignCorners applies to bilinear only, as in PyTorch; antialias off).
    public static func interpolate(_ x: Tensor, size: [Int]? = nil, scaleFactor: [Float]? = nil,
                                   mode: InterpolationMode = .nearest, alignCorners: Bool = false) -> Tensor { fatalError("unimplemented: interpolate") }
}
