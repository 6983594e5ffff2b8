"""Where a surge reads OTP codes (otp.py) and the server's committed counts (truth.py) from.

A target profile's ``[otp.email]``, ``[otp.sms]`` and ``[reconcile]`` tables name a source and its
keys (docs/target-profile.md).
"""
