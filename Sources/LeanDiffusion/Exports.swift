@_exported import LeanCore
