def suggest_mapping(*a, **k):
    raise NotImplementedError
