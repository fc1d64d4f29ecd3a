import XCTest
@testable import CycleTimeModels
import TestSupport
