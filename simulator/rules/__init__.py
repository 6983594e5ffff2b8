"""The registration rules as plain functions: one source of truth for the API, the defect
injector, the validators and the tests (NIK structure, upload rules, eligibility, reason codes).
"""
