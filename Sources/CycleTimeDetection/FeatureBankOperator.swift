import CycleTimeCore
import CycleTimeNN
import Foundation

// The long-term feature bank's operators (Wu et al., CVPR 2019), as mmaction2's `FBOHead`
// (mmaction/models/roi_heads/shared_heads/fbo_head.py): the short-term RoI feature of an actor
// attends to the long-term features of its video around the keyframe (non-local, FBO-NL) or is
// joined by their average or maximum (FBO-avg, FBO-max). Key names as mmaction2's.

/// mmaction2's ConvModule without norm or activation: a 1x1x1 Conv3d with bias under `conv`.
public final class PlainConvModule: Module {
    public let conv: Conv3d

    public init(_ cin: Int, _ cout: Int, generator: inout RandomGenerator) {
        conv = Conv3d(cin, cout, kernelSize: [1, 1, 1], bias: true, generator: &generator)
        super.init()
    }

    public override func callAsFunction(_ x: Tensor) -> Tensor { conv(x) }
}

/// mmaction2's `NonLocalLayer` (of FBO-NL): theta = st_feat_conv(st), phi = lt_feat_conv(lt),
/// g = global_conv(lt); attention softmax over the long-term features of <theta, phi> (divided by
/// sqrt(latent) with `useScale`); out = g attended; pre-activation: layer norm over
/// [latent, num_st, 1, 1] (per sample) and ReLU before out_conv, else layer norm after it; dropout.
public final class NonLocalLayer: Module {
    public let st_feat_conv: PlainConvModule, lt_feat_conv: PlainConvModule, global_conv: PlainConvModule
    public let ln: LayerNorm
    public let out_conv: PlainConvModule
    public let dropout: Dropout
    public let latentChannels: Int, shortTerm: Int, longTerm: Int
    public let useScale: Bool, preActivate: Bool, preActivateWithLN: Bool

    public init(stChannels: Int, ltChannels: Int, latentChannels: Int, shortTerm: Int, longTerm: Int, useScale: Bool = true,
                preActivate: Bool = true, preActivateWithLN: Bool = true, dropout: Float = 0.2, generator: inout RandomGenerator) {
        st_feat_conv = PlainConvModule(stChannels, latentChannels, generator: &generator)
        lt_feat_conv = PlainConvModule(ltChannels, latentChannels, generator: &generator)
        global_conv = PlainConvModule(ltChannels, latentChannels, generator: &generator)
        ln = LayerNorm([preActivate ? latentChannels : stChannels, shortTerm, 1, 1])
        out_conv = PlainConvModule(latentChannels, stChannels, generator: &generator)
        self.dropout = Dropout(dropout, seed: generator.next())
        self.latentChannels = latentChannels
        self.shortTerm = shortTerm
        self.longTerm = longTerm
        self.useScale = useScale
        self.preActivate = preActivate
        self.preActivateWithLN = preActivateWithLN
        super.init()
    }

    /// st [N, C_st, num_st, 1, 1], lt [N, C_lt, num_lt, 1, 1] -> [N, C_st, num_st, 1, 1].
    public func callAsFunction(shortTerm st: Tensor, longTerm lt: Tensor) -> Tensor {
        let n = st.shape[0], c = latentChannels
        let theta = st_feat_conv(st).reshaped([n, c, shortTerm])
        let phi = lt_feat_conv(lt).reshaped([n, c, longTerm])
        let g = global_conv(lt).reshaped([n, c, longTerm])
        var thetaPhi = theta.transposed(1, 2).matmul(phi)                        // [n, num_st, num_lt]
        if useScale { thetaPhi = thetaPhi / Tensor(scalar: Float(c).squareRoot()) }
        let p = thetaPhi.softmax(axis: 2)
        var out = g.matmul(p.transposed(1, 2)).reshaped([n, c, shortTerm, 1, 1])
        if preActivate {
            if preActivateWithLN { out = ln(out) }
            out = out.relu()
        }
        out = out_conv(out)
        if !preActivate { out = ln(out) }
        return dropout(out)
    }
}

/// mmaction2's `FBONonLocal`: 1x1x1 convolutions (with bias) of the short- and long-term features
/// to the latent width, each followed by dropout; then `layers` non-local layers, each added to its
/// input (ReLU after the sum when not pre-activated). Keys: st_feat_conv, lt_feat_conv,
/// non_local_layer_1 ... non_local_layer_<layers>.
public final class FBONonLocal: Module {
    public let st_feat_conv: Conv3d, lt_feat_conv: Conv3d
    public let st_feat_dropout: Dropout, lt_feat_dropout: Dropout
    let layers: [NonLocalLayer]
    public let preActivate: Bool

