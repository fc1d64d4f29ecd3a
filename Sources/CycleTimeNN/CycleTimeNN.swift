@_exported import CycleTimeCore
