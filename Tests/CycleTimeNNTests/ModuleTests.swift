import XCTest
@testable import CycleTimeNN
import TestSupport
