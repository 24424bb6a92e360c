"""The application on top of the library: the ``flowkit`` command line (``python -m
pyro_flowkit``), the demo jobs and their pictures. Nothing below imports from here."""
