import Foundation

// Learning-rate schedules as closed-form functions of the step (epoch or iteration) index,
// matching torch.optim.lr_scheduler's sequences: `lr(at: 0)` is the rate before the first
// scheduler.step(), `lr(at: t)` the rate after t calls.

/// A learning rate as a function of the step index (0-based).
public protocol LRSchedule: Sendable {
    func lr(at step: Int) -> Float
}

extension LRSchedule {
    /// Sets the optimizer's learning rate to this schedule's value at `step`; returns it.
    @discardableResult
    public func apply(to optimizer: Optimizer, step: Int) -> Float {
        let v = lr(at: step)
        optimizer.learningRate = v
        return v
    }
}

/// A constant rate.
public struct ConstantLR: LRSchedule {
    public var baseLR: Float
    public init(baseLR: Float) { self.baseLR = baseLR }
    public func lr(at step: Int) -> Float { baseLR }
}

/// torch StepLR: base * gamma^(step / stepSize).
public struct StepLR: LRSchedule {
    public var baseLR: Float, stepSize: Int, gamma: Float
    public init(baseLR: Float, stepSize: Int, gamma: Float = 0.1) {
        precondition(stepSize > 0, "StepLR: stepSize must be positive")
        self.baseLR = baseLR; self.stepSize = stepSize; self.gamma = gamma
    }
    public func lr(at step: Int) -> Float {
        Float(Double(baseLR) * Foundation.pow(Double(gamma), Double(max(step, 0) / stepSize)))
    }
}

/// torch MultiStepLR: base * gamma^(number of milestones <= step).
public struct MultiStepLR: LRSchedule {
    public var baseLR: Float, milestones: [Int], gamma: Float
    public init(baseLR: Float, milestones: [Int], gamma: Float = 0.1) {
        self.baseLR = baseLR; self.milestones = milestones.sorted(); self.gamma = gamma
    }
    public func lr(at step: Int) -> Float {
        let passed = milestones.filter { $0 <= step }.count
        return Float(Double(baseLR) * Foundation.pow(Double(gamma), Double(passed)))
    }
}

/// torch CosineAnnealingLR (closed form): etaMin + (base - etaMin) * (1 + cos(pi * step / tMax)) / 2.
/// Past tMax the cosine continues (rising again), as PyTorch's does.
public struct CosineAnnealingLR: LRSchedule {
    public var baseLR: Float, tMax: Int, etaMin: Float
    public init(baseLR: Float, tMax: Int, etaMin: Float = 0) {
        precondition(tMax > 0, "CosineAnnealingLR: tMax must be positive")
        self.baseLR = baseLR; self.tMax = tMax; self.etaMin = etaMin
    }
    public func lr(at step: Int) -> Float {
        let b = Double(baseLR), e = Double(etaMin)
        return Float(e + (b - e) * (1 + cos(Double.pi * Double(step) / Double(tMax))) / 2)
    }
}

/// torch LinearLR: base * factor, the factor moving linearly from `startFactor` to `endFactor`
/// over `totalIters` steps, then staying at `endFactor`.
public struct LinearLR: LRSchedule {
    public var baseLR: Float, startFactor: Float, endFactor: Float, totalIters: Int
    public init(baseLR: Float, startFactor: Float = 1.0 / 3, endFactor: Float = 1, totalIters: Int = 5) {
        precondition(totalIters >= 0, "LinearLR: totalIters must be non-negative")
        self.baseLR = baseLR; self.startFactor = startFactor; self.endFactor = endFactor; self.totalIters = totalIters
    }
    public func lr(at step: Int) -> Float {
        let s = Double(startFactor), e = Double(endFactor)
        let t = totalIters == 0 ? 1 : Double(min(max(step, 0), totalIters)) / Double(totalIters)
        return Float(Double(baseLR) * (s + (e - s) * t))
    }
}

/// torch SequentialLR: `schedules[k]` runs from `milestones[k-1]` on, restarted at its own step 0.
public struct SequentialLR: LRSchedule {
    public var schedules: [any LRSchedule], milestones: [Int]
    public init(_ schedules: [any LRSchedule], milestones: [Int]) {
        precondition(!schedules.isEmpty && milestones.count == schedules.count - 1,
                     "SequentialLR: needs one milestone fewer than schedules")
        precondition(zip(milestones, milestones.dropFirst()).allSatisfy { $0 < $1 }, "SequentialLR: milestones must increase")
        self.schedules = schedules; self.milestones = milestones
    }
    public func lr(at step: Int) -> Float {
        var k = 0
        while k < milestones.count && step >= milestones[k] { k += 1 }
        return schedules[k].lr(at: k == 0 ? step : step - milestones[k - 1])
    }
}

/// Linear warmup composed with another schedule: for `step < warmupSteps` the rate ramps from
/// `startFactor * then.lr(at: 0)` towards `then.lr(at: 0)`, then follows `then` restarted at 0.
/// Equals torch's SequentialLR([LinearLR(startFactor, totalIters: warmupSteps), then], [warmupSteps]).
public struct LinearWarmup: LRSchedule {
    public var warmupSteps: Int, startFactor: Float, after: any LRSchedule
    public init(warmupSteps: Int, startFactor: Float = 1.0 / 3, then: any LRSchedule) {
        precondition(warmupSteps >= 0, "LinearWarmup: warmupSteps must be non-negative")
        self.warmupSteps = warmupSteps; self.startFactor = startFactor; self.after = then
    }
    public func lr(at step: Int) -> Float {
        if step >= warmupSteps { return after.lr(at: step - warmupSteps) }
        return LinearLR(baseLR: after.lr(at: 0), startFactor: startFactor, endFactor: 1, totalIters: warmupSteps).lr(at: step)
    }
}

/// Drives an optimizer's learning rate like a torch LR scheduler: sets `lr(at: 0)` on creation,
/// and each `step()` advances one step and sets the new rate.
public final class LRScheduler {
    public let optimizer: Optimizer
    public let schedule: any LRSchedule
    /// Number of `step()` calls so far (torch's `last_epoch`); settable to resume.
    public var lastStep: Int {
        didSet { schedule.apply(to: optimizer, step: lastStep) }
    }

    public init(_ optimizer: Optimizer, schedule: any LRSchedule, lastStep: Int = 0) {
        self.optimizer = optimizer
        self.schedule = schedule
        self.lastStep = lastStep
        schedule.apply(to: optimizer, step: lastStep)
    }

    public func step() { lastStep += 1 }

    /// The optimizer's current learning rate.
    public var currentLR: Float { optimizer.learningRate }
}
