@_exported import CycleTimeNN
