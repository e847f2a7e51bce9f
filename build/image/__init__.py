"""Making the image: staging the tree it holds (stage, render, elf, conflines), packing it (pack,
buildinfo), its checksum and the compat name (checksum, alias)."""
