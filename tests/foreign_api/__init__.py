"""A second registration API, in another style than simulator/api, for driving the surge with a
target profile alone (issue #16): see app.py, runner.py and profile.toml."""
