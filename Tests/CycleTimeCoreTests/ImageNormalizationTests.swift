import CycleTimeCore
import XCTest

final class ImageNormalizationTests: XCTestCase {
    func testMetadataFormRoundTripsExactly() {
        for n in [Normalization.imagenet, .crw, Normalization(mean: [0.1, 0.2, 0.3], std: [1e-3, 2, 0.7])] {
            XCTAssertEqual(Normalization(n.description), n, n.description)
        }
        XCTAssertEqual(Normalization.imagenet.description, "mean 0.485,0.456,0.406 std 0.229,0.224,0.225")
    }

    func testInvalidStatisticsAreRejected() {
        for text in ["mean 0,0,0 std 1,0,1", "mean 0,0 std 1,1,1", "mean nan,0,0 std 1,1,1", "std 1,1,1 mean 0,0,0", "", "mean 0,0,0 std 1,1,inf"] {
            XCTAssertNil(Normalization(text), text)
        }
        XCTAssertFalse(Normalization(mean: [0, 0, 0], std: [1, -1, 1]).isValid)
    }
}
