"""Target profiles shipped with the package: reference.toml, how the reference API is driven (the default).

The format is simulator.surge.profile.format; docs/target-profile.md describes every key.
"""
