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

    func testErrorStringsNameTheMPIError() {
        // MPI_Error_string works before MPI_Init; code 0 is MPI_SUCCESS.
        let s = MPIContext.errorString(0)
        XCTAssertTrue(s.contains("MPI error 0"), s)
        XCTAssertGreaterThan(s.count, "(MPI error 0)".count)
    }

    func testDistributedErrorsCarryTheirMessage() {
        let e = DistributedError("rank 1/2: the gradient all-reduce failed")
        XCTAssertEqual(e.localizedDescription, "rank 1/2: the gradient all-reduce failed")
    }
}
