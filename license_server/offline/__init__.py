"""Air-gapped installs: activation request files, license files, signed usage-return files.

``files`` (the formats) is pure and light; ``service`` and ``controllers`` are the vendor's side.
"""
