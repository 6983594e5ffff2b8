"""Pluggable sources a target profile names: where OTPs come from (otp.py) and what the server
committed (truth.py). docs/target-profile-sources.md describes each source key by key."""

from simulator.surge.sources.otp import OtpSource, otp_source
from simulator.surge.sources.truth import TruthSource, reconcile_truth, snapshot, truth_source

__all__ = ["OtpSource", "TruthSource", "otp_source", "reconcile_truth", "snapshot", "truth_source"]
