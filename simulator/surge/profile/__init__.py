"""Target profiles: drive any registration API from one TOML file (docs/target-profile.md).

``format`` reads and validates a profile, ``template`` compiles its templates and extractors,
``journey`` is the profile-driven JourneyUser every surge runs, ``check`` walks one applicant
through a profile (``surge --check-profile``).
"""

from simulator.surge.profile.format import DEFAULT_PROFILE, Profile, Step, load_profile, parse_profile

__all__ = ["DEFAULT_PROFILE", "Profile", "Step", "load_profile", "parse_profile"]
