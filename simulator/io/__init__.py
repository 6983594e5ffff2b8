"""The files the project writes and reads: atomic writes (``atomic``), what a killed run leaves and the
sweep that removes it (``leftovers``), shared memory made for another process (``segments``),
population files (``population`` drives the generator into them through ``encode`` and ``files``;
``manifest`` and ``reader`` check and read them) and KTP fixture sets (``ktp_fixtures``). It sits
above ``simulator.generators`` and below the commands.
"""
