import CycleTimeDistributed
import Foundation
import XCTest

/// MPIContext in a process not started by mpirun (the MPI job itself is exercised through
/// `mpirun ... cycletime train` in CycleTimeTrainingTests.DistributedTrainingTests).
final class MPIContextTests: XCTestCase {
    func testWithoutMpirunThereIsNoJobAndMPIIsNotInitialized() throws {
        try XCTSkipIf(MPIContext.launchedByMPI, "this test process runs under mpirun")
        XCTAssertNil(try MPIContext.shared())
        XCTAssertNil(try MPIContext.shared())
    }

    func testDistributedErrorsCarryTheirMessage() {
        let e = DistributedError("rank 1/2: the gradient all-reduce failed")
        XCTAssertEqual(e.localizedDescription, "rank 1/2: the gradient all-reduce failed")
    }
}
