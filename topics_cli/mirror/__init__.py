"""``topics mirror``: copy topics between ``/v0`` servers (see :mod:`.relay`, :mod:`.plan`)."""
