"""KTP (e-KTP identity card) uploads as a phone would send them: the card's ``layout`` and ``card``
drawing with its ``portrait``, the ``photo`` of it (``surface``, ``light``, ``warp``, ``encoding``),
the deliberately bad ``variants`` with the verdict the upload rules should give, and ``fixtures``
(which variant each file of a set is, and whose card). The files on disk are
``simulator.io.ktp_fixtures``; the click shell is ``cli.py``.
"""
