"""The surge harness: scenario files, the open-model arrival schedule, journeys' metrics and reports.

``loadtests/`` holds the Locust files; everything they need lives here so it can be tested without Locust.
"""
