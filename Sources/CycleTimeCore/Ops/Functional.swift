// `F` is CycleTime's torch.nn.functional: the ops that take parameters or options.
// Each family lives in its own file (Convolution.swift, Pooling.swift, ...) as an extension of F.

/// PyTorch's `torch.nn.functional`, as a namespace.
public enum F {}

/// How a reduction-style loss combines elements (PyTorch's `reduction=`).
public enum Reduction: String, Sendable { case none, mean, sum }

/// Padding modes (F.pad's `mode=`; Conv2d's `padding_mode=`).
public enum PadMode: String, Sendable { case zeros, reflect }

/// Interpolation modes for F.interpolate and F.gridSample.
public enum InterpolationMode: String, Sendable { case bilinear, nearest }
