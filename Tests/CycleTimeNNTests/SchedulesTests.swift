import CycleTimeCore
import XCTest
@testable import CycleTimeNN
import TestSupport

/// LR schedules against torch.optim.lr_scheduler's sequences (fixture lr_schedules: the rate
/// before the first scheduler.step() and after each of the following calls).
final class SchedulesTests: XCTestCase {
    func check(_ key: String, _ schedule: any LRSchedule, file: StaticString = #filePath, line: UInt = #line) throws {
        let fx = try Fixtures.load("lr_schedules")
        let expected = fx.t(key, file: file, line: line)
        let got = Tensor((0..<expected.count).map { schedule.lr(at: $0) }, shape: expected.shape)
        assertClose(got, expected, rtol: 1e-6, atol: 1e-9, key, file: file, line: line)
    }

    func testStepLR() throws { try check("step", StepLR(baseLR: 0.1, stepSize: 3, gamma: 0.5)) }
    func testMultiStepLR() throws { try check("multistep", MultiStepLR(baseLR: 0.2, milestones: [2, 5, 9], gamma: 0.3)) }
    func testCosineAnnealingPastTMax() throws { try check("cosine", CosineAnnealingLR(baseLR: 0.1, tMax: 10, etaMin: 1e-3)) }
    func testCosineAnnealingToZero() throws { try check("cosine0", CosineAnnealingLR(baseLR: 0.05, tMax: 7)) }
    func testLinearLR() throws { try check("linear", LinearLR(baseLR: 0.3, startFactor: 0.1, totalIters: 4)) }
    func testLinearLRDecreasing() throws {
        try check("linear_down", LinearLR(baseLR: 0.3, startFactor: 1, endFactor: 0.2, totalIters: 6))
    }
    func testWarmupThenCosine() throws {
        try check("warmup_cosine", LinearWarmup(warmupSteps: 5, startFactor: 0.01,
                                                then: CosineAnnealingLR(baseLR: 0.1, tMax: 15, etaMin: 1e-4)))
        try check("warmup_cosine", SequentialLR([LinearLR(baseLR: 0.1, startFactor: 0.01, totalIters: 5),
                                                 CosineAnnealingLR(baseLR: 0.1, tMax: 15, etaMin: 1e-4)], milestones: [5]))
    }
    func testWarmupThenMultiStep() throws {
        try check("warmup_multistep", LinearWarmup(warmupSteps: 3, startFactor: 0.25,
                                                   then: MultiStepLR(baseLR: 0.4, milestones: [4, 6], gamma: 0.1)))
    }

    func testSchedulerDrivesOptimizer() throws {
        let fx = try Fixtures.load("lr_schedules")
        let expected = fx.t("warmup_cosine")
        let p = Tensor.zeros([1], requiresGrad: true)
        let opt = SGD(parameters: [p], learningRate: 123)
        let sched = LRScheduler(opt, schedule: LinearWarmup(warmupSteps: 5, startFactor: 0.01,
                                                            then: CosineAnnealingLR(baseLR: 0.1, tMax: 15, etaMin: 1e-4)))
        var got: [Float] = [opt.learningRate]
        for _ in 1..<expected.count {
            p.grad = Tensor.ones([1])
            opt.step()
            sched.step()
            got.append(opt.learningRate)
        }
        assertClose(Tensor(got, shape: expected.shape), expected, rtol: 1e-6, atol: 1e-9)
        // Resuming: setting the step count sets the rate.
        sched.lastStep = 7
        assertClose(opt.learningRate, expected.data[7], rtol: 1e-6, atol: 1e-9)
        XCTAssertEqual(CosineAnnealingLR(baseLR: 1, tMax: 4).apply(to: opt, step: 2), opt.learningRate)
    }
}