    public init(stChannels: Int, ltChannels: Int, latentChannels: Int, shortTerm: Int, longTerm: Int, layers count: Int = 2,
                stDropout: Float = 0.2, ltDropout: Float = 0.2, preActivate: Bool = true, generator: inout RandomGenerator) {
        precondition(count >= 1, "FBONonLocal needs at least one non-local layer")
        st_feat_conv = Conv3d(stChannels, latentChannels, kernelSize: [1, 1, 1], bias: true, generator: &generator)
        lt_feat_conv = Conv3d(ltChannels, latentChannels, kernelSize: [1, 1, 1], bias: true, generator: &generator)
        st_feat_dropout = Dropout(stDropout, seed: generator.next())
        lt_feat_dropout = Dropout(ltDropout, seed: generator.next())
        layers = (0..<count).map { _ in
            NonLocalLayer(stChannels: latentChannels, ltChannels: latentChannels, latentChannels: latentChannels, shortTerm: shortTerm,
                          longTerm: longTerm, preActivate: preActivate, generator: &generator)
        }
        self.preActivate = preActivate
        super.init()
    }

    public override func namedChildren() -> [(String, Module)] {
        super.namedChildren().filter { !$0.0.hasPrefix("layers.") }
            + layers.enumerated().map { ("non_local_layer_\($0.offset + 1)", $0.element) }
    }

    /// st [N, C_st, num_st, 1, 1], lt [N, C_lt, num_lt, 1, 1] -> [N, latent, num_st, 1, 1].
    public func callAsFunction(shortTerm st: Tensor, longTerm lt: Tensor) -> Tensor {
        var s = st_feat_dropout(st_feat_conv(st))
        let l = lt_feat_dropout(lt_feat_conv(lt))
        for layer in layers {
            let sum = s + layer(shortTerm: s, longTerm: l)
            s = preActivate ? sum : sum.relu()
        }
        return s
    }
}

/// The feature-bank operator of `model.bank` (mmaction2's fbo_cfg type).
public enum FeatureBankOperatorKind: String, Codable, Sendable, CaseIterable {
    case nonLocal = "non_local", avg, max
}

/// mmaction2's `FBOHead` without the bank lookup: the actor's RoI feature [N, C, T, H, W] pooled
/// over time (`temporalPool`, avg by default) and space (`spatialPool`, max by default) to the
/// short-term feature [N, C, 1, 1, 1]; the operator combines it with the long-term features
/// [N, C_lt, num_lt, 1, 1]; out = [short-term, operator output] concatenated on channels. Key
/// names: fbo.* (the non-local operator's; avg and max have no parameters).
public final class FBOHead: Module {
    public let fbo: FBONonLocal?
    public let kind: FeatureBankOperatorKind
    public let temporalMax: Bool, spatialMax: Bool

    public init(kind: FeatureBankOperatorKind, stChannels: Int, ltChannels: Int, latentChannels: Int = 512, longTerm: Int,
                layers: Int = 2, stDropout: Float = 0.2, ltDropout: Float = 0.2, preActivate: Bool = true,
                temporalMax: Bool = false, spatialMax: Bool = true, generator: inout RandomGenerator) {
        self.kind = kind
        fbo = kind == .nonLocal
            ? FBONonLocal(stChannels: stChannels, ltChannels: ltChannels, latentChannels: latentChannels, shortTerm: 1, longTerm: longTerm,
                          layers: layers, stDropout: stDropout, ltDropout: ltDropout, preActivate: preActivate, generator: &generator)
            : nil
        self.temporalMax = temporalMax
        self.spatialMax = spatialMax
        super.init()
    }

    /// Output channels: C_st + latent (non-local) or C_st + C_lt (avg, max).
    public static func outChannels(kind: FeatureBankOperatorKind, stChannels: Int, ltChannels: Int, latentChannels: Int) -> Int {
        stChannels + (kind == .nonLocal ? latentChannels : ltChannels)
    }

    /// x [N, C, T, H, W] (RoI features), lt [N, C_lt, num_lt, 1, 1] -> [N, C + C', 1, 1, 1].
    public func callAsFunction(_ x: Tensor, longTerm lt: Tensor) -> Tensor {
        let t = temporalMax ? x.max(axis: 2, keepdim: true) : x.mean(axes: [2], keepdim: true)
        return combine(spatialMax ? t.max(axis: 3, keepdim: true).max(axis: 4, keepdim: true) : t.mean(axes: [3, 4], keepdim: true), lt)
    }

    /// Pooled short-term features st [K, C] (the RoI head's pooling: time average, spatial max) and
    /// lt [K, C_lt, num_lt, 1, 1] -> [K, C + C'].
    public func callAsFunction(shortTerm st: Tensor, longTerm lt: Tensor) -> Tensor {
        let k = st.shape[0]
        let out = combine(st.reshaped([k, st.shape[1], 1, 1, 1]), lt)
        return out.reshaped([k, out.shape[1]])
    }

    func combine(_ st: Tensor, _ lt: Tensor) -> Tensor {
        let out: Tensor
        switch kind {
        case .nonLocal:
            guard let fbo else { preconditionFailure("FBOHead: the non-local operator is missing") }
            out = fbo(shortTerm: st, longTerm: lt)
        case .avg: out = lt.mean(axes: [2], keepdim: true)
        case .max: out = lt.max(axis: 2, keepdim: true)
        }
        return Tensor.cat([st, out], axis: 1)
    }
}
