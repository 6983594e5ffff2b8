"""Stand-ins for a staging system's upstreams: the population registry (Dukcapil), an SMS gateway
and an SMTP server, each recording what it was asked, with fault knobs and a read API for the harness.

``prakerja-sim upstreams --population POP`` runs them; ``docs/upstreams.md`` documents every key.
"""
